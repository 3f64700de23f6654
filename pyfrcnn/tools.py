"""`pyfrcnn check | draw | time`: look at a net without training it."""

import os
import shutil
import subprocess
import time

import torch

from .errors import PyfrcnnError
from .net import format_shape


# -- check -------------------------------------------------------------------
def add_check_arguments(parser):
    from .arguments import add_net_arguments

    add_net_arguments(parser)


def human(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


def net_table(net):
    """Rows (name, type, bottoms -> tops, top shapes, params, multiply-adds) and totals."""
    rows, total_params, total_flops = [], 0, 0
    for layer, bottoms, tops, bshapes, tshapes in zip(
            net.layers, net.bottom_names, net.top_names, net.bottom_shapes, net.top_shapes):
        params = sum(b.numel() for b in layer.blobs)
        flops = layer.flops(bshapes, tshapes) or 0
        total_params += params
        total_flops += flops
        rows.append((layer.name, layer.type, f"{', '.join(bottoms) or '-'} -> {', '.join(tops) or '-'}",
                     " ".join(format_shape(s) for s in tshapes) or "-", params, flops))
    return rows, total_params, total_flops


def run_check(args):
    from .arguments import build_net

    net = build_net(args)
    rows, total_params, total_flops = net_table(net)
    header = ("layer", "type", "bottoms -> tops", "top shapes", "params", "mult-adds")
    cells = [header] + [(n, t, w, s, human(p) if p else "-", human(f) if f else "-")
                        for n, t, w, s, p, f in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"net '{net.name}' ({net.phase}): {len(rows)} layers, {human(total_params)} parameters "
          f"({total_params}), {human(total_flops)} multiply-adds per forward "
          "(dynamic sizes counted as 0); outputs: " + ", ".join(net.output_names))
    return 0


# -- draw --------------------------------------------------------------------
def add_draw_arguments(parser):
    from .arguments import add_net_arguments

    add_net_arguments(parser, shapes=False)
    parser.add_argument("out", help="OUT.dot, OUT.svg, OUT.png or OUT.pdf")
    parser.add_argument("--rankdir", default="TB", choices=("TB", "LR", "BT", "RL"),
                        help="the graph's direction (default TB, top to bottom; Caffe's "
                        "draw_net draws LR)")


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pair(values, h=0, w=0, default=None):
    """'3x3' from Caffe's repeated / _h / _w fields."""
    values = list(values) if not isinstance(values, int) else ([values] if values else [])
    if h or w:
        return f"{h}x{w}" if h != w else str(h)
    if not values:
        return default
    return "x".join(str(v) for v in values) if len(set(values)) > 1 else str(values[0])


def layer_summary(lp):
    """The key parameters of a layer, as a drawing shows them ('3x3 /2 pad 1, 64')."""
    kind = lp.type
    if kind in ("Convolution", "Deconvolution"):
        p = lp.convolution_param
        k = _pair(p.kernel_size, p.kernel_h, p.kernel_w, "?")
        text = f"{k}x{k}" if "x" not in k else k
        stride = _pair(p.stride, p.stride_h, p.stride_w, "1")
        pad = _pair(p.pad, p.pad_h, p.pad_w, "0")
        text += (f" /{stride}" if stride != "1" else "") + (f" pad {pad}" if pad != "0" else "")
        if p.group > 1:
            text += f" group {p.group}"
        if list(p.dilation) and max(p.dilation) > 1:
            text += f" dilation {_pair(p.dilation)}"
        return f"{text}, {p.num_output}"
    if kind == "Pooling":
        p = lp.pooling_param
        method = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}.get(p.pool, str(p.pool))
        if p.global_pooling:
            return f"{method} global"
        k = _pair(p.kernel_size, p.kernel_h, p.kernel_w, "?")
        stride = _pair(p.stride, p.stride_h, p.stride_w, "1")
        pad = _pair(p.pad, p.pad_h, p.pad_w, "0")
        return (f"{method} {k}x{k}" if "x" not in k else f"{method} {k}") + \
            (f" /{stride}" if stride != "1" else "") + (f" pad {pad}" if pad != "0" else "")
    if kind == "InnerProduct":
        return str(lp.inner_product_param.num_output)
    if kind == "ROIPooling":
        p = lp.roi_pooling_param
        return f"{p.pooled_h}x{p.pooled_w}, scale {p.spatial_scale:g}"
    if kind == "Dropout":
        return f"ratio {lp.dropout_param.dropout_ratio:g}"
    if kind == "Python":
        return f"{lp.python_param.module}.{lp.python_param.layer}"
    if kind == "LRN":
        return f"size {lp.lrn_param.local_size}"
    if kind == "Input" and lp.input_param.shape:
        return " ".join("x".join(str(d) for d in s.dim) for s in lp.input_param.shape)
    return ""


def _label(lp):
    lines = [lp.name, f"({lp.type})"]
    summary = layer_summary(lp)
    if summary:
        lines.append(summary)
    weights = [w for w in lp.loss_weight if w]
    if weights or lp.type.endswith("Loss"):
        lines.append("loss weight " + (", ".join(f"{w:g}" for w in weights) or "1"))
    return "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)


def _colour(kind):
    if kind in ("Convolution", "Deconvolution", "InnerProduct"):
        return "#6495ED"
    if kind.endswith("Loss"):
        return "#FF6347"
    return "#90EE90" if kind == "Python" else "#F0E68C"


def net_to_dot(netdef, rankdir="TB"):
    """Graphviz text: layers as boxes with their key parameters, blobs as
    octagons. An in-place chain (conv1 -> bn1 -> scale1 -> relu1 on blob conv1)
    is drawn in order, layer to layer, the blob's name on its edges."""
    lines = [f"digraph {_quote(netdef.param.name or 'net')} {{", f"  rankdir={rankdir};",
             '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=8];']
    current = {}   # blob name -> (node that holds its latest value, edge label)
    count = [0]

    def new_blob(name):
        node = f"blob_{count[0]}"
        count[0] += 1
        lines.append(f"  {node} [label={_quote(name)}, shape=octagon, style=filled, "
                     'fillcolor="#E0E0E0"];')
        current[name] = (node, None)
        return node

    for i, layer in enumerate(netdef.param.layer):
        node = f"layer_{i}"
        lines.append(f'  {node} [label="{_label(layer)}", shape=box, style="rounded,filled", '
                     f'fillcolor="{_colour(layer.type)}"];')
        for b in layer.bottom:
            source, label = current.get(b) or (new_blob(b), None)
            lines.append(f"  {source} -> {node}" + (f" [label={_quote(label)}];" if label else ";"))
        for t in layer.top:
            if t in layer.bottom:  # in place: the layer now holds the blob's value
                current[t] = (node, t)
            else:
                lines.append(f"  {node} -> {new_blob(t)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def run_draw(args):
    from .io import read_net

    netdef = read_net(args.net, args.phase, args.stage, args.level)
    dot_text = net_to_dot(netdef, args.rankdir)
    ext = os.path.splitext(args.out)[1].lower().lstrip(".")
    if ext == "dot":
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(dot_text)
        print(f"wrote {args.out}")
        return 0
    if ext not in ("svg", "png", "pdf", "jpg", "jpeg"):
        raise PyfrcnnError(f"{args.out}: unknown drawing format '.{ext}' "
                           "(use .dot, .svg, .png or .pdf)")
    dot = shutil.which("dot")
    if dot is None:
        raise PyfrcnnError(f"writing {args.out} needs Graphviz's `dot` program, which is not "
                           "installed (apt-get install graphviz); a .dot file needs nothing")
    result = subprocess.run([dot, f"-T{ext}", "-o", args.out], input=dot_text.encode(),
                            capture_output=True)
    if result.returncode:
        raise PyfrcnnError(f"dot failed for {args.out}: {result.stderr.decode().strip()}")
    print(f"wrote {args.out}")
    return 0


# -- time --------------------------------------------------------------------
SOLVER_SUFFIXES = (".yaml", ".yml")


def add_time_arguments(parser):
    from .arguments import add_device_argument, add_net_arguments, add_set_argument

    add_net_arguments(parser, phase="TRAIN")
    parser.set_defaults(phase="TRAIN")
    parser.add_argument("--solver", metavar="SOLVER.yaml",
                        help="the run config (data, detection, ...) a train net's data layer "
                        "reads; NET may also be the solver file itself (its train_net)")
    parser.add_argument("--data", metavar="SPEC",
                        help="the training data of a train net's data layer, without a solver "
                        "file (shapes:train, voc_2007_trainval, ...)")
    add_set_argument(parser, "data.workers=1", "a value of the solver file")
    add_device_argument(parser)
    parser.add_argument("--iterations", "-n", type=int, default=10, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def run_config(args):
    """(net path, run config) for `time`: from a solver file (NET or --solver),
    else the sections' defaults with data.train / data.test = --data."""
    from . import registry
    from .distributed import run_config_entry
    from .solver_config import load_solver

    net, solver = args.net, args.solver
    if net.endswith(SOLVER_SUFFIXES) and solver is None:
        solver = net
        net = None
    if solver:
        config = load_solver(solver, args.overrides)
        if net is None:
            net = config.train_net if args.phase == "TRAIN" else config.test_net or config.train_net
        sections = dict(config.sections)
    else:
        sections = {}
        for name, validate in registry.config_sections().items():
            value = {"train": args.data, "test": args.data} if name == "data" and args.data \
                else {}
            try:
                sections[name] = validate(value, name)
            except PyfrcnnError:
                if name == "data" and args.data:
                    raise
    sections["distributed"] = run_config_entry(None)
    return net, sections


def random_inputs(net, generator=None, device=None):
    inputs = {}
    for layer, tops, shapes in zip(net.layers, net.top_names, net.top_shapes):
        if layer.type != "Input":
            continue
        for top, shape in zip(tops, shapes):
            if any(d is None for d in shape):
                raise PyfrcnnError(f"input '{top}' has a dynamic shape {format_shape(shape)}: "
                                   "give it with --input-shape")
            inputs[top] = (torch.rand(shape, generator=generator) * 255).to(device or "cpu")
    return inputs


def _backward_target(outputs, net):
    if net.loss is not None:
        return net.loss
    grads = [v.sum() for v in outputs.values() if v.requires_grad]
    return sum(grads) if grads else None


def _clock(device):
    """perf_counter after the device's queued work is done (CUDA runs asynchronously)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_layers(net, iterations, warmup=1, device=None):
    """Per-layer (forward ms, backward ms) and whole-net (forward ms, backward ms).

    Each layer's backward is timed alone: its forward is rerun on detached
    bottoms that require grad, then autograd backward from random top grads.
    A data layer (no bottoms) is timed by one more forward: one more batch.
    """
    inputs = random_inputs(net, device=device)
    fwd = [0.0] * len(net.layers)
    bwd = [0.0] * len(net.layers)
    total_fwd = total_bwd = 0.0
    for it in range(warmup + iterations):
        timed = it >= warmup
        net.zero_grad(set_to_none=True)
        t0 = _clock(device)
        outputs = net.forward(**inputs)
        t1 = _clock(device)
        target = _backward_target(outputs, net)
        if target is not None and target.requires_grad:
            target.backward()
        t2 = _clock(device)
        net.loss = None
        if timed:
            total_fwd += t1 - t0
            total_bwd += t2 - t1
        blobs = dict(net.blobs, **inputs)
        for i, (layer, bottoms) in enumerate(zip(net.layers, net.bottom_names)):
            if layer.type == "Input":
                continue
            args = [blobs[b].detach().requires_grad_(blobs[b].is_floating_point()) for b in bottoms]
            t0 = _clock(device)
            out = layer.forward(*args)
            t1 = _clock(device)
            out = (out,) if isinstance(out, torch.Tensor) else tuple(out)
            pairs = [(o, torch.rand_like(o)) for o in out if o.requires_grad]
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
            t2 = _clock(device)
            if timed:
                fwd[i] += t1 - t0
                bwd[i] += t2 - t1 if pairs else 0.0
    scale = 1000.0 / max(iterations, 1)
    per_layer = [(l.name, l.type, f * scale, b * scale) for l, f, b in zip(net.layers, fwd, bwd)]
    return per_layer, total_fwd * scale, total_bwd * scale


def run_time(args):
    from .arguments import build_net, device_from_args, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    net_path, config = run_config(args)
    args.net = net_path
    device = resolve_device(device_from_args(args))
    net = build_net(args, config=config).to(device)
    try:
        per_layer, total_fwd, total_bwd = time_layers(net, args.iterations, args.warmup, device)
    finally:
        for layer in net.layers:
            close = getattr(layer, "close", None)
            if callable(close):
                close()
    width = max(len(n) for n, *_ in per_layer)
    print(f"{'layer'.ljust(width)}  {'type':<18}{'forward ms':>12}{'backward ms':>13}")
    for name, kind, f, b in per_layer:
        print(f"{name.ljust(width)}  {kind:<18}{f:12.3f}{b:13.3f}")
    print(f"Average Forward pass: {total_fwd:.3f} ms.")
    print(f"Average Backward pass: {total_bwd:.3f} ms.")
    print(f"Average Forward-Backward: {total_fwd + total_bwd:.3f} ms "
          f"({args.iterations} iterations, {torch.get_num_threads()} threads, {device}).")
    return 0
