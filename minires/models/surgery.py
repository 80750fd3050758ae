"""Lesions of a (trained) CIFAR ResNet's stack of blocks, as copies: the original is never touched.

Veit et al. 2016 ("Residual networks behave like ensembles of relatively shallow networks")
delete residual blocks from a trained net at test time, and swap neighbouring ones:

    residual_blocks(model)                    # ['layer1.0', ..., 'layer3.8']: the order data flows
    delete_blocks(model, ["layer2.3"])        # a copy in which that block passes its input on
    swap_blocks(model, "layer1.4")            # a copy in which layer1.4 and layer1.5 trade places
    route_gradients(model, ["layer1.2"])      # a copy whose backward takes paths of length 1 only

A deleted block becomes its shortcut alone: x -> x, or for the first block of a stage the
shortcut that changes the shape (option A's subsample-and-pad, B/C's projection).  A plain
net's blocks have no shortcut; a deleted one becomes the identity, or at a stage's first
block option A's subsample-and-pad, the one parameter-free map to the next stage's shape.
The no-shortcut twin of a CIFAR ResNet is ``plain_cifar(depth)`` (models/cifar.py): the same
layers under the same names, without the ``x +``.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

from .. import nn
from .cifar import CifarResNet, PadShortcut

STAGES = ("layer1", "layer2", "layer3")


class DeletedBlock(nn.Module):
    """What is left of a deleted block: its shortcut (kept under the name 'shortcut')."""

    def __init__(self, shortcut):
        super().__init__()
        self.shortcut = shortcut

    def forward(self, x):
        return self.shortcut(x)


def residual_blocks(model) -> list[str]:
    """The names of ``model``'s blocks, input side first ('layer1.0', 'layer1.1', ...)."""
    _check_model(model, "residual_blocks")
    return [f"{stage}.{key}" for stage in STAGES for key in getattr(model, stage)._modules]


def delete_blocks(model, blocks):
    """A copy of ``model`` with ``blocks`` (names, or indices into residual_blocks) deleted."""
    _check_model(model, "delete_blocks")
    new = copy.deepcopy(model)
    for name in _names(model, blocks, "delete_blocks"):
        stage_name, key = name.split(".")
        stage = getattr(new, stage_name)
        block = stage._modules[key]
        if isinstance(block, DeletedBlock):
            continue
        setattr(stage, key, DeletedBlock(_passage(block)))
    return _edited(new)


def swap_blocks(model, block):
    """A copy of ``model`` in which ``block`` and the next block of its stage trade places;
    both must keep the shape (not a stage's first block, which changes it)."""
    _check_model(model, "swap_blocks")
    (name,) = _names(model, [block], "swap_blocks")
    stage_name, key = name.split(".")
    new = copy.deepcopy(model)
    items = list(getattr(new, stage_name)._modules.items())
    i = [k for k, _ in items].index(key)
    if i == 0 or i + 1 == len(items):
        which = "the first block of its stage changes the shape" if i == 0 else "it is its stage's last block"
        raise ValueError(f"swap_blocks: cannot swap {name} with the next block: {which}; choose one of "
                         f"{', '.join(_swappable(model))}")
    items[i], items[i + 1] = items[i + 1], items[i]       # each keeps its name, so its weights' names
    setattr(new, stage_name, nn.Sequential(OrderedDict(items)))
    return _edited(new)


def route_gradients(model, through_branch):
    """A copy of ``model`` (a CIFAR ResNet) whose forward is unchanged but whose backward
    goes through the residual branch of each block in ``through_branch`` only and through
    the shortcut of every other block only: the gradient at the input is then carried by
    the paths of length k = len(through_branch) that use exactly those branches (Veit et
    al. 2016, Sec. 5).  Every block keeps its post-addition ReLU mask, as a path through
    it does."""
    _check_model(model, "route_gradients")
    if model.shortcut_option is None:
        raise ValueError("route_gradients: a plain net has no shortcuts, so one path only "
                         "(through every block); give a ResNet")
    chosen = set(_names(model, through_branch, "route_gradients"))
    new = copy.deepcopy(model)
    for name in residual_blocks(new):
        stage_name, key = name.split(".")
        block = getattr(new, stage_name)._modules[key]
        if isinstance(block, DeletedBlock):
            raise ValueError(f"route_gradients: {name} is deleted; route the gradients of an intact net")
        block.gradient_route = "branch" if name in chosen else "shortcut"
    return _edited(new)


def _swappable(model):
    return [f"{stage}.{key}" for stage in STAGES for key in list(getattr(model, stage)._modules)[1:-1]]


def _passage(block):
    """The map a deleted block leaves behind: its shortcut, else identity or option A's pad."""
    if getattr(block, "shortcut", None) is not None:
        return block.shortcut
    stride, in_planes, planes = block.conv1.stride, block.conv1.in_channels, block.conv2.out_channels
    stride = stride[0] if isinstance(stride, tuple) else stride
    if stride == 1 and in_planes == planes:
        return nn.Identity()
    return PadShortcut(in_planes, planes, stride)


def _edited(model):
    model.config = None       # no longer a registered architecture: from_config cannot rebuild it
    return model


def _check_model(model, fn):
    if not isinstance(model, CifarResNet):
        raise TypeError(f"{fn}: expected a CIFAR ResNet or plain net (minires.models.resnet_cifar, "
                        f"plain_cifar), got {type(model).__name__}")


def _names(model, blocks, fn):
    names = residual_blocks(model)
    if isinstance(blocks, (str, int)):
        blocks = [blocks]
    out = []
    for b in blocks:
        if isinstance(b, int) and not isinstance(b, bool) and -len(names) <= b < len(names):
            out.append(names[b])
        elif isinstance(b, str) and b in names:
            out.append(b)
        else:
            raise ValueError(f"{fn}: no block {b!r} in this {model.depth}-layer net; blocks are "
                             f"0..{len(names) - 1} or {names[0]} ... {names[-1]}")
    return out
