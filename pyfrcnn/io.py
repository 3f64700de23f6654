"""Reading nets: Caffe prototxt text into a filtered NetParameter.

`read_net` parses with protobuf's text_format (syntax errors come back as
`path:line:col: message`), turns the deprecated net-level inputs (`input`,
`input_shape`, `input_dim`) into one Input layer as Caffe's upgrade does, and
keeps the layers whose include / exclude rules the NetState meets.
"""

import dataclasses
import os

from google.protobuf import text_format

from .errors import NetError, ParseError
from .proto import pyfrcnn_pb2 as pb
from .textfile import read_text

PHASES = {"TRAIN": pb.TRAIN, "TEST": pb.TEST}
NET_SUFFIXES = (".prototxt", ".pbtxt", ".pt")


@dataclasses.dataclass
class NetDef:
    """A parsed, filtered net: the NetParameter, where it came from and the
    line on which each kept layer starts (for error messages)."""

    param: pb.NetParameter
    path: str
    lines: list
    state: pb.NetState

    def where(self, index):
        return f"{self.path}:{self.lines[index]}"


def phase_value(phase):
    """'TRAIN' / 'TEST' (any case) or a Phase enum value -> the enum value."""
    if isinstance(phase, int):
        return phase
    try:
        return PHASES[str(phase).upper()]
    except KeyError:
        raise NetError(f"unknown phase '{phase}': use TRAIN or TEST") from None


def phase_name(phase):
    return pb.Phase.Name(phase_value(phase))


def _top_level_layer_lines(text):
    """Line numbers (1-based) of each top-level `layer` / `layers` field and of
    the first top-level `input`, found by a scan that skips strings and comments."""
    lines, input_line = [], None
    depth, i, line, n = 0, 0, 1, len(text)
    token_start = None
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif ch in "'\"":
            quote, i = ch, i + 1
            while i < n and text[i] != quote:
                if text[i] == "\\":
                    i += 1
                elif text[i] == "\n":
                    line += 1
                i += 1
        elif ch in "{<":
            depth += 1
        elif ch in "}>":
            depth -= 1
        elif depth == 0 and (ch.isalpha() or ch == "_") and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            token_start = i
            while i < n and (text[i].isalnum() or text[i] == "_"):
                i += 1
            word = text[token_start:i]
            if word in ("layer", "layers"):
                lines.append(line)
            elif word == "input" and input_line is None:
                input_line = line
            continue
        i += 1
    return lines, input_line


def parse_net_text(text, path="<string>"):
    """Parse prototxt text into a NetParameter; returns (param, layer lines, input line)."""
    param = pb.NetParameter()
    try:
        text_format.Parse(text, param)
    except text_format.ParseError as e:
        line, col = e.GetLine(), e.GetColumn()
        msg = str(e)
        prefix = f"{line}:{col} : "
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
        where = f"{path}:{line}:{col}" if line is not None else path
        raise ParseError(f"{where}: {msg}") from None
    lines, input_line = _top_level_layer_lines(text)
    if len(lines) != len(param.layer) + len(param.layers):
        lines = [0] * (len(param.layer) + len(param.layers))  # scanner confused: no lines
    return param, lines, input_line


def _legacy_input_layer(param, path, input_line):
    """Caffe's UpgradeNetInput: net-level inputs become one Input layer."""
    shapes = list(param.input_shape)
    if param.input_dim:
        if len(param.input_dim) != 4 * len(param.input):
            raise NetError(f"{path}: input_dim must give 4 values per input "
                           f"({len(param.input)} inputs, {len(param.input_dim)} values)")
        dims = list(param.input_dim)
        shapes = [pb.BlobShape(dim=dims[4 * i:4 * i + 4]) for i in range(len(param.input))]
    if shapes and len(shapes) != len(param.input):
        raise NetError(f"{path}: {len(param.input)} inputs but {len(shapes)} input_shape entries")
    layer = pb.LayerParameter(name="input", type="Input", top=list(param.input))
    for shape in shapes:
        layer.input_param.shape.add().CopyFrom(shape)
    return layer


def state_meets_rule(state, rule):
    """Caffe's StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def layer_included(state, layer, where=""):
    if layer.include and layer.exclude:
        raise NetError(f"{where}layer '{layer.name}' ({layer.type}): "
                       "specify either include or exclude rules, not both")
    if layer.include:
        return any(state_meets_rule(state, r) for r in layer.include)
    return not any(state_meets_rule(state, r) for r in layer.exclude)


def is_net_path(source):
    """A string names a prototxt file unless it holds a newline, or braces and
    no file of that name exists (a net path may contain '{')."""
    if "\n" in source:
        return False
    return "{" not in source or os.path.exists(source) or source.endswith(NET_SUFFIXES)


def read_net(source, phase="TRAIN", stages=(), level=0):
    """Read a net from a prototxt path or text and keep the layers for this state.

    Returns a NetDef. Raises ParseError (path:line:col) for syntax and NetError
    for a net that cannot be filtered.
    """
    if isinstance(source, pb.NetParameter):
        text, path, param = None, "<NetParameter>", source
        lines, input_line = [0] * len(param.layer), None
    else:
        source = os.fspath(source)
        if is_net_path(source):
            path = source
            text = read_text(path, "net (prototxt)", ParseError)
        else:
            text, path = source, "<string>"
        param, lines, input_line = parse_net_text(text, path)
    if param.layers:
        raise NetError(f"{path}: uses the deprecated V1 'layers' format; "
                       "write 'layer' messages (V1 is read only for .caffemodel weights)")
    if not -2 ** 31 <= int(level) < 2 ** 31:
        raise NetError(f"NetState level {level}: out of range (a 32-bit integer)")
    state = pb.NetState(phase=phase_value(phase), level=level, stage=list(stages))
    # The net's own state fields give defaults that the caller's phase overrides.
    kept, kept_lines = pb.NetParameter(), []
    kept.CopyFrom(param)
    del kept.layer[:]
    del kept.input[:], kept.input_shape[:], kept.input_dim[:]
    if param.input:
        kept.layer.add().CopyFrom(_legacy_input_layer(param, path, input_line))
        kept_lines.append(input_line or 1)
    for layer, line in zip(param.layer, lines):
        if layer_included(state, layer, f"{path}:{line}: "):
            kept.layer.add().CopyFrom(layer)
            kept_lines.append(line)
    kept.state.CopyFrom(state)
    return NetDef(param=kept, path=path, lines=kept_lines, state=state)
