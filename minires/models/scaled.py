"""CIFAR ResNets whose shortcuts are scaled, h(x) = λx (He et al. 2016, "Identity
Mappings", §3.1 and Table 1, "constant scaling").

With x_{l+1} = λ x_l + F(x_l) the signal from block l reaches block L as
λ^(L-l) x_l + ..., and so does the gradient going back: it vanishes (λ < 1) or
explodes (λ > 1) geometrically with depth, where λ = 1 carries it unchanged.

    scaled_resnet_cifar(110, scale=0.5)     # every shortcut of a ResNet-110 times 0.5

Not in get_model's table: `minires train` has no option for λ.
"""
from __future__ import annotations

import math

from .. import nn
from .cifar import CifarResNet


class ScaledShortcut(nn.Module):
    """h(x) = scale * shortcut(x): wraps one block's shortcut (identity, zero-pad or projection)."""

    def __init__(self, shortcut, scale):
        super().__init__()
        self.shortcut, self.scale = shortcut, scale

    def forward(self, x):
        return self.shortcut(x) * self.scale

    def extra_repr(self):
        return f"scale={self.scale:g}"


def scale_shortcuts(model, scale):
    """Scale every shortcut of a CIFAR ResNet in place, downsampling ones included; returns it.
    (Applied to a trained model it changes what it computes, so rescaling comes before training.)"""
    if not isinstance(model, CifarResNet) or model.shortcut_option is None:
        raise ValueError(f"scale_shortcuts: expected a CIFAR ResNet with shortcuts, got "
                         f"{type(model).__name__}"
                         f"{' without shortcuts (a plain net)' if isinstance(model, CifarResNet) else ''}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) \
            or scale < 0:
        raise ValueError(f"scale_shortcuts: the scale λ must be a finite number >= 0 "
                         f"(1 is the identity shortcut), got {scale!r}")
    for layer in (model.layer1, model.layer2, model.layer3):
        for block in layer:
            if isinstance(block.shortcut, ScaledShortcut):
                raise ValueError("scale_shortcuts: this model's shortcuts are scaled already "
                                 f"(by {block.shortcut.scale:g}); build a fresh one")
            block.shortcut = ScaledShortcut(block.shortcut, float(scale))
    model.shortcut_scale = float(scale)
    return model


def scaled_resnet_cifar(depth, scale, shortcut="A", variant="original", num_classes=10,
                        in_channels=3):
    """A CIFAR ResNet of depth 6n+2 with every shortcut h(x) = scale * x (He 2016, Table 1);
    scale=1 computes what resnet_cifar(depth) computes."""
    if shortcut is None:
        raise ValueError("scaled_resnet_cifar: shortcut must be 'A', 'B' or 'C'; a plain net "
                         "(no shortcut) is plain_cifar(depth), or scale=0")
    return scale_shortcuts(CifarResNet(depth, shortcut, variant, num_classes, in_channels), scale)
