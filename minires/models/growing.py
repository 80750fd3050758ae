"""A deeper CIFAR net grown from a trained shallower one (He 2015 §1, §3.1; d2l §8.6,
"nested function classes"): a deeper residual net contains the shallower one.

    deep = grow(resnet8_trained, 20)    # n = 1 -> 3 blocks per stage

Every block of the shallow net keeps its place and weights (layerK.i stays layerK.i)
and the new blocks go at the end of each stage, where shape does not change.  In a
ResNet a new block's residual branch F is zeroed, so the block computes its
identity shortcut and the grown net computes exactly what the shallow one did.  A plain
net's block has no shortcut: zeroed it outputs a constant, so there its new blocks
keep their fresh initialisation, and the grown net computes something else.
"""
from __future__ import annotations

from .cifar import CifarResNet, blocks_per_stage
from ..nn import init

# where each unit's residual branch ends: zero it and F(x) = 0 (He 2016, Fig. 4 layouts);
# 'bn_after_add' normalises after the addition, so no zero branch leaves it the identity
_LAST_OF_BRANCH = {"original": "bn2", "relu_before_add": "bn2", "relu_only_preact": "bn2",
                   "full_preact": "conv2"}


def zero_residual_branch(block):
    """Make a residual block compute its shortcut: the last layer of F outputs zero.
    For 'original' units this is relu(x + 0) = x, exact because x came out of a ReLU."""
    if block.variant not in _LAST_OF_BRANCH:
        raise ValueError(f"zero_residual_branch: a {block.variant!r} unit normalises after the "
                         f"addition, so no zero branch makes it the identity; choose one of "
                         f"{', '.join(map(repr, _LAST_OF_BRANCH))}")
    last = getattr(block, _LAST_OF_BRANCH[block.variant])
    for p in (last.weight, getattr(last, "bias", None)):
        if p is not None:
            init.zeros_(p)


def grow(model, depth):
    """A CifarResNet of ``depth`` (6n+2, n at least the model's) holding ``model``'s weights;
    for a ResNet (identity shortcuts where new blocks go) it computes the same function."""
    if not isinstance(model, CifarResNet):
        raise ValueError(f"grow: expected a CIFAR ResNet or plain net (minires.models.resnet_cifar "
                         f"/ plain_cifar), got {type(model).__name__}")
    n_old, n_new = blocks_per_stage(model.depth), blocks_per_stage(depth)
    if n_new < n_old:
        raise ValueError(f"grow: depth {depth} is shallower than the model's {model.depth}; "
                         f"give a depth of at least {model.depth}")
    residual = model.shortcut_option is not None
    if residual and model.variant not in _LAST_OF_BRANCH:
        raise ValueError(f"grow: a {model.variant!r} unit normalises after the addition, so no "
                         f"zero branch makes it the identity; grow one of "
                         f"{', '.join(map(repr, _LAST_OF_BRANCH))}")
    if getattr(model, "shortcut_scale", 1.0) != 1.0:
        raise ValueError(f"grow: the model's shortcuts are scaled by {model.shortcut_scale:g}, "
                         f"so a new block is not the identity; grow an unscaled ResNet")
    deep = CifarResNet(depth, model.shortcut_option, model.variant, model.linear.out_features,
                       model.conv1.in_channels)
    state = deep.state_dict()
    state.update(model.state_dict())                 # the shallow net's names all exist in deep
    deep.load_state_dict(state)
    if residual:
        for layer in (deep.layer1, deep.layer2, deep.layer3):
            for block in list(layer)[n_old:]:
                zero_residual_branch(block)
    return deep.train(model.training).to(model.conv1.weight.device)
