"""ResNet-50 weights for prototxt/resnet50_c4: torchvision's resnet50 state_dict
through `convert` (names, BatchNorm split into BatchNorm + Scale, conv1 taking
our input), and a .caffemodel with the layer names and blob shapes of Caffe's
ResNet-50, both built here (no download) and loaded by name."""

import pytest
import torch

from pyfrcnn.cli import main
from pyfrcnn.errors import WeightsError
from pyfrcnn.net import Net, load_weights_file
from pyfrcnn.proto import pyfrcnn_pb2 as pb
from pyfrcnn.weights import CAFFE_PIXEL_MEANS, TORCHVISION_MEAN, TORCHVISION_STD, convert
from pyfrcnn.weights_resnet import resnet50_from_state_dict
from tests.conftest import REPO_DIR
from tests.torchvision_resnet import fake_resnet50

TEST_NET = str(REPO_DIR / "prototxt" / "resnet50_c4" / "test.prototxt")
# Caffe's layer type by name prefix, for the stand-in .caffemodel.
LAYER_TYPES = (("res", "Convolution"), ("conv", "Convolution"), ("bn", "BatchNorm"),
               ("scale", "Scale"), ("fc", "InnerProduct"))
# Layers of the detector that ImageNet weights do not have.
DETECTION_LAYERS = {"rpn_conv/3x3", "rpn_cls_score", "rpn_bbox_pred", "cls_score", "bbox_pred"}
STEM = """
input: "data" input_shape { dim: 1 dim: 3 dim: 40 dim: 48 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 64 kernel_size: 7 pad: 3 stride: 2 } }
layer { name: "bn_conv1" type: "BatchNorm" bottom: "conv1" top: "conv1"
        batch_norm_param { use_global_stats: true } }
layer { name: "scale_conv1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "conv1_relu" type: "ReLU" bottom: "conv1" top: "conv1" }
"""


def caffe_resnet50_blobs():
    """{layer: [blob shapes]} of Caffe's ResNet-50 (KaimingHe's deploy
    prototxt), spelled out from its naming scheme: conv1 with a bias,
    res<stage><block>_branch1/2a/2b/2c without, bn* with mean, variance and
    factor, scale* with scale and bias, fc1000."""
    shapes = {"conv1": [(64, 3, 7, 7), (64,)]}
    affine = {"conv1": 64}
    channels = 64
    for stage, blocks, width in ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512)):
        for block in "abcdef"[:blocks]:
            tag = f"{stage}{block}"
            convs = {"2a": (width, channels, 1, 1), "2b": (width, width, 3, 3),
                     "2c": (4 * width, width, 1, 1)}
            if block == "a":
                convs["1"] = (4 * width, channels, 1, 1)
            for branch, shape in convs.items():
                shapes[f"res{tag}_branch{branch}"] = [shape]
                affine[f"{tag}_branch{branch}"] = shape[0]
            channels = 4 * width
    for name, size in affine.items():
        shapes[f"bn{'_' if name == 'conv1' else ''}{name}"] = [(size,), (size,), (1,)]
        shapes[f"scale{'_' if name == 'conv1' else ''}{name}"] = [(size,), (size,)]
    shapes["fc1000"] = [(1000, 2048), (1000,)]
    return shapes


def packed_floats(field, tensor):
    """The wire bytes of a packed repeated float field holding `tensor`."""
    payload = tensor.contiguous().numpy().astype("<f4").tobytes()
    size, varint = len(payload), bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        varint.append(byte | (0x80 if size else 0))
        if not size:
            break
    return bytes([field << 3 | 2]) + bytes(varint) + payload


@pytest.fixture(scope="module")
def test_net():
    return Net(TEST_NET, "TEST", input_shapes={"data": (1, 3, 64, 64)})


@pytest.fixture(scope="module")
def resnet_pth(tmp_path_factory):
    model = fake_resnet50()
    path = tmp_path_factory.mktemp("resnet") / "resnet50.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_caffe_names_are_the_nets(test_net):
    # Every layer with blobs is Caffe's ResNet-50's, with its shapes, or a detection layer.
    caffe = caffe_resnet50_blobs()
    for name, blobs in test_net.params.items():
        if name in DETECTION_LAYERS:
            continue
        assert name in caffe, f"{name} is not a layer of Caffe's ResNet-50"
        assert [tuple(b.shape) for b in blobs] == caffe[name], name
    assert set(caffe) - set(test_net.params) == {"fc1000"}


def test_caffemodel_loads_by_name(tmp_path, test_net):
    generator = torch.Generator().manual_seed(1)
    model, values = pb.NetParameter(name="ResNet-50"), {}
    for name, shapes in caffe_resnet50_blobs().items():
        kind = next(t for prefix, t in LAYER_TYPES if name.startswith(prefix))
        layer = model.layer.add(name=name, type=kind)
        values[name] = [torch.randn(shape, generator=generator) for shape in shapes]
        for tensor in values[name]:
            blob = layer.blobs.add()
            blob.shape.dim.extend(tensor.shape)
            blob.MergeFromString(packed_floats(5, tensor))  # BlobProto.data, fast for 25M values
    path = tmp_path / "ResNet-50-model.caffemodel"
    path.write_bytes(model.SerializeToString())
    loaded, skipped = test_net.load(str(path))
    assert set(loaded) == set(test_net.params) - DETECTION_LAYERS and skipped == ["fc1000"]
    for name in ("conv1", "bn_conv1", "res4f_branch2b", "scale5c_branch2c", "bn3a_branch1"):
        for blob, value in zip(test_net.params[name], values[name]):
            assert torch.equal(blob, value), name


def test_torchvision_resnet50_converts_and_loads(resnet_pth, test_net, tmp_path, capsys):
    model, pth = resnet_pth
    out = tmp_path / "resnet50.weights"
    assert main(["convert", str(pth), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(torchvision-resnet50)" in printed and "fc1000, ImageNet's 1000-way classifier" in printed
    layers, meta = load_weights_file(str(out), with_meta=True)
    assert meta["source_format"] == "torchvision-resnet50"
    loaded, skipped = test_net.load(str(out), strict=False)
    assert set(loaded) == set(test_net.params) - DETECTION_LAYERS and not skipped
    state = model.state_dict()
    assert torch.equal(layers["res3a_branch2b"][0], state["layer2.0.conv2.weight"])
    assert torch.equal(layers["res5a_branch1"][0], state["layer4.0.downsample.0.weight"])
    assert torch.equal(layers["res4f_branch2c"][0], state["layer3.5.conv3.weight"])
    bn, scale = layers["bn4c_branch2a"], layers["scale4c_branch2a"]
    assert torch.equal(bn[0], state["layer3.2.bn1.running_mean"])
    assert torch.equal(bn[1], state["layer3.2.bn1.running_var"]) and bn[2].tolist() == [1.0]
    assert torch.equal(scale[0], state["layer3.2.bn1.weight"])
    assert torch.equal(scale[1], state["layer3.2.bn1.bias"])
    assert torch.equal(layers["scale2a_branch1"][1], state["layer1.0.downsample.1.bias"])


def test_converted_stem_takes_our_input(resnet_pth):
    # conv1 -> bn_conv1 -> scale_conv1 -> relu on BGR 0..255 minus the pixel
    # means equals torchvision's relu(bn1(conv1)) on its normalised RGB, away
    # from the border (the two pad different images with 0).
    model, pth = resnet_pth
    stem = Net(STEM, "TEST")
    stem.load(convert(pth, pth.with_suffix(".weights"))[1])
    generator = torch.Generator().manual_seed(2)
    bgr = torch.rand(1, 3, 40, 48, generator=generator) * 255
    ours = stem.forward(data=bgr - torch.tensor(CAFFE_PIXEL_MEANS).view(1, 3, 1, 1))["conv1"]
    rgb = bgr.flip(1) / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (TORCHVISION_MEAN, TORCHVISION_STD))
    normalised = (rgb - mean) / std
    with torch.no_grad():
        theirs = model.stem(normalised)
    assert ours.shape == theirs.shape == (1, 64, 20, 24)
    torch.testing.assert_close(ours[..., 2:-2, 2:-2], theirs[..., 2:-2, 2:-2], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ours[..., 0, :], theirs[..., 0, :], atol=1e-3)  # the border does differ


def test_bad_state_dicts_name_the_key(resnet_pth):
    state = dict(resnet_pth[0].state_dict())

    def fold(weight, bias):
        return weight, bias
    broken = dict(state)
    broken["layer3.6.conv1.weight"] = torch.zeros(256, 1024, 1, 1)
    with pytest.raises(WeightsError, match="layer3.6: more blocks than ResNet-50 has in stage 3"):
        resnet50_from_state_dict(broken, "r101.pth", fold)
    broken = dict(state)
    broken["layer2.1.bn2.running_var"] = torch.ones(64)
    with pytest.raises(WeightsError, match=r"r.pth: layer2.1.bn2.running_var \(bn3b_branch2b\) has shape 64, "
                                           "ResNet-50's is 128"):
        resnet50_from_state_dict(broken, "r.pth", fold)
    with pytest.raises(WeightsError, match=r"no layer4.2.conv3.weight \(res5c_branch2c\)"):
        resnet50_from_state_dict({k: v for k, v in state.items() if k != "layer4.2.conv3.weight"},
                                 "r.pth", fold)
