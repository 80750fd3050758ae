"""Projection shortcuts help a little and are not essential (He et al. 2015, Table 3, options A/B/C).

Where a block changes the shape, its shortcut must too: option A zero-pads the new
channels (no parameters), B projects with a 1x1 conv there only, C projects on every
block.  B and C are slightly better than A, but so little that identities suffice.

Paper (ImageNet ResNet-34, 10-crop top-1 error; the trend, not the numbers, carries over
to CIFAR): A 25.03 %, B 24.52 %, C 24.19 % (top-5: 7.76 / 7.46 / 7.40 %).

    python demos/shortcuts.py --quick --data-dir ../shared/data
    python demos/shortcuts.py --data-dir ../shared/data --device gpu [--depth 56]
"""
import sys

import _runs

PAPER = {"A: zero-pad": "25.03", "B: some projections": "24.52", "C: all projections": "24.19"}
PRESETS = {
    "smoke": dict(_runs.SMOKE_CIFAR, about="ResNet-8, 16 images, 2 iterations", depth=8),
    # degradation.py's quick recipe (320 steps of 128 on 4,096 images measured ~16 min on 2 cores)
    "quick": dict(_runs.QUICK_CIFAR, about=f"ResNet-20, {_runs.QUICK_CIFAR_ABOUT}: ~4 min on 2 "
                  f"calm cores (7 min of CPU)", depth=20),
    "full": dict(about="ResNet-20 on all 50,000 images, 24 epochs (9,384 iterations; the paper's CIFAR "
                 "runs take 64k): about 10 min on an H200, estimated from 16-31 ms per step",
                 depth=20, epochs=24),
}


def extra(ap):
    ap.add_argument("--depth", type=int, help="depth of the three ResNets, 6n+2 (default: the preset's)")


def run(args):
    depth = args.depth or args.preset["depth"]
    nets = {label: _runs.cifar_model("resnet", depth, shortcut=label[0]) for label in PAPER}
    runs = _runs.train_all(args, nets, "shortcuts")

    _runs.compare(args, runs, "shortcuts", depth, PAPER, (
        "shortcut", "shortcut options", "the paper's ImageNet ResNet-34 top-1",
        "final test error (paper: ImageNet ResNet-34 top-1)",
        "Shortcut options A / B / C (He et al. 2015, Table 3)"))


if __name__ == "__main__":
    args = _runs.parse_args(__doc__, PRESETS, extra=extra)
    sys.exit(_runs.main("shortcuts.py", args, run))
