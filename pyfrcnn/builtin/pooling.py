"""Pooling: Caffe's MAX and AVE pooling over H x W, with Caffe's output sizes.

bottom: N x C x H x W
top 0:  N x C x H' x W'
top 1:  (MAX only, optional) N x C x H' x W', the mask: the index h * W + w of
        each window's maximum in its input plane, as floats (Caffe's mask top);
        -1 for a window that holds no input pixel.

H' = ceil((H + 2 pad_h - kernel_h) / stride_h) + 1 (floor with round_mode
FLOOR), and when pad_h > 0 the last window must start inside the input: if
(H' - 1) stride_h >= H + pad_h, H' is one less. W' likewise. torch rounds its
own way and allows pad only up to half the kernel, so the input is padded
explicitly to exactly the windows Caffe visits:
- MAX ignores padding: it is filled with the dtype's lowest value, which a
  window holding no input pixel (stride > kernel, no pad) returns, as Caffe
  returns -FLT_MAX.
- AVE sums each window and divides by Caffe's pool size: the window clipped to
  the padded input (H + pad_h) but not to the input itself, so border windows
  count their padding. (A window past the input divides 0 by a size <= 0, as
  Caffe does.)
global_pooling pools the whole plane: kernel H x W, pad 0, stride 1, top
N x C x 1 x 1 (H and W may then be unknown when the net is built).
STOCHASTIC pooling is not implemented.
"""

import torch
import torch.nn.functional as F

from ..layer import Layer
from ..ops.max_pool import max_pool2d
from ..proto import pyfrcnn_pb2 as pb
from ..registry import register

POOL = pb.PoolingParameter


def pooled_size(size, kernel, pad, stride, round_up=True):
    """Caffe's pooled output size along one axis (None if `size` is)."""
    if size is None:
        return None
    span = size + 2 * pad - kernel
    pooled = (-(-span // stride) if round_up else span // stride) + 1
    if pad > 0 and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def window_sizes(pooled, size, kernel, pad, stride, like):
    """Caffe's AVE divisor along one axis: each window clipped to size + pad."""
    start = torch.arange(pooled, device=like.device, dtype=like.dtype) * stride - pad
    return torch.clamp(start + kernel, max=size + pad) - start


@register("Pooling")
class Pooling(Layer):
    num_bottoms = 1
    min_tops = 1
    max_tops = 2

    def layer_setup(self, bottom_shapes):
        p = self.param.pooling_param
        self.method = p.pool
        if self.method == POOL.STOCHASTIC:
            raise self.error("STOCHASTIC pooling is not implemented (use MAX or AVE)")
        if len(self.param.top) == 2 and self.method != POOL.MAX:
            raise self.error("only MAX pooling has a second (mask) top")
        self.global_pooling = p.global_pooling
        if self.global_pooling:
            if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
                raise self.error("global_pooling takes the whole plane: give no kernel size")
            self.kernel = None
        else:
            self.kernel = self._pair(p, "kernel", True)
        self.pad = self._pair(p, "pad", False)
        self.stride = self._pair(p, "stride", False)
        self.round_up = p.round_mode == POOL.CEIL
        if self.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            raise self.error(f"global_pooling needs pad 0 and stride 1, got pad {self.pad} "
                             f"and stride {self.stride}")
        if min(self.stride) < 1:
            raise self.error(f"stride must be positive, got {self.stride}")
        if self.kernel is not None:
            if min(self.kernel) < 1:
                raise self.error(f"kernel size must be positive, got {self.kernel}")
            if self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]:
                raise self.error(f"pad {self.pad} must be smaller than the kernel {self.kernel}")

    def _pair(self, p, what, required):
        """(h, w) from kernel_size / pad / stride or their _h and _w fields, as Caffe."""
        field = "kernel_size" if what == "kernel" else what
        has, has_h, has_w = (p.HasField(f) for f in (field, f"{what}_h", f"{what}_w"))
        if has_h or has_w:
            if has:
                raise self.error(f"give either {field} or {what}_h and {what}_w, not both")
            if not (has_h and has_w):
                raise self.error(f"give both {what}_h and {what}_w")
            return getattr(p, f"{what}_h"), getattr(p, f"{what}_w")
        if required and not has:
            raise self.error(f"pooling_param.{field} (or {what}_h and {what}_w) is required")
        value = getattr(p, field)  # the schema's default (pad 0, stride 1) when absent
        return value, value

    def reshape(self, bottom_shapes):
        shape = bottom_shapes[0]
        if len(shape) != 4:
            raise self.error(f"bottom '{self.param.bottom[0]}' must be 4-D (N x C x H x W), "
                             f"got {len(shape)}-D")
        n, c, h, w = shape
        if self.global_pooling:
            out_h, out_w = 1, 1
        else:
            out_h, out_w = self._pooled(h, w)
        return [(n, c, out_h, out_w)] * len(self.param.top)

    def _pooled(self, h, w):
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        out_h = pooled_size(h, kh, ph, sh, self.round_up)
        out_w = pooled_size(w, kw, pw, sw, self.round_up)
        if (out_h is not None and out_h < 1) or (out_w is not None and out_w < 1):
            raise self.error(f"bottom {h}x{w} is smaller than the kernel {kh}x{kw} "
                             f"(pad {self.pad}): no window fits")
        return out_h, out_w

    def forward(self, x):
        _, _, h, w = x.shape
        if self.global_pooling:
            (kh, kw), out_h, out_w = (h, w), 1, 1
        else:
            kh, kw = self.kernel
            out_h, out_w = self._pooled(h, w)
        (ph, pw), (sh, sw) = self.pad, self.stride
        # Pad (or crop, when negative) the far side to end at the last window.
        far_h = (out_h - 1) * sh + kh - h - ph
        far_w = (out_w - 1) * sw + kw - w - pw
        if self.method == POOL.MAX and len(self.param.top) == 1 and self._torch_windows(h, w, out_h, out_w):
            return max_pool2d(x, (kh, kw), (sh, sw), (ph, pw), ceil_mode=self.round_up)
        if self.method == POOL.MAX:
            padded = F.pad(x, (pw, far_w, ph, far_h), value=torch.finfo(x.dtype).min)
            if len(self.param.top) == 1:
                return max_pool2d(padded, (kh, kw), (sh, sw))
            top, index = F.max_pool2d(padded, (kh, kw), (sh, sw), return_indices=True)
            row = torch.div(index, padded.shape[-1], rounding_mode="floor") - ph
            col = index % padded.shape[-1] - pw
            inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
            mask = torch.where(inside, row * w + col, torch.full_like(index, -1))
            return top, mask.to(x.dtype)
        sums = F.avg_pool2d(F.pad(x, (pw, far_w, ph, far_h)), (kh, kw), (sh, sw), divisor_override=1)
        sizes = (window_sizes(out_h, h, kh, ph, sh, x)[:, None]
                 * window_sizes(out_w, w, kw, pw, sw, x)[None, :])
        return sums / sizes

    # The fast path: where torch's own padding and rounding visit exactly Caffe's
    # windows (pad at most half the kernel, torch's output size equal to Caffe's),
    # max_pool2d pads implicitly instead of copying the blob into a padded one.
    # The windows and their scan order are the same, so the maxima and the
    # positions the gradient goes to are bit for bit the padded path's
    # (tests/builtin/test_pooling.py compares them). The fast net's three
    # poolings spent about 5 ms of a 80 ms step in that copy (BENCHMARKS.md).
    def _torch_windows(self, h, w, out_h, out_w):
        if self.global_pooling:
            return False
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        if 2 * ph > kh or 2 * pw > kw:
            return False

        def torch_size(size, kernel, pad, stride):
            span = size + 2 * pad - kernel
            out = (-(-span // stride) if self.round_up else span // stride) + 1
            if self.round_up and (out - 1) * stride >= size + pad:
                out -= 1
            return out

        return torch_size(h, kh, ph, sh) == out_h and torch_size(w, kw, pw, sw) == out_w

    def flops(self, bottom_shapes, top_shapes):
        n, c, h, w = bottom_shapes[0]
        _, _, out_h, out_w = top_shapes[0]
        kernel = (h, w) if self.global_pooling else self.kernel
        if None in (n, c, out_h, out_w, *kernel):
            return 0
        return n * c * out_h * out_w * kernel[0] * kernel[1]
