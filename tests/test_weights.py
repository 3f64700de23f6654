"""Weights import: .caffemodel files (current and legacy V1, float and double,
legacy 4-D shapes), torchvision's VGG16 state_dict (mapping, conv1_1 input
folding), format detection by content, convert and its command, bad files.

The .caffemodel files are written here with our schema from known tensors; the
VGG16 state_dict is built the way torchvision builds the model (its layer
list), and conv1_1 is checked against torchvision's own input convention."""

import argparse
import re

import pytest
import torch
import torch.nn.functional as F
from google.protobuf import text_format

from pyfrcnn.errors import WeightsError
from pyfrcnn.io import read_net
from pyfrcnn.net import Net, load_weights_file
from pyfrcnn.proto import pyfrcnn_pb2 as pb
from pyfrcnn.weights import (CAFFE_PIXEL_MEANS, add_convert_arguments, convert,
                             fold_torchvision_input, read_caffemodel, read_torchvision_vgg16,
                             read_weights, run_convert, vgg16_from_state_dict)

from .conftest import REPO_DIR

# -- a tiny net and its weights --------------------------------------------------------
TINY = """
input: "data" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 3 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
        inner_product_param { num_output: FC_OUT } }
"""
CONV_W = torch.arange(54, dtype=torch.float32).reshape(3, 2, 3, 3) / 10 - 2
CONV_B = torch.tensor([0.1, 0.2, 0.3])
FC_W = torch.arange(24, dtype=torch.float32).reshape(2, 12) / 8 - 1  # a transpose would show
FC_B = torch.tensor([-1.0, 1.0])
EXTRA_W = torch.arange(20, dtype=torch.float32).reshape(4, 5)
EXTRA_B = torch.arange(4, dtype=torch.float32)


def tiny_net(fc_out=2):
    return Net(TINY.replace("FC_OUT", str(fc_out)))


def blob(tensor, legacy=None, double=False):
    """A BlobProto of tensor: with `shape`, or with legacy dims (num, channels, height, width)."""
    b = pb.BlobProto()
    if legacy is None:
        b.shape.dim.extend(tensor.shape)
    else:
        b.num, b.channels, b.height, b.width = legacy
    (b.double_data if double else b.data).extend(tensor.flatten().tolist())
    return b


def current_caffemodel(path, extra_layers=()):
    """A .caffemodel with the current `layer` list, blobs with `shape`."""
    net = pb.NetParameter(name="tiny")
    net.layer.add(name="data", type="Input")
    net.layer.add(name="conv", type="Convolution").blobs.extend([blob(CONV_W), blob(CONV_B)])
    net.layer.add(name="relu", type="ReLU")
    net.layer.add(name="fc", type="InnerProduct").blobs.extend([blob(FC_W), blob(FC_B)])
    net.layer.add(name="extra", type="InnerProduct").blobs.extend([blob(EXTRA_W), blob(EXTRA_B)])
    for name, layer_type, blobs in extra_layers:
        net.layer.add(name=name, type=layer_type).blobs.extend(blobs)
    path.write_bytes(net.SerializeToString())
    return path


def v1_caffemodel(path, double=False):
    """A .caffemodel with the legacy V1 `layers` list, blobs with legacy 4-D dims."""
    V1 = pb.V1LayerParameter
    net = pb.NetParameter(name="tiny")
    net.layers.add(name="conv", type=V1.CONVOLUTION).blobs.extend(
        [blob(CONV_W, (3, 2, 3, 3), double), blob(CONV_B, (1, 1, 1, 3), double)])
    net.layers.add(name="relu", type=V1.RELU)
    net.layers.add(name="fc", type=V1.INNER_PRODUCT).blobs.extend(
        [blob(FC_W, (1, 1, 2, 12), double), blob(FC_B, (1, 1, 1, 2), double)])
    net.layers.add(name="extra", type=V1.INNER_PRODUCT).blobs.extend(
        [blob(EXTRA_W, (1, 1, 4, 5), double), blob(EXTRA_B, (1, 1, 1, 4), double)])
    path.write_bytes(net.SerializeToString())
    return path


def expected_tiny_forward(x):
    """The tiny net by hand, from the reference tensors."""
    return F.linear(F.relu(F.conv2d(x, CONV_W, CONV_B)).flatten(1), FC_W, FC_B)


# -- .caffemodel -----------------------------------------------------------------------
@pytest.mark.parametrize("write", [current_caffemodel, v1_caffemodel], ids=["layer", "v1-layers"])
def test_caffemodel_blobs_land_in_their_layers(tmp_path, write):
    path = write(tmp_path / "tiny.caffemodel")
    net = tiny_net()
    loaded, skipped = net.load(str(path))
    assert loaded == ["conv", "fc"] and skipped == ["extra"]
    for got, want in zip(net.params["conv"] + net.params["fc"], [CONV_W, CONV_B, FC_W, FC_B]):
        assert got.shape == want.shape
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=0)
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net.forward(data=x)["fc"], expected_tiny_forward(x))


def test_read_caffemodel_lists_layers_without_blobs(tmp_path):
    layers, skipped = read_caffemodel(current_caffemodel(tmp_path / "a.caffemodel"))
    assert list(layers) == ["conv", "fc", "extra"]
    assert skipped == {"data": "no blobs", "relu": "no blobs"}
    assert [tuple(t.shape) for t in layers["extra"]] == [(4, 5), (4,)]
    layers, skipped = read_caffemodel(v1_caffemodel(tmp_path / "b.caffemodel"))
    assert list(layers) == ["conv", "fc", "extra"] and skipped == {"relu": "no blobs"}


def test_double_data_keeps_float64_and_loads(tmp_path):
    layers, _ = read_caffemodel(v1_caffemodel(tmp_path / "d.caffemodel", double=True))
    assert all(t.dtype == torch.float64 for blobs in layers.values() for t in blobs)
    torch.testing.assert_close(layers["fc"][0], FC_W.double(), rtol=0, atol=0)
    net = tiny_net()
    net.load(layers)
    torch.testing.assert_close(net.params["fc"][0].detach(), FC_W, rtol=0, atol=0)


def test_legacy_shapes_follow_the_layer_type(tmp_path):
    # One output channel: a 1 x C x H x W conv kernel stays 4-D, InnerProduct
    # weights 1 x 1 x 1 x K become 1 x K; a per-channel blob of any other type
    # drops its leading 1s.
    one_conv, one_fc, scale = torch.randn(1, 2, 3, 3), torch.randn(1, 12), torch.randn(5)
    one_bias = blob(torch.ones(1), (1, 1, 1, 1))
    path = current_caffemodel(tmp_path / "l.caffemodel", extra_layers=[
        ("one_conv", "Convolution", [blob(one_conv, (1, 2, 3, 3)), one_bias]),
        ("one_fc", "InnerProduct", [blob(one_fc, (1, 1, 1, 12)), one_bias]),
        ("scale", "Scale", [blob(scale, (1, 1, 1, 5))]),
    ])
    layers, _ = read_caffemodel(path)
    assert [tuple(t.shape) for t in layers["one_conv"]] == [(1, 2, 3, 3), (1,)]
    assert [tuple(t.shape) for t in layers["one_fc"]] == [(1, 12), (1,)]
    assert tuple(layers["scale"][0].shape) == (5,)
    torch.testing.assert_close(layers["one_fc"][0], one_fc, rtol=0, atol=0)


def test_caffemodel_shape_errors_name_layer_and_blob(tmp_path):
    path = v1_caffemodel(tmp_path / "tiny.caffemodel")
    with pytest.raises(WeightsError, match=r"layer 'fc' \(InnerProduct\).* blob 0: the net has "
                                           r"shape 3x12, the file 2x12"):
        tiny_net(fc_out=3).load(str(path))

    bad = pb.NetParameter()
    bad.layers.add(name="fc", type=pb.V1LayerParameter.INNER_PRODUCT).blobs.append(
        blob(FC_W, (2, 1, 1, 12)))
    (tmp_path / "bad.caffemodel").write_bytes(bad.SerializeToString())
    with pytest.raises(WeightsError, match=r"bad.caffemodel: layer 'fc' \(InnerProduct\) blob 0: "
                                           r"legacy shape 2x1x1x12.*1x1xNxK"):
        read_caffemodel(tmp_path / "bad.caffemodel")

    short = pb.NetParameter()
    weights = blob(CONV_W)
    del weights.data[-1]
    short.layer.add(name="conv", type="Convolution").blobs.append(weights)
    (tmp_path / "short.caffemodel").write_bytes(short.SerializeToString())
    with pytest.raises(WeightsError, match=r"layer 'conv' \(Convolution\) blob 0: shape 3x2x3x3 "
                                           r"holds 54 values, the file gives 53"):
        read_caffemodel(tmp_path / "short.caffemodel")


def test_caffemodel_with_both_layer_lists_is_refused(tmp_path):
    net = pb.NetParameter()
    net.ParseFromString(current_caffemodel(tmp_path / "a.caffemodel").read_bytes()
                        + v1_caffemodel(tmp_path / "b.caffemodel").read_bytes())
    (tmp_path / "both.caffemodel").write_bytes(net.SerializeToString())
    with pytest.raises(WeightsError, match="both 'layer' and legacy 'layers'"):
        read_caffemodel(tmp_path / "both.caffemodel")


def test_py_faster_rcnn_caffemodel_says_bbox_pred_is_unnormalized(tmp_path):
    _, meta = read_weights(current_caffemodel(tmp_path / "imagenet.caffemodel"))
    assert meta == {"source_format": "caffemodel"}
    path = current_caffemodel(tmp_path / "frcnn.caffemodel", extra_layers=[
        ("bbox_pred", "InnerProduct", [blob(torch.zeros(8, 3)), blob(torch.zeros(8))])])
    _, meta = read_weights(path)
    assert meta == {"source_format": "caffemodel", "bbox_pred_unnormalized": True}


@pytest.mark.parametrize("content", ["empty", "text", "random", "truncated", "torch list"])
def test_bad_files_raise_weights_error_naming_them(tmp_path, content):
    path = tmp_path / f"{content.replace(' ', '_')}.caffemodel"
    if content == "truncated":
        data = current_caffemodel(tmp_path / "whole.caffemodel").read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif content == "torch list":
        torch.save([torch.zeros(2)], path)
    else:
        noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(3))
        path.write_bytes({"empty": b"", "text": b"name: 'VGG16'\nlayer { name: 'conv1_1' }\n",
                          "random": bytes(noise.tolist())}[content])
    with pytest.raises(WeightsError, match=re.escape(str(path))):
        load_weights_file(str(path))
    with pytest.raises(WeightsError, match="no such weights file"):
        load_weights_file(str(tmp_path / "missing.caffemodel"))


# -- torchvision's VGG16 ---------------------------------------------------------------
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512, "M"]
TV_MEAN, TV_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def torchvision_vgg16(generator):
    """(state_dict, {torchvision prefix: Caffe layer name}), built as torchvision
    lays VGG16 out: features = [Conv2d, ReLU]* with a MaxPool2d per "M"; classifier =
    Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear. Caffe names the convs
    conv<block>_<n>. The classifier's weights are full-size views of small storage."""
    state, names = {}, {}
    index, in_channels, block, n = 0, 3, 1, 1
    for v in VGG16_CFG:
        if v == "M":
            index, block, n = index + 1, block + 1, 1
            continue
        state[f"features.{index}.weight"] = 0.05 * torch.randn(v, in_channels, 3, 3,
                                                               generator=generator)
        state[f"features.{index}.bias"] = torch.randn(v, generator=generator) * 0.1
        names[f"features.{index}"] = f"conv{block}_{n}"
        index, in_channels, n = index + 2, v, n + 1
    linears = ((0, 4096, 512 * 7 * 7, "fc6"), (3, 4096, 4096, "fc7"), (6, 1000, 4096, "fc8"))
    for index, out, inputs, name in linears:
        weight = torch.randn(out, 1, generator=generator).expand(out, inputs)
        state[f"classifier.{index}.weight"] = weight
        state[f"classifier.{index}.bias"] = torch.randn(out, generator=generator)
        names[f"classifier.{index}"] = name
    return state, names


@pytest.fixture(scope="module")
def vgg16(tmp_path_factory):
    """(state_dict, names, path); the file is named .caffemodel: its content says what it is."""
    state, names = torchvision_vgg16(torch.Generator().manual_seed(16))
    path = tmp_path_factory.mktemp("vgg16") / "vgg16.caffemodel"
    torch.save(state, path)
    return state, names, path


def test_vgg16_keys_map_onto_the_caffe_layers(vgg16):
    state, names, path = vgg16
    layers, skipped = read_torchvision_vgg16(path)
    assert skipped == {"classifier.6": "fc8, ImageNet's 1000-way classifier"}
    assert set(layers) == set(names.values()) - {"fc8"}
    for prefix, name in names.items():
        if name in ("conv1_1", "fc8"):
            continue
        assert torch.equal(layers[name][0], state[f"{prefix}.weight"]), name
        assert torch.equal(layers[name][1], state[f"{prefix}.bias"]), name
    # Every mapped name is a layer of our VGG16 net with that many outputs.
    netdef = read_net(REPO_DIR / "prototxt" / "vgg16" / "test.prototxt", "TEST")
    by_name = {lp.name: lp for lp in netdef.param.layer}
    for name, (weight, _) in layers.items():
        lp = by_name[name]
        param = lp.convolution_param if lp.type == "Convolution" else lp.inner_product_param
        assert param.num_output == weight.shape[0], name


def test_vgg16_conv1_1_takes_our_input(vgg16):
    state, _, path = vgg16
    netdef = read_net(REPO_DIR / "prototxt" / "vgg16" / "test.prototxt", "TEST")
    conv1_1 = next(lp for lp in netdef.param.layer if lp.name == "conv1_1")
    net = Net('input: "data" input_shape { dim: 1 dim: 3 dim: 9 dim: 11 }\n'
              f"layer {{ {text_format.MessageToString(conv1_1, as_one_line=True)} }}")
    loaded, _ = net.load(str(path))
    assert loaded == ["conv1_1"]

    rgb = torch.randint(0, 256, (3, 9, 11), generator=torch.Generator().manual_seed(1)).double()
    mean, std = (torch.tensor(v, dtype=torch.float64).view(3, 1, 1) for v in (TV_MEAN, TV_STD))
    theirs = F.conv2d(((rgb / 255 - mean) / std)[None], state["features.0.weight"].double(),
                      state["features.0.bias"].double(), padding=1)
    pixel_means = torch.tensor(CAFFE_PIXEL_MEANS, dtype=torch.float64).view(3, 1, 1)
    bgr_minus_means = rgb.flip(0) - pixel_means
    ours = net.forward(data=bgr_minus_means[None].float())["conv1_1"].double()
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], theirs[..., 1:-1, 1:-1], rtol=1e-5, atol=2e-5)
    # The border differs: the two pad different images with zeros (small here,
    # as PIXEL_MEANS / 255 is close to torchvision's mean).
    assert (ours - theirs)[..., 0, :].abs().max() > 1e-4


def test_fold_takes_any_pixel_means():
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(4, generator=g, dtype=torch.float64)
    pixel_means = (10.0, 200.0, 60.0)
    folded_weight, folded_bias = fold_torchvision_input(weight, bias, pixel_means)
    rgb = torch.rand(3, 6, 7, generator=g).double() * 255
    mean, std = (torch.tensor(v, dtype=torch.float64).view(3, 1, 1) for v in (TV_MEAN, TV_STD))
    theirs = F.conv2d(((rgb / 255 - mean) / std)[None], weight, bias)
    bgr_minus_means = rgb.flip(0) - torch.tensor(pixel_means, dtype=torch.float64).view(3, 1, 1)
    ours = F.conv2d(bgr_minus_means[None], folded_weight, folded_bias)
    torch.testing.assert_close(ours, theirs)


def test_vgg16_state_dict_errors_name_the_key(vgg16):
    state, _, _ = vgg16
    vgg19_like = {k: v for k, v in state.items() if not k.startswith("features.17.")}
    with pytest.raises(WeightsError, match=r"vgg\.pth: not torchvision's VGG16 state_dict: no "
                                           r"features\.17\.weight, features\.17\.bias"):
        vgg16_from_state_dict(vgg19_like, "vgg.pth")
    wrong = dict(state, **{"features.26.weight": torch.zeros(512, 256, 3, 3)})
    with pytest.raises(WeightsError, match=r"features\.26\.weight \(conv5_2\) has shape "
                                           r"512x256x3x3, VGG16's is 512x512x3x3"):
        vgg16_from_state_dict(wrong, "vgg.pth")
    with pytest.raises(WeightsError, match="vgg16_bn"):
        vgg16_from_state_dict(dict(state, **{"features.1.running_mean": torch.zeros(64)}),
                              "vgg.pth")


# -- detection, convert and its command ------------------------------------------------
def convert_command(*argv):
    parser = argparse.ArgumentParser()
    add_convert_arguments(parser)
    return run_convert(parser.parse_args([str(a) for a in argv]))


def test_convert_caffemodel_round_trip(tmp_path, capsys):
    source = v1_caffemodel(tmp_path / "tiny.pth")  # the extension lies; the content decides
    out = tmp_path / "tiny.weights"
    assert convert_command(source, out) == 0
    printed = capsys.readouterr().out
    assert f"{source} (caffemodel) -> {out}: 3 layers, 6 blobs" in printed
    assert "  fc: 2x12, 2\n" in printed and "skipped (no blobs): relu" in printed
    layers, meta = load_weights_file(str(out), with_meta=True)
    assert meta == {"source_format": "caffemodel", "source": "tiny.pth"}
    net = tiny_net()
    assert net.load(str(out)) == (["conv", "fc"], ["extra"])
    torch.testing.assert_close(net.params["fc"][0].detach(), FC_W, rtol=0, atol=0)
    # Our format converts to itself.
    again = tmp_path / "again.caffemodel"
    convert_command(out, again)
    assert f"(pyfrcnn-weights) -> {again}" in capsys.readouterr().out
    layers2, meta2 = read_weights(again)
    assert meta2 == meta
    assert all(torch.equal(a, b) for n in layers for a, b in zip(layers[n], layers2[n]))


def test_convert_vgg16(vgg16, tmp_path, capsys):
    state, _, path = vgg16
    out = tmp_path / "vgg16.weights"
    assert convert_command(path, out, "--pixel-means", "100,110,120") == 0
    printed = capsys.readouterr().out
    assert "(torchvision-vgg16)" in printed and "15 layers, 30 blobs" in printed
    assert "  fc6: 4096x25088, 4096\n" in printed
    assert "skipped (fc8, ImageNet's 1000-way classifier): classifier.6" in printed
    layers, meta = load_weights_file(str(out), with_meta=True)
    assert meta == {"source_format": "torchvision-vgg16", "pixel_means": [100.0, 110.0, 120.0],
                    "source": "vgg16.caffemodel"}
    assert torch.equal(layers["conv5_3"][0], state["features.28.weight"])
    folded = fold_torchvision_input(state["features.0.weight"], state["features.0.bias"],
                                    (100, 110, 120))
    assert all(torch.equal(a, b) for a, b in zip(layers["conv1_1"], folded))


def test_convert_rejects_bad_pixel_means(tmp_path):
    with pytest.raises(SystemExit):
        convert_command(tmp_path / "a", tmp_path / "b", "--pixel-means", "1,2")


def test_torch_file_of_another_kind_is_named(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match=re.escape(f"{path}: a torch file holding a dict with "
                                                     "keys conv1.weight, fc.bias: neither")):
        convert(path, tmp_path / "out.weights")
    assert not (tmp_path / "out.weights").exists()
