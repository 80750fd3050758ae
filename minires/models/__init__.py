"""Residual networks and their plain counterparts, by name.

    cifar.py     6n+2 CIFAR ResNets (options A/B/C), plain nets, He 2016 unit variants
    imagenet.py  ResNet-18/34/50/101/152 (torchvision's layout and names)
    d2l.py       d2l's ResNet-18 for Fashion-MNIST (its biases, shortcuts and init)
    spec.py      a model and its arguments in one string: "resnet56:shortcut=B"
    registry.py  get_model / available / from_config, and model.config
    surgery.py   delete, swap or route the backward of blocks of a CIFAR net (copies; Veit 2016)
    scaled.py    shortcuts scaled by λ, h(x) = λx (He 2016, Table 1)
    ode.py       EulerNet: z + Δt·F(z) stacks, weight-tied or not (E 2017)
    growing.py   a deeper CIFAR net from a trained shallower one, new branches zeroed

    get_model("resnet110")                        # CIFAR, option A
    get_model("resnet56", shortcut="B")           # any resnet_cifar keyword
    get_model("resnet110", variant="bn_after_add")
    get_model("plain56"); get_model("preact_resnet110")   # full pre-activation
    get_model("resnet18", in_channels=1, num_classes=10)  # Fashion-MNIST
    get_model("d2l_resnet18", in_channels=1)      # the d2l book's, for Fashion-MNIST
    get_model("resnet56:shortcut=C")              # arguments inside the name (--model)
    from_config(model.config)                     # the same architecture again
    resnet56(pretrained=True)                     # published CIFAR-10 weights (minires.hub)
    delete_blocks(model, ["layer2.3"]); swap_blocks(model, "layer1.1")
"""
from . import cifar, d2l, imagenet, surgery
from .cifar import (DEPTHS, SHORTCUTS, VARIANTS, CifarResNet, plain_cifar, resnet_cifar)
from .cifar import __all__ as _cifar_names
from .d2l import d2l_resnet18
from .imagenet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152
from .registry import available, check_name, from_config, get_model, register
from .surgery import delete_blocks, residual_blocks, route_gradients, swap_blocks
from . import growing, ode, scaled                    # the demos' models
from .growing import grow, zero_residual_branch
from .ode import EulerNet, VectorField
from .scaled import ScaledShortcut, scale_shortcuts, scaled_resnet_cifar

globals().update({name: getattr(cifar, name) for name in _cifar_names
                  if name.startswith(("resnet", "plain", "preact_resnet"))})

__all__ = (["get_model", "check_name", "available", "from_config", "register", "cifar", "d2l", "imagenet", "surgery",
            "delete_blocks", "swap_blocks", "residual_blocks", "route_gradients",
            "CifarResNet", "ResNet", "resnet_cifar", "plain_cifar", "VARIANTS", "SHORTCUTS",
            "DEPTHS", "d2l_resnet18", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
            "growing", "ode", "scaled", "grow", "zero_residual_branch", "EulerNet", "VectorField",
            "ScaledShortcut", "scale_shortcuts", "scaled_resnet_cifar"]
           + [n for n in _cifar_names if n.startswith(("resnet", "plain", "preact_resnet"))
              and n not in ("resnet_cifar", "plain_cifar")])
