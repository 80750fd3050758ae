"""ImageNet ResNets (He et al. 2015, Table 1), laid out and named as torchvision's
(conv1, bn1, relu, maxpool, layer1..4 of BasicBlock/Bottleneck, avgpool, fc) so
torchvision state dicts load key for key.

    conv7x7/2 (in_channels -> 64) -> BN -> ReLU          (N,   64, 112, 112)  at 224x224
    maxpool 3x3/2                                         (N,   64,  56,  56)
    layer1  64 planes                                     (N,  64e,  56,  56)
    layer2 128 planes, stride 2                           (N, 128e,  28,  28)
    layer3 256 planes, stride 2                           (N, 256e,  14,  14)
    layer4 512 planes, stride 2                           (N, 512e,   7,   7)
    global average pool -> fc(512e, num_classes)          (N, num_classes)

with e = 1 (BasicBlock) or 4 (Bottleneck).  Shortcuts are identities, with a
projection (1x1 conv + BN, option B) where the shape changes.

``stride_in_1x1``: torchvision (the default, "ResNet v1.5") strides the
bottleneck's 3x3 conv; the paper's original model strided its first 1x1 conv.
Same parameters, but the paper's multiply-add counts (3.8/7.6/11.3 x 10^9 for
50/101/152 layers) are those of stride_in_1x1=True; torchvision's are 4.1/7.8/11.5.
"""
from __future__ import annotations

from .. import nn
from .registry import register


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """relu(x + BN(conv3x3(relu(BN(conv3x3(x)))))); the stride is on conv1."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, stride_in_1x1=False):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """relu(x + BN(conv1x1(relu(BN(conv3x3(relu(BN(conv1x1(x))))))))): 1x1 reduces to
    ``planes`` channels, 3x3 works there, 1x1 expands to 4*planes (He 2015, Fig. 5)."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, stride_in_1x1=False):
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, planes, s1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, s3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, in_channels=3, stride_in_1x1=False):
        super().__init__()
        if len(layers) != 4 or any(not isinstance(n, int) or n < 1 for n in layers):
            raise ValueError(f"ResNet: layers must be four block counts >= 1, got {layers!r}")
        self.stride_in_1x1 = bool(stride_in_1x1)
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inplanes = 64
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, count, stride):
        out = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:          # option B: project only here
            downsample = nn.Sequential(conv1x1(self.inplanes, out, stride), nn.BatchNorm2d(out))
        blocks = [block(self.inplanes, planes, stride, downsample, self.stride_in_1x1)]
        self.inplanes = out
        blocks += [block(out, planes, 1, None, self.stride_in_1x1) for _ in range(count - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x):                                   # (N, C, H, W)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))         # (N, num_classes)


@register()
def resnet18(num_classes=1000, in_channels=3, stride_in_1x1=False):
    """ResNet-18: BasicBlock [2, 2, 2, 2]; 11.69M parameters, 1.8 GMACs at 224x224."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, stride_in_1x1)


@register()
def resnet34(num_classes=1000, in_channels=3, stride_in_1x1=False):
    """ResNet-34: BasicBlock [3, 4, 6, 3]; 21.80M parameters, 3.6 GMACs at 224x224."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, stride_in_1x1)


@register()
def resnet50(num_classes=1000, in_channels=3, stride_in_1x1=False):
    """ResNet-50: Bottleneck [3, 4, 6, 3]; 25.56M parameters, 4.1 GMACs at 224x224
    (3.8 with stride_in_1x1=True, the paper's count)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, stride_in_1x1)


@register()
def resnet101(num_classes=1000, in_channels=3, stride_in_1x1=False):
    """ResNet-101: Bottleneck [3, 4, 23, 3]; 44.55M parameters, 7.8 GMACs at 224x224
    (7.6 with stride_in_1x1=True, the paper's count)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, stride_in_1x1)


@register()
def resnet152(num_classes=1000, in_channels=3, stride_in_1x1=False):
    """ResNet-152: Bottleneck [3, 8, 36, 3]; 60.19M parameters, 11.5 GMACs at 224x224
    (11.3 with stride_in_1x1=True, the paper's count)."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, in_channels, stride_in_1x1)


__all__ = ["BasicBlock", "Bottleneck", "ResNet", "conv1x1", "conv3x3",
           "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
