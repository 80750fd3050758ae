"""Nested function classes: a deeper residual net contains the shallower one.

Claim (He et al. 2015, §1 and §3.1; d2l, "Residual Networks", "Function Classes"): if extra
layers could learn the identity, a deeper net would do at least as well as a shallower one; a plain
stack finds the identity hard to fit, a residual block only has to push F(x) to zero, and
with F zeroed a deeper ResNet computes exactly what the shallower one did.
The seeds give no table for this, only the argument (He 2015 §3.1: "if the optimal function
is closer to an identity mapping than to a zero mapping, it should be easier ... to find the
perturbations with reference to an identity mapping").

(1) A plain block, relu(BN(conv(relu(BN(conv(x)))))), and the same layers with the identity
shortcut, relu(x + BN(conv(...))), are fitted by SGD to y = x on random non-negative
feature maps (inputs that come out of a ReLU, as inside a net): the squared error per step.
(2) A ResNet and a plain net of the shallow depth are trained on CIFAR-10, then grown
(minires.models.grow) to the deep depth: the ResNet's new blocks get a zeroed residual
branch and compute their shortcut, so the grown net's test predictions equal the shallow
one's; the plain net's new blocks can only be freshly initialised (zeroed, they would output
a constant), so its grown net computes something else.  Both grown nets then train on.

    --smoke   fit 5 steps; depth 8 -> 14, 3 + 3 SGD steps on 8 images, test on 32   (seconds)
    --quick   fit 300 steps; depth 8 -> 14, 100 + 40 steps of 32, 1,017 test images (~3 min, 2 CPU cores)
    full      fit 1000 steps; depth 20 -> 56, 2000 + 1000 steps of 128, the whole test split

    python demos/identity.py --quick --data-dir ../shared/data/cifar-10-subset-python.tar.gz
"""
import sys

import numpy as np

import _common
import minires as mr
from minires import data
from minires.models.cifar import BasicBlock
from minires.train import evaluate

PRESETS = {
    "smoke": dict(fit_steps=5, shallow=8, deep=14, steps=3, grown_steps=3, batch=8, test=32),
    "quick": dict(fit_steps=300, shallow=8, deep=14, steps=100, grown_steps=40, batch=32, test=None),
    "full": dict(fit_steps=1000, shallow=20, deep=56, steps=2000, grown_steps=1000, batch=128, test=None),
}


def fit_identity(block, steps, rng, lr=0.1, shape=(32, 16, 8, 8)):
    """SGD on ||block(x) - x||² / size for fresh non-negative x each step; (losses, held-out
    error in eval mode) -- the block has to compute the identity on inputs it has not seen."""
    opt = mr.optim.SGD(block.parameters(), lr=lr, momentum=0.9)
    draw = lambda: mr.tensor(np.maximum(rng.standard_normal(shape), 0).astype(np.float32))
    block.train()
    losses = []
    for _ in range(steps):
        x = draw()
        loss = ((block(x) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    block.eval()
    with mr.no_grad():
        x = draw()
        held_out = float(((block(x) - x) ** 2).mean().item())
    return losses, held_out


def parse_args(argv=None):
    ap = _common.parser(__doc__)
    ap.add_argument("--shallow", type=int, help="depth trained first, 6n+2 (default: the preset's)")
    ap.add_argument("--deep", type=int, help="depth it is grown to, 6n+2")
    ap.add_argument("--steps", type=_common.positive_int, help="SGD steps of the shallow nets")
    ap.add_argument("--grown-steps", type=_common.positive_int, help="SGD steps of the grown nets")
    ap.add_argument("--lr", type=float, default=0.1, help="learning rate of every SGD run")
    ap.add_argument("--checkpoint", action="append", metavar="FILE",
                    help="grow the net of this minires train checkpoint instead of training a "
                         "shallow one (a ResNet, a plain net, or one of each: repeat the option)")
    return ap.parse_args(argv)


def checkpoints(paths, deep, device):
    """{'ResNet' or 'plain': (model, description)} from minires train checkpoints."""
    given = {}
    for path in paths:
        model, described = _common.load_trained(path, device)
        kind = "plain" if model.shortcut_option is None else "ResNet"
        if kind in given:
            raise ValueError(f"--checkpoint {path}: a second {kind} checkpoint; give at most one "
                             f"ResNet and one plain net")
        if model.depth > deep:
            raise ValueError(f"--checkpoint {path}: its {described.split(',')[0]} is deeper than "
                             f"--deep {deep}; give a --deep of at least {model.depth}")
        given[kind] = model, described
    return given


def main(argv=None):
    return _common.main("identity.py", parse_args(argv), run)


def run(args):
    p = _common.preset(PRESETS, args)
    if p.deep < p.shallow:
        raise ValueError(f"--deep {p.deep} is shallower than --shallow {p.shallow}; give a --deep "
                         f"of at least {p.shallow}")
    device = _common.device(args)
    given = checkpoints(args.checkpoint or (), p.deep, device)
    train, test = _common.cifar(args)

    # (1) learning y = x
    fits = {}
    for name, shortcut in (("plain block", None), ("residual block", "A")):
        mr.manual_seed(0)
        losses, held_out = fit_identity(BasicBlock(16, 16, shortcut=shortcut), p.fit_steps,
                                        np.random.default_rng(0), args.lr)
        fits[name] = losses
        print(f"fit y = x, {name:<14}: squared error at step 1 {losses[0]:.4f}, at step "
              f"{len(losses)} {losses[-1]:.2e}; on new inputs (eval mode) {held_out:.2e}")

    # (2) grow a trained shallow net
    norm = dict(mean=data.CIFAR10_MEAN, std=data.CIFAR10_STD, device=device)
    test_arrays = (test.images[:p.test], test.labels[:p.test])
    test_loader = data.DataLoader(test_arrays, 500, **norm)
    grown = {}
    for kind, build in (("ResNet", mr.models.resnet_cifar), ("plain", mr.models.plain_cifar)):
        mr.manual_seed(0)
        batches = _common.endless(data.DataLoader(train, p.batch, shuffle=True, augment=True, **norm))
        if kind in given:
            shallow, described = given[kind]
            first = []
            print(f"{kind}: grown from {described}, not trained here")
        else:
            shallow = build(p.shallow).to(device)
            first = _common.sgd_steps(shallow, batches, p.steps, args.lr)
        deep = mr.models.grow(shallow, p.deep)
        shallow.eval(), deep.eval()
        with mr.no_grad():
            x, _ = next(iter(test_loader))
            gap = float(np.abs(deep(x).numpy() - shallow(x).numpy()).max())
        errors = {"shallow": evaluate(shallow, test_loader)[1], "grown": evaluate(deep, test_loader)[1]}
        second = _common.sgd_steps(deep, batches, p.grown_steps, args.lr)
        errors["grown, trained on"] = evaluate(deep, test_loader)[1]
        grown[kind] = dict(first=first, second=second, errors=errors, depth=shallow.depth)
        print(f"{kind}-{shallow.depth} -> {kind}-{p.deep}: max |logit difference| on {len(x)} test images "
              f"{gap:.3g}; test error " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in errors.items())
              + f" ({len(test_arrays[1])} test images)")
    plot(fits, grown, p, args, len(train), len(test_arrays[1]),
         [f"{kind} from {described}" for kind, (_, described) in given.items()])


def plot(fits, grown, p, args, n_train, n_test, from_checkpoints):
    plt = _common.pyplot()
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 1.4, 0.9]})
    for i, (name, losses) in enumerate(fits.items()):
        ax0.semilogy(np.arange(1, len(losses) + 1), losses, color=f"C{i}", label=name)
    ax0.set(title="fitting y = x (one 16-channel block)", xlabel="SGD step", ylabel="mean squared error")
    grown_at = max(len(r["first"]) for r in grown.values())   # 0: both grown from checkpoints
    for i, (kind, r) in enumerate(grown.items()):
        n1 = len(r["first"])
        ax1.plot(np.arange(grown_at - n1 + 1, grown_at + 1), r["first"], "--", color=f"C{i}", lw=1,
                 label=f"{kind}-{r['depth']} (shallow)")
        ax1.plot(np.arange(grown_at + 1, grown_at + len(r["second"]) + 1), r["second"], "-", color=f"C{i}",
                 label=f"{kind}-{p.deep} grown from it")
    ax1.axvline(grown_at + 0.5, color="0.5", lw=0.8)
    ax1.text(grown_at + 1, 0.97, "grown here", transform=ax1.get_xaxis_transform(), fontsize=7,
             va="top", color="0.4")
    ax1.set(title="training loss, before and after growing", xlabel="SGD step", ylabel="cross-entropy (batch)")
    stages = list(next(iter(grown.values()))["errors"])
    width = 0.38
    for i, (kind, r) in enumerate(grown.items()):
        ax2.bar(np.arange(len(stages)) + (i - 0.5) * width, [100 * r["errors"][s] for s in stages],
                width, color=f"C{i}", label=kind)
    ax2.axhline(90, color="0.5", ls=":", lw=0.8)
    ax2.set_xticks(range(len(stages)), [s.replace(", ", ",\n") for s in stages], fontsize=8)
    ax2.set(title="test error", ylabel="test error (%)", ylim=(0, 118), yticks=range(0, 101, 20))
    ax2.legend(fontsize=7, loc="upper center", ncol=2)
    for ax in (ax0, ax1):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _common.save_plot(fig, _common.out_path(args, "identity"),
                      f"{args.size} preset: identity fit {p.fit_steps} steps of 32 random 16x8x8 maps; "
                      f"CIFAR-10 {n_train:,} train images, depth {p.shallow} -> {p.deep}, "
                      f"{p.steps} + {p.grown_steps} SGD steps of {p.batch} (lr {args.lr:g}), "
                      f"{n_test:,} test images, seed 0; dotted: chance (90 %)"
                      + "".join(f"; {note}" for note in from_checkpoints))


if __name__ == "__main__":
    sys.exit(main())
