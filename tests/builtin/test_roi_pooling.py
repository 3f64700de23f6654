import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import gradcheck_net, layer, tiny_net


def roi_net(features, rois, params="pooled_h: 2 pooled_w: 3 spatial_scale: 1"):
    text = layer("ROIPooling", ["features", "rois"], ["pool"], f"roi_pooling_param {{ {params} }}")
    return tiny_net(text, features=features, rois=rois)


def ramp_features():
    """Two 1 x 4 x 6 maps: value h * 6 + w in image 0, its negative in image 1."""
    ramp = torch.arange(24.0).reshape(1, 4, 6)
    return torch.stack([ramp, -ramp])


def test_shapes():
    assert roi_net((1, 512, None, None), (None, 5)).blob_shapes["pool"] == (None, 512, 2, 3)
    assert roi_net((2, 3, 8, 8), (7, 5)).blob_shapes["pool"] == (7, 3, 2, 3)
    assert roi_net((2, 3, 8, 8), (7, None)).blob_shapes["pool"] == (7, 3, 2, 3)


def test_known_values(device):
    # Whole-map rois cut the 4 x 6 map into 2 x 2 blocks whose maximum is the
    # bottom-right pixel (2i + 1) * 6 + (2j + 1) in image 0 and the top-left
    # one, -(2i * 6 + 2j), in image 1. Rois are in image pixels: at scale 0.5,
    # (0, 0, 10, 6) is the whole map; (2, 0, 5, 1) at scale 1 is 2 rows x 4 columns.
    net = roi_net((2, 1, 4, 6), (None, 5), "pooled_h: 2 pooled_w: 3 spatial_scale: 0.5")
    rois = torch.tensor([[0, 0, 0, 10, 6], [1, 0, 0, 10, 6]], dtype=torch.float32)
    pool = net.forward(features=ramp_features().to(device), rois=rois.to(device))["pool"].cpu()
    assert pool.shape == (2, 1, 2, 3)
    for i in range(2):
        for j in range(3):
            assert pool[0, 0, i, j] == (2 * i + 1) * 6 + (2 * j + 1)
            assert pool[1, 0, i, j] == -(2 * i * 6 + 2 * j)
    narrow = roi_net((2, 1, 4, 6), (1, 5), "pooled_h: 1 pooled_w: 2")
    rois = torch.tensor([[0, 2, 0, 5, 1]], dtype=torch.float32)
    pool = narrow.forward(features=ramp_features().to(device), rois=rois.to(device))["pool"]
    assert pool.cpu().tolist() == [[[[9.0, 11.0]]]]


def test_gradient_reaches_the_features_only():
    features = ramp_features().requires_grad_()
    rois = torch.tensor([[0, 0, 0, 5, 3], [1, 2, 0, 5, 1]], dtype=torch.float32)
    net = roi_net((2, 1, 4, 6), (None, 5))
    net.forward(features=features, rois=rois)["pool"].sum().backward()
    # each of the 6 + 6 bins sends its gradient to its one maximal pixel
    assert features.grad.sum() == 12
    assert features.grad[0, 0, 1, 1] == 1 and features.grad[0, 0, 0, 0] == 0


@pytest.mark.parametrize("features, rois, params, message", [
    ((1, 3, 8, 8), (4, 5), "pooled_h: 0 pooled_w: 7", "pooled_h and pooled_w must be positive, got 0 x 7"),
    ((1, 3, 8, 8), (4, 5), "pooled_h: 7", "got 7 x 0"),
    ((1, 3, 8, 8), (4, 5), "pooled_h: 7 pooled_w: 7 spatial_scale: -1",
     "spatial_scale must be positive, got -1"),
    ((1, 3, 8, 8), (4, 4), "pooled_h: 7 pooled_w: 7",
     "bottom 1 'rois' must be R x 5 rois (batch index, x1, y1, x2, y2), got 4x4"),
    ((1, 3, 8, 8), (4, 5, 1), "pooled_h: 7 pooled_w: 7", "must be R x 5 rois"),
    ((3, 8, 8), (4, 5), "pooled_h: 7 pooled_w: 7", "bottom 0 'features' must be N x C x H x W, got 3x8x8"),
])
def test_build_errors(features, rois, params, message):
    with pytest.raises(NetError, match="layer 'layer' \\(ROIPooling\\)") as e:
        roi_net(features, rois, params)
    assert message in str(e.value)


def test_forward_errors_name_the_layer():
    net = roi_net((1, 1, 4, 6), (None, None))
    with pytest.raises(NetError, match="layer 'layer' \\(ROIPooling\\).*must be R x 5 rois"):
        net.forward(features=torch.zeros(1, 1, 4, 6), rois=torch.zeros(2, 4))
    with pytest.raises(NetError, match="layer 'layer' \\(ROIPooling\\).*batch index 1"):
        net.forward(features=torch.zeros(1, 1, 4, 6), rois=torch.tensor([[1.0, 0, 0, 2, 2]]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    # distinct values: no two pixels tie for a bin's maximum
    g = torch.Generator().manual_seed(seed)
    features = torch.randperm(2 * 1 * 4 * 4, generator=g).double().reshape(2, 1, 4, 4) / 10
    rois = torch.tensor([[0, 0, 0, 3, 3], [1, 1, 2, 3, 3]], dtype=torch.float64)
    net = roi_net((2, 1, 4, 4), (None, 5), "pooled_h: 2 pooled_w: 2 spatial_scale: 1")
    # fast mode (a random projection of the Jacobian): the op costs milliseconds a call
    assert gradcheck_net(net, ["pool"], {"features": features, "rois": rois}, ["features"], fast_mode=True)
