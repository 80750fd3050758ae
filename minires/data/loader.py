"""``DataLoader``: batches of (x, y) Tensors from uint8 images that live on the device.

The whole uint8 image array and the labels move to the device once; each batch
is then gathered, augmented, resized and normalised there, so the GPU never
waits on per-image Python work or host-to-device copies.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module, normalize_device, to_device
from ..random import derived
from ..tensor import Tensor
from .transforms import AUGMENT_PADDING, gather_crops, resize_bilinear


class DataLoader:
    """Iterate (x, y): x float32 (B, C, H, W) = (pixels/255 - mean) / std, y int64 (B,).

    ``dataset_or_arrays``: an object with ``.images`` uint8 (N, C, H, W) and
    ``.labels`` (N,) -- CIFAR10, FashionMNIST, ... -- or an (images, labels) pair.

    Shuffle order and augmentation draws are a pure function of (seed, epoch),
    drawn from ``minires.random.derived(xp, seed, epoch)``, so a resumed run
    reproduces them exactly.  Each ``iter()`` uses the current epoch and then
    advances it by one; ``set_epoch(e)`` makes the next ``iter()`` use epoch e.

    ``augment=True``: 4-pixel zero padding, a random crop of the original size
    and a horizontal flip with p=0.5 (ResNet paper, CIFAR).  The padding is
    zero in uint8, before normalisation (torchvision's RandomCrop(padding=4) on
    the raw image), so padded pixels come out as -mean/std, not 0.
    ``resize=(H, W)`` (or an int) resizes bilinearly after augmentation.
    """

    def __init__(self, dataset_or_arrays, batch_size, shuffle=False, seed=0, augment=False,
                 mean=None, std=None, device="cpu", drop_last=False, resize=None):
        images, labels = _arrays(dataset_or_arrays)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.augment, self.drop_last = bool(augment), bool(drop_last)
        self.resize = None if resize is None else _pair(resize)
        self.device = normalize_device(device)
        self.images = to_device(images, self.device)  # the one host-to-device copy
        self.labels = to_device(labels, self.device)
        self.xp = xp = get_array_module(self.images)
        channels = images.shape[1]
        self.mean = _per_channel(xp, mean, channels, 0.0, "mean")
        self.std = _per_channel(xp, std, channels, 1.0, "std")
        if bool((self.std <= 0).any()):
            raise ValueError(f"std must be positive, got {std}")
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self):
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self._batches(epoch)

    def plan(self, epoch: int):
        """(order, dy, dx, flip) for ``epoch``: sample order and per-position crop offsets
        and flips (None without augmentation), all drawn from derived(xp, seed, epoch)."""
        xp, n = self.xp, len(self.labels)
        rng = derived(xp, self.seed, epoch)
        order = xp.argsort(rng.random(n)) if self.shuffle else xp.arange(n)
        if not self.augment:
            return order, None, None, None
        dy = rng.integers(0, 2 * AUGMENT_PADDING + 1, size=n)
        dx = rng.integers(0, 2 * AUGMENT_PADDING + 1, size=n)
        return order, dy, dx, rng.random(n) < 0.5

    def _batches(self, epoch):
        order, dy, dx, flip = self.plan(epoch)
        for b in range(len(self)):
            part = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if self.augment:
                yield self.batch(order[part], dy[part], dx[part], flip[part])
            else:
                yield self.batch(order[part])

    def batch(self, idx, dy=None, dx=None, flip=None):
        """(x, y) of the samples ``idx`` with the crop offsets and flips given for them
        (augment=True); device work only, so a captured CUDA graph can run it."""
        if self.augment:
            x = gather_crops(self.images, idx, dy, dx, flip)
        else:
            x = self.images[idx]
        x = x.astype(np.float32) / 255
        if self.resize is not None:
            x = resize_bilinear(x, self.resize)
        return Tensor((x - self.mean) / self.std), Tensor(self.labels[idx])

    def __repr__(self):
        return (f"DataLoader({len(self.labels)} samples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, augment={self.augment}, device={self.device!r})")


def _arrays(data):
    images, labels = (data.images, data.labels) if hasattr(data, "images") else data
    xp = get_array_module(images)
    images, labels = xp.ascontiguousarray(images), xp.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"DataLoader needs uint8 images of shape (N, C, H, W), "
                         f"got {images.dtype} of shape {images.shape}")
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise ValueError(f"DataLoader needs one integer label per image: {len(images)} images, "
                         f"labels of shape {labels.shape} and dtype {labels.dtype}")
    return images, labels.astype(np.int64, copy=False)


def _pair(size):
    size = (size, size) if np.isscalar(size) else tuple(size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"resize must be an int or (H, W) of positive ints, got {size}")
    return int(size[0]), int(size[1])


def _per_channel(xp, value, channels, default, what):
    v = np.asarray(default if value is None else value, dtype=np.float32).reshape(-1)
    if v.size not in (1, channels):
        raise ValueError(f"{what} needs 1 or {channels} values (one per channel), got {v.size}")
    return xp.asarray(np.ascontiguousarray(np.broadcast_to(v, (channels,))).reshape(1, channels, 1, 1))
