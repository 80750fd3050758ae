"""Training and evaluation: the loop behind ``minires train`` and ``minires eval``.

One training step, top to bottom (this is the path to follow through the code):

    x, y = next(batches)                   data/loader.py    gather + pad-crop-flip on the device
    logits = model(x)                      models/cifar.py   conv -> batch_norm -> relu -> ... -> linear
                                           ops/conv.py       im2col (kernels/cpu/columns.py) + GEMM
    loss = F.cross_entropy(logits, y)      ops/loss.py
    loss.backward()                        autograd.py       reverse topological walk, += into grads
    optimizer.step(); scheduler.step()     optim/

Defaults are He et al. 2015's CIFAR recipe for ResNet-20: batch 128, SGD with
momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k
iterations, 64k iterations, 4-pixel pad + random crop + horizontal flip.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np

from . import backend, data, models, optim
from . import random as mr_random
from .autograd import no_grad
from .checkpoint import load_checkpoint, save_checkpoint
from .nn import functional as F

DATASETS = {
    # name: (loader class, mean, std, classes, augment by default)
    "cifar10": (data.CIFAR10, data.CIFAR10_MEAN, data.CIFAR10_STD, 10, True),
    "fashion-mnist": (data.FashionMNIST, data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD, 10, False),
    "mnist": (data.MNIST, data.MNIST_MEAN, data.MNIST_STD, 10, False),
    # any ROOT/{train,test}/<class>/ tree: classes, mean and std come from its training images
    "imagefolder": (data.ImageFolderSplit, None, None, None, False),
}
SCHEDULES = ("multistep", "cosine", "constant")


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
    limit_train: int | None = None       # use only the first N training images (smoke runs)
    limit_test: int | None = None
    progress: bool = True

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.epochs is None and self.iterations is None:
            raise ValueError("give the run's length: epochs or iterations")
        for name in ("epochs", "iterations", "batch_size", "eval_batch_size", "log_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.out is None:
            self.out = str(Path("runs") / f"{self.model}-{self.dataset}")


class TrainingDiverged(RuntimeError):
    pass


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


class _StopRequest:
    """Ctrl-C sets a flag that the loop reads between steps, so a step is never cut
    in half; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:                   # not the main thread: no signal handling
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class Trainer:
    """Owns one run: model, data, optimizer, schedule, metrics and checkpoints."""

    def __init__(self, cfg: TrainConfig, log=print):
        self.cfg, self.log = cfg, log
        self.device = resolve_device(cfg.device)
        mr_random.manual_seed(cfg.seed)
        train_arrays, test_arrays, mean, std, classes, augment = load_datasets(cfg)
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
        self.out = Path(cfg.out)
        self.epoch, self.step, self.batch_in_epoch = 0, 0, 0
        self.partial = {"loss_sum": 0.0, "wrong": 0, "seen": 0, "seconds": 0.0}
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
        return self.out / "checkpoint.npz"

    def save(self):
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
            "rng": mr_random.generator(np).bit_generator.state,
        }
        save_checkpoint(self.checkpoint_path, arrays, meta)

    def restore(self, path):
        arrays, meta = load_checkpoint(path)
        if meta["model_config"] != self.model.config:
            raise ValueError(f"{path} holds a {meta['model_config']} model, this run builds "
                             f"{self.model.config}")
        self.model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
        state = {}
        for k, v in arrays.items():
            if k.startswith("optim/"):
                _, i, name = k.split("/", 2)
                state.setdefault(int(i), {})[name] = v
        self.optimizer.load_state_dict({"groups": meta["optimizer_groups"], "state": state})
        self.scheduler.load_state_dict(meta["scheduler"])
        mr_random.generator(np).bit_generator.state = meta["rng"]
        self.epoch, self.step, self.batch_in_epoch = meta["epoch"], meta["step"], meta["batch_in_epoch"]
        self.partial, self.history = meta["partial"], meta["history"]
        self.log(f"resumed from {path}: epoch {self.epoch + 1}, iteration {self.step}")

    # ------------------------------------------------------------ the loop
    def run(self):
        self.out.mkdir(parents=True, exist_ok=True)
        self.log(f"training {self.cfg.model} on {self.cfg.dataset} ({len(self.train_loader.labels)} "
                 f"images) on {self.device}: {self.total_steps} iterations, {self.total_epochs} epochs "
                 f"of {self.steps_per_epoch} -> {self.out}")
        with _StopRequest() as stop:
            while self.step < self.total_steps:
                finished = self._epoch(stop)
                if not finished:
                    self.save()
                    self.log(f"interrupted: saved {self.checkpoint_path} at iteration {self.step}; "
                             f"continue with --resume")
                    return self.history
                self._end_of_epoch()
        from .plots import plot_history
        plot_history(self.history, self.out / "curves.png", title=f"{self.cfg.model} on {self.cfg.dataset}")
        return self.history

    def _epoch(self, stop):
        """Train until the end of the epoch (True) or until a stop request (False)."""
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
        bar = _progress(cfg.progress, self.steps_per_epoch, self.epoch, self.total_epochs, self.batch_in_epoch)
        started, done_before = time.perf_counter(), p["seen"]
        for b, (x, y) in enumerate(self.train_loader):
            if b < self.batch_in_epoch:                       # resuming mid-epoch: same batches
                continue
            if self.step >= self.total_steps or stop.requested:
                break
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
                if bar is not None:
                    bar.set_postfix(loss=f"{p['loss_sum'] / p['seen']:.3f}",
                                    acc=f"{1 - p['wrong'] / p['seen']:.3f}",
                                    img_s=f"{(p['seen'] - done_before) / (time.perf_counter() - started):.0f}",
                                    lr=f"{self.optimizer.param_groups[0]['lr']:.3g}", refresh=False)
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

    def _check_finite(self, bad_step):
        if bad_step >= 0:
            raise TrainingDiverged(
                f"the training loss became NaN or infinite at iteration {bad_step} "
                f"(epoch {self.epoch + 1}); stopped. The last good state is "
                f"{self.checkpoint_path} (if an epoch finished). Try a lower --lr or --warmup.")

    def _end_of_epoch(self):
        p = self.partial
        test_loss, test_error = evaluate(self.model, self.test_loader)
        row = {"epoch": self.epoch + 1, "iteration": self.step,
               "lr": self.optimizer.param_groups[0]["lr"],
               "train_loss": p["loss_sum"] / p["seen"], "train_error": p["wrong"] / p["seen"],
               "test_loss": test_loss, "test_error": test_error,
               "seconds": p["seconds"], "images_per_second": p["seen"] / max(p["seconds"], 1e-9)}
        self.history.append(row)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self.log(f"epoch {row['epoch']:>3}/{self.total_epochs}  train loss {row['train_loss']:.4f} "
                 f"error {100 * row['train_error']:.2f}%  test loss {test_loss:.4f} "
                 f"error {100 * test_error:.2f}%  ({row['seconds']:.0f} s, "
                 f"{row['images_per_second']:.0f} img/s)")
        self.epoch += 1
        self.batch_in_epoch = 0
        self.partial = {"loss_sum": 0.0, "wrong": 0, "seen": 0, "seconds": 0.0}
        self.save()


def _progress(enabled, total, epoch, epochs, initial):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                leave=False, dynamic_ncols=True)


def train(cfg: TrainConfig, resume=False, log=print):
    """Run (or with resume=True continue) a training run; returns the per-epoch history."""
    trainer = Trainer(cfg, log=log)
    if resume:
        path = resume if isinstance(resume, (str, os.PathLike)) else trainer.checkpoint_path
        trainer.restore(path)
    elif (trainer.out / "metrics.jsonl").exists():
        raise FileExistsError(f"{trainer.out} already holds a run: continue it with --resume, "
                              f"or choose another --out")
    return trainer.run()


def evaluate_checkpoint(path, data_dir=None, device="auto", batch_size=500):
    """(test loss, test error, meta) of a saved checkpoint on its dataset's test split."""
    arrays, meta = load_checkpoint(path)
    saved = meta["config"]
    cfg = TrainConfig(**{**saved, "data_dir": data_dir or saved.get("data_dir"), "device": device,
                         "eval_batch_size": batch_size})
    cls, mean, std, _, _ = DATASETS[cfg.dataset]
    test_set = cls(cfg.data_dir, train=False)
    model = models.from_config(meta["model_config"])
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
    dev = resolve_device(device)
    model.to(dev)
    loader = data.DataLoader((test_set.images[:cfg.limit_test], test_set.labels[:cfg.limit_test]),
                             batch_size, mean=mean, std=std, device=dev, resize=cfg.resize)
    loss, error = evaluate(model, loader)
    return loss, error, meta
