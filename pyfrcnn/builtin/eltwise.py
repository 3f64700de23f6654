"""Eltwise: combine same-shaped bottoms element by element (Caffe's EltwiseLayer).

bottoms: K >= 2 blobs of one shape, e.g. N x C x H x W; top: that shape.
eltwise_param.operation: SUM (default; coeff gives one weight per bottom,
default all 1), PROD, or MAX. MAX sends the gradient, as Caffe's argmax
mask does, to one bottom only: the first that holds the maximum. (Caffe
breaks ties between bottoms 0 and 1 the other way, and ties among later
bottoms differently on CPU and GPU; without ties all agree.)
"""

import torch

from ..layer import Layer, count
from ..net import format_shape
from ..proto import pyfrcnn_pb2 as pb
from ..registry import register

OPS = pb.EltwiseParameter.EltwiseOp


@register("Eltwise")
class Eltwise(Layer):
    min_bottoms = 2
    num_tops = 1

    def layer_setup(self, bottom_shapes):
        p = self.param.eltwise_param
        self.operation = p.operation
        self.coeff = list(p.coeff)
        if self.coeff and self.operation != pb.EltwiseParameter.SUM:
            raise self.error(f"eltwise_param.coeff is only for SUM, not {OPS.Name(self.operation)}")
        if self.coeff and len(self.coeff) != len(bottom_shapes):
            raise self.error(f"gives {len(self.coeff)} coeff values for {len(bottom_shapes)} bottoms "
                             "(give one per bottom)")

    def reshape(self, bottom_shapes):
        first = bottom_shapes[0]
        top = list(first)
        for i, shape in enumerate(bottom_shapes[1:], 1):
            same_rank = len(shape) == len(first)
            if not same_rank or any(a is not None and b is not None and a != b
                                    for a, b in zip(shape, first)):
                raise self.error(f"bottom {i} '{self.param.bottom[i]}' has shape {format_shape(shape)} "
                                 f"but bottom 0 '{self.param.bottom[0]}' has {format_shape(first)}")
            top = [d if t is None else t for t, d in zip(top, shape)]
        return [tuple(top)]

    def forward(self, *bottoms):
        shapes = {tuple(b.shape) for b in bottoms}
        if len(shapes) > 1:
            raise self.error("bottoms differ in shape: "
                             + ", ".join(format_shape(tuple(b.shape)) for b in bottoms))
        if self.operation == pb.EltwiseParameter.SUM:
            coeff = self.coeff or [1.0] * len(bottoms)
            top = coeff[0] * bottoms[0] if coeff[0] != 1 else bottoms[0]
            for c, b in zip(coeff[1:], bottoms[1:]):
                top = top + (c * b if c != 1 else b)
            return top
        if self.operation == pb.EltwiseParameter.PROD:
            top = bottoms[0]
            for b in bottoms[1:]:
                top = top * b
            return top
        # A later bottom wins only where strictly greater, so ties go to the
        # first; torch.where sends each gradient to the winner alone.
        top = bottoms[0]
        for b in bottoms[1:]:
            top = torch.where(b > top, b, top)
        return top

    def flops(self, bottom_shapes, top_shapes):
        n = count(top_shapes[0])
        return 0 if n is None else n * (len(bottom_shapes) - 1)
