"""Depth helps when the shortcuts are identities (He et al. 2015, Table 6).

With option-A shortcuts, CIFAR-10 test error falls as the ResNet deepens from 20 to 110
layers, for parameters that grow with depth; only the 1202-layer net, 19.4M parameters
on 50,000 images, is worse again (overfitting, the paper argues).

Paper (CIFAR-10, 64k iterations, best of 5 runs for 110):
    ResNet-20 / 32 / 44 / 56 / 110 / 1202: 8.75 / 7.51 / 7.17 / 6.97 / 6.43 / 7.93 % test error,
    0.27M / 0.46M / 0.66M / 0.85M / 1.7M / 19.4M parameters.

    python demos/depth_sweep.py --quick --data-dir ../shared/data
    python demos/depth_sweep.py --data-dir ../shared/data --device gpu
    python demos/depth_sweep.py --data-dir ../shared/data --device gpu --depths 20 110 1202
"""
import sys

import _runs

PAPER = {20: (8.75, "0.27M"), 32: (7.51, "0.46M"), 44: (7.17, "0.66M"), 56: (6.97, "0.85M"),
         110: (6.43, "1.7M"), 1202: (7.93, "19.4M")}
# ResNet-110 and deeper are warmed up as the paper does: _runs.deep_warmups
PRESETS = {
    "smoke": dict(_runs.SMOKE_CIFAR, about="depths 8 and 14, 16 images, 2 iterations", depths=(8, 14)),
    # the same settings as degradation.py --quick: its ResNet-20/56 runs can be given with --run
    "quick": dict(_runs.QUICK_CIFAR, about=f"depths 20, 32, 44 and 56, {_runs.QUICK_CIFAR_ABOUT}: "
                  f"est. ~10 min on 2 calm cores, ~5 with --run from degradation.py --quick",
                  depths=(20, 32, 44, 56)),
    "full": dict(about="depths 20 to 110 on all 50,000 images, 6 epochs (2,346 iterations; the paper "
                 "trains 64k): about 10 min on an H200, estimated from ResNet-20's 16-31 ms per step",
                 depths=(20, 32, 44, 56, 110), epochs=6),
}


def extra(ap):
    ap.add_argument("--depths", type=int, nargs="+", help="the depths to train, 6n+2 "
                    "(default: the preset's; 1202 takes ~65x ResNet-20's time per epoch)")


def run(args):
    depths = args.depths or args.preset["depths"]
    nets = {f"ResNet-{d}": _runs.cifar_model("resnet", d) for d in depths}
    runs = _runs.train_all(args, nets, "depth_sweep", _runs.deep_warmups({f"ResNet-{d}": d for d in depths}))

    print(f"\ndepth sweep ({args.size} preset): final test error, %; the paper's (Table 6, 64k iterations)")
    rows = []
    for d, r in zip(depths, runs.values()):
        paper_error, paper_params = PAPER.get(d, ("-", "-"))
        rows.append((r.label, f"{r.parameters:,}", paper_params, _runs.percent(r.last["train_error"]),
                     _runs.percent(r.last["test_error"]), paper_error, r.source))
    _runs.table(rows, ("net", "parameters", "paper", "train error", "test error", "paper", "run"))

    fig, (ax_depth, ax_curves) = _runs.figure(1, 2)
    ours = [100 * r.last["test_error"] for r in runs.values()]
    ax_depth.plot(depths, ours, "o-", color="C0", label="minires, this run (test)")
    ax_depth.plot(depths, [100 * r.last["train_error"] for r in runs.values()], "o--", color="C0",
                  label="minires, this run (train)")
    known = [d for d in depths if d in PAPER]
    if known:
        ax_depth.plot(known, [PAPER[d][0] for d in known], "s-", color="0.5",
                      label="He et al. 2015, Table 6 (test, 64k iterations)")
    for d, r, error in zip(depths, runs.values(), ours):
        ax_depth.annotate(f"{r.parameters / 1e6:.2f}M", (d, error), textcoords="offset points", ha="center",
                          xytext=(0, 7), fontsize=7)
    ax_depth.margins(y=0.15)                    # room for the parameter labels
    ax_depth.set_xscale("log")
    ax_depth.set_xticks(depths, [str(d) for d in depths])
    ax_depth.minorticks_off()
    ax_depth.set(xlabel="depth (layers; labels: parameters)", ylabel="final error (%)",
                 title="final error against depth")
    ax_depth.grid(alpha=0.3)
    ax_depth.legend(fontsize=7)
    _runs.draw_curves(ax_curves, list(runs.values()), title="error per epoch")
    fig.suptitle("ResNets of growing depth, option-A shortcuts (He et al. 2015, Table 6)")
    _runs.save(fig, args, "depth_sweep", runs)


if __name__ == "__main__":
    args = _runs.parse_args(__doc__, PRESETS, extra=extra)
    sys.exit(_runs.main("depth_sweep.py", args, run))
