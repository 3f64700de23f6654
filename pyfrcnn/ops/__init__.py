"""Ops with a hand-written CPU path and a CUDA kernel: roi_pool, roi_align and nms."""

from pyfrcnn.ops.nms import nms
from pyfrcnn.ops.roi_align import roi_align
from pyfrcnn.ops.roi_pool import roi_pool

__all__ = ["nms", "roi_align", "roi_pool"]
