"""Train, evaluate and inspect residual networks: minires train, eval CHECKPOINT, summary MODEL.

With no flags, minires train is He et al. 2015's CIFAR-10 ResNet-20 run
(64k iterations at batch 128), on the GPU when CuPy sees one.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import __version__, gradcheck_suite
from .messages import reword

EXAMPLES = """examples:
  minires train --epochs 1 --limit-train 2000 --limit-test 500   a short run, to try it out
  minires train --model resnet56 --out runs/r56                  the paper's ResNet-56
  minires eval runs/r56                                          test accuracy of its checkpoint
  minires summary resnet110                                      layers, parameters, MACs

Data: CIFAR-10 is looked for in --data-dir (default $MINIRES_DATA or ~/.cache/minires)
and downloaded there when missing (170 MB), unless --no-download."""


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
    option("--dataset", "the data set; imagefolder: any --data-dir ROOT holding "
           "train/<class>/*.jpg and test/<class>/*.jpg", choices=list(DATASETS))
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
                        "with its own settings; only --device, --threads, --graph/--no-graph, "
                        "--no-progress and a longer --epochs/--iterations may be given with it "
                        "(default: start a new run)")
    option("--eval-batch-size", "batch size of the test pass", type=int)
    option("--log-every", "GPU: read loss and accuracy back every N steps", type=int)
    graph = p.add_mutually_exclusive_group()
    graph.add_argument("--graph", dest="graph", action="store_true",
                       help="GPU: capture the training step as a CUDA graph once and replay it, one "
                            "launch per step (minires's own GEMM kernel inside; NaN/loss read every "
                            "--log-every steps) (default: off, eager steps)")
    graph.add_argument("--no-graph", dest="graph", action="store_false",
                       help="eager steps; with --resume, continue a --graph run eagerly "
                            "(the default for a new run)")
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
        # 130 (SIGINT) or 143 (SIGTERM), so `minires train && minires eval` stops too.
        print(f"minires train: {e}", file=sys.stderr)
        return e.exit_code
    if history:
        last = history[-1]
        print(f"final test error {100 * last['test_error']:.2f}% "
              f"(accuracy {100 * (1 - last['test_error']):.2f}%) after {last['epoch']} epochs")


def _resumed_folder(resume, given):
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
    from .train import evaluate_checkpoint, resolve_device
    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: give the run folder (the --out of "
                                "minires train) or the checkpoint.npz in it")
    resolve_device(args.device)                        # a bad --device fails before the data loads
    try:
        loss, error, meta = evaluate_checkpoint(path, args.data_dir, args.device, args.batch_size)
        cfg, name = meta["config"], meta["model_config"]["name"]
        history = meta.get("history") or []
        if history and history[-1].get("partial_epoch"):   # an --iterations run that ended mid-epoch
            where = f"iteration {meta['step']}, in epoch {meta['epoch'] + 1}"
        else:
            where = f"epoch {meta['epoch']}, iteration {meta['step']}"
    except (KeyError, TypeError) as e:                 # a readable .npz that minires train did not write
        raise ValueError(f"{path} is not a checkpoint minires train wrote (its metadata lacks "
                         f"or mangles {e}); give the checkpoint.npz of a run folder") from None
    print(f"{name} on {cfg['dataset']} ({where}): test loss {loss:.4f}, "
          f"accuracy {100 * (1 - error):.2f}%, error {100 * error:.2f}%")


IMAGENET_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def cmd_summary(args):
    from . import models
    from .model_summary import summary
    if args.list or not args.model:
        print("\n".join(models.available(ready_made=True)))
        return
    kwargs = {"num_classes": args.num_classes} if args.num_classes else {}
    if args.input_shape:
        kwargs["in_channels"] = args.input_shape[0]
    model = models.get_model(args.model, **kwargs)
    shape = args.input_shape or ((3, 224, 224) if args.model in IMAGENET_MODELS else (3, 32, 32))
    print(summary(model, shape))


# ------------------------------------------------------------------ parsers, errors, main
class HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help, unless its help already names its
    default or there is none to name (None, on/off switches)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or action.default in (None, argparse.SUPPRESS)
                or isinstance(action.default, bool) or "default" in text):
            return text
        return f"{text} (default: %(default)s)"


class _MainHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """The top-level help keeps the line breaks of its description and examples."""


class _Parser(argparse.ArgumentParser):
    """Every minires parser, sub-commands included, formats its help with HelpFormatter."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


DEVICE_HELP = "cpu, gpu (alias cuda) or auto (gpu when CuPy sees one)"


def _eval_parser(sub):
    p = sub.add_parser("eval", help="test loss and accuracy of a checkpoint",
                       description="Test loss, accuracy and error of a checkpoint on its data set's "
                                   "test split (the model and data set come from the checkpoint).")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a run folder (the --out of minires train) or the checkpoint.npz in it")
    p.add_argument("--data-dir", help="folder holding the data set (default: the one the run trained "
                   "on, else $MINIRES_DATA or ~/.cache/minires)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=_positive_int, default=500, help="test images per batch")
    return p


def _summary_parser(sub):
    p = sub.add_parser("summary", help="per-layer shapes, parameters and multiply-adds of a model",
                       description="Per-layer output shapes, parameters and multiply-adds (MACs) of "
                                   "a model, from one forward pass of a single image.")
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="a model name (see --list); without one, the names are listed")
    p.add_argument("--input-shape", type=_positive_int, nargs=3, metavar=("C", "H", "W"),
                   help="one image's shape (default: 3 224 224 for resnet18..152, else 3 32 32)")
    p.add_argument("--num-classes", type=_positive_int,
                   help="outputs of the last layer (default: the model's own, 10 for the CIFAR "
                        "nets, 1000 for resnet18..152)")
    p.add_argument("--list", action="store_true", help="list the model names and exit")
    return p


def error_words(download=None, model_arg="--model: "):
    """How minires's errors name what a command-line user can change (see minires.messages).

    download: the run's --no-download state (False when given), None where there is no such flag.
    """
    fetch = {False: ", or remove --no-download to fetch it", True: ", or run again to fetch it"}
    return {"root": "--data-dir", "or_download": fetch.get(download, ", or let minires train fetch it"),
            "model_arg": model_arg, "family_fix": "; choose", "device_arg": "--device: ",
            "devices": "one of cpu, gpu, cuda, auto"}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup (finally blocks, temporary files) runs."""


def _terminate(signum, frame):
    raise Terminated


def run_command(prog, call, words):
    """call() and its exit status: 0, or one line "PROG: error: ..." on stderr and 1 for
    an expected failure (bad input, missing data), 130 for Ctrl-C, 143 for SIGTERM.
    The demos run through this too, so their errors read like the CLI's."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:                                 # not the main thread: leave signals alone
        previous = None
    try:
        return call() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 143
    except (ValueError, RuntimeError, OSError) as e:
        print(f"{prog}: error: {' '.join(reword(e, words).splitlines())}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def build_parser():
    """The minires parser; each sub-command's parser carries its cmd_ function as ``func``."""
    parser = _Parser(prog="minires", description=__doc__.strip(), epilog=EXAMPLES,
                     formatter_class=_MainHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minires {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    _train_parser(sub).set_defaults(func=cmd_train)
    _eval_parser(sub).set_defaults(func=cmd_eval)
    _summary_parser(sub).set_defaults(func=cmd_summary)
    gradcheck_suite.add_parser(sub)
    from .trace import add_parser as add_trace_parser   # (minires.trace is also the function)
    add_trace_parser(sub)
    return parser


def main(argv=None):
    """minires's exit status: 0 done, 1 bad input or missing data (one line on stderr),
    2 a usage error (argparse's, and bare minires, which prints the help), 130 Ctrl-C, 143 SIGTERM."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:                    # nothing asked: the help, and a usage error's status for scripts
        parser.print_help()
        return 2
    args = parser.parse_args(argv)
    # who named the model: --model, summary's MODEL, or for eval the checkpoint
    model_arg = {"summary": "", "eval": f"{getattr(args, 'checkpoint', '')}: "}
    words = error_words(getattr(args, "download", None), model_arg.get(args.command, "--model: "))
    return run_command(f"minires {args.command}", lambda: args.func(args), words)


if __name__ == "__main__":
    sys.exit(main())
