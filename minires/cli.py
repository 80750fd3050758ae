"""The command line: ``minires train``, ``minires eval CHECKPOINT``, ``minires summary MODEL``.

With no flags, ``minires train`` is He et al. 2015's CIFAR-10 ResNet-20 run
(64k iterations at batch 128), on the GPU when CuPy sees one.
"""
from __future__ import annotations

import argparse
import sys

def _train_parser(sub):
    from .train import DATASETS, DEVICES, SCHEDULES, TrainConfig
    d = TrainConfig.__dataclass_fields__
    default = {name: field.default for name, field in d.items()}
    # Every default is SUPPRESS, so cmd_train sees exactly the flags that were typed
    # (--resume must refuse those that would change the saved run); the real defaults
    # are TrainConfig's, shown in each help text.
    p = sub.add_parser("train", argument_default=argparse.SUPPRESS,
                       help="train a model (default: ResNet-20 on CIFAR-10, the paper's recipe)",
                       description="Train a residual network. Defaults: He et al. 2015's CIFAR-10 "
                       "recipe (64000 iterations; days on 2 CPU cores, use --epochs or "
                       "--iterations and --limit-train for a short run).")

    def option(flag, help, **kw):
        name = flag[2:].replace("-", "_")
        shown = kw.pop("shown", default.get(name))
        p.add_argument(flag, help=f"{help} (default: {shown})", **kw)

    option("--model", "resnet20/32/44/56/110/1202, plain20..., preact_resnet110, resnet18..152 "
           "(all names: minires summary --list)")
    option("--dataset", "the data set", choices=list(DATASETS))
    option("--data-dir", "folder holding the data set; Fashion-MNIST is also looked for in "
           "/usr/share/datasets/fashion-mnist", shown="$MINIRES_DATA, else ~/.cache/minires")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fail instead of downloading CIFAR-10 when it is not found "
                        "(default: download when missing)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="train for this many epochs (default: none, the run is --iterations long)")
    length.add_argument("--iterations", type=int, help="train for this many iterations "
                        f"(default: {default['iterations']})")
    option("--batch-size", "training batch size", type=int)
    option("--lr", "learning rate", type=float)
    option("--momentum", "SGD momentum", type=float)
    option("--weight-decay", "L2 weight decay", type=float)
    option("--nesterov", "Nesterov momentum", action="store_true", shown="off")
    option("--schedule", "lr schedule: multistep (times --gamma at each of --milestones), "
           "cosine or constant", choices=list(SCHEDULES))
    option("--milestones", "multistep milestones, in epochs with --epochs, else in iterations",
           type=float, nargs="+", shown="50%% and 75%% of the run; the paper's 32k, 48k of 64k")
    option("--gamma", "multistep factor at each milestone", type=float)
    option("--warmup", "iterations of linear lr warm-up from lr/10 (He et al. warm up "
           "ResNet-110 and deeper)", type=int)
    aug = p.add_mutually_exclusive_group()
    aug.add_argument("--augment", dest="augment", action="store_true",
                     help="4-pixel pad, random crop, flip (default: on for CIFAR-10, off otherwise)")
    aug.add_argument("--no-augment", dest="augment", action="store_false",
                     help="no augmentation (the default for Fashion-MNIST and MNIST)")
    option("--resize", "resize images to N x N (d2l: 96 for ResNet-18 on Fashion-MNIST)", type=int,
           shown="no resizing")
    option("--device", f"one of {', '.join(DEVICES)}; auto is the GPU when CuPy sees one")
    option("--seed", "seed of the weights, the shuffling and the augmentation", type=int)
    option("--out", "run folder for settings, checkpoint, metrics and plots",
           shown="runs/MODEL-DATASET")
    p.add_argument("--resume", nargs="?", const=True, metavar="RUN",
                   help="continue the run saved in --out (or in the run folder or checkpoint RUN) "
                        "with its own settings; only --device, --threads, --no-progress and a "
                        "longer --epochs/--iterations may be given with it (default: start a new run)")
    option("--eval-batch-size", "batch size of the test pass", type=int)
    option("--log-every", "GPU: read loss and accuracy back every N steps", type=int)
    option("--limit-train", "use only the first N training images", type=int, shown="all")
    option("--limit-test", "use only the first N test images", type=int, shown="all")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar or progress lines (default: a bar in a terminal, "
                        "a line every 10%% of an epoch otherwise)")
    option("--threads", "CPU threads for minires's kernels", type=int, shown="all cores")
    return p


def cmd_train(args):
    import dataclasses

    from . import backend
    from .train import RunInterrupted, TrainConfig, resume_run, train
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    threads, resume = getattr(args, "threads", None), getattr(args, "resume", False)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        backend.set_num_threads(threads)
    try:
        if resume:
            history = resume_run(_resumed_folder(resume, given), given)
        else:
            history = train(TrainConfig(**given))
    except RunInterrupted as e:
        # The exit status says a signal stopped the run, so `minires train && ...` stops too.
        print(f"minires train: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    if history:
        last = history[-1]
        print(f"final test error {100 * last['test_error']:.2f}% "
              f"(accuracy {100 * (1 - last['test_error']):.2f}%) after {last['epoch']} epochs")


def _resumed_folder(resume, given):
    from pathlib import Path

    from .train import TrainConfig, run_folder_of
    if resume is True:
        if "out" in given:
            return given["out"]
        names = {k: given[k] for k in ("model", "dataset") if k in given}
        return TrainConfig(**names).out              # the default run folder
    folder = run_folder_of(resume)
    if "out" in given and Path(given["out"]).resolve() != folder.resolve():
        raise ValueError(f"--resume {resume} and --out {given['out']} name different run folders; "
                         f"give one of them")
    return str(folder)


def cmd_eval(args):
    from .train import evaluate_checkpoint
    loss, error, meta = evaluate_checkpoint(args.checkpoint, args.data_dir, args.device, args.batch_size)
    cfg = meta["config"]
    print(f"{meta['model_config']['name']} on {cfg['dataset']} (epoch {meta['epoch']}, "
          f"iteration {meta['step']}): test loss {loss:.4f}, accuracy {100 * (1 - error):.2f}%, "
          f"error {100 * error:.2f}%")


def cmd_summary(args):
    from . import models
    from .model_summary import summary
    if args.list or not args.model:
        print("\n".join(models.available()))
        return
    model = models.get_model(args.model, **({"num_classes": args.num_classes} if args.num_classes else {}),
                             **({"in_channels": args.input_shape[0]} if args.input_shape else {}))
    shape = tuple(args.input_shape) if args.input_shape else _default_shape(args.model)
    print(summary(model, shape))


def _default_shape(name):
    from . import models
    return (3, 224, 224) if name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152") \
        and name in models.available() else (3, 32, 32)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minires", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub).set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="test loss and accuracy of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--data-dir")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=500)
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("summary", help="per-layer shapes, parameters and multiply-adds of a model")
    p.add_argument("model", nargs="?")
    p.add_argument("--input-shape", type=int, nargs=3, metavar=("C", "H", "W"))
    p.add_argument("--num-classes", type=int)
    p.add_argument("--list", action="store_true", help="list the model names")
    p.set_defaults(func=cmd_summary)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, FileExistsError, OSError) as e:
        # Expected failures (missing data, bad flags, diverged run): one clear line, no traceback.
        print(f"minires {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
