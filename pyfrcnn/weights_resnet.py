"""torchvision's ResNet-50 state_dict as weights for Caffe's ResNet-50 layer names
(prototxt/resnet50_c4), read by pyfrcnn.weights.read_any (and so `convert`).

Names (stage s = 1..4 of torchvision is Caffe's res{s+1}; block i is the
letter a, b, c, ...; t = {s+1}{letter}, e.g. 2a, 4f):
    conv1                      conv1 (bias added: see below)
    bn1                        bn_conv1 (BatchNorm) + scale_conv1 (Scale)
    layer{s}.{i}.conv1/2/3     res{t}_branch2a / 2b / 2c
    layer{s}.{i}.bn1/2/3       bn{t}_branch2a / 2b / 2c + scale{t}_branch2a / 2b / 2c
    layer{s}.{i}.downsample.0  res{t}_branch1
    layer{s}.{i}.downsample.1  bn{t}_branch1 + scale{t}_branch1
    fc                         skipped (fc1000, ImageNet's classifier)
A BatchNorm2d splits into Caffe's two layers: BatchNorm gets [running_mean,
running_var, 1] (its third blob is the moving-average factor the sums are
divided by), Scale gets [weight, bias]. num_batches_tracked is skipped.

The input: torchvision's ResNet takes normalised RGB, ours BGR 0..255 minus
the pixel means; the difference is folded into conv1 as for VGG16
(pyfrcnn.weights.fold_torchvision_input, handed in as `fold_input`), which
needs a bias: Caffe's conv1 has one, torchvision's has none (zero).

The layout differs in two places the weights cannot carry: torchvision's
ResNet-50 (v1.5) strides in the 3x3 conv2 (branch2b) of a stage's first
block and pads pool1 by 1, Caffe's strides in the 1x1 branch2a and pools
without padding, rounding up. The names and shapes match either way; see
the header of prototxt/resnet50_c4/train.prototxt for the exact layout.
"""

import torch

from .errors import WeightsError
from .net import format_shape

FORMAT_TORCHVISION_RESNET50 = "torchvision-resnet50"
RESNET50_KEY = "layer1.0.conv1.weight"  # tells a torchvision ResNet state_dict
BLOCKS = (3, 4, 6, 3)  # ResNet-50's blocks per stage
WIDTHS = (64, 128, 256, 512)  # bottleneck widths; outputs are 4x
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SKIPPED = {"fc": "fc1000, ImageNet's 1000-way classifier"}


def resnet50_layout():
    """[(torchvision conv prefix, torchvision bn prefix, Caffe conv, Caffe bn,
    Caffe scale, conv weight shape)] for every conv of ResNet-50, stem first."""
    layout = [("conv1", "bn1", "conv1", "bn_conv1", "scale_conv1", (64, 3, 7, 7))]
    channels = 64
    for stage, (blocks, width) in enumerate(zip(BLOCKS, WIDTHS), start=1):
        for index in range(blocks):
            tag = f"{stage + 1}{LETTERS[index]}"
            prefix = f"layer{stage}.{index}"
            shapes = ((width, channels, 1, 1), (width, width, 3, 3), (4 * width, width, 1, 1))
            if index == 0:
                layout.append((f"{prefix}.downsample.0", f"{prefix}.downsample.1",
                               f"res{tag}_branch1", f"bn{tag}_branch1", f"scale{tag}_branch1",
                               (4 * width, channels, 1, 1)))
            for k, (branch, shape) in enumerate(zip("abc", shapes), start=1):
                layout.append((f"{prefix}.conv{k}", f"{prefix}.bn{k}", f"res{tag}_branch2{branch}",
                               f"bn{tag}_branch2{branch}", f"scale{tag}_branch2{branch}", shape))
            channels = 4 * width
    return layout


def resnet50_from_state_dict(state, where, fold_input):
    """({layer: [tensors]}, {skipped key prefix: reason}) from torchvision's
    resnet50 state_dict; fold_input(weight, bias) -> (weight, bias) rewrites
    conv1 to take our input."""
    if not isinstance(state, dict):
        raise WeightsError(f"{where}: not a state_dict (a {type(state).__name__})")
    layers, taken = {}, set()
    for conv, bn, caffe_conv, caffe_bn, caffe_scale, shape in resnet50_layout():
        weight = _tensor(state, f"{conv}.weight", caffe_conv, shape, where)
        stats = [_tensor(state, f"{bn}.{kind}", caffe_bn, shape[:1], where)
                 for kind in ("running_mean", "running_var")]
        affine = [_tensor(state, f"{bn}.{kind}", caffe_scale, shape[:1], where)
                  for kind in ("weight", "bias")]
        taken.update({f"{conv}.weight", f"{bn}.running_mean", f"{bn}.running_var",
                      f"{bn}.weight", f"{bn}.bias", f"{bn}.num_batches_tracked"})
        layers[caffe_conv] = [weight]
        layers[caffe_bn] = [*stats, torch.ones(1, dtype=stats[0].dtype)]
        layers[caffe_scale] = affine
    if "conv1.bias" in state:
        raise WeightsError(f"{where}: conv1.bias: not torchvision's ResNet-50, whose conv1 has no bias")
    for stage, blocks in enumerate(BLOCKS, start=1):
        if any(str(key).startswith(f"layer{stage}.{blocks}.") for key in state):
            raise WeightsError(f"{where}: layer{stage}.{blocks}: more blocks than ResNet-50 has in "
                               f"stage {stage} ({blocks}): a ResNet-101 or -152, which "
                               "prototxt/resnet50_c4 does not hold")
    layers["conv1"] = list(fold_input(layers["conv1"][0], torch.zeros(64, dtype=layers["conv1"][0].dtype)))
    skipped = {}
    for key in state:
        if key in taken:
            if str(key).endswith("num_batches_tracked"):
                skipped[str(key).rsplit(".", 1)[0]] = "BatchNorm's step counter"
            continue
        prefix = str(key).rsplit(".", 1)[0]
        skipped[prefix] = SKIPPED.get(prefix, "not a layer of ResNet-50")
    return layers, skipped


def _tensor(state, key, layer, shape, where):
    if key not in state:
        raise WeightsError(f"{where}: not torchvision's ResNet-50 state_dict: no {key} ({layer})")
    tensor = state[key]
    if not torch.is_tensor(tensor) or not tensor.is_floating_point():
        raise WeightsError(f"{where}: {key} ({layer}) is not a float tensor")
    if tuple(tensor.shape) != tuple(shape):
        raise WeightsError(f"{where}: {key} ({layer}) has shape {format_shape(tuple(tensor.shape))}, "
                           f"ResNet-50's is {format_shape(tuple(shape))}")
    return tensor
