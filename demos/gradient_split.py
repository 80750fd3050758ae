"""Where the gradient goes in a ResNet: each block's input gradient, split in two.

For a block x_{l+1} = h(x_l + F(x_l)), the gradient reaching x_l is the sum of two terms,

    ∂E/∂x_l = g_l  +  g_l · ∂F/∂x_l          g_l: the gradient at the block's addition
              shortcut   residual branch

(He et al. 2016, Eq. 5, one block at a time: the "1" and the ∂F/∂x term).  This demo runs
one backward through a freshly initialised ResNet and measures both terms for every block:
``minires.trace()`` records the gradient each op sends along each edge (the shortcut's first
edge out of x, the residual branch's first edge out of x) and ``Tensor.register_hook`` on
x_l records their sum, which must agree with what the trace saw.  The plot shows the three
norms per block and the share of the gradient that came through the shortcut.

    python demos/gradient_split.py --depth 56 --out gradient_split.png
"""
import argparse
import sys

import numpy as np

import minires as mr
from minires import cli, data
from minires.graph import residual_blocks
from minires.nn import functional as F


def gradient_split(model, x, y):
    """Per residual block, in depth order: {"block", "stage", "total", "shortcut", "branch"},
    the norms of ∂E/∂x_l and of its two terms, plus "hook_total" from a register_hook on x_l."""
    with mr.trace() as t:
        loss = F.cross_entropy(model(x), y)
        blocks = residual_blocks(loss)
        seen = {}
        for b in blocks:
            b.input.register_hook(
                lambda g, k=b.number: seen.__setitem__(k, float(np.linalg.norm(g.numpy()))))
        loss.backward()
    rows = []
    for b in blocks:
        (s_op, s_i), (f_op, f_i) = b.shortcut[0], b.branch[0]
        rows.append({"block": b.number, "stage": b.stage, "total": seen[b.number],
                     "shortcut": t.input_grad_norms(s_op)[s_i], "branch": t.input_grad_norms(f_op)[f_i],
                     "trace_total": t.grad_norm(b.input)})
    return rows


def plot(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = np.array([r["block"] for r in rows])
    total, short, branch = (np.array([r[f] for r in rows]) for f in ("total", "shortcut", "branch"))
    fig, (ax, ax_share) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                       gridspec_kw={"height_ratios": [2, 1]})
    ax.bar(k - 0.2, short, 0.4, color="#d62728", label="through the shortcut  (g_l)")
    ax.bar(k + 0.2, branch, 0.4, color="C0", label="through the residual branch  (g_l ∂F/∂x_l)")
    ax.plot(k, total, "k.-", label="total ‖∂E/∂x_l‖ (register_hook)")
    ax.set(yscale="log", ylabel="gradient norm", title=title)
    ax.grid(alpha=0.3, which="both", axis="y")
    ax.legend(fontsize=8)
    share = short ** 2 / (short ** 2 + branch ** 2)
    ax_share.plot(k, 100 * share, "o-", color="#d62728")
    ax_share.axhline(50, color="gray", lw=0.8, ls="--")
    ax_share.set(xlabel="block l (input side → output side)", ylabel="shortcut's share\nof ‖·‖² (%)",
                 ylim=(0, 100))
    ax_share.grid(alpha=0.3)
    for b in range(1, len(rows)):
        if rows[b]["stage"] != rows[b - 1]["stage"]:
            for a in (ax, ax_share):
                a.axvline(k[b] - 0.5, color="gray", lw=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter)
    # --data-dir and --no-download as minires train has them
    ap.add_argument("--data-dir", help="folder holding CIFAR-10 (default: $MINIRES_DATA or "
                    "~/.cache/minires)")
    ap.add_argument("--no-download", dest="download", action="store_false",
                    help="fail instead of downloading CIFAR-10 when it is not found")
    ap.add_argument("--random-images", action="store_true",
                    help="use Gaussian noise images instead of CIFAR-10 (no data needed)")
    ap.add_argument("--depth", type=int, default=56, help="ResNet depth, 6n+2")
    ap.add_argument("--variant", default="original", choices=mr.models.cifar.VARIANTS,
                    help="residual unit (He et al. 2016, Fig. 4)")
    ap.add_argument("--batch", type=int, default=32, help="images in the batch")
    ap.add_argument("--seed", type=int, default=0, help="initialisation (and noise) seed")
    ap.add_argument("--out", default="gradient_split.png", help="where the plot is written")
    return ap.parse_args(argv)


def main(argv=None):
    """The demo as a command: its exit status, errors as one line like minires train's."""
    args = parse_args(argv)
    return cli.run_command("gradient_split.py", lambda: run(args), cli.error_words(args.download))


def run(args):
    if args.random_images:
        rng = np.random.default_rng(args.seed)
        x = mr.tensor(rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32))
        y = mr.tensor(rng.integers(0, 10, args.batch))
        source = "random images"
    else:
        images = data.CIFAR10(args.data_dir, train=True, download=args.download)
        x, y = next(iter(data.DataLoader(images, args.batch, mean=data.CIFAR10_MEAN,
                                         std=data.CIFAR10_STD)))
        source = "a CIFAR-10 batch"
    mr.manual_seed(args.seed)
    model = mr.models.resnet_cifar(args.depth, variant=args.variant)
    rows = gradient_split(model, x, y)
    for r in rows:
        print(f"block {r['block']:2d} (stage {r['stage']}): ‖∂E/∂x‖ {r['total']:.4g} = "
              f"shortcut {r['shortcut']:.4g} (+) branch {r['branch']:.4g}")
    worst = max(abs(r["trace_total"] - r["total"]) / r["total"] for r in rows)
    print(f"trace vs register_hook on every block input: largest relative difference {worst:.1e}")
    plot(rows, args.out, f"Gradient per block, ResNet-{args.depth} ({args.variant}) at "
                         f"initialisation, {source} of {args.batch}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
