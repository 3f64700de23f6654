"""`pyfrcnn draw`: a net as a Graphviz drawing, top to bottom by default.

Layers are boxes showing their key parameters (kernel / stride / pad /
num_output, pooling, pooled size, loss weight, the Python module); blobs are
octagons; an in-place chain (conv1 -> bn1 -> scale1 -> relu1 on blob conv1)
is drawn in order, layer to layer, with the blob's name on its edges.
"""

import os
import shutil
import subprocess

from .errors import PyfrcnnError


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
