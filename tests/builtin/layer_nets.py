"""One-layer nets for the builtin layer tests, and a float64 gradient check
through the whole net (inputs and learnable blobs)."""

import torch
from torch.func import functional_call

from pyfrcnn.net import Net


def one_layer_net(layer_type, params="", phase="TRAIN", tops=("out",), name="layer", **inputs):
    """Net-level inputs {name: shape} (None: a size known only per forward)
    feeding one layer of `layer_type` with its parameter text."""
    text = "".join(f'input: "{b}"\n' for b in inputs)
    text += "".join("input_shape { " + " ".join(f"dim: {1 if d is None else d}" for d in shape)
                    + " }\n" for shape in inputs.values())
    wires = "".join(f' bottom: "{b}"' for b in inputs) + "".join(f' top: "{t}"' for t in tops)
    text += f'layer {{ name: "{name}" type: "{layer_type}"{wires} {params} }}\n'
    return Net(text, phase=phase, input_shapes=inputs)


def gradcheck_net(net, seed=None, **inputs):
    """gradcheck of every net output with respect to the given inputs and every
    learnable blob, in float64. `seed` reseeds torch before each forward (for
    layers that draw random numbers)."""
    net.to(torch.float64)
    names = list(inputs)
    params = {n: p for n, p in net.named_parameters() if p.requires_grad}

    def run(*values):
        if seed is not None:
            torch.manual_seed(seed)
        given = dict(zip(names, values[:len(names)]))
        weights = dict(zip(params, values[len(names):]))
        return tuple(functional_call(net, weights, args=(), kwargs=given).values())

    leaves = [t.detach().double().clone().requires_grad_() for t in [*inputs.values(), *params.values()]]
    return torch.autograd.gradcheck(run, leaves)
