"""MNIST and Fashion-MNIST from IDX files (gzipped or raw), as distributed.

IDX format: a 4-byte magic number -- two zero bytes, a type code (0x08 for
uint8) and the number of dimensions -- then one big-endian int32 per
dimension, then the values in C order.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..messages import Message
from .errors import DatasetError, DatasetNotFoundError
from .paths import default_dirs

IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Mean and std of the 60,000 training images, pixels scaled to [0, 1] (one channel).
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


def read_idx(path, ndim=None) -> np.ndarray:
    """The array in an IDX file (gzip detected by content, not by name)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: the gzip stream is damaged or truncated ({e}); "
                               "download the file again") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_TYPES:
        raise DatasetError(f"{path}: not an IDX file: expected a magic number 00 00 <type> <ndim> "
                           f"with type in {[hex(t) for t in IDX_TYPES]}, got {raw[:4].hex(' ')}")
    dtype, dims = IDX_TYPES[raw[2]], raw[3]
    if ndim is not None and dims != ndim:
        raise DatasetError(f"{path}: expected an IDX file of {ndim} dimensions "
                           f"(magic 00 00 08 {ndim:02x}), found {dims}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DatasetError(f"{path}: the header is cut short ({len(raw)} bytes, expected {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", dims, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(f"{path}: header says shape {shape}, i.e. {expected} bytes, but the file "
                           f"holds {len(raw)}; it is {'truncated' if len(raw) < expected else 'damaged'}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _candidates(prefix, kind, dims):
    """File names a split may have: 'train-images-idx3-ubyte' (and '.idx3-' spelling), raw or .gz."""
    names = [f"{prefix}-{kind}-idx{dims}-ubyte", f"{prefix}-{kind}.idx{dims}-ubyte"]
    return [n + ext for n in names for ext in (".gz", "")]


class _IDXDataset:
    """One split of an MNIST-style dataset: ``images`` uint8 (N, 1, 28, 28), ``labels`` int64 (N,)."""
    name = subdir = where_to_get = ""   # where_to_get: a Message template ({root})
    classes: tuple = ()
    system_dirs: tuple = ()

    def __init__(self, root=None, train=True):
        self.train = bool(train)
        prefix = "train" if self.train else "t10k"
        dirs = ([Path(root).expanduser(), Path(root).expanduser() / self.subdir] if root is not None
                else default_dirs(self.subdir, self.system_dirs))
        images_path, labels_path = self._find(dirs, prefix)
        images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
        if images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise DatasetError(f"{images_path}: expected uint8 images of 28x28, "
                               f"got {images.dtype} of {images.shape[1:]}")
        if len(images) != len(labels):
            raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                               f"{len(labels)} labels: the files do not belong together")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise DatasetError(f"{labels_path}: labels must lie in 0..{len(self.classes) - 1}, "
                               f"found {labels.min()}..{labels.max()}")
        self.root = images_path.parent
        self.images = images[:, None]
        self.labels = labels.astype(np.int64)

    def _find(self, dirs, prefix):
        images, labels = _candidates(prefix, "images", 3), _candidates(prefix, "labels", 1)
        for d in dirs:
            hit_x = next((d / n for n in images if (d / n).is_file()), None)
            hit_y = next((d / n for n in labels if (d / n).is_file()), None)
            if hit_x and hit_y:
                return hit_x, hit_y
        raise DatasetNotFoundError(Message(
            "{name} ({split} split) not found: looked in {dirs} for {images} and {labels} (raw or "
            "gzipped). " + self.where_to_get, name=self.name, split=prefix,
            dirs=", ".join(map(str, dirs)), images=images[0], labels=labels[0]))

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        return f"{self.name}({'train' if self.train else 'test'}, {len(self)} images, from {self.root})"


class FashionMNIST(_IDXDataset):
    name, subdir = "Fashion-MNIST", "fashion-mnist"
    classes = FASHION_MNIST_CLASSES
    system_dirs = ("/usr/share/datasets/fashion-mnist",)  # Debian: apt-get install dataset-fashion-mnist
    where_to_get = ("Get the four .gz files from https://github.com/zalandoresearch/fashion-mnist "
                    "(or `apt-get install dataset-fashion-mnist` on Debian/Ubuntu) and put them in "
                    "$MINIRES_DATA/fashion-mnist, or pass their folder as {root}.")


class MNIST(_IDXDataset):
    name, subdir = "MNIST", "mnist"
    classes = MNIST_CLASSES
    where_to_get = ("Get the four .gz files from https://yann.lecun.com/exdb/mnist/ (mirror: "
                    "https://ossci-datasets.s3.amazonaws.com/mnist/) and put them in "
                    "$MINIRES_DATA/mnist, or pass their folder as {root}.")
