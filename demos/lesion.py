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
swapping k pairs of neighbouring blocks degrades it smoothly too (Fig. 5b).  The paths:
n blocks unravel into 2^n paths, C(n, k) of them through k residual branches, so path
lengths are binomial (Fig. 6a); the gradient a path carries falls fast with its length
(Fig. 6b), so the gradient comes from short paths, 5-17 of ResNet-110's 54 blocks (Fig. 6c).

The gradient per path length is measured as Veit et al. do (Sec. 5): for k = 0..n, draw k
blocks at random, let the backward pass through the residual branch of those blocks only
and through the shortcut of every other block (models.route_gradients: the forward is
unchanged), and take the norm of the gradient of the loss at the input images, per image,
averaged over images and draws.  A plain net has one path, through all n blocks.

Here: the published ResNet-20 (quick) or ResNet-56 (full) weights (minires.hub, trained
200 epochs) against its no-shortcut twin plain-D trained by minires here (a short run,
said in the caption), each measured on the first test images:

    python demos/lesion.py --quick --data-dir ../shared/data/cifar-10-subset-python.tar.gz
    python demos/lesion.py --quick --data-dir ... --reuse docs/lesion_quick.json   # paths only
"""
import itertools
import json
import math
import sys

import numpy as np

import minires as mr
from minires import data
from minires.models.surgery import delete_blocks, residual_blocks, route_gradients, swap_blocks
from minires.nn import functional as F
from minires.train import evaluate

import _common
import _nets

PRESETS = {   # path_images / path_samples: images and draws per length for the gradient per path
    "smoke": dict(depth=20, test_images=24, plain_epochs=1, plain_train_images=64, max_k=2, samples=1,
                  path_images=8, path_samples=1),
    "quick": dict(depth=20, test_images=1017, plain_epochs=10, plain_train_images=5170, max_k=6, samples=3,
                  path_images=100, path_samples=4),
    "full": dict(depth=56, test_images=10000, plain_epochs=10, plain_train_images=50000, max_k=15,
                 samples=3, path_images=500, path_samples=8),
}
EFFECTIVE = 0.9       # the "effective" path lengths: the central lengths carrying 90 % of the gradient
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


def input_gradient_norm(model, x, y):
    """Mean over images of |dE/dx| at the input (E: each image's cross-entropy)."""
    x = mr.tensor(x, requires_grad=True, device=model.device)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    g = x.grad.numpy().reshape(len(y), -1)
    return float(np.linalg.norm(g, axis=1).mean())


def path_gradients(model, x, y, samples, rng):
    """Veit et al.'s Sec. 5 on ``model`` (a ResNet of n blocks): for each path length k = 0..n,
    the mean input-gradient norm with the backward routed through k random residual branches
    (every subset when there are at most ``samples``), and how many paths have that length."""
    names = residual_blocks(model)
    n = len(names)
    per_path = []
    for k in range(n + 1):
        if math.comb(n, k) <= samples:
            subsets = [list(c) for c in itertools.combinations(names, k)]
        else:
            subsets = [list(rng.choice(names, k, replace=False)) for _ in range(samples)]
        norms = [input_gradient_norm(route_gradients(model, s), x, y) for s in subsets]
        per_path.append(float(np.mean(norms)))
    count = [math.comb(n, k) for k in range(n + 1)]
    total = [c * g for c, g in zip(count, per_path)]      # the triangle inequality's bound, as Veit's
    return {"length": list(range(n + 1)), "paths": count, "per_path": per_path, "total": total,
            "effective": effective_lengths(total), "images": len(y), "samples": samples}


def effective_lengths(total, share=EFFECTIVE):
    """The shortest run of neighbouring lengths, grown from the largest, carrying ``share`` of the sum."""
    lo = hi = int(np.argmax(total))
    while sum(total[lo:hi + 1]) < share * sum(total):
        left = total[lo - 1] if lo > 0 else -1.0
        right = total[hi + 1] if hi + 1 < len(total) else -1.0
        lo, hi = (lo - 1, hi) if left >= right else (lo, hi + 1)
    return [lo, hi]


def main(argv=None):
    ap = _nets.parser(__doc__, PRESETS, "lesion.png")
    ap.add_argument("--reuse", metavar="FILE.json", help="take the deletion and swap results of a "
                    "previous run of this preset (its .json, e.g. docs/lesion_quick.json) instead of "
                    "measuring them again, so no plain net is trained; measure the paths only")
    args = ap.parse_args(argv)
    return _nets.run("lesion.py", args, lambda: run(args))


def reused(args):
    """The deletion results of a previous run (--reuse), checked to be this preset's."""
    try:
        results = json.loads(open(args.reuse).read())
    except (OSError, ValueError) as e:
        raise ValueError(f"--reuse {args.reuse}: cannot read it ({e})") from None
    if results.get("preset") != args.preset or "nets" not in results:
        raise ValueError(f"--reuse {args.reuse}: not a lesion.py --{args.preset} result (its preset: "
                         f"{results.get('preset')}); run without --reuse")
    return results


def run(args):
    p = PRESETS[args.preset]
    rng = np.random.default_rng(args.seed)
    if args.reuse:
        old = reused(args)
        resnet = _nets.load_nets(args, p["depth"], None, None, None, plain=False)[0]
        device = resnet.model.device
        print(f"deletions and swaps: read from {args.reuse} (measured {old['caption'].split('. ')[0]})")
        results = {**old, "device": device, "reused": f"{args.reuse}: {old['caption']}"}
    else:
        results, device, resnet = measure_lesions(args, p, rng)
    images, labels = _nets.first_images(args, False, p["path_images"])
    loader = data.DataLoader((images, labels), len(labels), mean=resnet.mean, std=resnet.std, device=device)
    x, y = next(iter(loader))
    results["paths"] = path_gradients(resnet.model, x.numpy(), y, p["path_samples"], rng)
    pg = results["paths"]
    lo, hi = pg["effective"]
    print(f"{resnet.label}: {len(pg['length']) - 1} blocks, {sum(pg['paths']):,} paths; gradient per path "
          f"(|dE/dx|; {pg['images']} images, draws per length: {pg['samples']}): " +
          ", ".join(f"k={k} {g:.2e}" for k, g in zip(pg["length"], pg["per_path"])))
    print(f"  effective paths ({100 * EFFECTIVE:.0f} % of the summed gradient): {lo}-{hi} residual branches "
          f"of {len(pg['length']) - 1}; the paper (ResNet-110): 5-17 of 54")
    lines = [f"Path gradients: {resnet.label}, first {pg['images']} test images, draws per length: "
             f"{pg['samples']} (measured {_nets.caption(args, device, []).split(', ', 2)[2].strip('. ')})."]
    if args.reuse:
        results["caption"] = old["caption"] + " " + lines[0]
    else:
        results["caption"] += " " + lines[0]
    plot(results, args.out, results["caption"])
    print(f"wrote {args.out} and {_nets.save_results(args.out, results)}")


def measure_lesions(args, p, rng):
    """The deletion and swap results of both nets: (results, device, the ResNet Net)."""
    images, labels = _nets.first_images(args, False, p["test_images"])
    nets = _nets.load_nets(args, p["depth"], p["plain_epochs"], p["plain_train_images"], p["test_images"])
    device = nets[0].model.device
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
    return results, device, nets[0]


def plot(results, out, caption):
    plt = _common.pyplot()
    blocks = results["blocks"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.6), width_ratios=(2, 1.2, 1))
    (ax_one, ax_k, ax_swap), bottom = axes
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
    if "paths" in results:
        plot_paths(bottom, results["paths"], next(iter(results["nets"])))
    else:
        for ax in bottom:
            ax.set_visible(False)
    fig.text(0.01, 0.01, caption, fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_paths(axes, pg, label):
    """Veit et al. Fig. 6: how many paths have each length, the gradient one path of that length
    carries, and their product; the effective lengths shaded."""
    ax_count, ax_per, ax_total = axes
    k, n = np.array(pg["length"]), len(pg["length"]) - 1
    lo, hi = pg["effective"]
    share = np.array(pg["paths"]) / sum(pg["paths"])
    ax_count.bar(k, 100 * share, color="C0", alpha=0.8,
                 label=f"{label}: C({n}, k) / 2^{n} of {2 ** n:,} paths")
    ax_count.axvline(n, color="C1", ls="--", lw=1.5, label=f"plain net: one path, all {n} blocks")
    ax_count.set(xlabel="path length (residual branches on the path, k)", ylabel="share of the paths (%)",
                 title="Distribution of path lengths (binomial)")
    ax_per.semilogy(k, pg["per_path"], "o-", color="C0", label=label)
    ax_per.set(xlabel="path length (k)", ylabel="|dE/dx| at the input, one path",
               title="Gradient carried by one path of length k")
    total = np.array(pg["total"])
    ax_total.plot(k, 100 * total / total.sum(), "o-", color="C0", label=label)
    ax_total.set(xlabel="path length (k)", ylabel="share of the summed gradient (%)",
                 title="Gradient from all paths of length k")
    for ax in axes:
        ax.axvspan(lo - 0.5, hi + 0.5, color="C2", alpha=0.15,
                   label=f"effective paths: {lo}-{hi} ({100 * EFFECTIVE:.0f} % of the gradient)")
        ax.set_xticks(k)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    ax_count.set_ylim(0, 1.45 * 100 * share.max())         # room for the legend
    ax_total.set_ylim(0, 1.45 * 100 * (total / total.sum()).max())


if __name__ == "__main__":
    sys.exit(main())
