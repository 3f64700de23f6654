"""Caffe's solver.prototxt (a text SolverParameter) read as a solver file.

`pyfrcnn solve solver.prototxt` takes the file py-faster-rcnn and Caffe users
already have: each field maps onto the solver key of the same name (ours keep
Caffe's names), with these translations:

  solver_mode: CPU | GPU, device_id: N   -> device: cpu | cuda:N
  solver_type: SGD | NESTEROV | ...      -> type: SGD | Nesterov | ... (also `type: "Adam"`)
  sigint_effect: STOP | SNAPSHOT | NONE  -> sigint_effect: stop | snapshot | none (likewise
                                            sigterm / sighup)
  stepvalue, test_iter, test_net, weights (repeated) -> a list / the first one

Fields that change nothing here (snapshot_format, snapshot_diff, debug_info,
test_compute_loss, layer_wise_reduce, ...) are accepted with one warning.
Relative paths resolve against the current folder, as `caffe train` resolves
them (py-faster-rcnn runs from its root). py-faster-rcnn's solvers give no
max_iter (its train_net.py takes --iters): give it with --set max_iter=N.
"""

import logging
import os
import re

from .errors import ConfigError, did_you_mean

log = logging.getLogger(__name__)

SOLVER_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}
IGNORED = ("snapshot_format", "snapshot_diff", "debug_info", "test_compute_loss",
           "layer_wise_reduce", "test_state", "train_state", "net_param", "train_net_param",
           "test_net_param", "snapshot_interval_seconds")
REPEATED_FIRST = ("test_iter", "test_net")
PATH_KEYS = ("net", "train_net", "test_net", "snapshot_prefix", "weights")
TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')|([{}:;,\[\]])|'
                   r'([^\s{}:;,\[\]#"\']+))')


def _tokens(text, path):
    """(token, line) pairs; strings unquoted and marked by a leading '"'."""
    pos = 0
    while text[pos:].strip():
        m = TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise ConfigError(f"{path}:{line}: cannot read '{text[pos:pos + 20].strip()}'")
        comment, string, punct, word = m.groups()
        start = m.start(next(i for i in range(1, 5) if m.group(i) is not None))
        line = text.count("\n", 0, start) + 1
        if string is not None:
            yield '"' + bytes(string[1:-1], "utf-8").decode("unicode_escape"), line
        elif punct is not None:
            yield punct, line
        elif word is not None:
            yield word, line
        pos = m.end()


def _scalar(token):
    if token.startswith('"'):
        return token[1:]
    low = token.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token  # an enum name


def parse_fields(text, path):
    """[(field, value, line)] of the top-level fields; nested messages as None."""
    fields, depth, tokens = [], 0, list(_tokens(text, path))
    i = 0
    while i < len(tokens):
        token, line = tokens[i]
        if token in (";", ","):
            i += 1
            continue
        if token == "}":
            raise ConfigError(f"{path}:{line}: '}}' without an opening '{{'")
        name = token
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise ConfigError(f"{path}:{line}: expected a field name, got '{name.lstrip(chr(34))}'")
        i += 1
        if i < len(tokens) and tokens[i][0] == ":":
            i += 1
        if i >= len(tokens):
            raise ConfigError(f"{path}:{line}: field '{name}' has no value")
        token, _ = tokens[i]
        if token == "{":  # a nested message: skipped whole
            depth, i = 1, i + 1
            while i < len(tokens) and depth:
                depth += {"{": 1, "}": -1}.get(tokens[i][0], 0)
                i += 1
            if depth:
                raise ConfigError(f"{path}:{line}: '{name} {{' is never closed")
            fields.append((name, None, line))
            continue
        fields.append((name, _scalar(token), line))
        i += 1
    return fields


def read_caffe_solver(path, known):
    """(mapping, {key path: line}) of a solver.prototxt, in our solver keys
    (`known`: the names solver files take)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read solver file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e}") from None
    data, lines, ignored, device = {}, {}, [], {}
    for name, value, line in parse_fields(text, path):
        at = f"{path}:{line}: {name}"
        if name in IGNORED:
            ignored.append(name)
            continue
        if name in ("solver_mode", "device_id"):
            device[name] = (value, line)
            continue
        if name == "solver_type":
            name, value = "type", SOLVER_TYPES.get(str(value).upper(), value)
        elif name == "type" and isinstance(value, str):
            value = SOLVER_TYPES.get(value.upper(), value)
        elif name.endswith("_effect") and isinstance(value, str):
            value = value.lower()
        if name not in known:
            raise ConfigError(f"{at}: not a SolverParameter field pyfrcnn knows"
                              f"{did_you_mean(name, known)}")
        if isinstance(value, str) and name in PATH_KEYS and not os.path.isabs(value):
            value = os.path.abspath(value)  # Caffe resolves against the current folder
        if name == "stepvalue" or name == "weights":
            data.setdefault(name, []).append(value)
        elif name in data and name in REPEATED_FIRST:
            log.warning("%s: a second %s; pyfrcnn uses the first", at, name)
            continue
        elif name in data:
            raise ConfigError(f"{at}: given twice")
        else:
            data[name] = value
        lines.setdefault((name,), line)
    if device:
        mode, line = device.get("solver_mode", ("GPU", None))
        index = device.get("device_id", (None, None))[0]
        data["device"] = "cpu" if str(mode).upper() == "CPU" else \
            f"cuda:{index}" if index is not None else "cuda"
        lines[("device",)] = line or device["device_id"][1]
    if ignored:
        log.warning("%s: %s mean nothing to pyfrcnn (ignored)", path, ", ".join(sorted(set(ignored))))
    return data, lines
