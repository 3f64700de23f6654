"""The NaN guard: is a step's loss and gradient finite, and which parameter is not.

A step counts as non-finite when its loss is NaN / Inf or when the global L2
norm of its gradients is (a `sqrt` of 0 in a layer gives a finite loss and a
NaN gradient). The norm costs one multi-tensor norm (torch._foreach_norm) and a
stack: no host sync of its own; the solver reads it in the same transfer as the
loss. Only on the failure path do we look at each parameter, to name the first
one that went non-finite.

"First" is in backward order: autograd reaches the layers nearest the loss
first, so among the non-finite parameters the one latest in the net is where
the NaN entered (the culprit is that layer or one just above it).
"""

import torch


def global_norm(tensors):
    """The L2 norm of all `tensors` together, a 0-d float64 tensor on their device
    (not read back to the host)."""
    tensors = [t for t in tensors if t is not None]
    if not tensors:
        return torch.zeros((), dtype=torch.float64)
    try:
        norms = torch._foreach_norm(tensors)
    except (AttributeError, RuntimeError):  # a torch without it, or mixed devices
        norms = [torch.linalg.vector_norm(t) for t in tensors]
    device = tensors[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(device, torch.float64) for n in norms]))


def nonfinite_in_backward_order(named):
    """[name] of the tensors in `named` ([(name 'layer/index', tensor)] in net
    order) that hold a NaN or Inf, in backward order: later layers first, blobs of
    one layer by index."""
    bad = [(i, name) for i, (name, t) in enumerate(named)
           if t is not None and not bool(torch.isfinite(t).all())]
    layer_order = {}
    for i, (name, _) in enumerate(named):
        layer_order.setdefault(name.rpartition("/")[0], i)
    bad.sort(key=lambda item: (-layer_order[item[1].rpartition("/")[0]], item[0]))
    return [name for _, name in bad]


def describe_param(net, name):
    """'layer 'fc' (Convolution) blob 0' for a learnable_params name 'fc/0'."""
    layer_name, _, index = name.rpartition("/")
    layer = net.layer_dict.get(layer_name)
    kind = f" ({layer.type})" if layer is not None else ""
    return f"layer '{layer_name}'{kind} blob {index}"


def nonfinite_report(net, named, what):
    """'the gradient of layer 'fc' (Convolution) blob 0 went non-finite first (2 of
    4 blobs non-finite)', or a note that each tensor is finite but the norm overflows."""
    bad = nonfinite_in_backward_order(named)
    if not bad:
        return f"each {what} is finite but their norm overflows"
    return (f"the {what} of {describe_param(net, bad[0])} went non-finite first "
            f"({len(bad)} of {len(named)} parameter blobs non-finite)")
