"""pyfrcnn: a Caffe-style, layer-by-layer graph engine on PyTorch for Faster R-CNN."""

__version__ = "0.1.0"
