"""Loss surfaces: shortcuts keep a deep net's loss landscape smooth (Li et al. 2018).

The claim: around a trained ResNet's weights the training loss looks like one wide,
nearly convex bowl, while the same network without shortcuts sits in a chaotic surface
full of local minima -- which is why the deep plain net is hard to train.

Li, Xu, Taylor, Studer, Goldstein ("Visualizing the Loss Landscape of Neural Nets",
NeurIPS 2018), CIFAR-10, Fig. 5: ResNet-56 convex-looking, ResNet-56-noshort chaotic
(and ResNet-20/20-noshort both convex-looking: the chaos grows with depth); the loss
f(θ + αδ + βη) on a 51×51 grid over [-1, 1]², δ and η random directions normalised
filter by filter to the norms of θ's filters, with the directions of BN parameters and
biases set to zero.

Here: the published ResNet-20 (quick) or ResNet-56 (full) weights (minires.hub) against
its no-shortcut twin plain-D trained by minires here (a short run, said in the caption;
Li et al. trained theirs fully), the loss on the first training images, BN in eval mode:

    python demos/loss_landscape.py --quick --data-dir ../shared/data/cifar-10-subset-python.tar.gz
"""
import sys

import numpy as np

from minires import backend, data
from minires.train import evaluate

import _common
import _nets

PRESETS = {
    "smoke": dict(depth=20, loss_images=16, grid=3, line=5, plain_epochs=1, plain_train_images=64),
    "quick": dict(depth=20, loss_images=256, grid=13, line=25, plain_epochs=10, plain_train_images=5170),
    "full": dict(depth=56, loss_images=500, grid=51, line=51, plain_epochs=10, plain_train_images=50000),
}
CEILING = 50.0      # contour plots: losses above this are one colour
PAPER = ("Li et al. 2018, Fig. 5: ResNet-56 convex-looking, ResNet-56-noshort chaotic; "
         "51x51 grid on [-1, 1]^2, filter-normalised directions")


def filter_normalized_direction(model, rng):
    """{parameter name: direction}: Gaussian, each filter (slice along axis 0) scaled to the
    norm of the same filter of the weights; zero for 1-D parameters (BN scale/shift, biases)."""
    directions = {}
    for name, p in model.named_parameters():
        w = backend.to_numpy(p.data)
        if w.ndim <= 1:
            directions[name] = np.zeros_like(w)
            continue
        d = rng.standard_normal(w.shape).astype(w.dtype)
        axes = tuple(range(1, w.ndim))
        norm = lambda a: np.sqrt((a.astype(np.float64) ** 2).sum(axis=axes, keepdims=True))  # noqa: E731
        d = (d * (norm(w) / (norm(d) + 1e-10))).astype(w.dtype)
        directions[name] = d
    return directions


def loss_surface(model, loader, directions, coordinates):
    """Mean cross-entropy at θ + Σ_i c_i·d_i for every coordinate tuple c (one per direction
    in ``directions``); the weights are restored afterwards.  (len(coordinates),) array."""
    params = dict(model.named_parameters())
    origin = {n: p.data.copy() for n, p in params.items()}
    xp = backend.get_array_module(next(iter(origin.values())))
    moved = [{n: xp.asarray(backend.to_device(d[n], model.device)) for n in params} for d in directions]
    losses = []
    try:
        for c in coordinates:
            for n, p in params.items():
                p.data[...] = origin[n] + sum(ci * d[n] for ci, d in zip(c, moved))
            losses.append(evaluate(model, loader)[0])
    finally:
        for n, p in params.items():
            p.data[...] = origin[n]
    return np.array(losses)


def grid_local_minima(surface):
    """Grid points lower than all their (up to 8) neighbours: one for a bowl, many for chaos."""
    n, m = surface.shape
    count = 0
    for i in range(n):
        for j in range(m):
            window = surface[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
            count += surface[i, j] == window.min() and (window == window.min()).sum() == 1
    return int(count)


def main(argv=None):
    args = _nets.parser(__doc__, PRESETS, "loss_landscape.png").parse_args(argv)
    return _nets.run("loss_landscape.py", args, lambda: run(args))


def run(args):
    p = PRESETS[args.preset]
    images, labels = _nets.first_images(args, True, p["loss_images"])
    nets = _nets.load_nets(args, p["depth"], p["plain_epochs"], p["plain_train_images"], p["loss_images"])
    device = nets[0].model.device
    line = np.linspace(-1, 1, p["line"])
    axis = np.linspace(-1, 1, p["grid"])
    results = {"preset": args.preset, "loss_images": len(labels), "device": device,
               "line": line.tolist(), "axis": axis.tolist(), "nets": {}}
    for net in nets:
        rng = np.random.default_rng(args.seed)             # the same draws for both nets
        loader = data.DataLoader((images, labels), 500, mean=net.mean, std=net.std, device=device)
        d1, d2 = filter_normalized_direction(net.model, rng), filter_normalized_direction(net.model, rng)
        r = {"source": net.source, "loss": evaluate(net.model, loader)[0]}
        r["line_loss"] = loss_surface(net.model, loader, [d1], [(a,) for a in line]).tolist()
        surface = loss_surface(net.model, loader, [d1, d2], [(a, b) for b in axis for a in axis])
        r["surface"] = surface.reshape(len(axis), len(axis)).tolist()       # [row: β][column: α]
        r["grid_local_minima"] = grid_local_minima(np.array(r["surface"]))
        r["surface_max"] = float(surface.max())
        print(f"{net.label} ({net.source}): training loss {r['loss']:.3f} on {len(labels)} images; "
              f"along one direction, α=-1..1: " + " ".join(f"{v:.2f}" for v in r["line_loss"]))
        print(f"  {len(axis)}x{len(axis)} surface: max {r['surface_max']:.2f}, "
              f"{r['grid_local_minima']} local minima on the grid")
        results["nets"][net.label] = r
    caption = _nets.caption(args, device, [f"{n.label}: {n.source}." for n in nets] + [
        f"Training loss on the first {len(labels):,} training images, {len(axis)}x{len(axis)} grid, "
        f"{len(line)} points along one direction.", f"Paper: {PAPER}."])
    results["caption"] = caption
    plot(results, args.out, caption)
    print(f"wrote {args.out} and {_nets.save_results(args.out, results)}")


def plot(results, out, caption):
    import matplotlib.colors
    plt = _common.pyplot()
    nets = results["nets"]
    fig, axes = plt.subplots(1, 1 + len(nets), figsize=(5 * (1 + len(nets)), 4.8), layout="constrained")
    for i, (label, r) in enumerate(nets.items()):
        axes[0].plot(results["line"], r["line_loss"], "-", color=f"C{i}", label=label)
    axes[0].set(xlabel="α (filter-normalised direction δ)", ylabel="training loss (cross-entropy)",
                yscale="log", title="1-D: f(θ + αδ)")
    axes[0].grid(alpha=0.3, which="both")
    axes[0].legend()
    # one log scale for both contour plots, cut at CEILING (Li et al. draw 0.1..10) so the bowl shows
    lowest = max(min(np.min(r["surface"]) for r in nets.values()), 1e-3)
    highest = min(max(np.max(r["surface"]) for r in nets.values()), CEILING)
    levels = np.geomspace(lowest, max(highest, lowest * 10), 25)
    norm = matplotlib.colors.LogNorm(levels[0], levels[-1])
    for ax, (label, r) in zip(axes[1:], nets.items()):
        a, surface = np.array(results["axis"]), np.clip(np.array(r["surface"]), levels[0], None)
        filled = ax.contourf(a, a, surface, levels=levels, cmap="viridis", norm=norm, extend="max")
        ax.contour(a, a, surface, levels=levels[::3], colors="white", linewidths=0.4)
        ax.plot(0, 0, "r+", ms=10)
        ax.set(xlabel="α (direction δ)", ylabel="β (direction η)", aspect="equal",
               title=f"2-D: {label}, {r['grid_local_minima']} grid minima")
    bar = fig.colorbar(filled, ax=list(axes[1:]), label=f"training loss (above {levels[-1]:.3g}: yellow)",
                       shrink=0.9)
    bar.set_ticks(levels[::4], labels=[f"{v:.3g}" for v in levels[::4]])
    fig.supxlabel(caption, fontsize=7, wrap=True, x=0.01, ha="left")
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
