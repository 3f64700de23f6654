"""nms against a slow, obvious greedy NMS (py-faster-rcnn's semantics)."""

import importlib

import numpy as np
import pytest
import torch

from pyfrcnn.ops import nms

nms_module = importlib.import_module("pyfrcnn.ops.nms")  # hidden by the function


def reference_nms(boxes, scores, threshold):
    """Greedy NMS one pair at a time, in the boxes' floating type."""
    real = np.float32 if boxes.dtype == torch.float32 else np.float64
    data = boxes.numpy().astype(real)
    # Descending score; equal scores keep their input order.
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    suppressed = set()
    keep = []
    for position, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        for j in order[position + 1:]:
            if j not in suppressed and iou(data[i], data[j]) > real(threshold):
                suppressed.add(j)
    return torch.tensor(keep, dtype=torch.int64)


def iou(a, b):
    """Inclusive-pixel IoU: widths are x2 - x1 + 1."""
    zero = a.dtype.type(0)
    width = max(min(a[2], b[2]) - max(a[0], b[0]) + 1, zero)
    height = max(min(a[3], b[3]) - max(a[1], b[1]) + 1, zero)
    inter = width * height
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def clustered_boxes(generator, num, dtype=torch.float32, clusters=6, jitter=4.0):
    """Boxes jittered around a few objects, so that many overlap; a few are
    degenerate (x2 < x1 - 1) and a few are exact duplicates."""
    centres = torch.rand(clusters, 2, generator=generator) * 80
    sizes = torch.rand(clusters, 2, generator=generator) * 40 + 4
    pick = torch.randint(0, clusters, (num,), generator=generator)
    corner = centres[pick] + torch.randn(num, 2, generator=generator) * jitter
    size = sizes[pick] * torch.exp(torch.randn(num, 2, generator=generator) * 0.2)
    boxes = torch.cat([corner, corner + size], 1)
    degenerate = torch.rand(num, generator=generator) < 0.05
    boxes[degenerate, 2] = boxes[degenerate, 0] - 3
    if num > 4:
        boxes[num // 2] = boxes[1]
    return boxes.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num", [1, 2, 63, 64, 65, 130])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_matches_reference(num, threshold, dtype):
    generator = torch.Generator().manual_seed(num)
    boxes = clustered_boxes(generator, num, dtype)
    scores = torch.rand(num, generator=generator)
    assert torch.equal(nms(boxes, scores, threshold), reference_nms(boxes, scores, threshold))


@pytest.mark.parametrize("threshold", [-0.5, 0.0, 1.0, 1.5])
def test_extreme_thresholds(threshold):
    generator = torch.Generator().manual_seed(3)
    boxes = clustered_boxes(generator, 70)
    scores = torch.rand(70, generator=generator)
    assert torch.equal(nms(boxes, scores, threshold), reference_nms(boxes, scores, threshold))


def test_huge_and_infinite_boxes():
    # Widths or areas that overflow float32, and infinite corners: such boxes
    # never suppress, and must not upset the pruning of the others.
    generator = torch.Generator().manual_seed(9)
    boxes = clustered_boxes(generator, 40)
    boxes[3] = torch.tensor([-3e38, 0, 3e38, 10])
    boxes[5] = torch.tensor([0, 0, 1e20, 1e20])
    boxes[7] = torch.tensor([0, 0, 1e20, 1e20])
    boxes[9] = torch.tensor([-float("inf"), 0, 10, 10])
    boxes[11] = torch.tensor([0, 0, float("inf"), float("inf")])
    scores = torch.rand(40, generator=generator)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = reference_nms(boxes, scores, 0.5)
    assert torch.equal(nms(boxes, scores, 0.5), expected)
    assert np.array_equal(nms_module.suppression_mask(boxes, 0.5), nms_module._dense_mask(boxes, 0.5))


def test_integer_boxes_and_exact_iou_are_not_suppressed():
    # IoU exactly 0.5 (inclusive pixels: 10×10 and 10×5 inside it) stays;
    # strictly greater goes.
    boxes = torch.tensor([[0, 0, 9, 9], [0, 0, 9, 4], [0, 0, 9, 5], [20, 20, 29, 29.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert torch.equal(nms(boxes, scores, 0.5), torch.tensor([0, 1, 3]))
    assert torch.equal(reference_nms(boxes, scores, 0.5), torch.tensor([0, 1, 3]))


def test_equal_scores_keep_input_order(device):
    boxes = torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60], [1, 1, 10, 10], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.5, 0.5, 0.9, 0.5])
    keep = nms(boxes.to(device), scores.to(device), 0.5)
    assert torch.equal(keep.cpu(), torch.tensor([2, 1]))


def test_on_every_device(device):
    generator = torch.Generator().manual_seed(11)
    boxes = clustered_boxes(generator, 100)
    scores = torch.rand(100, generator=generator)
    keep = nms(boxes.to(device), scores.to(device), 0.6)
    assert keep.device.type == device.type and keep.dtype == torch.int64
    assert torch.equal(keep.cpu(), reference_nms(boxes, scores, 0.6))


def test_empty(device):
    keep = nms(torch.zeros(0, 4, device=device), torch.zeros(0, device=device), 0.5)
    assert keep.dtype == torch.int64 and keep.shape == (0,) and keep.device.type == device.type


@pytest.mark.parametrize("threshold", [0.05, 0.5, 0.7, 0.95])
def test_pruned_mask_equals_every_pair(threshold):
    # Many boxes of many widths, far and near: the pruned candidate search
    # must find exactly the pairs the full comparison finds.
    generator = torch.Generator().manual_seed(int(threshold * 100))
    num = 900
    centre = torch.rand(num, 2, generator=generator) * 1000
    size = torch.exp(torch.rand(num, 2, generator=generator) * 5 + 1)
    near = clustered_boxes(generator, 300, jitter=1.0)
    boxes = torch.cat([torch.cat([centre - size / 2, centre + size / 2], 1), near])
    pruned = nms_module.suppression_mask(boxes, threshold)
    assert np.array_equal(pruned, nms_module._dense_mask(boxes, threshold))
    assert pruned.any()


def test_greedy_sweep_by_hand():
    # 0 suppresses 1, 1 would suppress 2 but is gone, 2 suppresses 65.
    mask = np.zeros((66, 2), dtype=np.uint64)
    mask[0, 0] = 1 << 1
    mask[1, 0] = 1 << 2
    mask[2, 1] = 1 << 1
    keep = nms_module.greedy_sweep(mask)
    assert 1 not in keep and 2 in keep and 65 not in keep and len(keep) == 64


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="n×4"):
        nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"scores must have shape \(3,\)"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(TypeError, match="float32 or float64"):
        nms(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3), 0.5)


def vectorized_greedy_nms(boxes, scores, threshold):
    """py_cpu_nms's loop (one kept box against every box still in play), in the boxes'
    dtype, with the stable descending order: fast enough for thousands of boxes."""
    data = boxes.numpy()
    real = data.dtype.type
    one, zero = real(1), real(0)
    x1, y1, x2, y2 = data.T
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    order = torch.sort(scores, descending=True, stable=True)[1].numpy()
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one, zero)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one, zero)
        inter = w * h
        order = rest[~(inter / (areas[i] + areas[rest] - inter) > real(threshold))]
    return torch.tensor(keep, dtype=torch.int64)


def proposal_like_boxes(generator, num, dtype=torch.float32):
    """Anchors of 3 sizes x 3 ratios on a 16-pixel grid, jittered, on a 600 x 1000
    image: dense overlaps, as the RPN's and the per-class test-time NMS see."""
    cx = torch.rand(num, generator=generator) * 1000
    cy = torch.rand(num, generator=generator) * 600
    size = torch.tensor([128.0, 256.0, 512.0])[torch.randint(0, 3, (num,), generator=generator)]
    ratio = torch.tensor([0.5, 1.0, 2.0])[torch.randint(0, 3, (num,), generator=generator)]
    w = size / ratio.sqrt() * torch.exp(torch.randn(num, generator=generator) * 0.1)
    h = size * ratio.sqrt() * torch.exp(torch.randn(num, generator=generator) * 0.1)
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2 - 1, cy + h / 2 - 1], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, 999)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, 599)
    return boxes.to(dtype)


def scattered_boxes(generator, num, dtype=torch.float32):
    """Boxes of widths 20..400 anywhere on the image: few overlap, most are kept."""
    centre = torch.rand(num, 2, generator=generator) * torch.tensor([1000.0, 600.0])
    size = torch.exp(torch.rand(num, 2, generator=generator) * 3 + 3)
    return torch.cat([centre - size / 2, centre + size / 2], 1).to(dtype)


@pytest.mark.parametrize("dense_kept", [0, 128, 10 ** 9], ids=["windows", "shipped", "dense"])
@pytest.mark.parametrize("mask_threshold", [0.6, 1.1], ids=["shipped", "always lazy"])
@pytest.mark.parametrize("threshold", [0.3, 0.4, 0.5, 0.6, 0.7])
@pytest.mark.parametrize("layout", [proposal_like_boxes, scattered_boxes])
def test_thousands_of_boxes_match_the_greedy_loop(layout, threshold, mask_threshold, dense_kept,
                                                  monkeypatch):
    # Enough boxes to keep more than LAZY_KEPT (the mask takes over) or few (all lazy);
    # from MASK_THRESHOLD on the whole mask comes first, so lazy rows are tested there too.
    monkeypatch.setattr(nms_module, "MASK_THRESHOLD", mask_threshold)
    monkeypatch.setattr(nms_module, "DENSE_KEPT", dense_kept)
    if dense_kept == 0:
        monkeypatch.setattr(nms_module, "DENSE_ALIVE", 0)
    generator = torch.Generator().manual_seed(int(threshold * 10))
    boxes = layout(generator, 2500)
    scores = torch.rand(2500, generator=generator)
    expected = vectorized_greedy_nms(boxes, scores, threshold)
    assert torch.equal(nms(boxes, scores, threshold), expected)


@pytest.mark.parametrize("dense_kept", [0, 1, 40, 10 ** 9])
@pytest.mark.parametrize("lazy_kept", [0, 1, 70, 10 ** 9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_hand_over_from_lazy_rows_to_the_mask_keeps_the_same(monkeypatch, lazy_kept,
                                                                    dense_kept, dtype):
    # dense rows (every alive box) -> windowed rows -> the mask of the rest
    monkeypatch.setattr(nms_module, "DENSE_KEPT", dense_kept)
    monkeypatch.setattr(nms_module, "DENSE_ALIVE", 0 if dense_kept < 10 ** 9 else 10 ** 9)
    monkeypatch.setattr(nms_module, "LAZY_KEPT", lazy_kept)
    generator = torch.Generator().manual_seed(lazy_kept % 97)
    boxes = torch.cat([clustered_boxes(generator, 100, dtype), scattered_boxes(generator, 100, dtype)])
    scores = torch.rand(200, generator=generator)
    for threshold in (0.3, 0.7):
        assert torch.equal(nms(boxes, scores, threshold), reference_nms(boxes, scores, threshold))


def test_coordinates_too_large_for_the_window_key_fall_back_to_the_mask():
    generator = torch.Generator().manual_seed(5)
    boxes = clustered_boxes(generator, 80, torch.float64)
    boxes[7] = torch.tensor([-8e307, 0, 8e307, 10], dtype=torch.float64)  # a finite width
    scores = torch.rand(80, generator=generator)
    data = boxes.numpy()
    width = data[:, 2] - data[:, 0] + 1
    with pytest.raises(OverflowError):
        nms_module._WindowIndex(data[:, 0], width, width > 0, 0.5)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = reference_nms(boxes, scores, 0.5)
    assert torch.equal(nms(boxes, scores, 0.5), expected)
