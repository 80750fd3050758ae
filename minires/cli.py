"""The command line: ``minires train``, ``minires eval CHECKPOINT``, ``minires summary MODEL``.

With no flags, ``minires train`` is He et al. 2015's CIFAR-10 ResNet-20 run
(64k iterations at batch 128), on the GPU when CuPy sees one.
"""
from __future__ import annotations

import argparse
import sys

from . import gradcheck_suite

SCHEDULE_HELP = "lr schedule: multistep (÷gamma at --milestones), cosine, constant"


def _train_parser(sub):
    p = sub.add_parser("train", help="train a model (default: ResNet-20 on CIFAR-10, the paper's recipe)",
                       description="Train a residual network. Defaults: He et al. 2015's CIFAR-10 recipe.")
    p.add_argument("--model", default="resnet20", help="resnet20/32/44/56/110/1202, plain20..., "
                   "preact_resnet110, resnet18..152 (see `minires summary --list`)")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "fashion-mnist", "mnist"])
    p.add_argument("--data-dir", help="folder holding the data set (default: $MINIRES_DATA or "
                   "~/.cache/minires; Fashion-MNIST also /usr/share/datasets/fashion-mnist)")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fail instead of downloading CIFAR-10 when it is not found")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="train for this many epochs")
    length.add_argument("--iterations", type=int, help="train for this many iterations (default 64000)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--schedule", default="multistep", choices=["multistep", "cosine", "constant"],
                   help=SCHEDULE_HELP)
    p.add_argument("--milestones", type=float, nargs="+",
                   help="multistep milestones, in epochs with --epochs, else in iterations "
                        "(default: 50%% and 75%% of the run; the paper's 32k, 48k of 64k)")
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=0, help="iterations of linear lr warm-up from lr/10 "
                   "(He et al. warm up ResNet-110 and deeper)")
    aug = p.add_mutually_exclusive_group()
    aug.add_argument("--augment", dest="augment", action="store_true", default=None,
                     help="4-pixel pad, random crop, flip (default for CIFAR-10)")
    aug.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--resize", type=int, help="resize images to N x N (d2l: 96 for ResNet-18 on Fashion-MNIST)")
    p.add_argument("--device", default="auto", help="cpu, gpu (alias cuda) or auto (gpu when CuPy sees one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder for checkpoint, metrics and plots (default runs/MODEL-DATASET)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue the run in --out (or from CHECKPOINT)")
    p.add_argument("--eval-batch-size", type=int, default=500)
    p.add_argument("--log-every", type=int, default=20, help="GPU: read loss back every N steps")
    p.add_argument("--limit-train", type=int, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, help="use only the first N test images")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--threads", type=int, help="CPU threads for minires's kernels (default: all cores)")
    return p


def cmd_train(args):
    from . import backend
    from .train import TrainConfig, train
    if args.threads:
        backend.set_num_threads(args.threads)
    iterations = args.iterations if args.epochs is None and args.iterations else (None if args.epochs else 64000)
    fields = dict(model=args.model, dataset=args.dataset, data_dir=args.data_dir, download=args.download,
                  epochs=args.epochs, iterations=iterations, batch_size=args.batch_size, lr=args.lr,
                  momentum=args.momentum, weight_decay=args.weight_decay, nesterov=args.nesterov,
                  schedule=args.schedule, milestones=args.milestones, gamma=args.gamma,
                  warmup=args.warmup, augment=args.augment, resize=args.resize, device=args.device,
                  seed=args.seed, out=args.out, eval_batch_size=args.eval_batch_size,
                  log_every=args.log_every, limit_train=args.limit_train, limit_test=args.limit_test,
                  progress=args.progress)
    history = train(TrainConfig(**fields), resume=args.resume)
    if history:
        last = history[-1]
        print(f"final test error {100 * last['test_error']:.2f}% "
              f"(accuracy {100 * (1 - last['test_error']):.2f}%) after {last['epoch']} epochs")


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
    gradcheck_suite.add_parser(sub)
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
