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
    parser.add_argument("--rankdir", default="LR", choices=("LR", "TB", "BT", "RL"),
                        help="the graph's direction (default LR, as Caffe's draw_net)")


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def net_to_dot(netdef, rankdir="LR"):
    """Graphviz text: layers as boxes, blobs as octagons; in-place blobs drawn once."""
    lines = [f"digraph {_quote(netdef.param.name or 'net')} {{", f"  rankdir={rankdir};",
             '  node [fontname="Helvetica", fontsize=10];']
    blob_ids, blob_versions = {}, {}

    def blob_node(name, new):
        if new or name not in blob_versions:
            blob_versions[name] = blob_versions.get(name, -1) + 1
            node = f"blob_{len(blob_ids)}"
            blob_ids[(name, blob_versions[name])] = node
            lines.append(f"  {node} [label={_quote(name)}, shape=octagon, style=filled, "
                         'fillcolor="#E0E0E0"];')
        return blob_ids[(name, blob_versions[name])]

    for i, layer in enumerate(netdef.param.layer):
        node = f"layer_{i}"
        label = f"{layer.name}\\n({layer.type})"
        colour = "#6495ED" if layer.type in ("Convolution", "InnerProduct") else \
            "#FF6347" if layer.type.endswith("Loss") else "#90EE90" if layer.type == "Python" \
            else "#F0E68C"
        lines.append(f"  {node} [label=\"{label}\", shape=record, style=filled, "
                     f'fillcolor="{colour}"];')
        in_place = set(layer.bottom) & set(layer.top)
        for b in layer.bottom:
            lines.append(f"  {blob_node(b, False)} -> {node};")
        for t in layer.top:
            if t in in_place:
                continue
            lines.append(f"  {node} -> {blob_node(t, True)};")
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
def add_time_arguments(parser):
    from .arguments import add_net_arguments

    add_net_arguments(parser)
    parser.set_defaults(phase="TRAIN")
    parser.add_argument("--iterations", "-n", type=int, default=10, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def random_inputs(net, generator=None):
    inputs = {}
    for layer, tops, shapes in zip(net.layers, net.top_names, net.top_shapes):
        if layer.type != "Input":
            continue
        for top, shape in zip(tops, shapes):
            if any(d is None for d in shape):
                raise PyfrcnnError(f"input '{top}' has a dynamic shape {format_shape(shape)}: "
                                   "give it with --input-shape")
            inputs[top] = torch.rand(shape, generator=generator) * 255
    return inputs


def _backward_target(outputs, net):
    if net.loss is not None:
        return net.loss
    grads = [v.sum() for v in outputs.values() if v.requires_grad]
    return sum(grads) if grads else None


def time_layers(net, iterations, warmup=1):
    """Per-layer (forward ms, backward ms) and whole-net (forward ms, backward ms).

    Each layer's backward is timed alone: its forward is rerun on detached
    bottoms that require grad, then autograd backward from random top grads.
    """
    inputs = random_inputs(net)
    fwd = [0.0] * len(net.layers)
    bwd = [0.0] * len(net.layers)
    total_fwd = total_bwd = 0.0
    for it in range(warmup + iterations):
        timed = it >= warmup
        net.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        outputs = net.forward(**inputs)
        t1 = time.perf_counter()
        target = _backward_target(outputs, net)
        if target is not None and target.requires_grad:
            target.backward()
        t2 = time.perf_counter()
        net.loss = None
        if timed:
            total_fwd += t1 - t0
            total_bwd += t2 - t1
        blobs = dict(net.blobs, **inputs)
        for i, (layer, bottoms) in enumerate(zip(net.layers, net.bottom_names)):
            if layer.type == "Input":
                continue
            args = [blobs[b].detach().requires_grad_(blobs[b].is_floating_point()) for b in bottoms]
            t0 = time.perf_counter()
            out = layer.forward(*args)
            t1 = time.perf_counter()
            out = (out,) if isinstance(out, torch.Tensor) else tuple(out)
            pairs = [(o, torch.rand_like(o)) for o in out if o.requires_grad]
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
            t2 = time.perf_counter()
            if timed:
                fwd[i] += t1 - t0
                bwd[i] += t2 - t1 if pairs else 0.0
    scale = 1000.0 / max(iterations, 1)
    per_layer = [(l.name, l.type, f * scale, b * scale) for l, f, b in zip(net.layers, fwd, bwd)]
    return per_layer, total_fwd * scale, total_bwd * scale


def run_time(args):
    from .arguments import build_net

    if args.threads:
        torch.set_num_threads(args.threads)
    net = build_net(args)
    per_layer, total_fwd, total_bwd = time_layers(net, args.iterations, args.warmup)
    width = max(len(n) for n, *_ in per_layer)
    print(f"{'layer'.ljust(width)}  {'type':<18}{'forward ms':>12}{'backward ms':>13}")
    for name, kind, f, b in per_layer:
        print(f"{name.ljust(width)}  {kind:<18}{f:12.3f}{b:13.3f}")
    print(f"Average Forward pass: {total_fwd:.3f} ms.")
    print(f"Average Backward pass: {total_bwd:.3f} ms.")
    print(f"Average Forward-Backward: {total_fwd + total_bwd:.3f} ms "
          f"({args.iterations} iterations, {torch.get_num_threads()} threads).")
    return 0
