"""torch's max_pool2d on the CPU through the channels-last layout, bit for bit.

    max_pool2d(x, kernel, stride, padding, ceil_mode) == F.max_pool2d(x, kernel,
    stride, padding, ceil_mode=ceil_mode), values and gradient, for N×C×H×W x

torch's CPU kernel for an N×C×H×W blob walks one plane at a time and is not
vectorised over the window; its channels-last kernel is vectorised over the
channels, and about ten times faster on the fast net's poolings (three of
them: 0.5 ms against 4.9 ms forward, before the layout copies). Both kernels
scan each window in the same row-major order with the same rule (a value
replaces the max if greater, or if NaN), so the maxima and their indices
h * W + w are the same, and the backward is torch's own scatter of the
gradient to those indices, on the N×C×H×W blob. What the copy to channels
last and back costs is inside the figures of BENCHMARKS.md ("Training step"):
2.6 ms forward against 4.9 for the three.

Large blobs go to F.max_pool2d itself: past about 8M elements the two layout
copies cost more than the faster kernel saves (VGG16's pool1 at 600x1000,
38M elements: 275 ms forward and backward against 184; its pool4, 4.8M: 15
against 20). So do other devices.
"""

import torch
import torch.nn.functional as F

# Elements up to which the CPU path goes through channels last.
CHANNELS_LAST_MAX = 1 << 23


def max_pool2d(x, kernel, stride, padding=(0, 0), ceil_mode=False):
    """Max pooling of N×C×H×W `x`, as F.max_pool2d (kernel, stride, padding: pairs)."""
    kernel, stride, padding = list(kernel), list(stride), list(padding)
    if x.device.type != "cpu" or x.dim() != 4 or x.numel() > CHANNELS_LAST_MAX:
        return F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode)
    return _MaxPool2d.apply(x, kernel, stride, padding, ceil_mode)


class _MaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding, ceil_mode):
        # A blob already channels last stays so (no copy either way).
        layout = torch.channels_last if _channels_last(x) else torch.contiguous_format
        top, index = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), kernel, stride, padding, [1, 1], ceil_mode)
        ctx.geometry, ctx.layout = (kernel, stride, padding, ceil_mode), layout
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x, index.contiguous(memory_format=layout))
        return top.contiguous(memory_format=layout)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, index = ctx.saved_tensors
        kernel, stride, padding, ceil_mode = ctx.geometry
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(memory_format=ctx.layout), x, kernel, stride, padding, [1, 1], ceil_mode, index)
        return grad_x, None, None, None, None


def _channels_last(x):
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
