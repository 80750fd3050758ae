"""What the training demos share: three sizes, training through minires's trainer,
reusing runs already made, and the figure style of He et al. 2015, Fig. 6.

    PRESETS = {"smoke": {...}, "quick": {...}, "full": {...}}     # TrainConfig fields per size
    args = parse_args(__doc__, PRESETS)          # --smoke/--quick, --data-dir, --out, --run, ...
    runs = train_all(args, {"plain-20": "plain20", "ResNet-20": "resnet20"}, "degradation")
    runs["plain-20"].history[-1]["train_error"]  # Trainer.history rows, one per epoch
    fig, axes = figure(1, 2)
    draw_curves(axes[0], list(runs.values()))    # train dashed, test solid
    save(fig, args, "degradation", runs)         # --out/degradation.png and .json

Every configuration trains into its own run folder, ``--out/<label>``, exactly as
``minires train --out`` would (config.json, checkpoint.npz, metrics.jsonl), so a
cut-off run continues where it stopped when the demo is run again, and a finished
one is read back instead of trained again.  ``--run LABEL=FOLDER`` takes a run that
``minires train`` made elsewhere for one configuration (its metrics.jsonl is read),
so one long run can serve several demos.
"""
from __future__ import annotations

import argparse
import functools
import json
import re
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from minires import cli, data, models
from minires.run_folder import CONFIG, METRICS, RUN_FILES, SAFE_TO_CHANGE, RunFolder, flag
from minires.train import TrainConfig, resolve_device, train

import _common

main = _common.main          # run(args) as a command: its exit status, errors as one line

# the settings that make two runs' numbers comparable (a --run with others is flagged)
RECIPE = ("dataset", "epochs", "iterations", "batch_size", "lr", "momentum", "weight_decay",
          "schedule", "milestones", "warmup", "augment", "resize", "limit_train", "limit_test")
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}

# The smoke preset of the CIFAR training demos (the tests): 2 iterations on 16 images.
SMOKE_CIFAR = dict(iterations=2, batch_size=8, limit_train=16, limit_test=16, eval_batch_size=16)

# The quick preset of the CIFAR training demos (one recipe, so depth_sweep.py can take
# degradation.py's ResNet-20 and ResNet-56 with --run).  Within ~10 min on 2 cores the deep nets need many
# small steps more than many images: 192 steps of 32 (6 epochs of the first 1,024 images), lr 0.05
# (0.1 at batch 128, scaled down) warmed up from 0.005 over the first epoch (He et al. warm
# ResNet-110 up; 128 steps of 128 without it left ResNet-56 at chance), then a cosine decay.
QUICK_CIFAR = dict(epochs=6, batch_size=32, lr=0.05, warmup=32, schedule="cosine",
                   limit_train=1024, limit_test=1000)
QUICK_CIFAR_ABOUT = ("the first 1,024 training and 1,000 test images, 6 epochs of 32 steps of 32 "
                     "(192 iterations, lr 0.05 warmed up over the first epoch, cosine decay)")


@dataclass
class Run:
    """One configuration's result: its label, model spec, settings and per-epoch history."""
    label: str
    model: str
    settings: dict
    history: list
    source: str                      # "trained", "resumed", "reused" or "--run"

    @property
    def last(self):
        return self.history[-1]

    @property
    def parameters(self):
        one_channel = self.settings.get("dataset") in ("fashion-mnist", "mnist")
        return parameter_count(self.model, in_channels=1 if one_channel else 3)


def cifar_model(kind, depth, **kwargs):
    """The model spec of a CIFAR net: cifar_model("plain", 56) -> "plain56",
    cifar_model("resnet", 8, shortcut="B") -> "resnet_cifar:depth=8,shortcut=B"."""
    named = depth in models.DEPTHS
    base = f"{kind}{depth}" if named else f"{kind}_cifar"
    arguments = ({} if named else {"depth": depth}) | kwargs
    return base + (":" + ",".join(f"{k}={v}" for k, v in arguments.items()) if arguments else "")


@functools.lru_cache(maxsize=None)          # ResNet-1202 takes seconds to build
def parameter_count(model, in_channels=3):
    """Trainable parameters of ``model`` (a name or "name:key=value" spec), 10 classes."""
    net = models.get_model(model, num_classes=10, in_channels=in_channels)
    return int(sum(p.size for p in net.parameters()))


# ------------------------------------------------------------------ the command line
def parse_args(doc, presets, argv=None, extra=None):
    """The demos' shared options, ``extra(parser)`` adding a demo's own; the chosen
    preset's settings land in ``args.preset`` (a dict) and its name in ``args.size``."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0], formatter_class=cli.HelpFormatter,
                                 epilog=f"Without --smoke or --quick: the full (GPU) preset, "
                                        f"{presets['full']['about']}.")
    _common.add_sizes(ap, f"seconds, instead of the default full preset: {presets['smoke']['about']}",
                      f"the CPU preset, instead of the default full one: {presets['quick']['about']}")
    ap.add_argument("--data-dir", help="folder holding the data set, as for minires train "
                    "(default: $MINIRES_DATA, else ~/.cache/minires)")
    ap.add_argument("--no-download", dest="download", action="store_false",
                    help="fail instead of downloading CIFAR-10 when it is not found")
    ap.add_argument("--device", default="auto", help=cli.DEVICE_HELP)
    ap.add_argument("--out", help="folder for the run folders (one per configuration) and the "
                    "plot (default: runs/demos/DEMO-SIZE)")
    ap.add_argument("--run", action="append", default=[], metavar="LABEL=FOLDER",
                    help="use the run folder FOLDER (written by minires train) for the configuration "
                         "LABEL (as the demo prints it, or its folder's name: ResNet-56 or resnet-56) "
                         "instead of training it; may be repeated (default: train each one into "
                         "--out, or read it back from there)")
    ap.add_argument("--epochs", type=int, help="train this many epochs instead of the preset's "
                    "(a multistep schedule divides the lr by 10 at 50%% and 75%% of them, as the "
                    "paper does at 32k and 48k of 64k iterations)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every run")
    ap.add_argument("--no-progress", dest="progress", action="store_false",
                    help="no progress lines within an epoch")
    if extra:
        extra(ap)
    args = ap.parse_args(argv)
    args.preset = presets[args.size]
    if args.epochs is not None and args.epochs < 1:
        ap.error(f"--epochs must be >= 1, got {args.epochs}")
    return args


def out_folder(args, demo):
    return Path(args.out or Path("runs") / "demos" / f"{demo}-{args.size}")


# ------------------------------------------------------------------ training
# He et al. warm ResNet-110 and deeper up (lr 0.01 until the training error is below 80 %,
# about 400 iterations); here the trainer's --warmup: linear from lr/10 over 400 iterations.
WARMUP_FROM, WARMUP = 110, 400


def deep_warmups(depths):
    """``label -> depth`` to the overrides of train_all: the paper's warm-up for the deep ones."""
    return {label: {"warmup": WARMUP} for label, d in depths.items() if d >= WARMUP_FROM}


def config_for(args, model, demo, label, **overrides):
    """The TrainConfig of one configuration: the preset's settings, then the demo's overrides."""
    settings = {k: v for k, v in {**args.preset, **overrides}.items() if k in TRAIN_FIELDS}
    if args.epochs is not None:
        settings.update(epochs=args.epochs, iterations=None, milestones=None)
    return TrainConfig(**settings, model=model, data_dir=args.data_dir, download=args.download,
                       device=args.device, seed=args.seed, progress=args.progress and args.size != "smoke",
                       out=str(out_folder(args, demo) / slug(label)))


def slug(label):
    """A run-folder name for a label: 'ResNet-20 (B)' -> 'resnet-20-b'."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def train_all(args, configurations, demo, overrides=None):
    """Train (or reuse) every ``label -> model spec``; returns ``label -> Run`` in order.

    overrides: ``label -> {TrainConfig field: value}`` for runs that differ in more than the model.
    """
    resolve_device(args.device)                       # a bad --device fails before any data
    for model in configurations.values():              # and so does a bad depth or spec
        models.get_model(model)
    given = dict(_parse_run_option(item, configurations) for item in args.run)
    runs = {}
    for label, model in configurations.items():
        cfg = config_for(args, model, demo, label, **(overrides or {}).get(label, {}))
        print(f"--- {label}: {model}")
        runs[label] = (_given_run(label, model, given[label], asdict(cfg)) if label in given
                       else _train_or_reuse(label, cfg))
    return runs


def _parse_run_option(item, configurations):
    """(label, folder) of one --run LABEL=FOLDER; LABEL may also be its run folder's name."""
    label, equals, folder = item.partition("=")
    label = {slug(known): known for known in configurations}.get(label, label)
    if not equals or label not in configurations:
        raise ValueError(f"--run {item}: expected LABEL=FOLDER with LABEL one of "
                         f"{', '.join(configurations)} (or {', '.join(map(slug, configurations))})")
    return label, Path(folder)


def _given_run(label, model, folder, wanted):
    """A run folder from minires train: its settings and metrics.jsonl, checked to be ``model``;
    where its recipe differs from the preset's, says so (the numbers are that run's)."""
    settings, history = read_run(folder, what=f"--run {label}={folder}")
    if _same_model(settings.get("model"), model) is False:
        raise ValueError(f"--run {label}={folder}: that run trained {settings.get('model')}, "
                         f"{label} is {model}; give a run of {model}")
    print(f"{label}: read {len(history)} epochs from {folder / METRICS} (not trained here)")
    differ = [k for k in RECIPE if settings.get(k) != wanted.get(k)]
    if differ:
        print(f"{label}: note: that run's recipe is not this preset's: " + ", ".join(
            f"{flag(k)} {_shown(settings.get(k))} (preset {_shown(wanted.get(k))})" for k in differ))
    return Run(label, model, settings, history, "--run")


def _same_model(a, b):
    """Whether two model specs build the same architecture (None: one cannot be built)."""
    try:
        return models.get_model(a).config == models.get_model(b).config
    except (ValueError, TypeError):
        return None


def read_run(folder, what):
    """(settings, history) of a run folder written by minires train."""
    folder = Path(folder)
    config, metrics = folder / CONFIG, folder / METRICS
    if not metrics.is_file() or not config.is_file():
        raise ValueError(f"{what}: no {CONFIG} and {METRICS} there; give the --out folder of a "
                         f"minires train run that finished at least one epoch")
    try:
        settings = json.loads(config.read_text())
        history = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    except ValueError as e:
        raise ValueError(f"{what}: {config} or {metrics} is not readable JSON ({e})") from None
    if not history:
        raise ValueError(f"{what}: {metrics} holds no epoch yet; let the run finish one")
    return settings, history


def _train_or_reuse(label, cfg):
    folder = Path(cfg.out)
    if not any((folder / name).exists() for name in RUN_FILES):
        return Run(label, cfg.model, asdict(cfg), train(cfg), "trained")
    saved = RunFolder(folder).read_settings() or {}     # config.json, else the checkpoint's copy
    wanted = asdict(cfg)
    differ = [k for k in wanted if k not in SAFE_TO_CHANGE and k != "out" and saved.get(k) != wanted[k]]
    if differ:
        k = differ[0]
        raise ValueError(f"{folder} holds another run ({flag(k)} {_shown(saved.get(k))}, this demo's "
                         f"{flag(k)} {_shown(wanted[k])}); give another --out or remove that folder")
    done_before = _epochs_done(folder)
    history = train(cfg, resume=str(folder))          # continues a cut-off run; a finished one returns
    return Run(label, cfg.model, wanted, history, "reused" if len(history) == done_before else "resumed")


def _shown(value):
    return "unset" if value is None else value


def _epochs_done(folder):
    metrics = folder / METRICS
    return len(metrics.read_text().splitlines()) if metrics.is_file() else 0


# ------------------------------------------------------------------ numbers and plots
def table(rows, header):
    """Print rows (tuples) under ``header`` as aligned columns."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):            # the first column left-aligned, the numbers right
        print("  ".join(str(x).rjust(w) if i else str(x).ljust(w)
                        for i, (x, w) in enumerate(zip(row, widths))))


def percent(fraction):
    return f"{100 * fraction:.2f}"


def caption(args, runs):
    """One line: the size of the runs, where they ran and when (the figure's footnote)."""
    first = next(iter(runs.values())).settings
    length = (f"{first['epochs']} epochs" if first.get("epochs") is not None
              else f"{first['iterations']} iterations")
    images = (f"first {first['limit_train']:,} train / {first.get('limit_test') or 'all'} test images"
              if first.get("limit_train") else "all images")
    if first.get("resize"):
        images += f" at {first['resize']}x{first['resize']}"
    device = resolve_device(args.device)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return (f"{args.size} preset: {data_name(first)}, {images}, {length}, batch {first['batch_size']}, "
            f"lr {first['lr']:g} ({first['schedule']}), seed {first['seed']}; {device}, {stamp}")


def data_name(settings):
    """Which data a run read, for the caption: which copy of CIFAR-10 (its pixels differ)."""
    if settings["dataset"] != "cifar10":
        return {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST"}.get(settings["dataset"], settings["dataset"])
    try:
        found = data.cifar.locate(settings.get("data_dir") or data.default_root())
    except (OSError, ValueError):
        found = None
    if found is None:
        return "CIFAR-10"
    if found.layout == "jpeg":
        return "CIFAR-10 (JPEG copy)"
    return "CIFAR-10 subset (official pixels)" if found.subset else "CIFAR-10 (official pixels)"


def figure(rows, cols, width=5.5, height=4.0):
    fig, axes = _common.pyplot().subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    return fig, axes.ravel()


def draw_curves(ax, runs, key="error", title=""):
    """He et al. 2015 Fig. 6's style: each run one colour, train dashed, test solid (%)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    scale = 100 if key == "error" else 1
    epochs = []
    for i, run in enumerate(runs):
        epochs = [row["epoch"] for row in run.history]
        style = dict(color=f"C{i}", marker="o" if len(epochs) <= 40 else None, markersize=3)
        ax.plot(epochs, [scale * r[f"train_{key}"] for r in run.history], "--", **style)
        ax.plot(epochs, [scale * r[f"test_{key}"] for r in run.history], "-", label=run.label, **style)
    ax.set(xlabel="epoch", ylabel="error (%)" if key == "error" else key, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(epochs) == 1:                       # one point, centred, its epoch the only tick
        ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    styles = [Line2D([], [], color="0.3", ls="--", label="train"), Line2D([], [], color="0.3", label="test")]
    ax.legend(handles=handles + styles, fontsize=7, loc="lower left")   # error curves fall: empty there


def draw_bars(ax, runs, paper, title):
    """Final test error per run as bars, each labelled with its number and the paper's."""
    errors = [100 * r.last["test_error"] for r in runs]
    bars = ax.bar(range(len(runs)), errors, color=[f"C{i}" for i in range(len(runs))])
    for bar, run, error in zip(bars, runs, errors):
        ax.annotate(f"{error:.1f}\npaper {paper[run.label]}", (bar.get_x() + bar.get_width() / 2, error),
                    ha="center", va="bottom", fontsize=7, textcoords="offset points", xytext=(0, 2))
    ax.set_xticks(range(len(runs)), [r.label for r in runs], rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="final test error (%)", title=title)
    ax.set_ylim(0, 1.25 * max(errors + [1.0]))
    ax.grid(alpha=0.3, axis="y")


def compare(args, runs, demo, depth, paper, words):
    """The variants of one ResNet depth (shortcuts.py, unit_variants.py): a table of final errors
    beside ``paper`` (label -> its number), curves and bars, saved as DEMO.png and .json.
    words: the table's first column, what varies, whose the paper's numbers are (table, bars)."""
    column, varied, paper_line, bars_title, suptitle = words
    print(f"\n{varied} on ResNet-{depth} ({args.size} preset): final errors, %; {paper_line}")
    table([(r.label, f"{r.parameters:,}", percent(r.last["train_error"]), percent(r.last["test_error"]),
            paper[r.label], r.source) for r in runs.values()],
          (column, "parameters", "train error", "test error", "paper", "run"))
    fig, (ax_curves, ax_bars) = figure(1, 2)
    draw_curves(ax_curves, list(runs.values()), title=f"ResNet-{depth}: error per epoch")
    draw_bars(ax_bars, list(runs.values()), paper, title=bars_title)
    fig.suptitle(suptitle)
    return save(fig, args, demo, runs)


def save(fig, args, demo, runs, others=None):
    """Write the figure, with the caption line, to --out/DEMO.png and every run's numbers
    (final epoch, parameters, where it came from; ``others``: label -> history of runs
    made outside minires, e.g. PyTorch's) to --out/DEMO.json; returns the PNG's path."""
    path = out_folder(args, demo) / f"{demo}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = caption(args, runs)
    fig.text(0.5, 0.01, line, ha="center", va="bottom", fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    _common.pyplot().close(fig)
    numbers = {"demo": demo, "size": args.size, "caption": line,
               "runs": {r.label: {"model": r.model, "parameters": r.parameters, "source": r.source,
                                  "epochs": len(r.history), "final": r.last} for r in runs.values()},
               "others": {label: {"epochs": len(h), "final": h[-1]} for label, h in (others or {}).items()}}
    path.with_suffix(".json").write_text(json.dumps(numbers, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path} and {path.with_suffix('.json').name}")
    return path
