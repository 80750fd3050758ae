"""Lesion study: a trained ResNet survives losing a block, a plain net does not (Veit et al. 2016).

The claim: a residual network behaves like an ensemble of many paths of different lengths,
most of them short, rather than one deep pipeline -- so deleting one residual block at test
time removes only half of the paths, and the rest still vote.  In a plain net every path
goes through every layer, so deleting any layer breaks all of them.

Veit et al. ("Residual Networks Behave Like Ensembles of Relatively Shallow Networks",
NeurIPS 2016), CIFAR-10, ResNet-110 (54 blocks) vs a 15-layer VGG: deleting single blocks
barely changes the ResNet's test error, except at the blocks that downsample, while the
VGG falls to chance (90 % error) whichever layer goes (Fig. 3); deleting k random blocks
raises the ResNet's error smoothly with k (Fig. 5a);
swapping k pairs of neighbouring blocks degrades it smoothly too (Fig. 5b).

Here: the published ResNet-20 (quick) or ResNet-56 (full) weights (minires.hub, trained
200 epochs) against its no-shortcut twin plain-D trained by minires here (a short run,
said in the caption), each measured on the first test images:

    python demos/lesion.py --quick --data-dir ../shared/data/cifar-10-subset-python.tar.gz
"""
import sys

import numpy as np

from minires import data
from minires.models.surgery import delete_blocks, residual_blocks, swap_blocks
from minires.train import evaluate

import _nets

PRESETS = {
    "smoke": dict(depth=20, test_images=24, plain_epochs=1, plain_train_images=64, max_k=2, samples=1),
    "quick": dict(depth=20, test_images=1017, plain_epochs=10, plain_train_images=5170, max_k=6, samples=3),
    "full": dict(depth=56, test_images=10000, plain_epochs=10, plain_train_images=50000, max_k=15,
                 samples=3),
}
PAPER = "Veit et al. 2016 (ResNet-110 vs VGG-15): single deletions ~+1 % except downsampling; VGG -> 90 %"


def error_rate(model, loader):
    return evaluate(model, loader)[1]


def single_deletions(model, loader):
    """Test error with each block deleted in turn, in residual_blocks order."""
    return [error_rate(delete_blocks(model, [name]), loader) for name in residual_blocks(model)]


def random_deletions(model, loader, max_k, samples, rng):
    """{k: [test error of `samples` random k-block deletions]} for k = 1..max_k."""
    names = residual_blocks(model)
    return {k: [error_rate(delete_blocks(model, list(rng.choice(names, k, replace=False))), loader)
                for _ in range(samples)] for k in range(1, max_k + 1)}


def adjacent_swaps(model, loader):
    """{block: test error with it and the next block of its stage swapped}, every such pair."""
    names = residual_blocks(model)
    pairs = [n for i, n in enumerate(names[:-1]) if n.split(".")[0] == names[i + 1].split(".")[0]
             and not n.endswith(".0")]
    return {n: error_rate(swap_blocks(model, n), loader) for n in pairs}


def main(argv=None):
    args = _nets.parser(__doc__, PRESETS, "lesion.png").parse_args(argv)
    return _nets.run("lesion.py", args, lambda: run(args))


def run(args):
    p = PRESETS[args.preset]
    images, labels = _nets.first_images(args, False, p["test_images"])
    nets = _nets.load_nets(args, p["depth"], p["plain_epochs"], p["plain_train_images"], p["test_images"])
    device = nets[0].model.device
    rng = np.random.default_rng(args.seed)
    results = {"preset": args.preset, "test_images": len(labels), "device": device,
               "blocks": residual_blocks(nets[0].model), "nets": {}}
    for net in nets:
        loader = data.DataLoader((images, labels), 250, mean=net.mean, std=net.std, device=device)
        r = {"source": net.source, "error": error_rate(net.model, loader)}
        print(f"{net.label} ({net.source}): test error {100 * r['error']:.1f} % on {len(labels)} images")
        r["single_deletion"] = single_deletions(net.model, loader)
        print("  one block deleted: " + ", ".join(
            f"{n} {100 * e:.1f}" for n, e in zip(results["blocks"], r["single_deletion"])) + " (% error)")
        k_errors = random_deletions(net.model, loader, min(p["max_k"], len(results["blocks"])),
                                    p["samples"], rng)
        r["random_deletion"] = {"k": list(k_errors), "mean": [float(np.mean(v)) for v in k_errors.values()],
                                "std": [float(np.std(v)) for v in k_errors.values()],
                                "samples": p["samples"]}
        print(f"  k random blocks deleted (mean of {p['samples']}): " + ", ".join(
            f"k={k} {100 * m:.1f}" for k, m in zip(r["random_deletion"]["k"], r["random_deletion"]["mean"])))
        r["swap"] = adjacent_swaps(net.model, loader)
        print("  neighbours swapped: " + ", ".join(f"{n}<->next {100 * e:.1f}" for n, e in r["swap"].items()))
        results["nets"][net.label] = r
    caption = _nets.caption(args, device, [
        f"{n.label}: {n.source}." for n in nets] + [f"Errors on the first {len(labels):,} test images.",
                                                    f"Paper: {PAPER}."])
    results["caption"] = caption
    plot(results, args.out, caption)
    print(f"wrote {args.out} and {_nets.save_results(args.out, results)}")


def plot(results, out, caption):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    blocks = results["blocks"]
    fig, (ax_one, ax_k, ax_swap) = plt.subplots(1, 3, figsize=(16, 4.8), width_ratios=(2, 1.2, 1))
    x = np.arange(1, len(blocks) + 1)
    for i, (label, r) in enumerate(results["nets"].items()):
        colour = f"C{i}"
        ax_one.plot(x, 100 * np.array(r["single_deletion"]), "o-", color=colour, label=f"{label}, one block deleted")
        ax_one.axhline(100 * r["error"], color=colour, ls="--", lw=1, label=f"{label}, intact")
        rd = r["random_deletion"]
        ax_k.errorbar(rd["k"], 100 * np.array(rd["mean"]), yerr=100 * np.array(rd["std"]), fmt="o-",
                      color=colour, capsize=3, label=label)
        offset = (i - 0.5) * 0.38
        ax_swap.bar(np.arange(len(r["swap"])) + offset, 100 * np.array(list(r["swap"].values())), 0.38,
                    color=colour, label=label)
        ax_swap.axhline(100 * r["error"], color=colour, ls="--", lw=1)
    for k, name in enumerate(blocks):
        if name.endswith(".0") and not name.startswith("layer1"):
            ax_one.axvline(k + 1, color="grey", ls=":", lw=1)
    for ax in (ax_one, ax_k, ax_swap):
        ax.axhline(90, color="black", ls=":", lw=1)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    ax_one.text(1, 91, "chance", fontsize=8)
    ax_one.set(xlabel="deleted block (dotted: downsampling blocks)", ylabel="test error (%)",
               title="Delete one block", xticks=x)
    ax_one.set_xticklabels([b.replace("layer", "") for b in blocks], rotation=90 if len(blocks) > 12 else 0,
                           fontsize=7)
    ax_one.legend(fontsize=8)
    ax_k.set(xlabel="blocks deleted at random (k)", ylabel="test error (%)", title="Delete k random blocks",
             xticks=next(iter(results["nets"].values()))["random_deletion"]["k"])
    ax_k.legend(fontsize=8)
    swaps = list(next(iter(results["nets"].values()))["swap"])
    ax_swap.set(xlabel="block swapped with the next", ylabel="test error (%)", title="Swap neighbours",
                xticks=range(len(swaps)))
    ax_swap.set_xticklabels([s.replace("layer", "") for s in swaps], fontsize=7)
    ax_swap.legend(fontsize=8)
    fig.text(0.01, 0.01, caption, fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
