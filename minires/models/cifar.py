"""CIFAR ResNets of depth 6n+2 (He et al. 2015, §4.2), their plain counterparts,
and the five residual-unit variants of He et al. 2016 ("Identity Mappings", Fig. 4).

    conv1: conv3x3(in, 16) [bn1 -> ReLU]                  (N, 16, 32, 32)
    layer1: n blocks, 16 channels                           (N, 16, 32, 32)
    layer2: n blocks, 32 channels, stride 2 in its first    (N, 32, 16, 16)
    layer3: n blocks, 64 channels, stride 2 in its first    (N, 64,  8,  8)
    [bn_final -> ReLU]
    avgpool (global) -> linear(64, num_classes)             (N, num_classes)

bn1 is absent for 'full_preact' (He 2016: the first unit's BN-ReLU acts on conv1's
output; 'relu_only_preact' keeps conv-BN-ReLU, its units start with a ReLU only).
bn_final exists for the two pre-activation variants, whose units end on an addition.

Attribute names are those of the common PyTorch reference
(akamaster/pytorch_resnet_cifar10: conv1, bn1, layerK.i.{conv1,bn1,conv2,bn2,shortcut},
linear), so its state dicts load key for key.

Every "relu(BN(...))", "relu(BN(...) + shortcut)" and "relu(... + shortcut)" below goes
through ``bn_relu``, ``bn_add_relu`` and ``add_relu``: one fused op each when fusion is on
(the default; minires/ops/fused.py), the eager ops (batch_norm, add, relu: separate graph
nodes) inside minires.trace() and under minires.fusion(False).  The math is the same.
Where such a BN follows a conv (``conv_bn_relu``, ``conv_bn_add_relu``) and the forward
pass builds no graph (evaluation under minires.no_grad()), the conv, the BN, the add and
the ReLU are one op, F.conv2d_batch_norm_relu_eval.
"""
from __future__ import annotations

from .. import autograd, nn
from ..nn import functional as F
from ..nn.layers import _BatchNorm
from ..ops import fusion_enabled
from .registry import register

VARIANTS = ("original", "bn_after_add", "relu_before_add", "relu_only_preact", "full_preact")
PREACT_VARIANTS = ("relu_only_preact", "full_preact")
SHORTCUTS = ("A", "B", "C")
DEPTHS = (20, 32, 44, 56, 110, 1202)      # the depths of He et al. 2015, Table 6


def blocks_per_stage(depth):
    """n for depth = 6n + 2 (two 3x3 convs per block, three stages, plus conv1 and linear)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet: depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, "
                         f"56, 110, ..., 1202), got {depth!r}")
    return (depth - 2) // 6


def _fusable(bn):
    """Fusion is on and ``bn`` is a batch norm module that no forward hook watches
    (model_summary's must see its output)."""
    return isinstance(bn, _BatchNorm) and not bn._forward_hooks and fusion_enabled()


def bn_relu(bn, x):
    """relu(bn(x)): the fused F.batch_norm_relu when ``_fusable(bn)``; else the module, then F.relu."""
    return bn.forward_relu(x) if _fusable(bn) else F.relu(bn(x))


def bn_add_relu(bn, x, residual):
    """relu(bn(x) + residual): the fused F.batch_norm_add_relu when ``_fusable(bn)``; else
    the module, then add_relu."""
    return bn.forward_add_relu(x, residual) if _fusable(bn) else add_relu(bn(x), residual)


def _inference_fusable(conv, bn):
    """conv -> bn may run as F.conv2d_batch_norm_relu_eval: ``_fusable(bn)``, bn uses its
    running statistics, no graph is being built, and conv is a plain, hook-free Conv2d
    without bias."""
    return (_fusable(bn) and not bn.training and bn.track_running_stats
            and not autograd.is_grad_enabled() and type(conv) is nn.Conv2d
            and conv.bias is None and not conv._forward_hooks)


def _conv_bn_eval(conv, bn, x, residual):
    return F.conv2d_batch_norm_relu_eval(x, conv.weight, bn.running_mean, bn.running_var, bn.weight,
                                         bn.bias, bn.eps, residual, conv.stride, conv.padding,
                                         conv.dilation, conv.groups)


def conv_bn_relu(conv, bn, x):
    """relu(bn(conv(x))): one graph-free op when ``_inference_fusable``, else bn_relu(bn, conv(x))."""
    return _conv_bn_eval(conv, bn, x, None) if _inference_fusable(conv, bn) else bn_relu(bn, conv(x))


def conv_bn_add_relu(conv, bn, x, residual):
    """relu(bn(conv(x)) + residual): as conv_bn_relu, else bn_add_relu(bn, conv(x), residual)."""
    if _inference_fusable(conv, bn):
        return _conv_bn_eval(conv, bn, x, residual)
    return bn_add_relu(bn, conv(x), residual)


def add_relu(a, b):
    """relu(a + b): the fused F.add_relu when fusion is on, else add, then F.relu."""
    return F.add_relu(a, b) if fusion_enabled() else F.relu(a + b)


def _check_choice(what, value, choices):
    if value not in choices:
        raise ValueError(f"CIFAR ResNet: unknown {what} {value!r}; expected one of "
                         f"{', '.join(map(repr, choices))}")


class PadShortcut(nn.Module):
    """Option A: the parameter-free shortcut.  Subsample x[:, :, ::s, ::s] and add the
    new channels as zeros, half before and half after the old ones (planes//4 each
    side when the width doubles, exactly akamaster's LambdaLayer).
    (N, in, H, W) -> (N, planes, ceil(H/s), ceil(W/s))."""

    def __init__(self, in_planes, planes, stride):
        super().__init__()
        if planes < in_planes:
            raise ValueError(f"PadShortcut: cannot shrink {in_planes} channels to {planes} "
                             f"by zero-padding; use a projection shortcut (option B)")
        self.stride = stride
        self.before = (planes - in_planes) // 2
        self.after = planes - in_planes - self.before

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))

    def extra_repr(self):
        return f"stride={self.stride}, pad_channels=({self.before}, {self.after})"


def make_shortcut(option, in_planes, planes, stride):
    """The shortcut of one block (He 2015 §4.1): A zero-pads where the shape changes,
    B projects (1x1 conv + BN) only there, C projects on every block; identity elsewhere.
    option None (plain nets) gives None: no shortcut at all.  A projection is conv + BN
    for every variant (He 2015 puts BN after each conv; He 2016's pre-activation
    reference uses a bare conv there -- one BN's difference, chosen for uniformity)."""
    if option is None:
        return None
    changes = stride != 1 or in_planes != planes
    if option == "C" or (option == "B" and changes):
        return nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                             nn.BatchNorm2d(planes))
    if option == "A" and changes:
        return PadShortcut(in_planes, planes, stride)
    return nn.Identity()          # no parameters: akamaster's empty Sequential, same keys


class BasicBlock(nn.Module):
    """Two 3x3 convs with the unit layout of ``variant`` (He 2016, Fig. 4), x -> x_{l+1}:

        original          relu(x + BN(conv(relu(BN(conv(x))))))          (a)
        bn_after_add      relu(BN(x + conv(relu(BN(conv(x))))))          (b)
        relu_before_add   x + relu(BN(conv(relu(BN(conv(x))))))          (c)
        relu_only_preact  x + BN(conv(relu(BN(conv(relu(x))))))          (d)
        full_preact       x + conv(relu(BN(conv(relu(BN(x))))))          (e)

    The shortcut always sees the block's input x; with shortcut None (a plain
    net) the "x +" term is dropped and the rest is unchanged.  The stride is on conv1.
    """

    def __init__(self, in_planes, planes, stride=1, shortcut="A", variant="original"):
        super().__init__()
        self.variant = variant
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        # full pre-activation normalises the block input, so bn1 sees in_planes channels
        self.bn1 = nn.BatchNorm2d(in_planes if variant == "full_preact" else planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = make_shortcut(shortcut, in_planes, planes, stride)
        # None: gradients take both ways; "branch" or "shortcut": the backward goes through that
        # one only, the forward unchanged (Veit et al.'s paths of one length: surgery.route_gradients)
        self.gradient_route = None

    def forward(self, x):
        v = self.variant
        if v == "full_preact":
            out = self.conv2(bn_relu(self.bn2, self.conv1(bn_relu(self.bn1, x))))
        elif v == "relu_only_preact":
            out = self.bn2(self.conv2(bn_relu(self.bn1, self.conv1(F.relu(x)))))
        elif v == "original":                    # relu(BN(out) + shortcut), fused where it may be
            out = conv_bn_relu(self.conv1, self.bn1, x)
            if self.shortcut is None:
                return conv_bn_relu(self.conv2, self.bn2, out)
            if self.gradient_route is None:
                return conv_bn_add_relu(self.conv2, self.bn2, out, self.shortcut(x))
            # a routed backward (Veit's paths) needs the add as its own node: eager ops
            return F.relu(self._routed_add(self.bn2(self.conv2(out)), self.shortcut(x)))
        else:
            out = self.conv2(bn_relu(self.bn1, self.conv1(x)))
            if v == "relu_before_add":
                out = bn_relu(self.bn2, out)
            elif v != "bn_after_add":
                out = self.bn2(out)
        if self.shortcut is not None:
            out = self._routed_add(out, self.shortcut(x))
        if v == "bn_after_add":
            out = bn_relu(self.bn2, out)
        return out

    def _routed_add(self, out, skip):
        """out + skip, the backward through one of them only when ``gradient_route`` says so."""
        if self.gradient_route == "branch":
            skip = skip.detach()
        elif self.gradient_route == "shortcut":
            out = out.detach()
        return out + skip

    def extra_repr(self):
        return f"variant={self.variant!r}"


class CifarResNet(nn.Module):
    """The 6n+2 network; ``shortcut`` None builds the plain counterpart (same layers)."""

    def __init__(self, depth, shortcut="A", variant="original", num_classes=10, in_channels=3):
        super().__init__()
        n = blocks_per_stage(depth)
        if shortcut is not None:
            shortcut = shortcut.upper() if isinstance(shortcut, str) else shortcut
            _check_choice("shortcut option", shortcut, SHORTCUTS)
        _check_choice("variant", variant, VARIANTS)
        self.depth, self.variant, self.shortcut_option = depth, variant, shortcut
        self.preact = variant in PREACT_VARIANTS

        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        # He 2016: with full pre-activation the first block's BN-ReLU acts on conv1's output
        self.bn1 = None if variant == "full_preact" else nn.BatchNorm2d(16)
        in_planes = 16
        for k, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1,
                                         shortcut, variant))
                in_planes = planes
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
        # pre-activation units end on an addition: normalise + rectify once before pooling
        self.bn_final = nn.BatchNorm2d(64) if self.preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):                                   # (N, C, H, W)
        out = self.conv1(x) if self.bn1 is None else conv_bn_relu(self.conv1, self.bn1, x)
        out = self.layer3(self.layer2(self.layer1(out)))      # (N, 64, H/4, W/4)
        if self.bn_final is not None:
            out = bn_relu(self.bn_final, out)
        return self.linear(F.flatten(self.avgpool(out), 1))  # (N, num_classes)

    def extra_repr(self):
        return f"depth={self.depth}, shortcut={self.shortcut_option!r}, variant={self.variant!r}"


@register()
def resnet_cifar(depth, shortcut="A", variant="original", num_classes=10, in_channels=3):
    """A CIFAR ResNet of depth 6n+2.  shortcut: 'A' (zero-pad), 'B' (project where the
    shape changes), 'C' (project everywhere); variant: one of VARIANTS (He 2016, Fig. 4)."""
    if shortcut is None:
        raise ValueError("resnet_cifar: shortcut must be 'A', 'B' or 'C'; "
                         "for a net without shortcuts use plain_cifar(depth)")
    return CifarResNet(depth, shortcut, variant, num_classes, in_channels)


@register()
def plain_cifar(depth, variant="original", num_classes=10, in_channels=3):
    """The plain 6n+2 net of He 2015 §4.2: the ResNet's layers without shortcuts."""
    return CifarResNet(depth, None, variant, num_classes, in_channels)


def _named(prefix, depth, build, doc):
    def constructor(**kw):
        return build(depth, **kw)
    constructor.__name__ = constructor.__qualname__ = f"{prefix}{depth}"
    constructor.__doc__ = doc
    return register()(constructor)


def _preact(depth, **kw):
    if "variant" in kw:
        raise TypeError("preact_resnet: the variant is fixed to 'full_preact'; "
                        "use resnet_cifar(depth, variant=...) for the others")
    return resnet_cifar(depth, variant="full_preact", **kw)


# resnet20 ... resnet1202, plain20 ... plain1202, preact_resnet20 ... preact_resnet1202
_PARAMS = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M", 110: "1.7M", 1202: "19.4M"}
def _resnet(depth, pretrained=False, **kw):
    """resnet_cifar(depth, **kw); pretrained=True (or a folder of the weights) loads the
    published CIFAR-10 weights (minires.hub) where they exist."""
    model = resnet_cifar(depth, **kw)
    if pretrained is not False and pretrained is not None:
        from .. import hub                  # imported here: hub reads data/, which imports nothing of models
        hub.load_pretrained(model, f"resnet{depth}", None if pretrained is True else pretrained)
    return model


for _d in DEPTHS:
    globals()[f"resnet{_d}"] = _named("resnet", _d, _resnet,
                                      f"ResNet-{_d} for CIFAR ({_PARAMS[_d]} parameters with "
                                      f"option A); pretrained=True loads the published weights "
                                      f"(20/32/44/56, minires.hub); keyword arguments go to "
                                      f"resnet_cifar.")
for _d in DEPTHS:
    globals()[f"plain{_d}"] = _named("plain", _d, plain_cifar,
                                     f"Plain-{_d} for CIFAR (no shortcuts); keyword arguments "
                                     f"go to plain_cifar.")
for _d in DEPTHS:
    globals()[f"preact_resnet{_d}"] = _named("preact_resnet", _d, _preact,
                                             f"Full pre-activation ResNet-{_d} (He 2016); "
                                             f"keyword arguments go to resnet_cifar.")
del _d

__all__ = (["BasicBlock", "CifarResNet", "PadShortcut", "make_shortcut", "blocks_per_stage",
            "resnet_cifar", "plain_cifar", "VARIANTS", "SHORTCUTS", "DEPTHS"]
           + [f"{p}{d}" for p in ("resnet", "plain", "preact_resnet") for d in DEPTHS])
