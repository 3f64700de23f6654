import pytest
import torch

from pyfrcnn_layers.anchors import AnchorGrid, generate_anchors, shift_anchors

# py-faster-rcnn's generate_anchors() with its defaults (base 16, ratios 0.5 / 1 / 2,
# scales 8 / 16 / 32), as printed by lib/rpn/generate_anchors.py.
PY_FASTER_RCNN_ANCHORS = [
    [-84, -40, 99, 55],
    [-176, -88, 191, 103],
    [-360, -184, 375, 199],
    [-56, -56, 71, 71],
    [-120, -120, 135, 135],
    [-248, -248, 263, 263],
    [-36, -80, 51, 95],
    [-80, -168, 95, 183],
    [-168, -344, 183, 359],
]


def test_default_anchors_are_py_faster_rcnns_table():
    anchors = generate_anchors()
    assert anchors.dtype == torch.float32
    assert anchors.tolist() == PY_FASTER_RCNN_ANCHORS


def test_anchors_keep_area_and_aspect():
    # one ratio, one scale: a square 16 * 4 = 64 px box centred on (7.5, 7.5)
    assert generate_anchors(ratios=(1,), scales=(4,)).tolist() == [[-24, -24, 39, 39]]
    anchors = generate_anchors(base_size=16, ratios=(0.5, 1, 2), scales=(1,))
    widths = anchors[:, 2] - anchors[:, 0] + 1
    heights = anchors[:, 3] - anchors[:, 1] + 1
    # round(sqrt(256 / r)) and round(w * r): (23, 12), (16, 16), (11, 22); 11.5 rounds to even
    assert widths.tolist() == [23, 16, 11]
    assert heights.tolist() == [12, 16, 22]


def test_shifted_anchors_follow_cells_row_major_anchor_fastest(device):
    base = generate_anchors(device=device)
    height, width, stride = 3, 5, 16
    shifted = shift_anchors(base, height, width, stride)
    assert shifted.shape == (height * width * 9, 4)
    assert shifted.device.type == device.type
    row = 0
    for h in range(height):
        for w in range(width):
            for a in range(9):
                x1, y1, x2, y2 = PY_FASTER_RCNN_ANCHORS[a]
                expected = [x1 + w * stride, y1 + h * stride, x2 + w * stride, y2 + h * stride]
                assert shifted[row].tolist() == expected, (h, w, a)
                row += 1


@pytest.mark.parametrize("height, width", [(0, 4), (4, 0)])
def test_empty_map_gives_no_anchors(height, width):
    assert shift_anchors(generate_anchors(), height, width, 16).shape == (0, 4)


def test_anchor_grid_cache_gives_the_same_bits_and_stays_small(device):
    grid = AnchorGrid(16, (0.5, 1, 2), (8, 16, 32))
    first = grid.shifted(5, 7, device)
    assert torch.equal(first, shift_anchors(grid.base.to(device), 5, 7, 16))
    assert grid.shifted(5, 7, device) is first  # reused, not recomputed
    for width in range(8, 8 + AnchorGrid.CACHE_SIZE):
        grid.shifted(5, width, device)
    assert len(grid._cache) == AnchorGrid.CACHE_SIZE
    assert grid.shifted(5, 7, device) is not first  # the oldest went first
    assert torch.equal(grid.shifted(5, 7, device), first)
