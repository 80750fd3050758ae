"""A residual net is forward Euler for an ODE: z_{l+1} = z_l + Δt·F(z_l) steps dz/dt = F(z).

Claim (E 2017, "A Proposal on Machine Learning via Dynamical Systems", §2): a residual
block is one forward-Euler step of dz/dt = F(z, θ(t)); a net of L blocks with Δt = T/L
approximates the flow of that ODE on [0, T], better as L grows, and the net is stable
when the steps are (Δt small against the field's rate of change).
The paper has no numbers to set beside ours: its claim is the equations and the
continuous-limit picture; forward Euler's error is first order, O(Δt) = O(1/L).

(1) One weight-tied field F (a 2-16/32-2 ReLU MLP, minires.models.EulerNet) and a linear
head are trained on two interleaved half-moons (2-D points, two classes) as a net of
L_train blocks; the same weights are then run as nets of L = 4 ... 64 blocks, Δt = T/L.
The demo plots the points' trajectories, and prints how far each net's end points are
from those of a very fine discretisation (the ODE's flow): the distance should halve as
L doubles.  (2) Stability: an untied residual MLP of L blocks at its random
initialisation, and the trained field, run with Δt from 0.01 to 1: how much the
activations ||z_L|| / ||z_0|| and the gradients ||∂E/∂z_0|| / ||∂E/∂z_L|| grow
(Δt = 1 is an ordinary ResNet's unscaled branch).

    --smoke   64 points, 5 SGD steps, nets of 2, 4, 8 blocks      (seconds)
    --quick   512 points, 300 steps, nets of 4 ... 64 blocks        (under a minute on 2 CPU cores)
    full      2048 points, 2000 steps, nets of 4 ... 256 blocks

    python demos/ode_view.py --quick
"""
import sys

import numpy as np

import _common
import minires as mr
from minires.nn import functional as F

PRESETS = {
    "smoke": dict(points=64, hidden=8, steps=5, train_blocks=4, blocks=(2, 4, 8), reference=64,
                  stability_blocks=8, stability_dim=8, dts=5),
    "quick": dict(points=512, hidden=32, steps=300, train_blocks=32, blocks=(4, 8, 16, 32, 64),
                  reference=1024, stability_blocks=64, stability_dim=16, dts=13),
    "full": dict(points=2048, hidden=64, steps=2000, train_blocks=64,
                 blocks=(4, 8, 16, 32, 64, 128, 256), reference=4096, stability_blocks=256,
                 stability_dim=32, dts=25),
}
HORIZON = 1.0


def moons(n, rng, noise=0.1):
    """Two interleaved half-circles, n points in all: x (n, 2) float32 centred, y (n,) in {0, 1}."""
    t = rng.uniform(0, np.pi, n)
    y = np.arange(n) % 2
    x = np.where(y[:, None] == 0, np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    x = (x - (0.5, 0.25)) / 0.75 + rng.normal(0, noise, (n, 2))
    return x.astype(np.float32), y


def fit(net, x, y, steps, lr=0.02, weight_decay=1e-2):
    """Full-batch SGD with momentum; the loss of each step.  (lr 0.05 diverges for the
    2-32-2 field; without weight decay the field grows until the flow is far from smooth.)"""
    opt = mr.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def growth(net, z0, probe):
    """(||z_L|| / ||z_0||, ||∂E/∂z_0|| / ||∂E/∂z_L||) averaged over the rows, E = Σ z_L·probe."""
    z0 = mr.tensor(z0, requires_grad=True)
    zL = net.trajectory(z0)[-1]
    (zL * mr.tensor(probe)).sum().backward()
    rows = lambda a: np.linalg.norm(a, axis=1)
    return (float(np.mean(rows(zL.numpy()) / rows(z0.data))),
            float(np.mean(rows(z0.grad.numpy()) / rows(probe))))


def parse_args(argv=None):
    ap = _common.parser(__doc__, uses_cifar=False)
    ap.add_argument("--steps", type=_common.positive_int, help="SGD steps on the moons (default: the preset's)")
    return ap.parse_args(argv)


def main(argv=None):
    return _common.main("ode_view.py", parse_args(argv), run)


def run(args):
    p = _common.preset(PRESETS, args)
    if _common.device(args) != "cpu":
        print("ode_view.py runs on the CPU: its nets hold a few hundred numbers, too few for a GPU")
    rng = np.random.default_rng(0)
    x_np, y = moons(p.points, rng)
    x = mr.tensor(x_np)

    # (1) one field, trained once, discretised with more and more steps
    mr.manual_seed(0)
    trained = mr.models.EulerNet(dim=2, hidden=p.hidden, blocks=p.train_blocks, horizon=HORIZON,
                                 num_classes=2)
    losses = fit(trained, x, y, p.steps)
    print(f"trained the field as a net of {p.train_blocks} blocks (Δt = {trained.dt:g}): "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in {p.steps} full-batch SGD steps (weight decay 1e-2)")
    with mr.no_grad():
        flow_end = trained.discretised(p.reference).trajectory(x)[-1].numpy()
        paths, distances = {}, {}
        print(f"{'blocks L':>8} {'Δt':>9} {'accuracy':>9} {'mean |z_T(L) - z_T(flow)|':>26} {'ratio':>6}")
        for L in p.blocks:
            net = trained.discretised(L)
            states = net.trajectory(x)
            paths[L] = np.stack([s.numpy() for s in states])            # (L+1, N, 2)
            distances[L] = float(np.linalg.norm(paths[L][-1] - flow_end, axis=1).mean())
            accuracy = float((net.head(states[-1]).numpy().argmax(1) == y).mean())
            previous = distances.get(L // 2)
            ratio = f"{previous / distances[L]:6.2f}" if previous else ""
            print(f"{L:>8} {net.dt:>9.4g} {100 * accuracy:>8.1f}% {distances[L]:>26.4g} {ratio}")
    print(f"(the flow: the same field in {p.reference} steps; forward Euler is first order, so "
          f"the ratio should approach 2 as L doubles)")

    # (2) stability against Δt, at a fixed number of blocks
    dts = np.logspace(-2, 0, p.dts)
    mr.manual_seed(1)
    untied = mr.models.EulerNet(dim=p.stability_dim, hidden=2 * p.stability_dim,
                                blocks=p.stability_blocks, tied=False)
    z0 = rng.standard_normal((64, p.stability_dim)).astype(np.float32)
    probe = rng.standard_normal((64, p.stability_dim)).astype(np.float32)
    curves = {"random untied field": [], "trained moons field (tied)": []}
    print(f"{p.stability_blocks} blocks: growth of activations ||z_L||/||z_0|| and gradients "
          f"||∂E/∂z_0||/||∂E/∂z_L|| against Δt")
    for dt in dts:
        horizon = float(dt * p.stability_blocks)
        untied.horizon = horizon                               # Δt = T / L
        with np.errstate(over="ignore", invalid="ignore"):      # overflow is the finding
            a = growth(untied, z0, probe)
            b = growth(trained.discretised(p.stability_blocks, horizon), x_np[:64], probe[:, :2])
        curves["random untied field"].append(a)
        curves["trained moons field (tied)"].append(b)
        show = lambda v: f"{v:10.3g}" if np.isfinite(v) else f"{'overflow':>10}"
        print(f"  Δt {dt:8.3g}: random untied {show(a[0])} {show(a[1])}   "
              f"trained tied {show(b[0])} {show(b[1])}")
    plot(paths, distances, dts, curves, y, p, args)


def plot(paths, distances, dts, curves, y, p, args):
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    show = np.r_[np.flatnonzero(y == 0)[:12], np.flatnonzero(y == 1)[:12]]
    for ax, L in zip(axes[:2], (min(paths), max(paths))):
        for i in show:
            color = "C0" if y[i] == 0 else "C3"
            ax.plot(paths[L][:, i, 0], paths[L][:, i, 1], "-", color=color, lw=0.8, alpha=0.8)
            ax.plot(*paths[L][0, i], "o", color=color, ms=2.5)
            ax.plot(*paths[L][-1, i], "s", color=color, ms=3.5, mfc="none")
        ax.set(title=f"L = {L} blocks, Δt = T/L = {HORIZON / L:g}", xlabel="z₁", ylabel="z₂")
        ax.grid(alpha=0.3)
    for ax in axes[:2]:                 # one scale for both, so the two depths compare by eye
        ax.set(xlim=(min(a.get_xlim()[0] for a in axes[:2]), max(a.get_xlim()[1] for a in axes[:2])),
               ylim=(min(a.get_ylim()[0] for a in axes[:2]), max(a.get_ylim()[1] for a in axes[:2])))
    axes[0].plot([], [], "o", color="k", ms=2.5, label="z_0 (input)")
    axes[0].plot([], [], "s", color="k", mfc="none", label="z_L (to the head)")
    axes[0].legend(fontsize=7)
    Ls = np.array(sorted(distances))
    d = np.array([distances[L] for L in Ls])
    axes[2].loglog(Ls, d, "o-", label="|z_T(L) - z_T(flow)|, mean")
    axes[2].loglog(Ls, d[0] * Ls[0] / Ls, "k:", label="∝ 1/L (first order)")
    axes[2].set_xticks(Ls, [str(L) for L in Ls])
    axes[2].minorticks_off()
    axes[2].set_yticks(d, [f"{v:.3g}" for v in d])
    axes[2].set(title="convergence to the ODE's flow", xlabel="blocks L (Δt = T/L)",
                ylabel="distance of the end points")
    for i, (name, values) in enumerate(curves.items()):
        values = np.array(values)
        axes[3].loglog(dts, values[:, 0], "-o", ms=3, color=f"C{i}", label=f"{name}: activations")
        axes[3].loglog(dts, values[:, 1], "--s", ms=3, color=f"C{i}", label=f"{name}: gradients")
    axes[3].axvline(1.0, color="0.5", lw=0.8)
    axes[3].text(0.95, 0.02, "Δt = 1: an ordinary ResNet", transform=axes[3].get_xaxis_transform(),
                 fontsize=7, color="0.4", ha="right")
    axes[3].set(title=f"stability: {p.stability_blocks} blocks", xlabel="Δt",
                ylabel="growth over the net (×)")
    for ax in axes[2:]:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _common.save_plot(fig, _common.out_path(args, "ode_view"),
                      f"{args.size} preset: {p.points} moons points, field 2-{p.hidden}-2 trained as "
                      f"{p.train_blocks} blocks ({p.steps} SGD steps, weight decay 1e-2), "
                      f"T = {HORIZON:g}, flow = {p.reference} steps; stability: "
                      f"{p.stability_blocks} blocks, 64 random inputs, seeds 0/1")


if __name__ == "__main__":
    sys.exit(main())
