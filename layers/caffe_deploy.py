"""A Faster R-CNN test net for OpenCV's DNN: our Python proposal layer as
OpenCV's built-in `Proposal` layer.

OpenCV's Caffe importer runs no Python layer; it has a Proposal layer of its
own (modules/dnn/src/layers/proposal_layer.cpp) with the bottoms of ours
(rpn_cls_prob_reshape 1 x 2A x H x W, rpn_bbox_pred 1 x 4A x H x W, im_info
1 x 3) and top rois R x 5, set by a `proposal_param` of the Faster R-CNN
fork of Caffe's schema:
    feat_stride     our param_str 'feat_stride'
    base_size       16, the reference anchor of layers/anchors.py
    min_size        TEST.RPN_MIN_SIZE (OpenCV does not apply it)
    ratio, scale    our param_str 'ratios' and 'scales', one value a field
    pre_nms_topn    TEST.RPN_PRE_NMS_TOP_N
    post_nms_topn   TEST.RPN_POST_NMS_TOP_N
    nms_thresh      TEST.RPN_NMS_THRESH
OpenCV sizes its anchors as ours (width 16 / sqrt(r) and height width x r,
rounded, times each scale, ratio-major; it rounds halves up where numpy
rounds them to even: the same 12 for the one half of the default ratios,
23 x 0.5), and its decoding and clipping give py-faster-rcnn's rois
(tests/export/test_opencv.py). It always gives post_nms_topn rows: the
rows past the ones its NMS kept are left as they were (zeros on a fresh
net), and so are the rows of cls_prob and bbox_pred computed from them.
A top-N of 0 (keep all) has no OpenCV counterpart: it is an error here.
"""

from pyfrcnn.errors import ConfigError

from .config import detection_config
from .proposal import ProposalLayer

BASE_SIZE = 16  # generate_anchors' default, which ProposalLayer uses


def _number(value):
    return f"{float(value):.9g}"


def opencv_proposal_text(layer):
    """The prototxt text of OpenCV's Proposal layer standing in for a ProposalLayer."""
    section = detection_config(layer.config).TEST
    params = layer.params
    for key in ("RPN_PRE_NMS_TOP_N", "RPN_POST_NMS_TOP_N"):
        if getattr(section, key) <= 0:
            raise ConfigError(f"{layer.describe()}: TEST.{key} = {getattr(section, key)} keeps "
                              "every proposal, which OpenCV's Proposal layer cannot: give a "
                              "positive count (--set detection.TEST." + key + "=N)")
    if len(layer.param.top) != 1:
        raise ConfigError(f"{layer.describe()}: OpenCV's Proposal layer gives rois only; this "
                          f"layer has {len(layer.param.top)} tops")
    lines = ["layer {", f'  name: "{layer.name}"', '  type: "Proposal"']
    lines += [f'  bottom: "{b}"' for b in layer.param.bottom]
    lines += [f'  top: "{t}"' for t in layer.param.top]
    lines += ["  proposal_param {",
              f"    feat_stride: {int(params.feat_stride)}",
              f"    base_size: {BASE_SIZE}",
              f"    min_size: {int(section.RPN_MIN_SIZE)}"]
    lines += [f"    ratio: {_number(r)}" for r in params.ratios]
    lines += [f"    scale: {_number(s)}" for s in params.scales]
    lines += [f"    pre_nms_topn: {int(section.RPN_PRE_NMS_TOP_N)}",
              f"    post_nms_topn: {int(section.RPN_POST_NMS_TOP_N)}",
              f"    nms_thresh: {_number(section.RPN_NMS_THRESH)}",
              "  }", "}"]
    return "\n".join(lines)


def opencv_replacements(net):
    """{layer name: OpenCV layer text} for every proposal layer of the net."""
    return {layer.name: opencv_proposal_text(layer) for layer in net.layers
            if isinstance(layer, ProposalLayer)}


__all__ = ["opencv_proposal_text", "opencv_replacements"]
