"""`pyfrcnn check`: build a net without data and print its layers, shapes and
costs. The `draw` and `time` commands live in pyfrcnn/draw.py and
pyfrcnn/timing.py (re-exported here)."""

from .draw import add_draw_arguments, layer_summary, net_to_dot, run_draw  # noqa: F401
from .timing import (add_time_arguments, random_inputs, run_config, run_time,  # noqa: F401
                     time_layers)
from .errors import format_shape


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
