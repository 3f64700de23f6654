"""Caffe's ROIPooling: max pooling of each region of interest into a fixed grid.

    features  N×C×H×W     float32 or float64
    rois      R×5         (batch_idx, x1, y1, x2, y2) in image pixels, inclusive
    output    R×C×ph×pw   the max of each bin; 0 for an empty bin
    argmax    R×C×ph×pw   int32 flat index h*W + w of that max in its channel;
                          -1 for an empty bin (no gradient flows there)

The RoI is scaled by `spatial_scale` and rounded half away from zero (C's
round), its size is at least 1×1, and bin (i, j) covers rows
[floor(i*bin_h), ceil((i+1)*bin_h)) from the RoI's top, clipped to the map.
Among equal values the first in row-major order wins, as in Caffe's kernel;
NaN never wins (Caffe's `>` is false for it). Results match the CUDA kernel
in kernels/roi_pool.cu bit for bit.

The CPU path works on one float64 key per pixel and channel that orders by
value, then by position, so that a plain max finds Caffe's argmax too (see
_max_keys). A sparse table holds the max key of every 2^a × 2^b window
(_sparse_tables); four such windows of the right size cover a bin exactly, so
every bin, small or large, costs four gathers of whole channel vectors from a
channels-last table and three maxima, whatever the size of its RoI. When no
gradient is wanted (test, detect) there is no argmax to find, and the tables
hold the float32 values themselves: half the bytes, and no decoding.
"""

import math
import threading

import torch

from pyfrcnn.ops import _cuda

# Caffe starts every non-empty bin at -FLT_MAX, for double too.
FLT_MAX = 3.4028234663852886e38
# Keys gathered and decoded at once.
CHUNK_ELEMENTS = 1 << 17
_INDEX_BITS = (1 << 28) - 1
_EXPONENT_SHIFT = 256 << 52


# Scratch tensors larger than this are not kept between calls.
SCRATCH_KEEP_BYTES = 256 << 20


class _Scratch(threading.local):
    """Large scratch tensors kept from call to call, per thread: a fresh
    tensor of megabytes costs page faults on every call (one table of
    VGG16's conv5_3 at 600×1000 is 9.8 MB in float64). One tensor per slot
    and type, grown to the largest asked for, up to SCRATCH_KEEP_BYTES."""

    def __init__(self):
        self.storage = {}

    def get(self, slot, shape, dtype):
        size = math.prod(shape)
        storage = self.storage.get((slot, dtype))
        if storage is None or storage.numel() < size:
            storage = torch.empty(size, dtype=dtype)
            if size * storage.element_size() <= SCRATCH_KEEP_BYTES:
                self.storage[slot, dtype] = storage
        return storage[:size].view(shape)


_SCRATCH = _Scratch()


def roi_pool(features, rois, output_size, spatial_scale):
    """Max-pool each RoI of `rois` on `features` into an R×C×ph×pw blob."""
    pooled_h, pooled_w = _pair(output_size)
    _check(features, rois, pooled_h, pooled_w)
    with_argmax = torch.is_grad_enabled() and features.requires_grad
    return _RoIPool.apply(features, rois, (pooled_h, pooled_w), float(spatial_scale), with_argmax)


class _RoIPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, with_argmax):
        pooled_h, pooled_w = output_size
        if features.is_cuda:  # without cupy a DeviceError, not a copy to the CPU
            output, argmax = _cuda.roi_pool_forward(
                features.contiguous(), rois.contiguous(), pooled_h, pooled_w, spatial_scale)
        else:
            output, argmax = roi_pool_forward_cpu(features, rois, pooled_h, pooled_w, spatial_scale,
                                                  with_argmax)
        ctx.save_for_backward(rois, argmax)
        ctx.features_shape = features.shape
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        rois, argmax = ctx.saved_tensors
        if argmax is None:
            raise RuntimeError("roi_pool: the forward ran without gradients, so it kept no argmax")
        if grad_output.is_cuda:
            grad = _cuda.roi_pool_backward(grad_output.contiguous(), rois.contiguous(), argmax,
                                           ctx.features_shape)
        else:
            grad = roi_pool_backward_cpu(grad_output, rois, argmax, ctx.features_shape)
        return grad, None, None, None, None


def roi_pool_forward_cpu(features, rois, pooled_h, pooled_w, spatial_scale, with_argmax=True):
    """(output, argmax) of ROIPooling with torch ops on the CPU. Without
    `with_argmax` (nothing to differentiate) argmax is None and, unless the
    map holds -0.0, the maxima are taken of the values themselves. NaN is
    never a maximum, as in Caffe, whose comparisons skip it."""
    device = features.device
    features, rois = features.cpu(), rois.cpu()
    num, channels, height, width = features.shape
    num_rois = rois.shape[0]
    shape = (num_rois, channels, pooled_h, pooled_w)
    if num_rois * channels == 0 or height * width == 0:
        argmax = torch.full(shape, -1, dtype=torch.int32, device=device) if with_argmax else None
        return features.new_zeros(shape).to(device), argmax
    pixels = features.permute(0, 2, 3, 1).reshape(num * height * width, channels).contiguous()
    finite = bool(torch.isfinite(pixels.sum()))  # false for inf or NaN (or a sum too large)
    if not finite and pixels.isnan().any():
        # Caffe's comparisons never pick NaN; as -inf, a max does not either.
        pixels = pixels.nan_to_num(-math.inf, math.inf, -math.inf)
    if with_argmax or _has_negative_zero(pixels):
        keys, decode, signed_zeros = _max_keys(pixels, height * width, finite)
    else:
        keys, decode, signed_zeros = pixels, None, False
    grid = _bins(rois, pooled_h, pooled_w, spatial_scale, height, width)
    bins = _bin_list(grid, height, width)
    # Bins sorted by level (stable: bin order within a level), so that each level's
    # bins are one run. They go a chunk of rows at a time through `best`, small
    # enough to stay in cache, which is decoded when full or at the end: a
    # chunk may hold the runs of several levels.
    order = bins["order"]
    corners = bins["corners"][:, order]  # pixel rows of the windows' corners, sorted
    step = max(1, CHUNK_ELEMENTS // channels)
    best = torch.empty((step, channels), dtype=keys.dtype)
    scratch = torch.empty((step, channels), dtype=keys.dtype)
    # Results in sorted order, (R·ph·pw)×C; back in bin order and R×C×ph×pw at the end.
    values = features.new_empty((num_rois * pooled_h * pooled_w, channels))
    indices = torch.empty(values.shape, dtype=torch.int32) if decode else None
    work = torch.empty((step, channels), dtype=torch.int64) if decode else None
    first, count = 0, 0  # `best` holds sorted bins first .. first + count

    def flush():
        nonlocal first, count
        done = slice(first, first + count)
        if decode is None:
            values[done] = best[:count]
        elif count:
            decode(best[:count], values[done], indices[done], work[:count])
        first, count = first + count, 0

    for level_h, level_w, table in _sparse_tables(keys.view(num, height, width, channels),
                                                  list(bins["runs"])):
        run_start, run_size = bins["runs"][level_h, level_w]
        # Corners are (top, left), (top, right), (bottom, left), (bottom, right);
        # at level 0 a window is the whole bin, and its two corners are one.
        distinct = [y + x for y in ([0, 2] if level_h else [0]) for x in ([0, 1] if level_w else [0])]
        done = 0
        while done < run_size:
            if count == step:
                flush()
            at, size = count, min(run_size - done, step - count)
            part = slice(run_start + done, run_start + done + size)
            top, other = best[at:at + size], scratch[:size]
            torch.index_select(table, 0, corners[distinct[0], part], out=top)
            for corner in distinct[1:]:
                torch.maximum(top, torch.index_select(table, 0, corners[corner, part], out=other),
                              out=top)
            count += size
            done += size
    flush()
    if signed_zeros:  # keys hold 0.0 for -0.0: read zeros back from the map
        bin_, channel = torch.nonzero(values == 0).unbind(1)
        row = bins["batch"][order[bin_]] * (height * width) + indices[bin_, channel]
        values[bin_, channel] = pixels[row, channel]
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    shape_bins = (num_rois, pooled_h * pooled_w, channels)
    output = values.index_select(0, inverse).view(shape_bins).transpose(1, 2).reshape(shape)
    argmax = None
    if decode:
        argmax = indices.index_select(0, inverse).view(shape_bins).transpose(1, 2).reshape(shape)
    _caffe_rules(output, argmax, grid["empty"])
    if not with_argmax:
        return output.to(device), None
    return output.to(device), argmax.to(device)


def roi_pool_backward_cpu(grad_output, rois, argmax, features_shape):
    """Gradient w.r.t. the features: each output's gradient added at its argmax."""
    device = grad_output.device
    grad_output, rois, argmax = grad_output.cpu(), rois.cpu(), argmax.cpu()
    num, channels, height, width = features_shape
    plane = height * width + 1  # slot 0 of each plane takes the empty bins (argmax -1)
    grad = grad_output.new_zeros(num * channels * plane)
    start = (rois[:, 0].long()[:, None] * channels + torch.arange(channels)) * plane + 1
    num_rois, pooled = argmax.shape[0], argmax.shape[2:]
    chunk = max(1, CHUNK_ELEMENTS // (channels * pooled.numel()))  # RoIs at a time
    index = torch.empty((chunk, channels) + pooled, dtype=torch.int64)
    for first in range(0, num_rois, chunk):
        part = slice(first, first + chunk)
        where = index[:argmax[part].shape[0]]
        torch.add(start[part, :, None, None], argmax[part], out=where)
        grad.scatter_add_(0, where.view(-1), grad_output[part].reshape(-1))
    grad = grad.view(num, channels, plane)[:, :, 1:].reshape(features_shape)
    return grad.to(device)


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


def _has_negative_zero(pixels):
    """Whether the map holds -0.0, which a plain max does not tell from 0.0
    as Caffe's first-wins order does. -0.0 is the one value whose bits are
    the sign bit alone: the least integer of its width."""
    as_int = torch.int32 if pixels.dtype == torch.float32 else torch.int64
    return bool((pixels.view(as_int) == torch.iinfo(as_int).min).any())


def _max_keys(pixels, plane_size, finite=False):
    """float64 keys, one per pixel and channel, whose max marks the max value
    and, among equal values, the first pixel in row-major order; and `decode`,
    from a chunk of keys to its values and int32 indices h*W + w, written to
    `value` and `index` (with an int64 `work` buffer); and whether the map
    holds -0.0, which float32 keys merge into 0.0. float64 because its max is
    vectorised where int64's is not. `finite`: the map is known to hold no
    ±inf (NaN is gone before this).

    float32: the value widened to float64 (±inf as ±2^128) leaves 29 low
    mantissa bits free; the low 28 hold the pixel index, inverted for values
    >= 0, so that the first pixel gives the larger key on both sides of zero
    (the 29th stays 0, so converting a key back to float32 drops the index). The
    exponent is raised by 256 so that no key (0.0 included) is subnormal:
    the order stays, and flush-to-zero modes cannot merge keys.
    float64: minus the rank in a stable descending sort of the whole map."""
    channels = pixels.shape[1]
    if pixels.dtype == torch.float32:
        if plane_size > _INDEX_BITS:
            raise ValueError(f"roi_pool: a feature map of {plane_size} pixels exceeds 2^28")
        signed_zeros = _has_negative_zero(pixels)
        keys = _SCRATCH.get("keys", pixels.shape, torch.float64).copy_(pixels)  # widened
        if signed_zeros:
            keys.add_(0.0)  # -0.0 becomes 0.0
        if not finite:
            keys.clamp_(-2.0 ** 128, 2.0 ** 128)
        bits = keys.view(torch.int64).add_(_EXPONENT_SHIFT)
        index = (torch.arange(pixels.shape[0]) % plane_size)[:, None]
        non_negative = bool(pixels.amin() >= 0)  # after ReLU: one rule for every key
        if non_negative:
            bits.bitwise_or_(_INDEX_BITS - index)
        else:
            bits.bitwise_or_(torch.where(bits >= 0, _INDEX_BITS - index, index))

        def decode(key, value, index, work):
            bits = key.view(torch.int64)
            # Scaling by 2^-256 is exact; the index bits, below the rounding
            # bit, are then cut by the conversion (and 2^128 becomes inf).
            value.copy_(torch.mul(key, 2.0 ** -256, out=work.view(torch.float64)))
            low_words = bits.view(torch.int32)[:, 0::2]  # little-endian
            if non_negative:
                torch.bitwise_and(torch.bitwise_not(low_words, out=index), _INDEX_BITS, out=index)
            else:
                torch.bitwise_and(low_words, _INDEX_BITS, out=index)
                index.copy_(torch.where(bits >= 0, _INDEX_BITS - index, index))
        return keys, decode, signed_zeros

    values, order = torch.sort(pixels.reshape(-1), descending=True, stable=True)
    keys = torch.empty(order.shape, dtype=torch.float64)
    keys[order] = -torch.arange(order.numel(), dtype=torch.float64)

    def decode(key, value, index, work):
        rank = key.neg_().long()
        index.copy_(order[rank] // channels % plane_size)
        value.copy_(values[rank])
    return keys.view(pixels.shape), decode, False


def _bin_list(grid, height, width):
    """Every bin (R·ph·pw of them, in order) as a flat list: its image, the four
    corner pixel rows (see _sparse_tables) whose windows of the bin's
    sparse-table level cover exactly the bin; `order`, the bins sorted by
    level (stable), and `runs`, {(level_h, level_w): (first, count)} of each
    level's run in that order. Empty bins get clamped, valid corners; their
    result is thrown away."""
    h_lo, h_hi, w_lo, w_hi = grid["h_lo"], grid["h_hi"], grid["w_lo"], grid["w_hi"]
    num_rois, pooled_h = h_lo.shape
    pooled_w = w_lo.shape[1]
    shape = (num_rois, pooled_h, pooled_w)
    level_h = _floor_log2(h_hi - h_lo)
    level_w = _floor_log2(w_hi - w_lo)
    top, bottom = h_lo.clamp(max=height - 1), (h_hi - (1 << level_h)).clamp(min=0)
    left, right = w_lo.clamp(max=width - 1), (w_hi - (1 << level_w)).clamp(min=0)
    image_row = grid["batch"][:, None, None] * height
    corners = torch.stack([((image_row + y[:, :, None]) * width + x[:, None, :]).expand(shape)
                           for y in (top, bottom) for x in (left, right)]).reshape(4, -1)
    level = (level_h[:, :, None] * 64 + level_w[:, None, :]).reshape(-1)
    order = torch.argsort(level, stable=True)
    pairs, counts = torch.unique(level, return_counts=True)
    runs, first = {}, 0
    for pair, count in zip(pairs.tolist(), counts.tolist()):
        runs[pair // 64, pair % 64] = (first, count)
        first += count
    return {"batch": grid["batch"].repeat_interleave(pooled_h * pooled_w),
            "corners": corners, "order": order, "runs": runs}


def _floor_log2(size):
    # floor(log2(size)) for sizes >= 1, 0 for empty bins; exact for integers.
    return torch.floor(torch.log2(size.clamp(min=1).double())).long()


def _sparse_tables(keys, levels):
    """Yield (a, b, table) for the sorted (a, b) in `levels`, where table is an
    (N·H·W)×C view whose row (n, y, x) holds the max key of the window
    [y, y + 2^a) × [x, x + 2^b): two row windows and two column windows of a
    bin's size cover it exactly, so four rows give the max of any bin. Each
    table is one max of two shifted copies of the one before it. Tables live
    in scratch that later ones overwrite: use each before asking for the next."""
    num, height, width, channels = keys.shape
    wanted = {}
    for level_h, level_w in levels:
        wanted[level_h] = max(wanted.get(level_h, 0), level_w)
    # Two row tables and two column tables at most are alive at once.
    row_slots, col_slots = ["rows 0", "rows 1"], ["columns 0", "columns 1"]
    rows = keys
    for level_h in range(max(wanted) + 1):
        if level_h:
            slot = row_slots[level_h % 2]
            target = _SCRATCH.get(slot, keys.shape, keys.dtype)
            _double(rows, target, 1, 1 << (level_h - 1))
            rows = target
        if level_h not in wanted:
            continue
        table = rows
        for level_w in range(1, wanted[level_h] + 1):
            if (level_h, level_w - 1) in levels:
                yield level_h, level_w - 1, table.view(-1, channels)
            target = _SCRATCH.get(col_slots[level_w % 2], keys.shape, keys.dtype)
            _double(table, target, 2, 1 << (level_w - 1))
            table = target
        if (level_h, wanted[level_h]) in levels:
            yield level_h, wanted[level_h], table.view(-1, channels)


def _double(source, target, dim, shift):
    """target = max of source and source shifted by `shift` along `dim`, on the
    positions where the doubled window still fits."""
    valid = source.shape[dim] - 2 * shift + 1
    if valid > 0:
        torch.maximum(source.narrow(dim, 0, valid), source.narrow(dim, shift, valid),
                      out=target.narrow(dim, 0, valid))


def _caffe_rules(output, argmax, empty):
    """Caffe's rules on top of the max, in place: a bin starts at -FLT_MAX and
    takes only greater values; an empty bin (`empty`: R×ph×pw) is 0 with
    argmax -1 (argmax may be None)."""
    if output.amin() <= -FLT_MAX:
        if argmax is not None:
            argmax.masked_fill_(output <= -FLT_MAX, -1)
        output.clamp_(min=-FLT_MAX)
    roi, row, column = torch.nonzero(empty).unbind(1)
    if roi.numel():
        output[roi, :, row, column] = 0
        if argmax is not None:
            argmax[roi, :, row, column] = -1


def _pair(output_size):
    if isinstance(output_size, int):
        return output_size, output_size
    pooled_h, pooled_w = output_size
    return int(pooled_h), int(pooled_w)


def _check(features, rois, pooled_h, pooled_w, op="roi_pool"):
    """Shapes, dtypes, devices and batch indices of an RoI op's inputs (roi_align's too)."""
    if features.dim() != 4:
        raise ValueError(f"{op}: features must be N×C×H×W, got shape {tuple(features.shape)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"{op}: rois must be R×5 (batch_idx, x1, y1, x2, y2), "
                         f"got shape {tuple(rois.shape)}")
    if features.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: features must be float32 or float64, got {features.dtype}")
    if rois.dtype != features.dtype:
        raise TypeError(f"{op}: rois are {rois.dtype} but features are {features.dtype}")
    if rois.device != features.device:
        raise ValueError(f"{op}: rois are on {rois.device} but features are on {features.device}")
    if pooled_h < 1 or pooled_w < 1:
        raise ValueError(f"{op}: output size must be positive, got {pooled_h}×{pooled_w}")
    if rois.shape[0] and rois.is_cuda:
        # Read on the host, the check would wait for the GPU at every step; a
        # device-side assert keeps the kernel from reading outside the batch.
        batch = rois[:, 0]
        torch._assert_async(((batch >= 0) & (batch < features.shape[0])).all())
    elif rois.shape[0]:
        batch = rois[:, 0].long()
        low, high = int(batch.min()), int(batch.max())
        if low < 0 or high >= features.shape[0]:
            raise ValueError(f"{op}: RoI batch index {low if low < 0 else high} "
                             f"is outside the {features.shape[0]} images of the batch")
