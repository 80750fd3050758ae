"""Where BN and ReLU sit in a residual unit matters; full pre-activation is best (He et al. 2016).

The five units differ only in where BN, ReLU and the addition sit.  BN after the
addition alters the signal on the shortcut path, and ReLU before the addition makes
every residual non-negative: both train worse.  With BN and ReLU before the
convolutions (pre-activation) the shortcut stays a clean identity, and full
pre-activation is the best of the five.

Paper (CIFAR-10, ResNet-110, test error): original 6.61 %, BN after addition 8.17 %,
ReLU before addition 7.84 %, ReLU-only pre-activation 6.71 %, full pre-activation 6.37 %.

    python demos/unit_variants.py --quick --data-dir ../shared/data
    python demos/unit_variants.py --data-dir ../shared/data --device gpu [--depth 110]
"""
import sys

import _runs

UNITS = {   # label: (minires variant, the paper's ResNet-110 test error)
    "(a) original": ("original", "6.61"),
    "(b) BN after addition": ("bn_after_add", "8.17"),
    "(c) ReLU before addition": ("relu_before_add", "7.84"),
    "(d) ReLU-only pre-activation": ("relu_only_preact", "6.71"),
    "(e) full pre-activation": ("full_preact", "6.37"),
}
PRESETS = {
    "smoke": dict(_runs.SMOKE_CIFAR, about="ResNet-8, 16 images, 2 iterations", depth=8),
    # degradation.py's quick recipe (192 steps of 128 on 4,096 images: ~16 min on 2 cores)
    "quick": dict(_runs.QUICK_CIFAR, about=f"ResNet-20, {_runs.QUICK_CIFAR_ABOUT}: est. ~6 min on 2 "
                  f"calm cores", depth=20),
    "full": dict(about="ResNet-20 on all 50,000 images, 15 epochs (5,865 iterations; the paper: "
                 "ResNet-110, 64k): about 10 min on an H200, estimated from 16-31 ms per step",
                 depth=20, epochs=15),
}


def extra(ap):
    ap.add_argument("--depth", type=int, help="depth of the five ResNets, 6n+2 (default: the "
                    "preset's; the paper's is 110)")


def run(args):
    depth = args.depth or args.preset["depth"]
    nets = {label: _runs.cifar_model("resnet", depth, variant=variant)
            for label, (variant, _) in UNITS.items()}
    warm = _runs.deep_warmups({label: depth for label in nets})
    runs = _runs.train_all(args, nets, "unit_variants", warm)

    paper = {label: error for label, (_, error) in UNITS.items()}
    _runs.compare(args, runs, "unit_variants", depth, paper, (
        "unit", "residual units", "the paper's ResNet-110",
        "final test error (paper: ResNet-110, 64k iterations)",
        "Residual unit variants (He et al. 2016, Fig. 4, Table 2)"))


if __name__ == "__main__":
    args = _runs.parse_args(__doc__, PRESETS, extra=extra)
    sys.exit(_runs.main("unit_variants.py", args, run))
