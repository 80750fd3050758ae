"""The ResNet-18 of Dive into Deep Learning (d2l.ai, chapter "Residual Networks"), for
Fashion-MNIST at 96x96, as the book builds and initialises it.

    b1: conv7x7/2 (in_channels -> 64) -> BN -> ReLU -> maxpool 3x3/2   (N,  64, 24, 24) at 96x96
    b2: 2 Residual, 64 channels                                       (N,  64, 24, 24)
    b3: 2 Residual, 128 channels, stride 2 in the first               (N, 128, 12, 12)
    b4: 2 Residual, 256 channels, stride 2 in the first               (N, 256,  6,  6)
    b5: 2 Residual, 512 channels, stride 2 in the first               (N, 512,  3,  3)
    global average pool -> linear(512, num_classes)                   (N, num_classes)

It differs from torchvision's resnet18 (imagenet.py) where the book does: every conv
has a bias, the shape-changing shortcut is a bare 1x1 conv (no BN), and the weights of
convs and the linear layer are Xavier-uniform (d2l's train_ch6 applies
nn.init.xavier_uniform_), biases PyTorch's default uniform(+-1/sqrt(fan_in)).
Names follow the book: b1..b5, Residual.conv1/conv2/conv3/bn1/bn2.
"""
from __future__ import annotations

import math

from .. import nn
from ..nn import functional as F
from ..nn import init
from .registry import register


class Residual(nn.Module):
    """relu(conv3(x) or x + BN(conv2(relu(BN(conv1(x)))))), d2l's ``Residual``."""

    def __init__(self, in_channels, channels, use_1x1conv=False, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(in_channels, channels, 1, stride=stride) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(channels)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.conv3 is None else self.conv3(x)))


def _stage(in_channels, channels, blocks, first_block=False):
    """d2l's resnet_block: the first Residual halves the size (except in b2) and projects."""
    return nn.Sequential(*[Residual(in_channels, channels, use_1x1conv=True, stride=2)
                           if i == 0 and not first_block else Residual(channels, channels)
                           for i in range(blocks)])


def _d2l_init(model):
    """Xavier-uniform weights (d2l's train_ch6), PyTorch's default uniform biases."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in, fan_out = init.fans(module.weight)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.uniform_(module.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))


class D2LResNet18(nn.Module):
    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(in_channels, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64),
                                nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        self.b2 = _stage(64, 64, 2, first_block=True)
        self.b3 = _stage(64, 128, 2)
        self.b4 = _stage(128, 256, 2)
        self.b5 = _stage(256, 512, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512, num_classes)
        _d2l_init(self)

    def forward(self, x):                                      # (N, C, H, W)
        x = self.b5(self.b4(self.b3(self.b2(self.b1(x)))))      # (N, 512, H/32, W/32)
        return self.linear(F.flatten(self.avgpool(x), 1))       # (N, num_classes)


@register()
def d2l_resnet18(num_classes=10, in_channels=3):
    """d2l's ResNet-18; in_channels=1 for Fashion-MNIST (what minires train passes), where
    it has 11,178,378 parameters."""
    return D2LResNet18(num_classes, in_channels)


__all__ = ["D2LResNet18", "Residual", "d2l_resnet18"]
