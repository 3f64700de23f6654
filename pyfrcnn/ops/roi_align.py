"""RoIAlign (Mask R-CNN): the average of bilinear samples over each bin of a RoI.

    features  N×C×H×W     float32 or float64
    rois      R×5         (batch_idx, x1, y1, x2, y2) in image pixels
    output    R×C×ph×pw   the mean of the bin's samples

The semantics are torchvision's roi_align (and detectron2's ROIAlign):
- a corner is scaled by `spatial_scale`, minus 0.5 when `aligned` (the
  half-pixel offset: a pixel's centre is at its index + 0.5); the RoI's size
  is x2 - x1 (no +1), at least 1×1 when not `aligned`;
- each bin holds gh×gw samples on a regular grid at the centres of its
  sub-cells; g = sampling_ratio when > 0, else ceil(roi size / pooled size)
  per RoI (adaptive), and the bin's value is their sum over max(gh·gw, 1);
- a sample outside [-1, H] × [-1, W] counts 0; one inside is clamped to the
  map and read by bilinear interpolation of its four neighbours.
py-faster-rcnn's boxes name their last pixel (x2 inclusive), so with them a
RoI ends one pixel (1/16 of a stride-16 cell) short of its region; detectron2
feeds RoIAlign the same boxes its RPN predicts, so do we.

The CPU path works with one sparse matrix per call, (R·ph·pw) × (N·H·W): the
weight of every pixel in every bin (bilinear weights / count, summed over the
samples that touch it). The forward is that matrix times the channels-last
map, the backward its transpose times the output's gradient: no loop over
RoIs or samples in Python, whatever the grid sizes. The matrix is built from
flat sample lists: a RoI's y samples (ph·gh of them) and x samples (pw·gw) are
interpolated separately, bilinear weights being products of the two.

The CUDA path is kernels/roi_align.cu (one thread per output element, as
torchvision's kernel; the backward adds with atomicAdd). Both paths agree to
rounding: the CPU path sums a bin's weights before it multiplies.
"""

import numpy as np
import torch

from pyfrcnn.ops import _cuda
# roi_pool's per-thread scratch: the (R·ph·pw) × C product, 100 MB for 128 RoIs
# of 14×14 at 1024 channels, costs its page faults on every call when fresh
# (0.39 s against 0.10 s kept, in one check); its limit caps both ops together.
from pyfrcnn.ops.roi_pool import _SCRATCH, _check, _pair  # the scratch, checks and sizes of roi_pool

ROI_ALIGN_SOURCE = "roi_align.cu"


def roi_align(features, rois, output_size, spatial_scale, sampling_ratio=0, aligned=False):
    """RoIAlign of each RoI of `rois` on `features` into an R×C×ph×pw blob."""
    pooled_h, pooled_w = _pair(output_size)
    _check(features, rois, pooled_h, pooled_w, op="roi_align")
    return _RoIAlign.apply(features, rois, (pooled_h, pooled_w), float(spatial_scale),
                           int(sampling_ratio), bool(aligned))


class _RoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
        settings = (*output_size, spatial_scale, sampling_ratio, aligned)
        ctx.settings, ctx.features_shape = settings, features.shape
        ctx.matrix = None
        if features.is_cuda and _cuda.available():
            ctx.save_for_backward(rois)
            return roi_align_forward_cuda(features.contiguous(), rois.contiguous(), *settings)
        output, matrix = roi_align_forward_cpu(features, rois, *settings)
        if ctx.needs_input_grad[0]:  # the matrix is the backward's only input
            ctx.matrix = matrix
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        if ctx.matrix is None:
            (rois,) = ctx.saved_tensors
            grad = roi_align_backward_cuda(grad_output.contiguous(), rois.contiguous(),
                                           ctx.features_shape, *ctx.settings)
        else:
            grad = roi_align_backward_cpu(grad_output, ctx.matrix, ctx.features_shape)
        return grad, None, None, None, None, None


# -- the CPU path ----------------------------------------------------------------------
def roi_align_forward_cpu(features, rois, pooled_h, pooled_w, spatial_scale, sampling_ratio=0,
                          aligned=False):
    """(output, matrix): RoIAlign with torch ops on the CPU, and the sparse
    sampling matrix that roi_align_backward_cpu takes."""
    device = features.device
    features, rois = features.cpu(), rois.cpu()
    num, channels, height, width = features.shape
    matrix = sampling_matrix(rois, num, height, width, pooled_h, pooled_w, spatial_scale,
                             sampling_ratio, aligned, features.dtype)
    # Channels-last rows: the product reads whole channel vectors.
    pixels = features.permute(0, 2, 3, 1).reshape(num * height * width, channels).contiguous()
    bins = _SCRATCH.get("roi_align bins", (matrix.shape[0], channels), features.dtype)
    torch.mm(matrix, pixels, out=bins)  # (R·ph·pw) × C
    # Always a copy (never the scratch itself, which the next call overwrites).
    output = features.new_empty((rois.shape[0], channels, pooled_h, pooled_w))
    output.copy_(bins.view(rois.shape[0], pooled_h, pooled_w, channels).permute(0, 3, 1, 2))
    return output.to(device), matrix


def roi_align_backward_cpu(grad_output, matrix, features_shape):
    """Gradient w.r.t. the features: the transposed sampling matrix times the
    output's gradient."""
    device = grad_output.device
    num, channels, height, width = features_shape
    grad_bins = _SCRATCH.get("roi_align bins", (matrix.shape[0], channels), grad_output.dtype)
    grad_bins.view(grad_output.shape[0], *grad_output.shape[2:], channels).copy_(
        grad_output.permute(0, 2, 3, 1))
    grad = torch.sparse.mm(matrix.t(), grad_bins)  # (N·H·W) × C
    return grad.view(num, height, width, channels).permute(0, 3, 1, 2).contiguous().to(device)


def sampling_matrix(rois, num, height, width, pooled_h, pooled_w, spatial_scale,
                    sampling_ratio, aligned, dtype):
    """The (R·ph·pw) × (N·H·W) sparse COO matrix whose row r·ph·pw + i·pw + j
    holds the weight of every pixel (n, y, x), at column (n·H + y)·W + x, in
    bin (i, j) of RoI r: bilinear weights / count, summed over samples."""
    num_rois = rois.shape[0]
    shape = (num_rois * pooled_h * pooled_w, num * height * width)
    rois = rois.to(dtype)
    scale = torch.tensor(spatial_scale, dtype=dtype)
    offset = 0.5 if aligned else 0.0
    start_w, start_h, end_w, end_h = (rois[:, 1:5] * scale - offset).unbind(1)
    roi_w, roi_h = end_w - start_w, end_h - start_h
    if not aligned:  # torchvision forces malformed RoIs to 1×1
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full((num_rois,), sampling_ratio, dtype=torch.int64)
    else:
        grid_h, grid_w = _adaptive_grid(bin_h), _adaptive_grid(bin_w)
    count = (grid_h * grid_w).clamp(min=1).to(dtype)
    ys = _samples(start_h, bin_h, grid_h, pooled_h, height)
    xs = _samples(start_w, bin_w, grid_w, pooled_w, width)
    if num_rois == 0 or height * width == 0 or ys["bin"].numel() * xs["bin"].numel() == 0:
        return torch.sparse_coo_tensor(torch.zeros((2, 0), dtype=torch.int64),
                                       torch.zeros(0, dtype=dtype), shape,
                                       check_invariants=False).coalesce()
    # Every (y sample, x sample) pair of a RoI is one sample of the bin both fall in.
    roi, y, x = _pairs(ys["count"], xs["count"])
    bin_ = (roi * pooled_h + ys["bin"][y]) * pooled_w + xs["bin"][x]
    image_row = rois[:, 0].long()[roi] * height
    rows, columns, values = [], [], []
    for y_index, y_weight in zip(ys["index"], ys["weight"]):
        for x_index, x_weight in zip(xs["index"], xs["weight"]):
            rows.append(bin_)
            columns.append((image_row + y_index[y]) * width + x_index[x])
            values.append(y_weight[y] * x_weight[x] / count[roi])
    indices = torch.stack([torch.cat(rows), torch.cat(columns)])
    return torch.sparse_coo_tensor(indices, torch.cat(values), shape, check_invariants=False).coalesce()


def _adaptive_grid(bin_size):
    # ceil(roi size / pooled size) samples a bin; a RoI of size <= 0 (only
    # when aligned) has none. The cap of 2^20 per axis is far beyond any real
    # RoI: a corrupt coordinate cannot ask for all the memory.
    return torch.ceil(bin_size.nan_to_num(0.0)).clamp(min=0, max=2**20).long()


def _samples(start, bin_size, grid, pooled, size):
    """A RoI's samples along one axis, flat over RoIs (RoI-major, then bin,
    then sample): their count per RoI, their bin, and the two neighbouring
    pixel indices with their bilinear weights (0 for a sample off the map)."""
    per_roi = grid * pooled
    roi = torch.repeat_interleave(torch.arange(per_roi.numel()), per_roi)
    local = torch.arange(roi.numel()) - (torch.cumsum(per_roi, 0) - per_roi)[roi]
    g = grid[roi]
    bin_, step = local // g, local % g
    dtype = start.dtype
    # torchvision's order of operations: start + i·bin + (k + 0.5)·bin / g.
    where = start[roi] + bin_.to(dtype) * bin_size[roi] + (step.to(dtype) + 0.5) * bin_size[roi] / g.to(dtype)
    inside = (where >= -1) & (where <= size)
    where = torch.where(inside, where, torch.zeros_like(where)).clamp(min=0)
    low = where.clamp(max=max(size - 1, 0)).long()
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, max(size - 1, 0)), low)
    high = torch.where(at_end, low, low + 1)
    where = torch.where(at_end, low.to(dtype), where)
    frac = where - low.to(dtype)
    mask = inside.to(dtype)
    return {"count": per_roi, "bin": bin_, "index": (low, high),
            "weight": ((1 - frac) * mask, frac * mask)}


def _pairs(count_a, count_b):
    """(owner, a, b) for every pair of an `a` item and a `b` item of the same
    owner, with a and b indices into the flat lists (owner-major)."""
    per_owner = count_a * count_b
    owner = torch.repeat_interleave(torch.arange(per_owner.numel()), per_owner)
    local = torch.arange(owner.numel()) - (torch.cumsum(per_owner, 0) - per_owner)[owner]
    width = count_b[owner]
    a = (torch.cumsum(count_a, 0) - count_a)[owner] + local // width
    b = (torch.cumsum(count_b, 0) - count_b)[owner] + local % width
    return owner, a, b


# -- the CUDA path ---------------------------------------------------------------------
def roi_align_forward_cuda(features, rois, pooled_h, pooled_w, spatial_scale, sampling_ratio,
                           aligned):
    _cuda._check_device("roi_align", features, rois)
    output, launch = roi_align_forward_launch(features, rois, pooled_h, pooled_w, spatial_scale,
                                              sampling_ratio, aligned)
    _cuda.run(launch, features.device)
    return output


def roi_align_backward_cuda(grad_output, rois, features_shape, pooled_h, pooled_w,
                            spatial_scale, sampling_ratio, aligned):
    _cuda._check_device("roi_align backward", grad_output, rois)
    grad, launch = roi_align_backward_launch(grad_output, rois, features_shape, spatial_scale,
                                             sampling_ratio, aligned)
    _cuda.run(launch, grad_output.device)
    return grad


def roi_align_forward_launch(features, rois, pooled_h, pooled_w, spatial_scale, sampling_ratio,
                             aligned):
    """(output, launch) for roi_align_forward_<dtype>; launch is None when
    there is nothing to compute. Planned as pyfrcnn.ops._cuda plans roi_pool,
    so that tests/ops/kernel_harness.py can carry it out on the CPU."""
    _cuda._check_contiguous("roi_align", features=features, rois=rois)
    _cuda._check_dtype("roi_align", features, rois)
    if features.dim() != 4 or rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_align: need N×C×H×W features and R×5 rois, "
                         f"got {tuple(features.shape)} and {tuple(rois.shape)}")
    channels, height, width = features.shape[1:]
    output = features.new_zeros((rois.shape[0], channels, pooled_h, pooled_w))
    count = output.numel()
    if count == 0 or features.numel() == 0:
        return output, None
    _cuda._check_int_range("roi_align", count, features.numel())
    real = _cuda._real(features.dtype)
    args = (np.int32(count), features, real(spatial_scale), np.int32(channels), np.int32(height),
            np.int32(width), np.int32(pooled_h), np.int32(pooled_w), np.int32(sampling_ratio),
            np.int32(aligned), rois, output)
    kernel = "roi_align_forward_" + _cuda._suffix(features.dtype)
    return output, _cuda.Launch(ROI_ALIGN_SOURCE, kernel, *_cuda.launch_geometry(kernel, count), args)


def roi_align_backward_launch(grad_output, rois, features_shape, spatial_scale, sampling_ratio,
                              aligned):
    """(grad_features, launch) for roi_align_backward_<dtype>."""
    _cuda._check_contiguous("roi_align backward", grad_output=grad_output, rois=rois)
    _cuda._check_dtype("roi_align backward", grad_output, rois)
    if grad_output.dim() != 4 or rois.dim() != 2 or grad_output.shape[0] != rois.shape[0]:
        raise ValueError(f"roi_align backward: need an R×C×ph×pw gradient for R×5 rois, "
                         f"got {tuple(grad_output.shape)} and {tuple(rois.shape)}")
    num, channels, height, width = features_shape
    grad = grad_output.new_zeros(features_shape)
    count = grad_output.numel()
    if count == 0 or grad.numel() == 0:
        return grad, None
    _cuda._check_int_range("roi_align backward", count, grad.numel())
    real = _cuda._real(grad_output.dtype)
    args = (np.int32(count), grad_output, real(spatial_scale), np.int32(channels),
            np.int32(height), np.int32(width), np.int32(grad_output.shape[2]),
            np.int32(grad_output.shape[3]), np.int32(sampling_ratio), np.int32(aligned), rois,
            grad)
    kernel = "roi_align_backward_" + _cuda._suffix(grad_output.dtype)
    return grad, _cuda.Launch(ROI_ALIGN_SOURCE, kernel, *_cuda.launch_geometry(kernel, count), args)
