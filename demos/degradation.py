"""Degradation: deeper plain nets train worse, deeper ResNets do not (He et al. 2015, Fig. 1, Fig. 6).

A plain net of 56 layers has a higher *training* error than one of 20: not overfitting,
an optimisation difficulty.  The same layers with identity shortcuts (option A) train
better as they get deeper.

Paper (CIFAR-10, 64k iterations, Fig. 6): plain-56 lies above plain-20 in training and
test error for the whole run and plain-110 stays above 60 % error; ResNet-56 lies below
ResNet-20 and ResNet-110 below both (test error 8.75 / 6.97 / 6.43 %, Table 6).

Each net trains with the same recipe through minires's trainer, one run folder each:

    python demos/degradation.py --quick --data-dir ../shared/data       # CPU, ~10 min, 20/56
    python demos/degradation.py --data-dir ../shared/data --device gpu  # 20/56/110
"""
import sys

import _runs

# The paper's warm-up of ResNet-110 and deeper: _runs.deep_warmups (the quick preset warms
# every net up over its first epoch: _runs.QUICK_CIFAR).
PRESETS = {
    "smoke": dict(_runs.SMOKE_CIFAR, about="depths 8 and 14, 16 images, 2 iterations", depths=(8, 14)),
    "quick": dict(_runs.QUICK_CIFAR, about=f"depths 20 and 56, {_runs.QUICK_CIFAR_ABOUT}: est. ~10 min "
                  f"on 2 calm cores (36 min of CPU measured on a loaded machine)", depths=(20, 56)),
    "full": dict(about="depths 20, 56 and 110 on all 50,000 images, 4 epochs (1,564 iterations; the "
                 "paper trains 64k): about 10 min on an H200, estimated from ResNet-20's 16-31 ms per "
                 "step", depths=(20, 56, 110), epochs=4),
}


def run(args):
    depths = args.preset["depths"]
    depth_of = {f"{kind}-{d}": d for kind in ("plain", "ResNet") for d in depths}
    nets = {label: _runs.cifar_model(label.split("-")[0].lower(), d) for label, d in depth_of.items()}
    runs = _runs.train_all(args, nets, "degradation", _runs.deep_warmups(depth_of))

    print(f"\ndegradation ({args.size} preset): final errors, %")
    _runs.table([(r.label, f"{r.parameters:,}", _runs.percent(r.last["train_error"]),
                  _runs.percent(r.last["test_error"]), r.source) for r in runs.values()],
                ("net", "parameters", "train error", "test error", "run"))
    shallow, deep = min(depths), max(depths)
    for kind, paper in (("plain", "above"), ("ResNet", "below")):     # Fig. 6, left and middle
        a, b = runs[f"{kind}-{shallow}"].last["train_error"], runs[f"{kind}-{deep}"].last["train_error"]
        where = "above" if b > a else "below" if b < a else "level with"
        print(f"{kind}-{deep} {where} {kind}-{shallow} in training error "
              f"({_runs.percent(b)} % vs {_runs.percent(a)} %); the paper: {paper}")
    a, b = runs[f"plain-{deep}"].last["train_error"], runs[f"ResNet-{deep}"].last["train_error"]
    where = "above" if b > a else "below" if b < a else "level with"
    print(f"ResNet-{deep} {where} plain-{deep} in training error ({_runs.percent(b)} % vs "
          f"{_runs.percent(a)} %); the paper: below (Fig. 6: 56 layers, shortcuts the only difference)")

    fig, (ax_plain, ax_res) = _runs.figure(1, 2)
    _runs.draw_curves(ax_plain, [runs[f"plain-{d}"] for d in depths], title="plain networks")
    _runs.draw_curves(ax_res, [runs[f"ResNet-{d}"] for d in depths], title="ResNets (option A)")
    top = max(ax.get_ylim()[1] for ax in (ax_plain, ax_res))
    for ax in (ax_plain, ax_res):
        ax.set_ylim(0, top)
    fig.suptitle("Degradation (He et al. 2015, Fig. 6): dashed training error, solid test error")
    _runs.save(fig, args, "degradation", runs)


if __name__ == "__main__":
    args = _runs.parse_args(__doc__, PRESETS)
    sys.exit(_runs.main("degradation.py", args, run))
