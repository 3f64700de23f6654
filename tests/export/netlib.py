"""Test nets with random weights that give proposals and detections: the
shipped fast and VGG16 test nets, BatchNorm statistics and Scale biases
drawn at random, and the RPN and head outputs rescaled to sensible ranges
(deltas of about 0.2, logits of about 2) on one random blob."""

import numpy as np
import torch

import pyfrcnn_layers  # noqa: F401  registers the Faster R-CNN layers
from pyfrcnn_layers.config import DetectionConfig
from pyfrcnn_layers.datasets.shapes import ShapesConfig, render_image
from pyfrcnn.net import Net
from tests.conftest import REPO_DIR

FAST = str(REPO_DIR / "prototxt" / "fast" / "test.prototxt")
VGG16 = str(REPO_DIR / "prototxt" / "vgg16" / "test.prototxt")
# The shapes solver's TEST section (solvers/shapes_solver.yaml).
SHAPES_TEST = {"SCALES": [320], "MAX_SIZE": 500, "RPN_PRE_NMS_TOP_N": 1000,
               "RPN_POST_NMS_TOP_N": 100, "RPN_MIN_SIZE": 8}
OUTPUT_STD = {"rpn_bbox_pred": 0.2, "rpn_cls_score": 2.0, "bbox_pred": 0.2, "cls_score": 2.0}


def narrow_vgg16(tmp_path, width=256):
    """The shipped VGG16 test net with fc6 and fc7 `width` wide instead of 4096
    (every layer type and the trunk kept; 85 MB of weights instead of 550)."""
    path = tmp_path / "vgg16_narrow.prototxt"
    path.write_text(open(VGG16).read().replace("num_output: 4096", f"num_output: {width}"))
    return str(path)


def random_net(path, test=None, input_shape=(1, 3, 160, 208), seed=0):
    cfg = DetectionConfig.from_dict({"TEST": dict(test or SHAPES_TEST)})
    net = Net(path, "TEST", config={"detection": cfg}, input_shapes={"data": (1, 3, None, None)})
    generator = torch.Generator().manual_seed(seed)

    def normal(shape, std=1.0):
        return torch.randn(shape, generator=generator) * std

    with torch.no_grad():
        for layer in net.layers:
            blobs = layer.blobs
            if layer.type == "BatchNorm":
                channels = blobs[0].shape[0]
                blobs[2].fill_(2.5)  # Caffe's sums: the statistics times the factor
                blobs[0].copy_(normal(channels, 2.5))
                blobs[1].copy_((torch.rand(channels, generator=generator) + 0.2) * 2.5)
            elif layer.type == "Scale" and len(blobs) == 2:
                blobs[0].copy_(1 + normal(blobs[0].shape, 0.1))
                blobs[1].copy_(normal(blobs[1].shape, 0.1))
            elif layer.type in ("Convolution", "InnerProduct"):
                fan_in = blobs[0][0].numel()
                blobs[0].copy_(normal(blobs[0].shape, (2.0 / fan_in) ** 0.5))
                if len(blobs) > 1:
                    blobs[1].copy_(normal(blobs[1].shape, 0.01))
        net.eval()
        data, im_info = random_blob(input_shape, seed)
        net.forward(data=data, im_info=im_info)
        for name, std in OUTPUT_STD.items():
            scale = std / float(net.blobs[name].std())
            for blob in net.layer_dict[name].blobs:
                blob.mul_(scale)
    return net, cfg


def random_blob(shape, seed=0):
    generator = torch.Generator().manual_seed(seed + 1)
    data = torch.randn(shape, generator=generator) * 50
    im_info = torch.tensor([[shape[2], shape[3], 1.0]])
    return data, im_info


def shapes_images(count=3):
    """The first `count` images of the shapes test split, H x W x 3 uint8 BGR."""
    return [np.ascontiguousarray(np.asarray(render_image(ShapesConfig(), "test", i)[0])[:, :, ::-1])
            for i in range(count)]
