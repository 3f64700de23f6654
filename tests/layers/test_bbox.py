import math

import pytest
import torch

from pyfrcnn_layers.bbox import (BBOX_XFORM_CLIP, bbox_coverage, bbox_overlaps, bbox_transform,
                         bbox_transform_inv, check_boxes, clip_boxes)
from pyfrcnn.errors import NetError

from .rpn_helpers import intersection, iou, transform


def random_boxes(n, generator, size=200.0, integer=True):
    xy = torch.rand(n, 2, generator=generator) * size
    wh = torch.rand(n, 2, generator=generator) * size / 2
    boxes = torch.cat([xy, xy + wh], dim=1)
    return boxes.round() if integer else boxes


def test_transform_of_hand_worked_boxes(device):
    # ex: 10 x 20 box centred at (5, 10); gt: 20 x 10 box centred at (15, 5)
    ex = torch.tensor([[0.0, 0.0, 9.0, 19.0]], device=device)
    gt = torch.tensor([[5.0, 0.0, 24.0, 9.0]], device=device)
    expected = [[(15 - 5) / 10, (5 - 10) / 20, math.log(20 / 10), math.log(10 / 20)]]
    assert torch.allclose(bbox_transform(ex, gt).cpu(), torch.tensor(expected))
    # a box onto itself: all zero
    assert bbox_transform(gt, gt).abs().max() == 0


def test_transform_matches_loop(device):
    g = torch.Generator().manual_seed(0)
    ex, gt = random_boxes(50, g), random_boxes(50, g)
    expected = torch.tensor([transform(e, t) for e, t in zip(ex.tolist(), gt.tolist())])
    assert torch.allclose(bbox_transform(ex.to(device), gt.to(device)).cpu(), expected.float(), atol=1e-5)


def test_inverse_round_trip_keeps_py_faster_rcnns_plus_one(device):
    g = torch.Generator().manual_seed(1)
    ex, gt = random_boxes(40, g).to(device), random_boxes(40, g).to(device)
    decoded = bbox_transform_inv(ex, bbox_transform(ex, gt))
    # py-faster-rcnn decodes x2 as centre + w/2, one pixel right of the encoded gt's x2
    assert torch.allclose(decoded, gt + torch.tensor([0.0, 0.0, 1.0, 1.0], device=device), atol=1e-3)


def test_inverse_decodes_every_class_group(device):
    boxes = torch.tensor([[0.0, 0.0, 9.0, 19.0]], device=device)
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.1, -0.2, math.log(2), 0.0]], device=device)
    out = bbox_transform_inv(boxes, deltas).cpu()
    # centre (5, 10), w 10, h 20; group 2: centre (6, 6), w 20, h 20
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 10.0, 20.0, -4.0, -4.0, 16.0, 16.0]]))
    assert bbox_transform_inv(boxes[:0], deltas[:0]).shape == (0, 8)


def test_inverse_clamps_huge_size_deltas(device):
    boxes = torch.tensor([[0.0, 0.0, 15.0, 15.0]], device=device)
    deltas = torch.tensor([[0.0, 0.0, 1e4, 100.0]], device=device)
    out = bbox_transform_inv(boxes, deltas)
    assert torch.isfinite(out).all()
    width = (out[0, 2] - out[0, 0]).item()
    assert 16 * math.exp(BBOX_XFORM_CLIP) == pytest.approx(1000.0)
    assert width == pytest.approx(1000.0, rel=1e-5)
    assert (out[0, 3] - out[0, 1]).item() == pytest.approx(1000.0, rel=1e-5)


def test_clip_matches_loop(device):
    g = torch.Generator().manual_seed(2)
    boxes = torch.randn(30, 8, generator=g) * 300
    clipped = clip_boxes(boxes.to(device), (100, 150)).cpu()
    for row, out in zip(boxes.tolist(), clipped.tolist()):
        for j, v in enumerate(row):
            limit = 149 if j % 2 == 0 else 99
            assert out[j] == max(min(v, limit), 0)


def test_clip_accepts_tensor_image_shape(device):
    boxes = torch.tensor([[-5.0, -5.0, 500.0, 500.0]], device=device)
    im_info = torch.tensor([[100.0, 150.0, 1.0]], device=device)
    assert clip_boxes(boxes, (im_info[0, 0], im_info[0, 1])).tolist() == [[0, 0, 149, 99]]


def test_overlaps_use_inclusive_widths():
    # two 10 x 10 boxes sharing a 5 x 10 strip: IoU 50 / 150 (torchvision's no-+1 IoU: 45 / 155)
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    b = torch.tensor([[5.0, 0.0, 14.0, 9.0]])
    assert bbox_overlaps(a, b).item() == pytest.approx(50 / 150)
    # touching at one pixel column still overlaps (x2 of a == x1 of c)
    c = torch.tensor([[9.0, 0.0, 18.0, 9.0]])
    assert bbox_overlaps(a, c).item() == pytest.approx(10 / 190)
    d = torch.tensor([[10.0, 0.0, 18.0, 9.0]])
    assert bbox_overlaps(a, d).item() == 0


def test_overlaps_match_loop(device):
    g = torch.Generator().manual_seed(3)
    a, b = random_boxes(40, g), random_boxes(7, g)
    out = bbox_overlaps(a.to(device), b.to(device)).cpu()
    assert out.shape == (40, 7)
    expected = torch.tensor([[iou(x, y) for y in b.tolist()] for x in a.tolist()])
    assert torch.equal(out, expected.float())
    assert bbox_overlaps(a[:0], b).shape == (0, 7) and bbox_overlaps(a, b[:0]).shape == (40, 0)


def test_coverage_is_intersection_over_box_area(device):
    g = torch.Generator().manual_seed(4)
    boxes, regions = random_boxes(20, g), random_boxes(3, g)
    out = bbox_coverage(boxes.to(device), regions.to(device)).cpu()
    for i, box in enumerate(boxes.tolist()):
        for j, region in enumerate(regions.tolist()):
            area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
            assert out[i, j].item() == pytest.approx(intersection(box, region) / area)


def test_check_boxes_names_the_bad_row():
    class Owner:
        def error(self, message):
            return NetError(message)

    good = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])  # a one-pixel box is fine
    check_boxes(Owner(), "gt_boxes", good)
    with pytest.raises(NetError, match=r"gt_boxes row 1 .*\(5, 2, 3, 4\)"):
        check_boxes(Owner(), "gt_boxes", torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 2.0, 3.0, 4.0]]))
    with pytest.raises(NetError, match="row 0"):
        check_boxes(Owner(), "gt_boxes", torch.tensor([[0.0, float("nan"), 3.0, 4.0]]))
