import math

import pytest
import torch

from pyfrcnn_layers.bbox import BBOX_XFORM_CLIP
from pyfrcnn_layers.proposal import ProposalLayer
from pyfrcnn.errors import NetError
from pyfrcnn.net import Net

from .rpn_helpers import build_layer, greedy_nms
from .test_anchors import PY_FASTER_RCNN_ANCHORS

HEIGHT, WIDTH, STRIDE, A = 12, 15, 16, 9
IM_INFO = [[190.0, 236.0, 2.0]]  # min size 16 * 2 = 32 pixels
SMALL = {"TRAIN": {"RPN_PRE_NMS_TOP_N": 300, "RPN_POST_NMS_TOP_N": 60},
         "TEST": {"RPN_PRE_NMS_TOP_N": 200, "RPN_POST_NMS_TOP_N": 25, "RPN_NMS_THRESH": 0.5}}
VGG16_TEST = "/work/shared/reference/py-faster-rcnn/vgg16_end2end_test.prototxt"


def rpn_outputs(seed, height=HEIGHT, width=WIDTH):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 2, A, height, width, generator=g) * 2
    prob = torch.softmax(logits, dim=1).reshape(1, 2 * A, height, width)
    deltas = torch.randn(1, 4 * A, height, width, generator=g) * 0.3
    return prob, deltas


def reference(prob, deltas, im_info, pre, post, threshold, min_size):
    """Per-anchor loop: decode, clip, filter, sort, top-N, greedy NMS, top-N."""
    im_h, im_w, scale = im_info[0]
    height, width = prob.shape[2], prob.shape[3]
    candidates = []
    for h in range(height):
        for w in range(width):
            for a in range(A):
                x1, y1, x2, y2 = PY_FASTER_RCNN_ANCHORS[a]
                x1, x2, y1, y2 = x1 + w * STRIDE, x2 + w * STRIDE, y1 + h * STRIDE, y2 + h * STRIDE
                dx, dy, dw, dh = deltas[0, 4 * a:4 * a + 4, h, w].tolist()
                aw, ah = x2 - x1 + 1.0, y2 - y1 + 1.0
                cx, cy = x1 + 0.5 * aw + dx * aw, y1 + 0.5 * ah + dy * ah
                pw, ph = math.exp(min(dw, BBOX_XFORM_CLIP)) * aw, math.exp(min(dh, BBOX_XFORM_CLIP)) * ah
                box = [cx - 0.5 * pw, cy - 0.5 * ph, cx + 0.5 * pw, cy + 0.5 * ph]
                box = [max(min(v, (im_w if i % 2 == 0 else im_h) - 1), 0) for i, v in enumerate(box)]
                if box[2] - box[0] + 1 >= min_size * scale and box[3] - box[1] + 1 >= min_size * scale:
                    candidates.append((prob[0, A + a, h, w].item(), box))
    candidates.sort(key=lambda c: -c[0])
    if pre > 0:
        candidates = candidates[:pre]
    keep = greedy_nms([box for _, box in candidates], threshold)
    if post > 0:
        keep = keep[:post]
    return [candidates[i][1] for i in keep], [candidates[i][0] for i in keep]


def make_layer(phase="TRAIN", detection=SMALL, tops=2, param_str="'feat_stride': 16"):
    shapes = [(1, 2 * A, None, None), (1, 4 * A, None, None), (1, 3)]
    return build_layer(ProposalLayer, param_str, shapes, tops, phase=phase, detection=detection)


@pytest.mark.parametrize("phase, pre, post, threshold", [("TRAIN", 300, 60, 0.7), ("TEST", 200, 25, 0.5)])
def test_proposals_match_the_loop(device, phase, pre, post, threshold):
    prob, deltas = rpn_outputs(0)
    layer, tops = make_layer(phase)
    assert tops == [(None, 5), (None, 1)]
    rois, scores = layer(prob.to(device), deltas.to(device), torch.tensor(IM_INFO, device=device))
    boxes, expected_scores = reference(prob, deltas, IM_INFO, pre, post, threshold, 16)
    assert rois.shape == (post, 5) and scores.shape == (post, 1)
    assert rois.dtype == scores.dtype == torch.float32 and rois.device.type == device.type
    assert (rois[:, 0] == 0).all()
    assert torch.allclose(rois[:, 1:].cpu(), torch.tensor(boxes), atol=1e-3)
    assert scores[:, 0].cpu().tolist() == pytest.approx(expected_scores, abs=1e-7)


def test_phase_is_read_at_forward():
    prob, deltas = rpn_outputs(1)
    layer, _ = make_layer("TRAIN")
    assert layer(prob, deltas, torch.tensor(IM_INFO))[0].shape[0] == 60
    layer.phase = "TEST"
    assert layer(prob, deltas, torch.tensor(IM_INFO))[0].shape[0] == 25


def test_default_settings_bound_the_proposals():
    prob, deltas = rpn_outputs(2, 14, 18)
    im_info = torch.tensor([[224.0, 288.0, 1.0]])
    for phase, post in (("TRAIN", 2000), ("TEST", 300)):
        layer, _ = make_layer(phase, detection={}, tops=1)
        (rois,) = layer(prob, deltas, im_info)
        assert 0 < rois.shape[0] <= post
        widths, heights = rois[:, 3] - rois[:, 1] + 1, rois[:, 4] - rois[:, 2] + 1
        assert (widths >= 16).all() and (heights >= 16).all()
        assert rois[:, 1:].min() >= 0 and rois[:, [1, 3]].max() <= 287 and rois[:, [2, 4]].max() <= 223
        if phase == "TRAIN":
            assert rois.shape[0] > 300  # so that TEST's cut below is the post-NMS top N
    assert make_layer("TEST", detection={})[0](prob, deltas, im_info)[0].shape[0] == 300


def test_scores_come_from_the_foreground_channels():
    prob, deltas = rpn_outputs(3)
    layer, _ = make_layer()
    rois, scores = layer(prob, deltas, torch.tensor(IM_INFO))
    swapped = prob.clone()
    swapped[:, :A] = torch.rand(1, A, HEIGHT, WIDTH)  # background channels: must not matter
    rois2, scores2 = layer(swapped, deltas, torch.tensor(IM_INFO))
    assert torch.equal(rois, rois2) and torch.equal(scores, scores2)
    assert (scores[1:] <= scores[:-1]).all()


def test_huge_deltas_stay_finite_and_tiny_boxes_are_dropped():
    prob, deltas = rpn_outputs(4)
    layer, _ = make_layer()
    rois, _ = layer(prob, deltas * 1e4, torch.tensor(IM_INFO))
    assert torch.isfinite(rois).all()
    # every box shrunk below the minimum size: no proposal at all
    tiny = torch.zeros_like(deltas)
    tiny[:, 2::4] = tiny[:, 3::4] = -10.0
    rois, scores = layer(prob, tiny, torch.tensor(IM_INFO))
    assert rois.shape == (0, 5) and scores.shape == (0, 1)


@pytest.mark.parametrize("shapes, message", [
    ([(1, 16, 5, 5), (1, 36, 5, 5), (1, 3)], r"rpn_cls_prob_reshape\) must be 1 x 18"),
    ([(1, 18, 5, 5), (1, 18, 5, 5), (1, 3)], r"rpn_bbox_pred\) must be 1 x 36"),
    ([(1, 18, 5, 5), (1, 36, 5, 6), (1, 3)], "H x W of rpn_cls_prob_reshape"),
    ([(1, 18, 5, 5), (1, 36, 5, 5), (1, 4)], r"im_info\) must be 1 x 3"),
])
def test_bad_bottom_shapes_are_errors_at_build(shapes, message):
    with pytest.raises(NetError, match=message):
        build_layer(ProposalLayer, "'feat_stride': 16", shapes, 1)


def test_unknown_setting_is_an_error():
    with pytest.raises(NetError, match="unknown setting 'allowed_border'"):
        make_layer(param_str="'feat_stride': 16, 'allowed_border': 0")


@pytest.mark.slow
def test_py_faster_rcnn_vgg16_test_net_builds_and_runs():
    net = Net(VGG16_TEST, phase="TEST", input_shapes={"data": (1, 3, 224, 224), "im_info": (1, 3)})
    assert net.blob_shapes["rois"] == (None, 5)
    assert net.blob_shapes["cls_prob"] == (None, 21) and net.blob_shapes["bbox_pred"] == (None, 84)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = net.forward(data=torch.randn(1, 3, 224, 224, generator=g) * 50,
                          im_info=torch.tensor([[224.0, 224.0, 1.0]]))
    rois = net.blobs["rois"]
    assert 0 < rois.shape[0] <= 300 and rois.shape[1] == 5
    assert out["cls_prob"].shape == (rois.shape[0], 21) and out["bbox_pred"].shape == (rois.shape[0], 84)
    assert torch.allclose(out["cls_prob"].sum(dim=1), torch.ones(rois.shape[0]), atol=1e-5)


def test_py_faster_rcnn_vgg16_train_net_builds_with_our_layers():
    train = VGG16_TEST.replace("_test.prototxt", "_train.prototxt")
    net = Net(train, phase="TRAIN")
    shapes = net.blob_shapes
    assert shapes["rpn_labels"] == (1, 1, None, None) and shapes["rpn_bbox_targets"] == (1, 36, None, None)
    assert shapes["rpn_rois"] == (None, 5) and shapes["rois"] == (None, 5) and shapes["labels"] == (None,)
    assert shapes["bbox_targets"] == shapes["bbox_outside_weights"] == (None, 84)
