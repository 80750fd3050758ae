"""Training and evaluation: the loop behind ``minires train`` and ``minires eval``.

One training step, top to bottom (this is the path to follow through the code):

    x, y = next(batches)                   data/loader.py    gather + pad-crop-flip on the device
    logits = model(x)                      models/cifar.py   conv -> batch_norm -> relu -> ... -> linear
                                           ops/conv.py       im2col (kernels/cpu/columns.py) + GEMM
                                           ops/winograd.py   3x3 layers on the CPU: Winograd + GEMMs
                                           ops/direct.py     the stem (3 input channels): direct
    loss = F.cross_entropy(logits, y)      ops/loss.py
    loss.backward()                        autograd.py       reverse topological walk, += into grads
    optimizer.step(); scheduler.step()     optim/

Defaults are He et al. 2015's CIFAR recipe for ResNet-20: batch 128, SGD with
momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k
iterations, 64k iterations, 4-pixel pad + random crop + horizontal flip.

Evaluation (``evaluate``: model.eval(), no_grad) takes a shorter path on the CPU: each conv
with the batch norm after it is one op, ops/fused.py's conv2d_batch_norm_relu_eval, whose
Winograd output transform applies the BN (kernels/cpu/winograd.py's winograd_output).

On the GPU, ``--graph`` runs each step as one CUDA-graph launch instead (cuda_graph.py:
the graph gathers its own batch, loss and errors stay on the device until a read-back).

The run folder (settings, checkpoint, metrics, lock, resume) is run_folder.py's job;
this file only asks it to commit once per epoch.  SIGINT and SIGTERM stop a run at
the next step boundary, saved, with RunInterrupted (exit status 128 + signal).
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from . import backend, data, models, optim
from . import random as mr_random
from .autograd import no_grad
from .checkpoint import CheckpointError, load_checkpoint, meta_value, restore_model, restore_optimizer
from .nn import functional as F
from .run_folder import CHECKPOINT, CONFIG, CURVES, RunFolder, RunFolderError, resume_settings

DATASETS = {
    # name: (loader class, mean, std, classes, augment by default)
    "cifar10": (data.CIFAR10, data.CIFAR10_MEAN, data.CIFAR10_STD, 10, True),
    "fashion-mnist": (data.FashionMNIST, data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD, 10, False),
    "mnist": (data.MNIST, data.MNIST_MEAN, data.MNIST_STD, 10, False),
    # any ROOT/{train,test}/<class>/ tree: classes, mean and std come from its training images
    "imagefolder": (data.ImageFolderSplit, None, None, None, False),
}
SCHEDULES = ("multistep", "cosine", "constant")
DEVICES = ("auto", "cpu", "gpu", "cuda", "cuda:0")


@dataclasses.dataclass
class TrainConfig:
    model: str = "resnet20"
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = True
    epochs: int | None = None            # the run's length: epochs, or ...
    iterations: int | None = 64000       # ... iterations (used when epochs is None)
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "multistep"
    milestones: list | None = None       # in the run's unit (epochs or iterations); None: 50%, 75%
    gamma: float = 0.1
    warmup: int = 0                      # iterations of linear warm-up from lr/10
    augment: bool | None = None          # None: the dataset's default (pad-crop-flip for CIFAR)
    resize: int | None = None            # e.g. 96 for ResNet-18 on Fashion-MNIST (d2l)
    device: str = "auto"
    seed: int = 0
    out: str | None = None               # None: runs/<model>-<dataset>
    eval_batch_size: int = 500
    log_every: int = 20                  # GPU: read loss/accuracy back every N steps
    graph: bool = False                  # GPU: each training step one CUDA-graph launch (cuda_graph.py)
    limit_train: int | None = None       # use only the first N training images (smoke runs)
    limit_test: int | None = None
    progress: bool = True

    def __post_init__(self):
        """Refuse bad settings before any data is read, in the command line's words."""
        if self.dataset not in DATASETS:
            raise ValueError(f"--dataset {self.dataset!r} is unknown; choose from {', '.join(DATASETS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule {self.schedule!r} is unknown; choose from {', '.join(SCHEDULES)}")
        if str(self.device).lower() not in DEVICES:
            raise ValueError(f"--device {self.device!r} is unknown; choose from {', '.join(DEVICES)} "
                             f"(auto: the GPU when CuPy sees one, else the CPU)")
        models.check_name(self.model, "num_classes", "in_channels")   # no build, no data yet
        if self.epochs is None and self.iterations is None:
            raise ValueError("give the run's length: --epochs or --iterations")
        if self.epochs is not None:
            self.iterations = None               # one length, so config.json is unambiguous
        for name in ("epochs", "iterations", "batch_size", "eval_batch_size", "log_every",
                     "limit_train", "limit_test", "resize"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        for name, value, low in (("lr", self.lr, "> 0"), ("gamma", self.gamma, "> 0"),
                                 ("momentum", self.momentum, ">= 0"),
                                 ("weight_decay", self.weight_decay, ">= 0")):
            if not (math.isfinite(value) and (value > 0 if low == "> 0" else value >= 0)):
                raise ValueError(f"--{name.replace('_', '-')} must be {low}, got {value}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0 iterations, got {self.warmup}")
        if self.milestones is not None:
            self._check_milestones()
        self.data_dir = absolute_data_dir(self.data_dir)
        if self.out is None:
            self.out = str(Path("runs") / f"{self.model}-{self.dataset}")

    def _check_milestones(self):
        unit, length = ("epochs", self.epochs) if self.epochs is not None else ("iterations", self.iterations)
        marks = list(self.milestones)
        if any(b <= a for a, b in zip(marks, marks[1:])):
            raise ValueError(f"--milestones must be in increasing order, got {' '.join(map(str, marks))}")
        if not all(0 < m <= length for m in marks):
            raise ValueError(f"--milestones must lie in (0, {length}] {unit} (the run's length), "
                             f"got {' '.join(map(str, marks))}")


def absolute_data_dir(data_dir):
    """--data-dir as an absolute path, so that --resume finds the data from anywhere."""
    return None if data_dir is None else os.path.abspath(os.path.expanduser(data_dir))


GRAPH_NEEDS_GPU = ("--graph needs a CUDA GPU (--device gpu with CuPy); a run saved with --graph "
                   "resumes eagerly elsewhere with --resume --no-graph")


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum


class TrainingDiverged(RuntimeError):
    pass


def check_graph(cfg, device=None):
    """--graph only on a CUDA device: refused before anything is read or written."""
    if cfg.graph and (device or resolve_device(cfg.device)) != backend.CUDA:
        raise ValueError(GRAPH_NEEDS_GPU)


def resolve_device(device):
    if str(device).lower() == "auto":
        return backend.CUDA if backend.cuda_is_available() else backend.CPU
    device = backend.normalize_device(device)
    if device == backend.CUDA:
        backend.cupy_module()                          # says how to install CuPy if missing
        if not backend.cuda_is_available():
            raise RuntimeError("--device gpu: CuPy is installed but sees no CUDA device")
    return device


def load_datasets(cfg, log=print):
    cls, mean, std, classes, augment_default = DATASETS[cfg.dataset]
    kwargs = {"download": cfg.download} if cls is data.CIFAR10 else {}
    # an image tree may hold images of several sizes: --resize brings them to one as they are decoded
    split_kwargs = {"resize": cfg.resize, "progress": cfg.progress} if cls is data.ImageFolderSplit else {}
    train_set = cls(cfg.data_dir, train=True, **kwargs, **split_kwargs)
    test_set = cls(cfg.data_dir, train=False, **split_kwargs)
    train_arrays = (train_set.images[:cfg.limit_train], train_set.labels[:cfg.limit_train])
    test_arrays = (test_set.images[:cfg.limit_test], test_set.labels[:cfg.limit_test])
    if cls is data.CIFAR10:
        log(data.describe_copy(train_set.found, len(train_set), len(test_set)))
    if cls is data.ImageFolderSplit:
        mean, std = data.channel_stats(train_set.images)
        classes = len(train_set.classes)
        log(f"image folder {cfg.data_dir}: {classes} classes ({', '.join(train_set.classes[:5])}"
            f"{', ...' if classes > 5 else ''}), {len(train_set):,} train / {len(test_set):,} test images "
            f"of {'x'.join(map(str, train_set.images.shape[1:]))}; normalised with the per-channel mean "
            f"{_fmt(mean)} and std {_fmt(std)} of its {len(train_set):,} training images")
    augment = augment_default if cfg.augment is None else cfg.augment
    return train_arrays, test_arrays, mean, std, classes, augment


def _fmt(values):
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def build_model(cfg, in_channels, classes):
    return models.get_model(cfg.model, num_classes=classes, in_channels=in_channels)


def evaluate(model, loader):
    """(mean loss, error rate) over the loader, in eval mode, without a graph."""
    xp = loader.xp
    was_training = model.training
    model.eval()
    loss_sum, wrong, seen = xp.zeros((), np.float64), xp.zeros((), np.int64), 0
    with no_grad():
        for x, y in loader:
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").data
            wrong += (logits.data.argmax(axis=1) != y.data).sum()
            seen += len(y)
    model.train(was_training)
    return float(loss_sum) / seen, float(wrong) / seen


class _Signals:
    """SIGINT and SIGTERM during one train() call.

    Outside the training loop (loading data, building the model, plotting) a signal
    stops at once: there is nothing to save.  Inside it (``deferring``) the first one
    only sets ``signum``, which the loop reads between steps, so a step is never cut in
    half and the run is saved; a second one stops at once, the last checkpoint intact.
    """

    def __init__(self):
        self.signum, self.deferring = None, False
        self.where = "before training started; the run folder is as it was"
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    def _handler(self, signum, frame):
        if self.deferring and self.signum is None:
            self.signum = signum
            return
        raise RunInterrupted(signum, f"interrupted by {signal.Signals(signum).name} {self.where}")

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:               # not the main thread: no signal handling
                pass
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        return False


class Trainer:
    """Owns one run: model, data, optimizer, schedule and history, in an open RunFolder."""

    def __init__(self, cfg: TrainConfig, folder: RunFolder, log=print):
        self.cfg, self.folder, self.log = cfg, folder, log
        self.device = resolve_device(cfg.device)
        check_graph(cfg, self.device)
        mr_random.manual_seed(cfg.seed)
        train_arrays, test_arrays, mean, std, classes, augment = load_datasets(cfg, log)
        # Saved with the checkpoint: an image folder's statistics come from its training images,
        # which evaluate_checkpoint does not load.
        self.normalization = {"mean": [float(m) for m in mean], "std": [float(v) for v in std]}
        in_channels = train_arrays[0].shape[1]
        self.model = build_model(cfg, in_channels, classes).to(self.device)
        self.train_loader = data.DataLoader(train_arrays, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                            augment=augment, mean=mean, std=std, device=self.device,
                                            resize=cfg.resize)
        self.test_loader = data.DataLoader(test_arrays, cfg.eval_batch_size, mean=mean, std=std,
                                           device=self.device, resize=cfg.resize)
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = (cfg.epochs * self.steps_per_epoch if cfg.epochs is not None
                            else cfg.iterations)
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.optimizer = optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        self.scheduler = self._schedule()
        self.graph = self.eval_graph = None
        if cfg.graph:
            from .cuda_graph import EvaluationGraph, TrainingGraph
            self.graph = TrainingGraph(self.model, self.optimizer, self.train_loader)
            self.eval_graph = EvaluationGraph(self.model, self.test_loader)
        self.out = folder.path
        self.epoch, self.step, self.batch_in_epoch = 0, 0, 0
        self.partial = _fresh_partial()
        self.history = []

    # ------------------------------------------------------------ setup
    def _schedule(self):
        cfg = self.cfg
        unit = self.steps_per_epoch if cfg.epochs is not None else 1    # milestones -> iterations
        if cfg.schedule == "multistep":
            marks = cfg.milestones or [0.5 * self.total_steps / unit, 0.75 * self.total_steps / unit]
            sched = optim.MultiStepLR(self.optimizer, [round(m * unit) for m in marks], cfg.gamma)
        elif cfg.schedule == "cosine":
            sched = optim.CosineAnnealingLR(self.optimizer, self.total_steps)
        else:
            sched = optim.MultiStepLR(self.optimizer, [], 1.0)
        if cfg.warmup:
            sched = optim.LinearWarmup(sched, cfg.warmup, start_factor=0.1)
        return sched

    # ------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self):
        return self.folder.file(CHECKPOINT)

    def save(self):
        """Commit the run's state, history included (run_folder.py's commit point)."""
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        opt_state = self.optimizer.state_dict()
        for i, entry in opt_state["state"].items():
            for k, v in entry.items():
                arrays[f"optim/{i}/{k}"] = v
        meta = {
            "config": dataclasses.asdict(self.cfg), "model_config": self.model.config,
            "epoch": self.epoch, "step": self.step, "batch_in_epoch": self.batch_in_epoch,
            "partial": self.partial, "history": self.history,
            "optimizer_groups": opt_state["groups"], "scheduler": self.scheduler.state_dict(),
            "rng": mr_random.generator(np).bit_generator.state, "normalization": self.normalization,
        }
        self.folder.commit(arrays, meta)

    def restore(self, state, path=None):
        """Continue from a checkpoint's (arrays, meta), e.g. ``RunFolder.load()``."""
        arrays, meta = state
        path = path or self.checkpoint_path
        if meta_value(path, meta, "model_config", dict) != self.model.config:
            raise CheckpointError(f"{path} holds a {meta['model_config']} model, this run builds "
                                  f"{self.model.config}")
        restore_model(path, self.model, arrays)
        restore_optimizer(path, self.optimizer, arrays, meta)
        self.scheduler.load_state_dict(meta_value(path, meta, "scheduler", dict))
        mr_random.generator(np).bit_generator.state = meta_value(path, meta, "rng", dict)
        self.epoch, self.step, self.batch_in_epoch = (
            meta_value(path, meta, key, int) for key in ("epoch", "step", "batch_in_epoch"))
        self.partial = {**_fresh_partial(), **meta_value(path, meta, "partial", dict)}
        self.history = meta_value(path, meta, "history", list)
        if self.history and self.history[-1].get("partial_epoch") and self.step < self.total_steps:
            self.history.pop()                  # lengthened: that epoch goes on, its row comes again
        self.log(f"resumed from {path}: epoch {self.epoch + 1}, iteration {self.step}, "
                 f"lr {self.optimizer.param_groups[0]['lr']:g}")

    # ------------------------------------------------------------ the loop
    def run(self, signals=None):
        """Train to the end; returns the history.  Raises RunInterrupted, saved, on a signal."""
        if signals is None:
            with _Signals() as signals:
                return self.run(signals)
        signals.deferring = True                 # from here a signal is saved, not fatal
        signals.where = "during a step: stopped at once; the last checkpoint is intact"
        try:
            self.log(f"training {self.cfg.model} on {self.cfg.dataset} ({len(self.train_loader.labels)} "
                     f"images) on {self.device}: {self.total_steps} iterations, {self.total_epochs} "
                     f"epochs of {self.steps_per_epoch} -> {self.out}")
            self._clock = (time.perf_counter(), self.step)      # for the ETA
            while self.step < self.total_steps:
                finished = self._epoch(signals)
                if finished:
                    self._end_of_epoch()
                if signals.requested and self.step < self.total_steps:
                    if not finished:
                        self.save()
                    name = signal.Signals(signals.signum).name
                    raise RunInterrupted(
                        signals.signum, f"interrupted by {name}: saved {self.checkpoint_path} at "
                        f"iteration {self.step} (epoch {self.epoch + 1}, batch {self.batch_in_epoch}); "
                        f"continue with: minires train --resume --out {self.out}")
            signals.where = f"while plotting; the run is complete in {self.out}"
        finally:
            signals.deferring = False
        from .plots import plot_history
        curves = self.folder.file(CURVES)
        try:
            plot_history(self.history, curves, title=f"{self.cfg.model} on {self.cfg.dataset}")
        except OSError as e:
            raise RunFolderError(f"cannot write {curves}: {e.strerror or e}; the run itself is "
                                 f"complete in {self.checkpoint_path}") from None
        return self.history

    def _epoch(self, stop):
        """Train until the end of the epoch (True) or until a stop request (False)."""
        if self.graph is not None:
            return self._graph_epoch(stop)
        cfg, xp = self.cfg, self.train_loader.xp
        self.model.train()
        self.train_loader.set_epoch(self.epoch)
        readback = 1 if xp is np else cfg.log_every        # the CPU reads back for free
        # Loss and error accumulate on the device and are flushed into self.partial at
        # each readback, so an interrupted-and-resumed epoch sums in the same order.
        loss_sum, wrong = xp.zeros((), np.float64), xp.zeros((), np.int64)
        first_bad = xp.full((), -1, np.int64)
        pending = 0
        p = self.partial
        bar = _progress(cfg.progress, self.steps_per_epoch, self.epoch, self.total_epochs,
                        self.batch_in_epoch, self.log)
        started, done_before = time.perf_counter(), p["seen"]
        for b, (x, y) in enumerate(self.train_loader):
            if b < self.batch_in_epoch:                       # resuming mid-epoch: same batches
                continue
            if self.step >= self.total_steps or stop.requested:
                break
            p["lr"] = self.optimizer.param_groups[0]["lr"]    # the rate this step trains with
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            first_bad = xp.where((first_bad < 0) & ~xp.isfinite(loss.data), self.step, first_bad)
            loss_sum += loss.data * len(y)
            wrong += (logits.data.argmax(axis=1) != y.data).sum()
            pending += len(y)
            self.step += 1
            self.batch_in_epoch = b + 1
            if self.step % readback == 0 or self.batch_in_epoch == self.steps_per_epoch:
                self._check_finite(int(first_bad))
                p["loss_sum"] += float(loss_sum)
                p["wrong"] += int(wrong)
                p["seen"] += pending
                loss_sum[...], wrong[...], pending = 0, 0, 0
                self._show_running(bar, started, done_before)
            if bar is not None:
                bar.update(1)
        self._check_finite(int(first_bad))
        p["loss_sum"] += float(loss_sum)
        p["wrong"] += int(wrong)
        p["seen"] += pending
        p["seconds"] += time.perf_counter() - started
        if bar is not None:
            bar.close()
        return self.batch_in_epoch == self.steps_per_epoch or self.step >= self.total_steps

    def _show_running(self, bar, started, done_before):
        """The progress bar's postfix: the epoch's running loss, accuracy, speed and lr."""
        if bar is None:
            return
        p = self.partial
        bar.set_postfix(loss=f"{p['loss_sum'] / p['seen']:.3f}", acc=f"{1 - p['wrong'] / p['seen']:.3f}",
                        img_s=f"{(p['seen'] - done_before) / (time.perf_counter() - started):.0f}",
                        lr=f"{self.optimizer.param_groups[0]['lr']:.3g}", refresh=False)

    def _graph_epoch(self, stop):
        """_epoch in CUDA-graph mode: one graph launch per step (TrainingGraph), the loss,
        errors and non-finite flag read back from the device every --log-every steps."""
        cfg, graph, p = self.cfg, self.graph, self.partial
        self.model.train()
        graph.start_epoch(self.epoch, self.batch_in_epoch, self.step)
        bar = _progress(cfg.progress, self.steps_per_epoch, self.epoch, self.total_epochs,
                        self.batch_in_epoch, self.log)
        started, done_before, pending = time.perf_counter(), p["seen"], 0
        n = len(self.train_loader.labels)
        batch_size = self.train_loader.batch_size

        def readback():
            loss_sum, wrong, bad = graph.read()
            self._check_finite(bad, detected=self.step, every=cfg.log_every)
            p["loss_sum"] += loss_sum
            p["wrong"] += wrong
            p["seen"] += pending
        for b in range(self.batch_in_epoch, self.steps_per_epoch):
            if self.step >= self.total_steps or stop.requested:
                break
            p["lr"] = self.optimizer.param_groups[0]["lr"]
            batch = min(batch_size, n - b * batch_size)
            graph.step(batch)
            self.scheduler.step()
            pending += batch
            self.step += 1
            self.batch_in_epoch = b + 1
            if self.step % cfg.log_every == 0 or self.batch_in_epoch == self.steps_per_epoch:
                readback()
                pending = 0
                self._show_running(bar, started, done_before)
            if bar is not None:
                bar.update(1)
        readback()
        p["seconds"] += time.perf_counter() - started
        if bar is not None:
            bar.close()
        return self.batch_in_epoch == self.steps_per_epoch or self.step >= self.total_steps

    def _check_finite(self, bad_step, detected=None, every=None):
        if bad_step >= 0:
            when = "" if detected is None or detected == bad_step + 1 else (
                f", found at the read-back after iteration {detected - 1} (--graph reads the device "
                f"every --log-every {every} steps; the steps in between trained on)")
            raise TrainingDiverged(
                f"the training loss became NaN or infinite at iteration {bad_step} "
                f"(epoch {self.epoch + 1}{when}); stopped. The last good state is "
                f"{self.checkpoint_path} (if an epoch finished). Try a lower --lr or --warmup.")

    def _end_of_epoch(self):
        p = self.partial
        test_loss, test_error = (evaluate(self.model, self.test_loader) if self.eval_graph is None
                                 else self.eval_graph.evaluate())
        row = {"epoch": self.epoch + 1, "iteration": self.step, "lr": p["lr"],
               "train_loss": p["loss_sum"] / p["seen"], "train_error": p["wrong"] / p["seen"],
               "test_loss": test_loss, "test_error": test_error,
               "seconds": p["seconds"], "images_per_second": p["seen"] / max(p["seconds"], 1e-9)}
        if self.batch_in_epoch < self.steps_per_epoch:
            # An --iterations run that ends mid-epoch: the row says so, and the position and
            # sums stay, so a longer --iterations continues this very epoch (see restore).
            row["partial_epoch"] = True
        else:
            self.epoch += 1
            self.batch_in_epoch = 0
            self.partial = _fresh_partial()
        self.history.append(row)
        self.save()
        self.log(f"epoch {row['epoch']:>3}/{self.total_epochs}  train loss {row['train_loss']:.4f} "
                 f"acc {100 * (1 - row['train_error']):.2f}% (error {100 * row['train_error']:.2f}%)  "
                 f"test loss {test_loss:.4f} acc {100 * (1 - test_error):.2f}% "
                 f"(error {100 * test_error:.2f}%)  {row['seconds']:.0f} s, "
                 f"{row['images_per_second']:.0f} img/s, {self._eta()}")

    def _eta(self):
        """Time left for the whole run, at this session's pace (evaluation included)."""
        since, step0 = self._clock
        done, left = self.step - step0, self.total_steps - self.step
        if left == 0:
            return "done"
        return f"ETA {_duration(left * (time.perf_counter() - since) / max(done, 1))}"


def _fresh_partial():
    """The running sums of the epoch in progress (saved with a mid-epoch checkpoint)."""
    return {"loss_sum": 0.0, "wrong": 0, "seen": 0, "seconds": 0.0, "lr": None}


def _duration(seconds):
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class _PlainProgress:
    """Progress as a plain line every ~10 % of an epoch or every 30 s, for logs and CI,
    where a terminal's progress bar would be a flood of carriage returns."""

    EVERY_SECONDS = 30

    def __init__(self, total, initial, desc, log):
        self.total, self.done, self.desc, self.log = total, initial, desc, log
        self.postfix, self.last_time = {}, time.perf_counter()
        self.next_mark = self._mark_after(initial)

    def _mark_after(self, done):
        step = max(1, math.ceil(self.total / 10))
        return (done // step + 1) * step

    def set_postfix(self, refresh=False, **values):
        self.postfix = values

    def update(self, n=1):
        self.done += n
        now = time.perf_counter()
        if self.done >= self.next_mark or now - self.last_time >= self.EVERY_SECONDS:
            values = "  ".join(f"{k} {v}" for k, v in self.postfix.items())
            self.log(f"  {self.desc}: {self.done}/{self.total} batches "
                     f"({100 * self.done / self.total:.0f}%)  {values}".rstrip())
            self.next_mark, self.last_time = self._mark_after(self.done), now

    def close(self):
        pass


def _progress(enabled, total, epoch, epochs, initial, log):
    """A tqdm bar in a terminal, plain lines elsewhere, nothing with --no-progress."""
    if not enabled:
        return None
    desc = f"epoch {epoch + 1}/{epochs}"
    if not sys.stderr.isatty():                # tqdm draws on stderr
        return _PlainProgress(total, initial, desc, log)
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def train(cfg: TrainConfig, resume=False, log=print):
    """Run ``cfg`` in the folder ``cfg.out``; returns the per-epoch history.

    resume=True continues the run saved in ``cfg.out`` (resume=PATH: the run folder
    PATH, or the folder of the checkpoint PATH); ``cfg`` may then differ from the
    saved settings only where ``resume_run`` allows.  Raises RunInterrupted on SIGINT
    or SIGTERM, after saving.
    """
    if resume:
        folder = run_folder_of(resume) if isinstance(resume, (str, os.PathLike)) else cfg.out
        return resume_run(folder, dataclasses.asdict(cfg), log=log)
    check_graph(cfg)
    with _Signals() as signals, RunFolder(cfg.out) as folder:
        folder.refuse_existing_run()
        trainer = Trainer(cfg, folder, log=log)
        folder.write_settings(dataclasses.asdict(cfg))
        return trainer.run(signals)


def resume_run(out, changes=None, log=print):
    """Continue the run saved in the folder ``out`` with its own settings (config.json).

    ``changes`` (TrainConfig field -> value) may only change --device, --no-progress,
    --no-download or lengthen the run (the schedule stretches with it); anything else
    that differs from the saved run raises RunFolderError naming the flag.  A folder
    with settings but no checkpoint yet starts the saved run from its beginning.
    """
    if not Path(out).is_dir():
        raise RunFolderError(f"--out {out}: no run folder there to resume; start the run "
                             f"without --resume")
    with _Signals() as signals, RunFolder(out) as folder:
        saved = folder.read_settings()
        if saved is None:
            raise RunFolderError(f"{folder.path} holds no run to resume (no {CONFIG} or {CHECKPOINT}); "
                                 f"start one without --resume")
        changes = dict(changes or {})
        if "data_dir" in changes:
            changes["data_dir"] = absolute_data_dir(changes["data_dir"])
        settings, notes = resume_settings(saved, changes)
        cfg = _config_from(settings, folder)
        check_graph(cfg)
        state = folder.load()
        if state is not None and _finished(cfg, state[1], folder.file(CHECKPOINT)):
            unit = "epochs" if cfg.epochs is not None else "iterations"
            log(f"{folder.path} holds a complete run ({getattr(cfg, unit)} {unit}); to train it "
                f"longer: minires train --resume --out {folder.path} --{unit} N "
                f"(N > {getattr(cfg, unit)})")
            return meta_value(folder.file(CHECKPOINT), state[1], "history", list)
        for note in notes:
            log(note)
        trainer = Trainer(cfg, folder, log=log)
        if state is not None:
            trainer.restore(state)
        else:
            log(f"{folder.path} has no checkpoint yet: starting the saved run from its beginning")
        folder.write_settings(dataclasses.asdict(cfg))
        return trainer.run(signals)


def run_folder_of(path):
    """The run folder that ``--resume PATH`` names: PATH itself, or the folder of a checkpoint."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    raise RunFolderError(f"--resume {path}: no run folder or checkpoint there")


def _config_from(settings, folder):
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise RunFolderError(f"{folder.file(CONFIG)}: unknown settings {', '.join(unknown)} "
                             f"(written by another minires version?)")
    return TrainConfig(**{**settings, "out": str(folder.path)})


def _finished(cfg, meta, path):
    def value(key):
        return meta_value(path, meta, key, int)
    if cfg.epochs is not None:
        return value("epoch") >= cfg.epochs and value("batch_in_epoch") == 0
    return value("step") >= cfg.iterations


def evaluate_checkpoint(path, data_dir=None, device="auto", batch_size=500):
    """(test loss, test error, meta) of a saved checkpoint on its dataset's test split."""
    arrays, meta = load_checkpoint(path)
    saved = meta["config"]
    cfg = TrainConfig(**{**saved, "data_dir": data_dir or saved.get("data_dir"), "device": device,
                         "eval_batch_size": batch_size})
    cls, mean, std, _, _ = DATASETS[cfg.dataset]
    if "normalization" in meta:
        norm = meta_value(path, meta, "normalization", dict)
        mean, std = norm["mean"], norm["std"]
    split_kwargs = {"resize": cfg.resize, "progress": False} if cls is data.ImageFolderSplit else {}
    test_set = cls(cfg.data_dir, train=False, **split_kwargs)
    model = models.from_config(meta_value(path, meta, "model_config", dict))
    restore_model(path, model, arrays)
    dev = resolve_device(device)
    model.to(dev)
    loader = data.DataLoader((test_set.images[:cfg.limit_test], test_set.labels[:cfg.limit_test]),
                             batch_size, mean=mean, std=std, device=dev, resize=cfg.resize)
    loss, error = evaluate(model, loader)
    return loss, error, meta
