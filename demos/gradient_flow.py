"""The shortcut's "+1": gradient norms block by block, plain net vs ResNet vs scaled shortcuts.

Claim (He et al. 2016, "Identity Mappings", Eq. 5 and §3.1): with identity shortcuts the
gradient reaching block l is ∂E/∂x_l = ∂E/∂x_L (1 + ∂/∂x_l Σ F), so it cannot vanish
however deep the net is; scale the shortcut, h(x) = λx, and the "1" becomes λ^(L-l):
the gradient vanishes (λ < 1) or explodes (λ > 1) geometrically in depth.
Paper's numbers (Table 1, ResNet-110 on CIFAR-10, test error): identity shortcut 6.61 %;
λ = 0.5 on the shortcut: "fail" (> 20 %); λ = 0.5 on both shortcut and F: 12.35 %.
(He 2015, Fig. 6: the plain-110 stays above 60 % error.)

For a plain net, ResNets with λ = 0.5, 1, 2 (He 2015's option A), all built from the same
seed, this demo records ||∂E/∂x_l|| at every block input (Tensor.register_hook) on one
batch of CIFAR-10 training images, at initialisation and again after a short run of SGD
(He 2015's optimiser, lr 0.1), and plots the norms against depth with the λ^(L-l) lines.
--pretrained adds a fully trained ResNet (the published npz weights, ../shared/models) and
--checkpoint a net trained by minires train (a plain or residual CIFAR net of any depth),
measured the same way.  Presets (blocks = 3n for depth 6n+2):

    --smoke   depth 8,  measure on 4 images, 2 SGD steps of 8      (seconds)
    --quick   depth 20, measure on 64, 30 SGD steps of 32          (~3 min on 2 CPU cores)
    full      depth 110, measure on 128, 500 SGD steps of 128      (the GPU)

    python demos/gradient_flow.py --quick --data-dir ../shared/data/cifar-10-subset-python.tar.gz
"""
import math
import sys
from pathlib import Path

import numpy as np

import _common
import minires as mr
from minires import data, hub
from minires.nn import functional as F

PRESETS = {
    "smoke": dict(depth=8, batch=4, steps=2, train_batch=8),
    "quick": dict(depth=20, batch=64, steps=30, train_batch=32),
    "full": dict(depth=110, batch=128, steps=500, train_batch=128),
}
SCALES = (0.5, 1.0, 2.0)


def block_gradient_norms(model, x, y):
    """||∂E/∂x_l|| for the input x_l of every residual block, in depth order."""
    blocks = [b for layer in (model.layer1, model.layer2, model.layer3) for b in layer]
    norms = {}

    def record(k):
        def hook(module, inputs, output):
            inputs[0].register_hook(lambda g: norms.__setitem__(k, float(np.linalg.norm(g.numpy()))))
        return hook
    handles = [b.register_forward_hook(record(k)) for k, b in enumerate(blocks)]
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    for h in handles:
        h.remove()
    return [norms.get(k, math.nan) for k in range(len(blocks))]


def nets(depth):
    """name -> constructor; each is called right after mr.manual_seed(0)."""
    table = {f"plain-{depth}": lambda: mr.models.plain_cifar(depth)}
    for lam in SCALES:
        label = f"ResNet-{depth}, λ = {lam:g}" + (" (identity)" if lam == 1 else "")
        table[label] = lambda lam=lam: mr.models.scaled_resnet_cifar(depth, scale=lam)
    return table


def parse_args(argv=None):
    ap = _common.parser(__doc__)
    ap.add_argument("--depth", type=int, help="depth of every net, 6n+2 (default: the preset's)")
    ap.add_argument("--batch", type=_common.positive_int, help="images the gradients are measured on")
    ap.add_argument("--steps", type=_common.positive_int, help="SGD steps before the second measurement")
    ap.add_argument("--train-batch", type=_common.positive_int, help="batch size of those steps")
    ap.add_argument("--lr", type=float, default=0.1, help="their learning rate")
    ap.add_argument("--pretrained", metavar="FILE.npz",
                    help="also measure this trained ResNet of --depth (minires state_dict names, "
                         "e.g. ../shared/models/resnet20-12fca82f.npz)")
    ap.add_argument("--checkpoint", action="append", metavar="FILE",
                    help="also measure the net of this minires train checkpoint (repeatable), "
                         "e.g. runs/plain20-cifar10/checkpoint.npz")
    return ap.parse_args(argv)


def main(argv=None):
    """The demo as a command: its exit status, errors as one line like minires train's."""
    return _common.main("gradient_flow.py", parse_args(argv), run)


def run(args):
    p = _common.preset(PRESETS, args)
    device = _common.device(args)
    published = load_published(args.pretrained, p.depth, device) if args.pretrained else None
    checkpoints = [_common.load_trained(path, device) for path in args.checkpoint or ()]
    train, _ = _common.cifar(args)
    norm = dict(mean=data.CIFAR10_MEAN, std=data.CIFAR10_STD, device=device)
    x, y = next(iter(data.DataLoader(train, p.batch, **norm)))          # the measuring batch
    result = {}
    for name, build in nets(p.depth).items():
        mr.manual_seed(0)
        model = build().to(device)
        at_init = block_gradient_norms(model, mr.tensor(x.data, requires_grad=True), y)
        batches = _common.endless(data.DataLoader(train, p.train_batch, shuffle=True, augment=True, **norm))
        losses = _common.sgd_steps(model, batches, p.steps, args.lr)
        diverged = not math.isfinite(losses[-1])
        trained = ([math.nan] * len(at_init) if diverged else
                   block_gradient_norms(model, mr.tensor(x.data, requires_grad=True), y))
        result[name] = dict(init=at_init, trained=trained, losses=losses)
        print(f"{name:<30} gradient at block 1 / at block {len(at_init)}: at init "
              f"{at_init[0] / at_init[-1]:9.3g}, after {len(losses)} steps "
              + (f"diverged (loss {losses[-1]})" if diverged else
                 f"{trained[0] / trained[-1]:9.3g}; training loss {losses[0]:.4g} -> "
                 f"{np.mean(losses[-5:]):.4g} (mean of the last 5)"))
    if published is not None:
        xp_, yp = next(iter(data.DataLoader(train, p.batch, mean=hub.PRETRAINED_MEAN,
                                            std=hub.PRETRAINED_STD, device=device)))
        published.train()                   # batch statistics, as in the other measurements
        trained = block_gradient_norms(published, mr.tensor(xp_.data, requires_grad=True), yp)
        result[f"ResNet-{p.depth}, published weights"] = dict(init=None, trained=trained, losses=None)
        print(f"{'ResNet-%d, published weights' % p.depth:<30} gradient at block 1 / at block "
              f"{len(trained)}: after 200 epochs {trained[0] / trained[-1]:9.3g}")
    for model, described in checkpoints:
        model.train()
        trained = block_gradient_norms(model, mr.tensor(x.data, requires_grad=True), y)
        result[described] = dict(init=None, trained=trained, losses=None)
        print(f"{described:<30} gradient at block 1 / at block {len(trained)}: "
              f"{trained[0] / trained[-1]:9.3g}")
    plot(result, p, args)


def load_published(path, depth, device):
    """A ResNet-depth holding the npz weights at path (minires state_dict names)."""
    if not Path(path).is_file():
        raise ValueError(f"--pretrained {path}: no such file; give an npz of minires state_dict "
                         f"weights, e.g. ../shared/models/resnet20-12fca82f.npz")
    model = mr.models.resnet_cifar(depth).to(device)
    try:
        model.load_state_dict(dict(np.load(path)))
    except (KeyError, ValueError):
        raise ValueError(f"--pretrained {path}: not the weights of a ResNet-{depth} (its keys or "
                         f"shapes differ); give the file of that depth, or a --depth that matches "
                         f"the file") from None
    return model


def plot(result, p, args):
    plt = _common.pyplot()
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(14, 4.2))
    blocks = 3 * ((p.depth - 2) // 6)
    for i, (name, r) in enumerate(result.items()):
        color = f"C{i}"
        k = np.arange(1, len(r["trained"]) + 1)           # a checkpoint may have another depth
        if r["init"] is not None:
            ax0.semilogy(k, r["init"], "o-", ms=3, color=color, label=name)
            lam = float(name.split("λ = ")[1].split()[0]) if "λ" in name else None
            if lam not in (None, 1.0):      # the shortcut path alone: λ^(L-l) times the top gradient
                ax0.semilogy(k, r["init"][-1] * lam ** (blocks - k), ":", color=color, lw=1,
                             label=f"λ^(L-l) = {lam:g}^(L-l)")
        if not all(math.isnan(v) for v in r["trained"]):
            ax1.semilogy(k, r["trained"], "o-", ms=3, color=color, label=name)
        if r["losses"] is not None:
            ax2.plot(np.arange(1, len(r["losses"]) + 1), r["losses"], "-", color=color, label=name)
    ax0.set(title="at initialisation", xlabel="block l (input side → output side)",
            ylabel="‖∂E/∂x_l‖")
    ax1.set(title=f"after {p.steps} SGD steps, and trained nets (diverged left out)",
            xlabel="block l (input side → output side)", ylabel="‖∂E/∂x_l‖")
    ax2.set(title="training loss of those steps", xlabel="SGD step", ylabel="cross-entropy (batch)",
            yscale="log")
    for ax in (ax0, ax1, ax2):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _common.save_plot(fig, _common.out_path(args, "gradient_flow"),
                      f"{args.size} preset: depth {p.depth}, gradients on {p.batch} CIFAR-10 training "
                      f"images, {p.steps} SGD steps of {p.train_batch} (lr {args.lr:g}, seed 0)")


if __name__ == "__main__":
    sys.exit(main())
