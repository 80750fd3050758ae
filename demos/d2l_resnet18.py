"""d2l's ResNet-18 on Fashion-MNIST at 96x96, in minires and in PyTorch (d2l.ai, "Residual Networks").

The book's chapter ends by training its ResNet-18 on Fashion-MNIST resized to 96x96
with its train_ch6 recipe; the same recipe, network and batches in minires and in
PyTorch should land on the same accuracy.

Recipe (the Chinese edition, zh.d2l.ai, which the project's seed cites): lr 0.05,
batch 256, 10 epochs, resize 96, plain SGD (no momentum, no weight decay), Xavier
init; the English edition uses lr 0.01 and batch 128 (--english).  The book's own
printed accuracies are not this data pipeline's, so the comparison here is the
PyTorch run of the same recipe on the same batches (benchmarks/d2l_resnet18_torch.py,
run by this demo when torch is importable).

    python demos/d2l_resnet18.py --quick             # Fashion-MNIST from /usr/share/datasets
    python demos/d2l_resnet18.py --device gpu        # the whole recipe
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from minires import backend

import _runs

RECIPE = dict(dataset="fashion-mnist", lr=0.05, batch_size=256, epochs=10, resize=96,
              schedule="constant", momentum=0.0, weight_decay=0.0, augment=False)
ENGLISH = dict(lr=0.01, batch_size=128)
PRESETS = {
    "smoke": dict(RECIPE, about="32 images at 32x32, 2 iterations", resize=32, epochs=None,
                  iterations=2, batch_size=16, limit_train=32, limit_test=32, eval_batch_size=32),
    "quick": dict(RECIPE, about="the first 2,048 training and 1,000 test images at 96x96, 4 epochs "
                  "(32 iterations): ~2 min of epochs each for minires and PyTorch on 2 quiet cores",
                  epochs=4, limit_train=2048, limit_test=1000),
    "full": dict(RECIPE, about="the book's recipe: all 60,000 / 10,000 images at 96x96, 10 epochs"),
}
TORCH_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "d2l_resnet18_torch.py"


def extra(ap):
    ap.add_argument("--english", action="store_true",
                    help="the English edition's lr 0.01 and batch 128 instead of 0.05 and 256")
    ap.add_argument("--no-torch", dest="torch", action="store_false",
                    help="train only the minires side (default: PyTorch too when it is importable)")
    ap.add_argument("--torch-run", metavar="FOLDER", help="a finished run of "
                    "benchmarks/d2l_resnet18_torch.py to compare with, instead of running it")


def torch_side(args, wanted):
    """The PyTorch run of the same recipe: --torch-run, a finished one in --out, or a new one."""
    if args.torch_run:
        return _runs.read_run(args.torch_run, what=f"--torch-run {args.torch_run}")[1]
    folder = _runs.out_folder(args, "d2l_resnet18") / "pytorch"
    if (folder / "metrics.jsonl").is_file():
        settings, history = _runs.read_run(folder, what=str(folder))
        if all(settings.get(k) == wanted.get(k) for k in _runs.RECIPE if k in settings):
            print(f"PyTorch: read {len(history)} epochs from {folder} (not trained again)")
            return history
    if not args.torch or importlib.util.find_spec("torch") is None:
        why = "--no-torch" if not args.torch else "torch is not importable"
        print(f"PyTorch: not run ({why}); to compare, run benchmarks/d2l_resnet18_torch.py with "
              f"this recipe and give its --out as --torch-run")
        return None
    command = [sys.executable, str(TORCH_SCRIPT), "--out", str(folder), "--seed", str(args.seed),
               "--lr", str(wanted["lr"]), "--batch-size", str(wanted["batch_size"]),
               "--resize", str(wanted["resize"]), "--epochs", str(wanted["epochs"] or 1),
               "--device", "cuda" if _runs.resolve_device(args.device) == backend.CUDA else "cpu"]
    for flag, key in (("--limit-train", "limit_train"), ("--limit-test", "limit_test"),
                      ("--iterations", "iterations"), ("--data-dir", "data_dir")):
        if wanted.get(key) is not None:
            command += [flag, str(wanted[key])]
    print("--- PyTorch: " + " ".join(command[1:]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TORCH_SCRIPT.parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    if subprocess.run(command, env=env).returncode != 0:
        raise RuntimeError(f"the PyTorch side failed ({' '.join(command[1:])}); see its output above, "
                           f"or give --no-torch")
    return _runs.read_run(folder, what=str(folder))[1]


def run(args):
    if args.english:
        args.preset = {**args.preset, **ENGLISH}
    runs = _runs.train_all(args, {"minires": "d2l_resnet18"}, "d2l_resnet18")
    mine = runs["minires"]
    histories = {"minires": mine.history}
    theirs = torch_side(args, mine.settings)
    if theirs is not None:
        histories["PyTorch"] = theirs

    print(f"\nd2l ResNet-18 on Fashion-MNIST ({args.size} preset, lr {mine.settings['lr']:g}, "
          f"batch {mine.settings['batch_size']}): the last epoch, as d2l prints it")
    _runs.table([(name, f"{h[-1]['train_loss']:.3f}", f"{1 - h[-1]['train_error']:.3f}",
                  f"{1 - h[-1]['test_error']:.3f}", len(h)) for name, h in histories.items()],
                ("framework", "loss", "train acc", "test acc", "epochs"))
    print(f"minires parameters: {mine.parameters:,}")

    fig, (ax_loss, ax_acc) = _runs.figure(1, 2)
    for i, (name, history) in enumerate(histories.items()):
        epochs = [row["epoch"] for row in history]
        ax_loss.plot(epochs, [row["train_loss"] for row in history], "--o", color=f"C{i}",
                     markersize=3, label=f"{name} train loss")
        ax_acc.plot(epochs, [1 - row["train_error"] for row in history], "--o", color=f"C{i}",
                    markersize=3, label=f"{name} train acc")
        ax_acc.plot(epochs, [1 - row["test_error"] for row in history], "-o", color=f"C{i}",
                    markersize=3, label=f"{name} test acc")
    for ax, ylabel in ((ax_loss, "cross-entropy"), (ax_acc, "accuracy")):
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.set_xticks(sorted({row["epoch"] for h in histories.values() for row in h}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("d2l's ResNet-18 on Fashion-MNIST: minires and PyTorch, same recipe, same batches")
    _runs.save(fig, args, "d2l_resnet18", runs, {"PyTorch": theirs} if theirs else None)


if __name__ == "__main__":
    args = _runs.parse_args(__doc__, PRESETS, extra=extra)
    sys.exit(_runs.main("d2l_resnet18.py", args, run))
