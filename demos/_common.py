"""What the demos share: one way to run them, the CLI's data finding and errors, plots.

    python demos/NAME.py [--smoke | --quick] [--device D] [--data-dir DIR] [--out FILE.png]

--smoke is seconds on tiny data (what the tests run), --quick the CPU preset (minutes on
2 cores), no flag the full GPU preset.  A demo lists its presets in a dict keyed by
those three names; ``preset(PRESETS, args)`` picks one, and an option given on the
command line (e.g. --depth) wins over the preset's value.
"""
import argparse
import math
import types
from pathlib import Path

from minires import cli, data
from minires.train import resolve_device

# the CLI's own check, so `--steps 0` reads like `minires train --epochs 0`
positive_int = cli._positive_int


def parser(doc, uses_cifar=True):
    """The demo's argument parser with the shared options; the demo adds its own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0], formatter_class=cli.HelpFormatter)
    add_sizes(ap, "seconds on tiny data: what the tests run (by default the full GPU preset runs)",
              "the CPU preset: minutes on 2 cores, the effect visible but not the paper's numbers "
              "(not the default)")
    ap.add_argument("--device", default="auto", help="cpu, gpu or auto: the GPU when CuPy sees one")
    if uses_cifar:               # --data-dir and --no-download as minires train has them
        ap.add_argument("--data-dir", help="folder (or archive) holding CIFAR-10 (default: "
                        "$MINIRES_DATA or ~/.cache/minires)")
        ap.add_argument("--no-download", dest="download", action="store_false",
                        help="fail instead of downloading CIFAR-10 when it is not found")
    ap.add_argument("--out", help="where the plot is written (default: NAME-SIZE.png here)")
    return ap


def add_sizes(ap, smoke_help, quick_help, dest="size"):
    """--smoke and --quick, one at most; ``args.<dest>`` is "smoke", "quick" or "full"."""
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--smoke", dest=dest, action="store_const", const="smoke", help=smoke_help)
    size.add_argument("--quick", dest=dest, action="store_const", const="quick", help=quick_help)
    ap.set_defaults(**{dest: "full"})


def main(prog, args, run):
    """run(args)'s exit status, errors as one line like minires train's."""
    return cli.run_command(prog, lambda: run(args), cli.error_words(getattr(args, "download", None)))


def preset(presets, args):
    """The preset for args.size, with every option the user gave (not None) put over it."""
    chosen = dict(presets[args.size])
    chosen.update({k: v for k, v in vars(args).items() if k in chosen and v is not None})
    return types.SimpleNamespace(**chosen)


def device(args):
    return resolve_device(args.device)


def out_path(args, name):
    return Path(args.out or f"{name}-{args.size}.png")


def cifar(args):
    """(train, test) CIFAR-10 found as minires train finds it; prints which copy it is."""
    train = data.CIFAR10(args.data_dir, train=True, download=args.download)
    test = data.CIFAR10(args.data_dir, train=False, download=False)
    print(data.describe_copy(train.found, len(train), len(test)))
    return train, test


def save_plot(fig, path, caption):
    """Write the figure with a caption line (the run's size) along its bottom edge."""
    fig.text(0.005, 0.005, caption, fontsize=7.5, color="0.3", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt
    plt.close(fig)
    print(f"wrote {path}")


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def load_trained(path, device):
    """(model, description) from a checkpoint written by ``minires train`` (a CIFAR ResNet or
    plain net), on ``device`` -- so one long training run serves several demos."""
    from minires import models
    from minires.checkpoint import CheckpointError, load_checkpoint, restore_model
    arrays, meta = load_checkpoint(path)
    try:
        model = models.from_config(meta["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"--checkpoint {path}: its model cannot be rebuilt ({e})") from None
    if not isinstance(model, models.CifarResNet):
        raise CheckpointError(f"--checkpoint {path} holds a {meta['model_config']['name']}; "
                              f"give one of a CIFAR ResNet or plain net (minires train --model "
                              f"resnet20, plain20, ...)")
    restore_model(path, model, arrays)
    name, config = meta["model_config"]["name"], meta.get("config", {})
    name = name if name.endswith(str(model.depth)) else f"{name} depth {model.depth}"
    return model.to(device), (f"{name}, minires train, {meta.get('step', '?')} iterations "
                              f"on {config.get('dataset', '?')}")


def endless(loader):
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def sgd_steps(model, batches, iterations, lr, momentum=0.9, weight_decay=1e-4):
    """Train ``iterations`` SGD steps on (x, y) batches (He 2015's optimiser); the loss of
    each step, cut short (last entry inf/nan) where the loss stops being finite."""
    from minires import optim
    from minires.nn import functional as F
    opt = optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    model.train()
    losses = []
    for _, (x, y) in zip(range(iterations), batches):
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses
