"""pyfrcnn.Detector: a Faster R-CNN detector in one call, as py-faster-rcnn's
im_detect + NMS or detectron2's DefaultPredictor.

    detector = pyfrcnn.Detector("prototxt/fast/test.prototxt", "x.weights", device="auto")
    boxes, scores, labels = detector.detect("photo.jpg")

boxes is N x 4 (x1, y1, x2, y2 in the image's pixels, inclusive corners, as
py-faster-rcnn), scores N, labels N (class indices 1..K-1 into
detector.classes, whose index 0 is the background); best score first. The
detection settings are the training run's (the weights' meta) with
`overrides` ("TEST.NMS=0.4") on top, as `pyfrcnn detect --set`.
"""

import os

import numpy as np
import torch

from pyfrcnn.errors import DataError

from .commands import BACKGROUND, detect_class_names, load_test_net, net_num_classes
from .image import load_image
from .inference import detect


class Detector:
    """A test net with its weights on a device; detect(image) -> boxes, scores, labels."""

    def __init__(self, net, weights, device="auto", overrides=(), classes=None, score_thresh=None):
        if isinstance(overrides, str):
            overrides = [overrides]
        self.net, self.cfg, self.meta, self.bbox_stats = load_test_net(
            os.fspath(net), os.fspath(weights), list(overrides), device)
        names = detect_class_names(classes, self.meta, net_num_classes(self.net))
        self.classes = [BACKGROUND] + names
        self.score_thresh = score_thresh

    def detect(self, image, score_thresh=None):
        """(boxes N x 4, scores N, labels N) for an image path or an H x W x 3
        uint8 BGR array (as cv2.imread gives); tensors on the CPU."""
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"Detector.detect: expected an H x W x 3 uint8 BGR image, got "
                            f"{image.dtype} of shape {image.shape}")
        thresh = score_thresh if score_thresh is not None else self.score_thresh
        class_dets = detect(self.net, image, self.cfg, self.bbox_stats, score_thresh=thresh)
        dets = [(d, j) for j, d in enumerate(class_dets) if j > 0 and len(d)]
        if not dets:
            return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)
        rows = torch.cat([d for d, _ in dets])
        labels = torch.cat([torch.full((len(d),), j, dtype=torch.long) for d, j in dets])
        order = torch.argsort(rows[:, 4], descending=True, stable=True)
        return rows[order, :4], rows[order, 4], labels[order]
