"""What lesion.py and loss_landscape.py share: their command line, and the two nets they compare.

    ResNet-D   the published weights (minires.hub: akamaster's, 200 epochs on the official
               pixels), or --resnet-checkpoint from `minires train --model resnetD`
    plain-D    its no-shortcut twin: --plain-checkpoint from `minires train --model plainD`,
               else trained here by minires.train into --plain-run (a finished run there is
               loaded again, an interrupted one continued: one run serves both demos)

Each net travels with the normalisation it was trained with (the published weights use
ImageNet's mean and std, minires train CIFAR-10's).
"""
from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import NamedTuple

from minires import cli, data, hub, models, train
from minires.checkpoint import load_checkpoint, restore_model
from minires.models.cifar import CifarResNet

import _common

PLAIN_RECIPE = ("model", "dataset", "epochs", "batch_size", "lr", "schedule", "limit_train", "seed")


class Net(NamedTuple):
    label: str          # 'ResNet-20'
    model: CifarResNet
    mean: tuple
    std: tuple
    source: str         # where its weights came from, for the caption


def parser(doc, presets, default_out):
    ap = argparse.ArgumentParser(description=doc.splitlines()[0], formatter_class=cli.HelpFormatter)
    _common.add_sizes(ap, f"seconds, tiny data (what the tests run): {_describe(presets['smoke'])}",
                      f"the CPU preset, ~10 min on 2 cores: {_describe(presets['quick'])}", dest="preset")
    ap.add_argument("--device", default="auto", help=cli.DEVICE_HELP)
    ap.add_argument("--data-dir", help="folder holding CIFAR-10, or one of its archives "
                    "(default: $MINIRES_DATA or ~/.cache/minires)")
    ap.add_argument("--no-download", dest="download", action="store_false",
                    help="fail instead of downloading CIFAR-10 or the weights when they are not found")
    ap.add_argument("--weights-dir", help=f"folder of the converted published weights "
                    f"(resnetNN-TAG.npz; default: ${hub.ENV_VAR}, else the cache and the published URL)")
    ap.add_argument("--resnet-checkpoint", help="a minires train checkpoint of the ResNet to use "
                    "instead of the published weights")
    ap.add_argument("--plain-checkpoint", help="a minires train checkpoint of the plain net "
                    "(default: train one into --plain-run)")
    ap.add_argument("--plain-run", help="run folder for the plain net trained here "
                    "(default: runs/demo-plainD-PRESET)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random draws (and of the plain net)")
    ap.add_argument("--out", default=default_out, help="the PNG to write; its numbers go beside it as .json")
    ap.epilog = f"default (no --smoke/--quick): the GPU preset: {_describe(presets['full'])}"
    return ap


def _describe(preset):
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in preset.items())


def run(prog, args, call):
    """call() through the CLI's error handling: one line, in command-line words."""
    return _common.main(prog, args, lambda _: call())


def load_nets(args, depth, plain_epochs, plain_train_images, eval_images, log=print, plain=True):
    """(ResNet Net, plain Net) of this depth on args.device, in eval mode; (ResNet Net,)
    without the plain net (none trained) when ``plain`` is False."""
    device = train.resolve_device(args.device)
    if args.resnet_checkpoint:
        resnet = _from_checkpoint(args.resnet_checkpoint, "--resnet-checkpoint", want_plain=False)
    else:
        model = hub.load_pretrained(getattr(models, f"resnet{depth}")(), f"resnet{depth}",
                                    args.weights_dir, download=args.download)
        w = hub.PRETRAINED[f"resnet{depth}"]
        resnet = Net(f"ResNet-{depth}", model, hub.PRETRAINED_MEAN, hub.PRETRAINED_STD,
                     f"published weights {w.stem} (akamaster, 200 epochs)")
    if not plain:
        return (resnet._replace(model=resnet.model.to(device).eval()),)
    if args.plain_checkpoint:
        plain = _from_checkpoint(args.plain_checkpoint, "--plain-checkpoint", want_plain=True)
    else:
        plain = _train_plain(args, depth, plain_epochs, plain_train_images, eval_images, device, log)
    for net in (resnet, plain):
        net.model.to(device).eval()
    return resnet, plain


def _from_checkpoint(path, flag, want_plain):
    arrays, meta = load_checkpoint(path)
    model = models.from_config(meta["model_config"])
    if not isinstance(model, CifarResNet) or (model.shortcut_option is None) != want_plain:
        raise ValueError(f"{flag}: {path} holds a {meta['model_config']['name']}, expected a "
                         f"{'plain' if want_plain else 'residual'} CIFAR net (minires train --model "
                         f"{'plain' if want_plain else 'resnet'}NN)")
    restore_model(path, model, arrays)
    _, mean, std, _, _ = train.DATASETS[meta["config"]["dataset"]]
    kind = "plain" if want_plain else "ResNet"
    return Net(f"{kind}-{model.depth}", model, mean, std,
               f"{path} ({meta['epoch']} epochs of minires train)")


def _train_plain(args, depth, epochs, train_images, eval_images, device, log):
    out = Path(args.plain_run or f"runs/demo-plain{depth}-{args.preset}")
    cfg = train.TrainConfig(model=f"plain{depth}", data_dir=args.data_dir, download=args.download,
                            epochs=epochs, schedule="cosine", limit_train=train_images,
                            limit_test=eval_images, device=device, seed=args.seed, out=str(out),
                            progress=False)
    checkpoint = out / "checkpoint.npz"
    tag = lambda line: log(f"  plain-{depth}: {line}")            # noqa: E731
    if checkpoint.is_file():                 # one run serves several demos: load or continue it
        saved = load_checkpoint(checkpoint)[1]["config"]
        differ = [k for k in PLAIN_RECIPE if saved.get(k) != getattr(cfg, k)]
        if differ:
            raise ValueError(f"--plain-run: {out} holds a run with other settings "
                             f"({', '.join(f'{k} {saved.get(k)}' for k in differ)}); pass another "
                             f"--plain-run or delete that folder")
    if (out / "config.json").is_file():
        train.resume_run(out, log=tag)       # finished: it says so; cut off: it continues
    else:
        train.train(cfg, log=tag)
    last = load_checkpoint(checkpoint)[1]["history"][-1]           # images seen in its last epoch
    net = _from_checkpoint(checkpoint, "--plain-run", want_plain=True)
    return net._replace(source=f"trained here: {epochs} epochs on "
                               f"{round(last['seconds'] * last['images_per_second']):,} images ({out})")


def first_images(args, train, limit, log=print):
    """(images, labels): the first ``limit`` images of a CIFAR-10 split, saying which copy they are."""
    split = data.CIFAR10(args.data_dir, train=train, download=args.download)
    kind = "JPEG copy" if split.found.layout == "jpeg" else "subset, official pixels" if split.found.subset \
        else "official pixels"
    log(f"CIFAR-10 {'training' if train else 'test'} images: the first {min(limit, len(split)):,} of "
        f"{len(split):,} in {split.found.path} ({kind})")
    if split.found.layout == "jpeg":
        log("  note: the published weights were trained on the official pixels; on the JPEG copy "
            "ResNet-20 scores 81 %, not 91.6 % -- pass the official archive as --data-dir to compare")
    return split.images[:limit], split.labels[:limit]


def caption(args, device, lines):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{args.preset} preset, {device}, {stamp}. " + " ".join(lines)


def save_results(out, results):
    path = Path(out).with_suffix(".json")
    path.write_text(json.dumps(results, indent=1))
    return path
