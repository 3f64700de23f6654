"""Tiny nets around one layer, for the builtin layer tests."""

import torch

from pyfrcnn.net import Net


def layer(type_name, bottoms, tops, params="", name="layer"):
    """Prototxt text of one layer."""
    wires = "".join(f' bottom: "{b}"' for b in bottoms) + "".join(f' top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{type_name}"{wires} {params} }}\n'


def tiny_net(layers, phase="TRAIN", **inputs):
    """A net of net-level inputs {name: shape} (None: a size known only per
    forward) followed by the `layers` text."""
    names = "".join(f'input: "{name}"\n' for name in inputs)
    shapes = "".join("input_shape { " + " ".join(f"dim: {1 if d is None else d}" for d in shape) + " }\n"
                     for shape in inputs.values())
    return Net(names + shapes + layers, phase=phase, input_shapes=inputs)


def gradcheck_net(net, tops, inputs, wrt, **options):
    """float64 gradcheck of the net's `tops` with respect to the inputs named in
    `wrt`; `options` go to torch.autograd.gradcheck."""
    net.to(torch.float64)
    fixed = {k: v for k, v in inputs.items() if k not in wrt}

    def run(*values):
        net.forward(**fixed, **dict(zip(wrt, values)))
        return tuple(net.blobs[t] for t in tops)

    values = tuple(inputs[k].detach().double().requires_grad_() for k in wrt)
    return torch.autograd.gradcheck(run, values, **options)
