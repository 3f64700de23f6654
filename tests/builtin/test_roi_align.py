import pytest
import torch

from pyfrcnn.errors import NetError
from pyfrcnn.proto import pyfrcnn_pb2 as pb

from .tiny_nets import gradcheck_net, layer, tiny_net


def align_net(features, rois, params="pooled_h: 2 pooled_w: 3 spatial_scale: 1"):
    text = layer("ROIAlign", ["features", "rois"], ["pool"], f"roi_align_param {{ {params} }}")
    return tiny_net(text, features=features, rois=rois)


def test_schema():
    # Outside Caffe's ids and its forks'; defaults are torchvision's roi_align's.
    assert pb.LayerParameter.DESCRIPTOR.fields_by_name["roi_align_param"].number == 9000001
    p = pb.ROIAlignParameter()
    assert (p.pooled_h, p.pooled_w, p.spatial_scale, p.sampling_ratio, p.aligned) == (0, 0, 1, 0, False)


def test_shapes():
    assert align_net((1, 1024, None, None), (None, 5)).blob_shapes["pool"] == (None, 1024, 2, 3)
    assert align_net((2, 3, 8, 8), (7, 5)).blob_shapes["pool"] == (7, 3, 2, 3)


def test_known_values(device):
    # On a ramp v = 10 y + x bilinear sampling is exact: each bin is the ramp
    # at its centre. RoI (1, 1)-(5, 3) at scale 0.5 with aligned is the map's
    # (0, 0)-(2, 1): 1x2 bins of 1 x 1 cells centred at x 0.5, 1.5 and y 0.5.
    ramp = (10 * torch.arange(4.0)[:, None] + torch.arange(6.0)).view(1, 1, 4, 6)
    net = align_net((1, 1, 4, 6), (None, 5),
                    "pooled_h: 1 pooled_w: 2 spatial_scale: 0.5 sampling_ratio: 2 aligned: true")
    rois = torch.tensor([[0, 1.0, 1.0, 5.0, 3.0]])
    pool = net.forward(features=ramp.to(device), rois=rois.to(device))["pool"].cpu()
    torch.testing.assert_close(pool, torch.tensor([[[[5.5, 6.5]]]]))


@pytest.mark.parametrize("features, rois, params, message", [
    ((1, 3, 8, 8), (4, 5), "pooled_h: 0 pooled_w: 7", "pooled_h and pooled_w must be positive, got 0 x 7"),
    ((1, 3, 8, 8), (4, 5), "pooled_h: 7 pooled_w: 7 spatial_scale: 0",
     "spatial_scale must be positive, got 0"),
    ((1, 3, 8, 8), (4, 4), "pooled_h: 7 pooled_w: 7", "bottom 1 'rois' must be R x 5 rois"),
    ((3, 8, 8), (4, 5), "pooled_h: 7 pooled_w: 7", "bottom 0 'features' must be N x C x H x W, got 3x8x8"),
])
def test_build_errors(features, rois, params, message):
    with pytest.raises(NetError, match="layer 'layer' \\(ROIAlign\\)") as e:
        align_net(features, rois, params)
    assert message in str(e.value)


def test_forward_errors_name_the_layer():
    net = align_net((1, 1, 4, 6), (None, None))
    with pytest.raises(NetError, match="layer 'layer' \\(ROIAlign\\).*batch index 1"):
        net.forward(features=torch.zeros(1, 1, 4, 6), rois=torch.tensor([[1.0, 0, 0, 2, 2]]))


@pytest.mark.parametrize("seed", [0, 1])
def test_gradcheck(seed):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    rois = torch.tensor([[0, 0, 0, 3, 3], [1, 0.5, 1.2, 3.7, 2.9]], dtype=torch.float64)
    net = align_net((2, 1, 4, 4), (None, 5), "pooled_h: 2 pooled_w: 2 aligned: true")
    assert gradcheck_net(net, ["pool"], {"features": features, "rois": rois}, ["features"])
