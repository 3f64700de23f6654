"""Caffe's weight fillers: constant, gaussian, positive_unitball, uniform,
xavier, msra and bilinear, with Caffe's fan-in / fan-out conventions.

Caffe's default filler is constant 0: a layer with no weight_filler starts at
zero, as in Caffe (nets that rely on it expect pretrained weights).
"""

import math

import torch

from .errors import NetError

FILLERS = ("constant", "gaussian", "positive_unitball", "uniform", "xavier", "msra", "bilinear")


def _fans(shape):
    """(fan_in, fan_out) as Caffe counts them; 0 across a zero-sized dimension."""
    if not shape:
        return 1, 1
    count = math.prod(shape)
    fan_in = count // shape[0] if shape[0] else 0
    fan_out = (count // shape[1] if shape[1] else 0) if len(shape) > 1 else count
    return fan_in, fan_out


def _variance_n(filler, shape):
    fan_in, fan_out = _fans(shape)
    norm = filler.variance_norm
    if norm == filler.FAN_OUT:
        n = fan_out
    elif norm == filler.AVERAGE:
        n = (fan_in + fan_out) / 2.0
    else:
        n = fan_in
    if n <= 0:  # a blob with a zero-sized dimension (a bottom of 0 channels)
        raise NetError(f"{filler.type} filler on a blob of shape {list(shape)}: its fan-in / "
                       "fan-out is 0 (does a bottom have 0 channels?)")
    return n


@torch.no_grad()
def fill(tensor, filler):
    """Fill `tensor` in place as Caffe's filler `filler` (a FillerParameter) would."""
    kind = filler.type
    shape = tuple(tensor.shape)
    if kind == "constant":
        tensor.fill_(filler.value)
    elif kind == "gaussian":
        if filler.std < 0:
            raise NetError(f"gaussian filler needs std >= 0, got {filler.std}")
        tensor.normal_(filler.mean, filler.std)
        if filler.sparse >= 0 and tensor.dim() >= 1 and tensor.numel() > 0:
            # Caffe keeps each weight with probability sparse / num_outputs (shape[0]).
            keep = torch.rand(shape, device=tensor.device) < filler.sparse / shape[0]
            tensor.mul_(keep.to(tensor.dtype))
    elif kind == "uniform":
        if filler.min > filler.max:
            raise NetError(f"uniform filler needs min <= max, got min {filler.min} > max {filler.max}")
        tensor.uniform_(filler.min, filler.max)
    elif kind == "positive_unitball":
        tensor.uniform_(0, 1)
        # Caffe normalises each of the shape[0] rows (a 1-D blob: each element alone).
        flat = tensor.view(shape[0], -1) if tensor.dim() >= 1 else tensor.view(1, -1)
        flat.div_(flat.sum(dim=1, keepdim=True))
    elif kind == "xavier":
        scale = math.sqrt(3.0 / _variance_n(filler, shape))
        tensor.uniform_(-scale, scale)
    elif kind == "msra":
        tensor.normal_(0.0, math.sqrt(2.0 / _variance_n(filler, shape)))
    elif kind == "bilinear":
        if tensor.dim() != 4 or shape[2] != shape[3]:
            raise NetError(f"bilinear filler needs a 4-D blob with square kernels, got {list(shape)}")
        k = shape[3]
        f = math.ceil(k / 2.0)
        c = (2 * f - 1 - f % 2) / (2.0 * f)
        idx = torch.arange(k, dtype=torch.float64)
        w1 = 1 - (idx / f - c).abs()
        tensor.copy_((w1[:, None] * w1[None, :]).expand(shape))
    else:
        raise NetError(f"unknown filler type '{kind}'; known: {', '.join(FILLERS)}")
    return tensor
