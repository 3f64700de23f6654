"""Caffe's in-place pitfall: chains of in-place layers whose Caffe gradient is wrong.

In Caffe an in-place layer (top == bottom) shares one buffer with the layers
before and after it on that blob. ReLU's backward reads that buffer (its
bottom data, which in place is its output) to find where the input was
positive, and Sigmoid's and TanH's read it as their output y. When a later
in-place layer on the same blob overwrites the buffer (ReLU -> Scale with a
bias, ReLU -> BatchNorm, Sigmoid -> Dropout, ...), their backward reads the
later layer's output instead, and Caffe computes a different, wrong gradient.

pyfrcnn never overwrites a tensor autograd saved (an in-place top rebinds the
name to a new tensor), so its gradient is the correct one: a model trained in
Caffe with such a chain was trained with other gradients, and training it
again here differs. net.py warns about each chain when a TRAIN net is built.

Followers that leave Caffe's result unchanged are not reported: after ReLU,
another ReLU (the output keeps its sign) and Dropout (a dropped element has a
zero gradient either way; a kept one keeps its sign).
"""

# type -> follower types after which its Caffe backward still reads what it needs
READS_SHARED_DATA = {"ReLU": {"ReLU", "Dropout"}, "Sigmoid": set(), "TanH": set()}


def in_place(lp):
    return len(lp.bottom) == 1 and len(lp.top) == 1 and lp.bottom[0] == lp.top[0]


def caffe_inplace_chains(layer_params):
    """(first, later) index pairs of layers (LayerParameters in net order): `first`
    in place on a blob, its Caffe backward reading the shared buffer, and `later`
    the first following layer that writes that blob in place and overwrites it."""
    pairs = []
    for i, first in enumerate(layer_params):
        if first.type not in READS_SHARED_DATA or not in_place(first):
            continue
        blob = first.top[0]
        for j in range(i + 1, len(layer_params)):
            later = layer_params[j]
            if blob not in later.top:
                continue
            if in_place(later) and later.type in READS_SHARED_DATA[first.type]:
                continue
            pairs.append((i, j))  # it overwrites the buffer: one report per first layer
            break
    return pairs


def inplace_warnings(netdef):
    """One message per chain of a NetDef, naming the file, lines and layers."""
    layers = netdef.param.layer
    messages = []
    for i, j in caffe_inplace_chains(layers):
        first, later = layers[i], layers[j]
        messages.append(
            f"{netdef.where(i)}: layer '{first.name}' ({first.type}) works in place on "
            f"'{first.top[0]}', and so does the later layer '{later.name}' ({later.type}, "
            f"{netdef.where(j)}): Caffe's {first.type} backward then reads '{later.name}'s "
            f"output and computes a different (wrong) gradient; pyfrcnn computes the correct "
            f"one, so training differs from Caffe's (a model trained in Caffe with this net "
            f"learnt with the other gradient). Give one of them its own top to make the two agree.")
    return messages


__all__ = ["READS_SHARED_DATA", "caffe_inplace_chains", "inplace_warnings"]
