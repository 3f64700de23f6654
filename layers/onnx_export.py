"""The whole test-time detector as one ONNX graph.

inputs (H, W: the scaled image's size, any; H0, W0: the original image's)
  data        1 x 3 x H x W   BGR minus PIXEL_MEANS, scaled: image_to_blob's blob
  im_info     1 x 3           (H, W, im_scale)
  image_size  2               (H0, W0), float: the boxes are clipped to it
outputs (N detections, class by class, each class by descending score)
  boxes       N x 4           (x1, y1, x2, y2) in the original image, inclusive
  scores      N
  labels      N               int64 class index, 1 .. K-1 (0 is the background)

This is im_detect and postprocess_detections (layers/inference.py) after
the net: rois / im_scale decoded with bbox_pred (un-normalised by the
training's BBOX_NORMALIZE_MEANS / STDS when the weights say so), clipped;
then per class, scores > TEST.SCORE_THRESH, NMS at TEST.NMS, and at most
TEST.MAX_PER_IMAGE detections kept by py-faster-rcnn's rule (every
detection scoring at least the MAX_PER_IMAGE-th best score). The
thresholds are constants of the graph: the config at export time.
Resizing and mean subtraction stay outside (image_to_blob, one TEST.SCALE),
so that any runtime feeds the blob pyfrcnn computes.

The proposal layer's export forward is ProposalLayer.forward's steps with
ops a trace keeps: anchors shifted over the traced map size (not the cached
grid), the sort a TopK over all scores (ONNX's TopK breaks ties by index,
as our stable sort), pre- and post-NMS top-N as slices, NMS as ONNX
NonMaxSuppression (pyfrcnn.onnx_export.nms).
"""

import torch

from pyfrcnn import onnx_export
from pyfrcnn.onnx_export import OnnxExportError, export_blobs, nms

from .anchors import shift_anchors
from .bbox import bbox_transform_inv, clip_boxes, widths_heights
from .config import detection_config
from .inference import unnormalize_bbox_pred
from .proposal import ProposalLayer

INPUT_NAMES = ("data", "im_info", "image_size")
OUTPUT_NAMES = ("boxes", "scores", "labels")


def proposal_export_forward(layer, rpn_cls_prob, rpn_bbox_pred, im_info):
    """ProposalLayer.forward (layers/proposal.py), step for step, traceable."""
    section = detection_config(layer.config).phase(layer.phase)
    a = layer.grid.num_anchors
    scores = rpn_cls_prob[:, a:].permute(0, 2, 3, 1).reshape(-1).float()
    deltas = rpn_bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4).float()
    im_info = im_info.float()
    anchors = shift_anchors(layer.grid.base, rpn_cls_prob.shape[2], rpn_cls_prob.shape[3],
                            layer.grid.feat_stride)

    proposals = bbox_transform_inv(anchors, deltas)
    proposals = clip_boxes(proposals, (im_info[0, 0], im_info[0, 1]))
    widths, heights = widths_heights(proposals)
    min_size = section.RPN_MIN_SIZE * im_info[0, 2]
    keep = ((widths >= min_size) & (heights >= min_size)).nonzero().squeeze(1)
    proposals, scores = proposals[keep], scores[keep]

    scores, order = scores.topk(scores.shape[0])
    if section.RPN_PRE_NMS_TOP_N > 0:
        order, scores = order[:section.RPN_PRE_NMS_TOP_N], scores[:section.RPN_PRE_NMS_TOP_N]
    proposals = proposals[order]
    keep = nms(proposals, scores, section.RPN_NMS_THRESH, max(section.RPN_POST_NMS_TOP_N, 0))
    proposals, scores = proposals[keep], scores[keep]

    rois = torch.cat([torch.zeros_like(proposals[:, :1]), proposals], dim=1)
    return (rois, scores[:, None])[:len(layer.param.top)]


onnx_export.register_export_forward(ProposalLayer, proposal_export_forward)


class Detector(torch.nn.Module):
    """A test net with im_detect's and postprocess_detections' steps after it
    (see above), for export."""

    def __init__(self, net, cfg, bbox_stats=None):
        super().__init__()
        for blob in ("rois", "cls_prob") + (("bbox_pred",) if cfg.TEST.BBOX_REG else ()):
            if blob not in net.blob_shapes:
                raise OnnxExportError(f"net '{net.name}' has no blob '{blob}': a Faster R-CNN "
                                      "test net gives rois, cls_prob and bbox_pred")
        if list(net.input_blobs) != ["data", "im_info"]:
            raise OnnxExportError(f"net '{net.name}' takes {', '.join(net.input_blobs)}; the "
                                  "detector export needs a test net taking data and im_info")
        shape = net.blob_shapes["cls_prob"]
        if len(shape) != 2 or shape[1] is None:
            raise OnnxExportError(f"net '{net.name}': cls_prob must be R x K with K known, got "
                                  f"{'x'.join('?' if d is None else str(d) for d in shape)}")
        self.net, self.cfg, self.bbox_stats = net, cfg, bbox_stats

    def forward(self, data, im_info, image_size):
        test = self.cfg.TEST
        blobs = export_blobs(self.net, {"data": data, "im_info": im_info})
        rois = blobs["rois"]
        scores = blobs["cls_prob"].reshape(rois.shape[0], -1).float()
        num_classes = self.net.blob_shapes["cls_prob"][1]
        boxes = rois[:, 1:5] / im_info[0, 2]
        if test.BBOX_REG:
            deltas = blobs["bbox_pred"].reshape(rois.shape[0], -1)
            if self.bbox_stats is not None:
                deltas = unnormalize_bbox_pred(deltas, *self.bbox_stats)
            pred_boxes = clip_boxes(bbox_transform_inv(boxes, deltas), image_size).float()
        else:
            pred_boxes = boxes.repeat(1, num_classes).float()

        all_boxes, all_scores, all_labels = [], [], []
        for j in range(1, num_classes):
            inds = (scores[:, j] > test.SCORE_THRESH).nonzero().squeeze(1)
            cls_scores = scores[inds, j]
            cls_boxes = pred_boxes[inds, 4 * j:4 * (j + 1)]
            keep = nms(cls_boxes, cls_scores, test.NMS)
            all_boxes.append(cls_boxes[keep])
            all_scores.append(cls_scores[keep])
            all_labels.append(torch.full_like(keep, j))
        boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
        if test.MAX_PER_IMAGE > 0:
            # -inf padding: with fewer detections than MAX_PER_IMAGE, keep them all.
            padded = torch.cat([scores, scores.new_full((test.MAX_PER_IMAGE,), float("-inf"))])
            image_thresh = padded.topk(test.MAX_PER_IMAGE).values[-1]
            keep = (scores >= image_thresh).nonzero().squeeze(1)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        return boxes, scores, labels


def export_detector(net, cfg, bbox_stats, path, example_size=(224, 288)):
    """Write the detector of a built test net to an ONNX file at `path`,
    traced on a random blob of example_size (any size works afterwards)."""
    detector = Detector(net, cfg, bbox_stats).eval()
    height, width = example_size
    generator = torch.Generator().manual_seed(0)
    data = torch.randn((1, 3, height, width), generator=generator) * 50
    im_info = torch.tensor([[height, width, 1.0]])
    image_size = torch.tensor([height, width], dtype=torch.float32)
    with onnx_export.weights_kept(net), torch.no_grad():
        rois = export_blobs(net, {"data": data, "im_info": im_info})["rois"]
    if not rois.shape[0]:
        # A trace keeps the branches its own run takes (bbox_transform_inv's for no boxes).
        raise OnnxExportError(f"net '{net.name}': the example blob of {height}x{width} gives no "
                              "proposals, so a trace of it would not hold the detector")
    dynamic = {"data": {2: "height", 3: "width"}, "boxes": {0: "detections"},
               "scores": {0: "detections"}, "labels": {0: "detections"}}
    return onnx_export.export_onnx(detector, (data, im_info, image_size), path, INPUT_NAMES,
                                   OUTPUT_NAMES, dynamic)


__all__ = ["Detector", "export_detector", "proposal_export_forward", "INPUT_NAMES",
           "OUTPUT_NAMES"]
