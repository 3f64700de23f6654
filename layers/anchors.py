"""Reference anchors and their shifts over a feature map.

Boxes are (x1, y1, x2, y2) with inclusive corners (width x2 - x1 + 1), as in
layers/bbox.py. The reference anchors are centred on the first cell of the
map, box (0, 0, base_size - 1, base_size - 1): for each aspect ratio r
(height / width) the base area is kept, w = round(sqrt(area / r)),
h = round(w * r) (round half to even, as numpy), and each (w, h) is then
multiplied by every scale. Rows are ordered ratio-major, scale fastest, so the
defaults give py-faster-rcnn's table, first row (-84, -40, 99, 55) and last
row (-168, -344, 183, 359).

`shift_anchors` lays the A reference anchors on every cell of an H x W map
with stride feat_stride: K*A x 4 with K = H*W cells in row-major order and the
anchor index fastest -- the order of the (1, 2A, H, W) score and
(1, 4A, H, W) delta blobs after a permute to (1, H, W, .).
"""

import torch


def generate_anchors(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32),
                     dtype=torch.float32, device=None):
    """A x 4 reference anchors, A = len(ratios) * len(scales)."""
    # float64 so that the rounding of the widths is numpy's, whatever dtype is asked for
    ratios = torch.as_tensor(ratios, dtype=torch.float64).reshape(-1)
    scales = torch.as_tensor(scales, dtype=torch.float64).reshape(-1)
    area = float(base_size) * float(base_size)
    centre = 0.5 * (base_size - 1)
    ws = torch.round(torch.sqrt(area / ratios))
    hs = torch.round(ws * ratios)
    ws = (ws[:, None] * scales[None, :]).reshape(-1)
    hs = (hs[:, None] * scales[None, :]).reshape(-1)
    anchors = torch.stack([centre - 0.5 * (ws - 1), centre - 0.5 * (hs - 1),
                           centre + 0.5 * (ws - 1), centre + 0.5 * (hs - 1)], dim=1)
    return anchors.to(dtype=dtype, device=device)


def shift_anchors(anchors, height, width, feat_stride):
    """The A x 4 anchors shifted over an height x width map: (height*width*A) x 4,
    cells row-major, anchor index fastest."""
    shift_x = torch.arange(width, device=anchors.device, dtype=anchors.dtype) * feat_stride
    shift_y = torch.arange(height, device=anchors.device, dtype=anchors.dtype) * feat_stride
    shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=1)
    return (shifts[:, None, :] + anchors[None, :, :]).reshape(-1, 4)


def anchor_grid(layer, feat_stride, ratios, scales):
    """The AnchorGrid of a layer's parsed param_str; bad settings are errors naming the layer."""
    if feat_stride <= 0:
        raise layer.error(f"param_str needs 'feat_stride', a positive integer (got {feat_stride})")
    for name, values in (("ratios", ratios), ("scales", scales)):
        if not values or any(v <= 0 for v in values):
            raise layer.error(f"param_str '{name}' must be positive numbers, got {list(values)}")
    return AnchorGrid(feat_stride, ratios, scales)


class AnchorGrid:
    """The reference anchors of a layer and a cache of their shifts per map size
    and device (the shifted set is the same every forward for a given map).

    The cache buys one arange/meshgrid/stack per forward (several small ops
    and, on a GPU, a copy of the base anchors) and changes no bit: a cached
    set is the very tensor shift_anchors made for that (H, W, device), and
    callers only read it."""

    # Map sizes kept: images of one scale and several aspect ratios give a few
    # dozen (an entry of VGG16 at 600x1000 is 38*63*9 x 4 floats, 345 KB).
    CACHE_SIZE = 32

    def __init__(self, feat_stride, ratios, scales):
        self.feat_stride = feat_stride
        self.base = generate_anchors(ratios=ratios, scales=scales)
        self._bases = {}  # device -> the base anchors there (one copy per device, ever)
        self._cache = {}

    @property
    def num_anchors(self):
        return self.base.shape[0]

    def shifted(self, height, width, device):
        device = torch.device(device)
        key = (int(height), int(width), device)
        if key not in self._cache:
            if len(self._cache) >= self.CACHE_SIZE:  # images of many sizes: drop the oldest
                del self._cache[next(iter(self._cache))]
            if device not in self._bases:
                self._bases[device] = self.base.to(device)
            self._cache[key] = shift_anchors(self._bases[device], height, width, self.feat_stride)
        return self._cache[key]


__all__ = ["generate_anchors", "shift_anchors", "anchor_grid", "AnchorGrid"]
