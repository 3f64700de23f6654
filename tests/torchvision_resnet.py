"""A stand-in for torchvision's resnet50 (v1.5), written here from its
published structure so that its state_dict has torchvision's keys and shapes:
conv1/bn1 stem, layer1..layer4 of Bottleneck blocks (conv1 1x1, conv2 3x3
with the stride, conv3 1x1, downsample = [1x1 conv, BatchNorm] in each
stage's first block), fc. No download: the weights are random, with
BatchNorm statistics and affines that are not the identity."""

import torch
from torch import nn

BLOCKS = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    def __init__(self, inplanes, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.downsample = None
        if stride != 1 or inplanes != 4 * width:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, 4 * width, 1, stride, bias=False),
                                            nn.BatchNorm2d(4 * width))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for stage, (blocks, width) in enumerate(zip(BLOCKS, (64, 128, 256, 512)), start=1):
            layers = []
            for index in range(blocks):
                layers.append(Bottleneck(inplanes, width, 2 if index == 0 and stage > 1 else 1))
                inplanes = 4 * width
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.fc = nn.Linear(2048, 1000)

    def stem(self, x):
        return torch.relu(self.bn1(self.conv1(x)))


def fake_resnet50(seed=0, residual_gamma=0.2):
    """A ResNet50 in eval mode with random weights and BatchNorm statistics;
    the last BatchNorm of each block scales by about `residual_gamma`, so
    that activations stay of unit size through the 16 blocks."""
    torch.manual_seed(seed)
    model = ResNet50().eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                if name.endswith("bn3"):
                    module.weight.mul_(residual_gamma)
                module.num_batches_tracked.fill_(1000)
    return model
