"""Caffe's ROIPooling: max pooling of each region of interest into a fixed grid.

    features  N×C×H×W     float32 or float64
    rois      R×5         (batch_idx, x1, y1, x2, y2) in image pixels, inclusive
    output    R×C×ph×pw   the max of each bin; 0 for an empty bin
    argmax    R×C×ph×pw   int32 flat index h*W + w of that max in its channel;
                          -1 for an empty bin (no gradient flows there)

The RoI is scaled by `spatial_scale` and rounded half away from zero (C's
round), its size is at least 1×1, and bin (i, j) covers rows
[floor(i*bin_h), ceil((i+1)*bin_h)) from the RoI's top, clipped to the map.
Among equal values the first in row-major order wins, as in Caffe's kernel.
Results match the CUDA kernel in kernels/roi_pool.cu bit for bit.

The CPU path pools separably over one float64 key per pixel and channel that
orders by value, then by position (see _max_keys): first the max along w in
each column bin for every row the RoI covers, then the max of those rows in
each row bin. Both steps gather whole channel vectors from a channels-last
copy of the map; bins are padded by repeating one of their own pixels. RoIs
go in chunks of similar size so that no intermediate exceeds a few megabytes
(fresh large buffers cost more in page faults than the arithmetic).
"""

import torch

from pyfrcnn.ops import _cuda

# Caffe starts every non-empty bin at -FLT_MAX, for double too.
FLT_MAX = 3.4028234663852886e38
# Keys gathered at once in the first step.
CHUNK_ELEMENTS = 1 << 19
_INDEX_BITS = (1 << 29) - 1


def roi_pool(features, rois, output_size, spatial_scale):
    """Max-pool each RoI of `rois` on `features` into an R×C×ph×pw blob."""
    pooled_h, pooled_w = _pair(output_size)
    _check(features, rois, pooled_h, pooled_w)
    return _RoIPool.apply(features, rois, (pooled_h, pooled_w), float(spatial_scale))


class _RoIPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale):
        pooled_h, pooled_w = output_size
        if features.is_cuda and _cuda.available():
            output, argmax = _cuda.roi_pool_forward(
                features.contiguous(), rois.contiguous(), pooled_h, pooled_w, spatial_scale)
        else:
            output, argmax = roi_pool_forward_cpu(features, rois, pooled_h, pooled_w, spatial_scale)
        ctx.save_for_backward(rois, argmax)
        ctx.features_shape = features.shape
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        rois, argmax = ctx.saved_tensors
        if grad_output.is_cuda and _cuda.available():
            grad = _cuda.roi_pool_backward(grad_output.contiguous(), rois.contiguous(), argmax,
                                           ctx.features_shape)
        else:
            grad = roi_pool_backward_cpu(grad_output, rois, argmax, ctx.features_shape)
        return grad, None, None, None


def roi_pool_forward_cpu(features, rois, pooled_h, pooled_w, spatial_scale):
    """(output, argmax) of ROIPooling with torch ops on the CPU."""
    device = features.device
    features, rois = features.cpu(), rois.cpu()
    num, channels, height, width = features.shape
    num_rois = rois.shape[0]
    output = features.new_zeros((num_rois, channels, pooled_h, pooled_w))
    argmax = torch.full(output.shape, -1, dtype=torch.int32)
    if output.numel() and height and width:
        grid = _bins(rois, pooled_h, pooled_w, spatial_scale, height, width)
        pixels = features.permute(0, 2, 3, 1).reshape(num * height * width, channels)
        keys, decode = _max_keys(pixels, height * width)
        for chunk in _chunks(grid, channels):
            part = {name: value[chunk] for name, value in grid.items()}
            index, value = decode(_pool_chunk(keys, part, height, width))
            index, value = _caffe_bins(pixels, part, index, value, height * width)
            output.index_copy_(0, chunk, value.permute(0, 3, 1, 2))
            argmax.index_copy_(0, chunk, index.int().permute(0, 3, 1, 2))
    return output.to(device), argmax.to(device)


def roi_pool_backward_cpu(grad_output, rois, argmax, features_shape, rois_per_chunk=64):
    """Gradient w.r.t. the features: each output's gradient added at its argmax."""
    device = grad_output.device
    grad_output, rois, argmax = grad_output.cpu(), rois.cpu(), argmax.cpu()
    num, channels, height, width = features_shape
    size = num * channels * height * width
    grad = grad_output.new_zeros(size + 1)  # the last slot takes empty bins
    planes = rois[:, 0].long()[:, None] * channels + torch.arange(channels)[None, :]
    for start in range(0, grad_output.shape[0], rois_per_chunk):
        part = slice(start, start + rois_per_chunk)
        index = planes[part, :, None, None] * (height * width) + argmax[part]
        index = torch.where(argmax[part] >= 0, index, size)
        grad.index_add_(0, index.reshape(-1), grad_output[part].reshape(-1))
    return grad[:size].view(features_shape).to(device)


def _bins(rois, pooled_h, pooled_w, spatial_scale, height, width):
    """Per RoI: batch index, bin edges along h and w (clipped), empty bins."""
    scale = torch.tensor(spatial_scale, dtype=rois.dtype)
    start_w, start_h, end_w, end_h = _round_half_away(rois[:, 1:5] * scale).long().unbind(1)
    roi_h = (end_h - start_h + 1).clamp(min=1)
    roi_w = (end_w - start_w + 1).clamp(min=1)
    h_lo, h_hi = _edges(roi_h, pooled_h, start_h, height, rois.dtype)
    w_lo, w_hi = _edges(roi_w, pooled_w, start_w, width, rois.dtype)
    empty = (h_hi <= h_lo)[:, :, None] | (w_hi <= w_lo)[:, None, :]
    return {"batch": rois[:, 0].long(), "h_lo": h_lo, "h_hi": h_hi, "w_lo": w_lo, "w_hi": w_hi,
            "empty": empty}


def _edges(roi_size, pooled, start, limit, dtype):
    bin_size = roi_size.to(dtype) / pooled
    steps = torch.arange(pooled + 1, dtype=dtype)
    lo = torch.floor(steps[None, :-1] * bin_size[:, None]).long()
    hi = torch.ceil(steps[None, 1:] * bin_size[:, None]).long()
    return ((lo + start[:, None]).clamp(0, limit), (hi + start[:, None]).clamp(0, limit))


def _round_half_away(x):
    # torch.round rounds half to even; C's round, used by Caffe, rounds away from zero.
    whole = torch.trunc(x)
    return torch.where((x - whole).abs() >= 0.5, whole + torch.sign(x), whole)


def _chunks(grid, channels):
    """Index tensors over RoIs: RoIs of one power-of-two cost class together,
    as many per chunk as keep the first step within CHUNK_ELEMENTS."""
    rows = (grid["h_hi"][:, -1] - grid["h_lo"][:, 0]).clamp(min=1)
    bin_w = (grid["w_hi"] - grid["w_lo"]).amax(dim=1).clamp(min=1)
    cost = rows * bin_w * grid["w_lo"].shape[1] * channels
    level = torch.floor(torch.log2(cost.double())).long()
    for value in torch.unique(level).tolist():
        members = torch.nonzero(level == value)[:, 0]
        yield from members.split(max(1, CHUNK_ELEMENTS >> (value + 1)))


def _max_keys(pixels, plane_size):
    """float64 keys, one per pixel and channel, whose max marks the max value
    and, among equal values, the first pixel in row-major order; and `decode`,
    from keys to (h*W + w of that pixel, its value). float64 because its max is
    vectorised where int64's is not.

    float32: the value widened to float64 (±inf as ±2^128) leaves 29 low
    mantissa bits free; they hold the pixel index, inverted for values >= 0,
    so that the first pixel gives the larger key on both sides of zero.
    float64: minus the rank in a stable descending sort of the whole map."""
    channels = pixels.shape[1]
    if pixels.dtype == torch.float32:
        if plane_size > _INDEX_BITS:
            raise ValueError(f"roi_pool: a feature map of {plane_size} pixels exceeds 2^29")
        wide = (pixels + 0.0).double()  # + 0.0 merges -0.0 into 0.0
        wide = torch.where(wide.isinf(), wide.sign() * 2.0 ** 128, wide)
        bits = wide.view(torch.int64)
        index = (torch.arange(pixels.shape[0]) % plane_size)[:, None]
        keys = bits | torch.where(bits >= 0, _INDEX_BITS - index, index)

        def decode(key):
            bits = key.view(torch.int64)
            code = bits & _INDEX_BITS
            value = (bits & ~_INDEX_BITS).view(torch.float64).float()  # 2^128 overflows to inf
            return torch.where(bits >= 0, _INDEX_BITS - code, code), value
        return keys.view(torch.float64), decode

    values, order = torch.sort(pixels.reshape(-1), descending=True, stable=True)
    keys = torch.empty(order.shape, dtype=torch.float64)
    keys[order] = -torch.arange(order.numel(), dtype=torch.float64)

    def decode(key):
        rank = (-key).long()
        return order[rank] // channels % plane_size, values[rank]
    return keys.view(pixels.shape), decode


def _pool_chunk(keys, grid, height, width):
    """The max key of every bin of a chunk of RoIs, R×ph×pw×C; garbage for
    empty bins. Padding repeats a pixel of the same bin, which leaves its max
    as it is."""
    h_lo, h_hi, w_lo, w_hi = grid["h_lo"], grid["h_hi"], grid["w_lo"], grid["w_hi"]
    num_rois, pooled_w = w_lo.shape
    channels = keys.shape[1]
    top = h_lo[:, :1]
    rows = h_hi[:, -1:] - top
    bin_h, bin_w = h_hi - h_lo, w_hi - w_lo
    max_rows, max_bin_h, max_bin_w = (max(int(t.max()), 1) for t in (rows, bin_h, bin_w))

    # Along w: for every row the RoI covers, the max of each column bin.
    y = torch.minimum(torch.arange(max_rows), rows - 1)
    row_start = (grid["batch"][:, None] * height + (top + y).clamp(0, height - 1)) * width
    b = torch.minimum(torch.arange(max_bin_w), bin_w[:, :, None] - 1)
    col = (w_lo[:, :, None] + b).clamp(0, width - 1)  # R×pw×bin_w
    index = row_start[:, :, None, None] + col[:, None]  # R×rows×pw×bin_w
    row_max = keys.index_select(0, index.view(-1)).view(*index.shape, channels).amax(dim=3)

    # Along h: the max over the rows of each row bin.
    a = torch.minimum(torch.arange(max_bin_h), bin_h[:, :, None] - 1)
    bin_rows = ((h_lo - top)[:, :, None] + a).clamp(0, max_rows - 1)  # R×ph×bin_h
    bin_rows = bin_rows + torch.arange(num_rois)[:, None, None] * max_rows
    stacked = row_max.view(-1, pooled_w * channels).index_select(0, bin_rows.view(-1))
    return stacked.view(num_rois, -1, max_bin_h, pooled_w, channels).amax(dim=2)


def _caffe_bins(pixels, grid, index, value, plane_size):
    """Caffe's rules on top of the max: a bin starts at -FLT_MAX and takes only
    greater values; an empty bin is 0 with argmax -1. float32 keys hold 0.0 for
    -0.0, so zeros are read back from the map to keep their sign."""
    if value.dtype == torch.float32:
        zero = torch.nonzero(value.view(-1) == 0)[:, 0]
        if zero.numel():
            per_roi = value[0].numel()
            channels = pixels.shape[1]
            row = grid["batch"][zero // per_roi] * plane_size + index.view(-1)[zero]
            value.view(-1)[zero] = pixels[row, zero % channels]
    beaten = value > -FLT_MAX
    value = torch.where(beaten, value, value.new_tensor(-FLT_MAX))
    index = index.masked_fill(~beaten, -1)
    empty = grid["empty"][..., None]
    return index.masked_fill(empty, -1), value.masked_fill(empty, 0)


def _pair(output_size):
    if isinstance(output_size, int):
        return output_size, output_size
    pooled_h, pooled_w = output_size
    return int(pooled_h), int(pooled_w)


def _check(features, rois, pooled_h, pooled_w):
    if features.dim() != 4:
        raise ValueError(f"roi_pool: features must be N×C×H×W, got shape {tuple(features.shape)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError("roi_pool: rois must be R×5 (batch_idx, x1, y1, x2, y2), "
                         f"got shape {tuple(rois.shape)}")
    if features.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"roi_pool: features must be float32 or float64, got {features.dtype}")
    if rois.dtype != features.dtype:
        raise TypeError(f"roi_pool: rois are {rois.dtype} but features are {features.dtype}")
    if rois.device != features.device:
        raise ValueError(f"roi_pool: rois are on {rois.device} but features are on {features.device}")
    if pooled_h < 1 or pooled_w < 1:
        raise ValueError(f"roi_pool: output size must be positive, got {pooled_h}×{pooled_w}")
    if rois.shape[0]:
        batch = rois[:, 0].long()
        low, high = int(batch.min()), int(batch.max())
        if low < 0 or high >= features.shape[0]:
            raise ValueError(f"roi_pool: RoI batch index {low if low < 0 else high} "
                             f"is outside the {features.shape[0]} images of the batch")
