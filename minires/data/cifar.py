"""CIFAR-10 from the official distribution (python or binary layout, folder or tarball).

Where a copy is looked for, inside ``root`` (default ``$MINIRES_DATA`` or
``~/.cache/minires``), first hit wins:

1. an extracted folder of the full data set: ``cifar-10-batches-py/`` or ``cifar-10-batches-bin/``;
2. the official ``cifar-10-python.tar.gz`` / ``cifar-10-binary.tar.gz`` (size and MD5
   checked before use);
3. the JPEG copy, all 60,000 images after a JPEG round trip, as an image tree
   (``cifar-10-jpeg/{train,test}/<class>/*.jpg``, folder or ``cifar-10-jpeg.tar.gz``;
   read by ImageFolder, which caches the decoded images; classes interleaved, see _load_jpeg);
4. this project's test subsets ``cifar-10-subset-python.tar.gz`` / ``cifar-10-subset-binary.tar.gz``.

A folder extracted from a subset (``data_batch_1`` under 10,000 images) ranks first like
any extracted folder, except that the JPEG copy (and the official tarballs) go before it.

``root`` may also name one of these archives or folders itself, to pick that copy.

A tarball is read whole and verified first (archive.Tarball: gzip CRC and
length, tar structure to its end), so a damaged one is refused even without an
MD5 to compare against.  Its batches are then cached in ``root`` once, through
a scratch folder that is renamed into place only after both splits were
validated and written, so a bad archive, a full disk or a kill leaves no half
cache; a scratch folder or download left by a killed process is removed at the
next start.  Links inside the archive are followed: the cache holds plain
files.  When ``root`` is read-only (a shared data folder) the batches are read
straight from the archive instead, every time.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..messages import Message
from . import scratch
from .archive import Tarball
from .download import PART_SUFFIX, download_url, md5sum
from .errors import DatasetError, DatasetNotFoundError
from .imagefolder import ImageFolder
from .paths import ENV_VAR, default_root, writable_folder
from .safe_pickle import safe_loads

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
# Per-channel mean and std of the 50,000 training images, pixels scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Source(NamedTuple):
    filename: str
    url: str
    md5: str
    size: int


# The official archives; tests and mirrors override url/md5/size per call (or edit this table).
CIFAR10_SOURCES = {
    "python": Source("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                     "c58f30108f718f92721af3b95e74349a", 170498071),
    "binary": Source("cifar-10-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                     "c32a1d4ab5d03f1284b67883e8d87530", 170052171),
}
FOLDERS = {"python": "cifar-10-batches-py", "binary": "cifar-10-batches-bin"}
SUBSET_TARBALLS = {"python": "cifar-10-subset-python.tar.gz", "binary": "cifar-10-subset-binary.tar.gz"}
JPEG_FOLDER, JPEG_TARBALL = "cifar-10-jpeg", "cifar-10-jpeg.tar.gz"
BATCHES = {True: [f"data_batch_{i}" for i in range(1, 6)], False: ["test_batch"]}
PIXELS = 3 * 32 * 32
RECORD = 1 + PIXELS  # binary layout: one label byte, then the 3072 pixel bytes (R, G, B planes)
EXTRACT_PREFIX = ".minires-extract-"  # scratch folders in root, renamed into the cache when complete


class Found(NamedTuple):
    kind: str              # 'folder' or 'tarball'
    layout: str            # 'python', 'binary' or 'jpeg'
    path: Path
    subset: bool = False   # this project's small subset (or a folder extracted from it)


def locate(root) -> Found | None:
    """The first copy of CIFAR-10 in ``root`` (or ``root`` itself when it names one of the
    archives or folders), in the order the module docstring gives."""
    root = Path(root)
    named = [c for c in _candidates(root.parent) if c.path == root]
    if named:
        return named[0]
    if root.is_file():
        raise DatasetError(f"{root} is not a CIFAR-10 copy minires can read: give the folder that holds "
                           f"one, or one of {', '.join(_copy_names())} itself")
    return next(iter(_candidates(root)), None)


def _copy_names() -> list[str]:
    names = [f"{f}/" for f in FOLDERS.values()] + [s.filename for s in CIFAR10_SOURCES.values()]
    return names + [f"{JPEG_FOLDER}/", JPEG_TARBALL, *SUBSET_TARBALLS.values()]


def _candidates(root: Path) -> list[Found]:
    """Every copy in ``root``, best first (the module docstring's order)."""
    def present(found):
        return found.path.is_dir() if found.kind == "folder" else found.path.is_file()
    folders = [Found("folder", layout, root / f) for layout, f in FOLDERS.items() if (root / f).is_dir()]
    folders = [f._replace(subset=_is_subset_folder(f)) for f in folders]
    full, small = [f for f in folders if not f.subset], [f for f in folders if f.subset]
    tarballs = [Found("tarball", layout, root / s.filename) for layout, s in CIFAR10_SOURCES.items()]
    jpeg = [Found("folder", "jpeg", root / JPEG_FOLDER), Found("tarball", "jpeg", root / JPEG_TARBALL)]
    jpeg = [f for f in jpeg if present(f)]
    subsets = [Found("tarball", layout, root / n, subset=True) for layout, n in SUBSET_TARBALLS.items()]
    # An extracted subset keeps its old place (any extracted folder first) unless the JPEG
    # copy is there: the 60,000 JPEG images beat the subset's 6,187 official ones.
    ranked = (full + tarballs + jpeg + small if jpeg else full + small + tarballs) + subsets
    return [f for f in ranked if present(f)]


def _is_subset_folder(found: Found) -> bool:
    """A batches folder whose data_batch_1 holds fewer than the official 10,000 images
    (the extracted subset, which shares the official folder name)."""
    first = found.path / _file_names(found.layout, True)[0]
    return first.is_file() and first.stat().st_size < 10000 * PIXELS


def describe_copy(found: Found, n_train: int, n_test: int) -> str:
    """One line for the log: which copy of CIFAR-10 a run reads."""
    counts = f"{n_train:,} train / {n_test:,} test images"
    if found.layout == "jpeg":
        return (f"CIFAR-10: the JPEG copy {found.path} ({counts}; pixels went through JPEG, "
                "compare with runs on the same files)")
    if found.subset:
        return (f"CIFAR-10: this project's subset {found.path} ({counts}, official pixels; "
                "a small part of the data set, for tests and smoke runs)")
    what = "archive" if found.kind == "tarball" else "batches"
    return f"CIFAR-10: the official {found.layout} {what} {found.path} ({counts})"


def _load_jpeg(found: Found, train: bool, progress: bool):
    """(images, labels) of one split of the JPEG copy, labels in CIFAR10_CLASSES order.

    The tree lists the images class by class; they come back interleaved -- image k of
    each class in turn, classes in label order -- so that the first N (--limit-train,
    --limit-test) hold every class, as the official batches do, not just airplanes.
    """
    split = "train" if train else "test"
    tree = ImageFolder(found.path, subfolder=f"{JPEG_FOLDER}/{split}" if found.kind == "tarball" else split,
                       classes=CIFAR10_CLASSES, mode="RGB", progress=progress)
    if tree.images.shape[1:] != (3, 32, 32):
        raise DatasetError(f"{tree.where}: CIFAR-10 images are 32x32 RGB, found "
                           f"{'x'.join(map(str, tree.images.shape[1:]))} (C x H x W)")
    within_class = np.arange(len(tree.labels)) - np.searchsorted(tree.labels, tree.labels)
    order = np.lexsort((tree.labels, within_class))
    return tree.images[order], tree.labels[order]


def download_cifar10(root=None, *, layout="python", url=None, md5=None, size=None, progress=True) -> Path:
    """Download the official tarball into ``root`` (verified); its path.  Does not extract."""
    src = _source(layout)
    root = Path(root).expanduser() if root is not None else default_root()
    advice = Message("Retry, or download {url} yourself and pass the folder that holds {name} "
                     "(or the extracted {folder}/) as {root}.", url=src.url, name=src.filename,
                     folder=FOLDERS[layout])
    return download_url(url or src.url, root / src.filename, progress=progress, advice=advice,
                        md5=src.md5 if md5 is None else md5, size=src.size if size is None else size)


class CIFAR10:
    """CIFAR-10: ``images`` uint8 (N, 3, 32, 32), ``labels`` int64 (N,), ``classes``.

    ``download=True`` fetches the official ``layout`` archive when no copy is
    found; ``url``/``md5``/``size`` override CIFAR10_SOURCES for that download.
    """
    classes = CIFAR10_CLASSES

    def __init__(self, root=None, train=True, download=False, *, layout="python",
                 url=None, md5=None, size=None, progress=True):
        _source(layout)
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.train = bool(train)
        if writable_folder(self.root):
            remove_orphans(self.root)
        found, downloaded = locate(self.root), False
        if found is None:
            if not download:
                raise DatasetNotFoundError(_not_found_message(self.root, default=root is None))
            path = download_cifar10(self.root, layout=layout, url=url, md5=md5, size=size, progress=progress)
            found, downloaded = Found("tarball", layout, path), True
        self.source, self.found = found.path, found
        if found.layout == "jpeg":
            self.images, self.labels = _load_jpeg(found, self.train, progress)
            return
        try:
            self.images, self.labels = _load(found, self.train, found.path.parent, verified=downloaded)
        except DatasetError:
            if downloaded:  # verified bytes but unusable content: leave nothing behind
                found.path.unlink(missing_ok=True)
            raise

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        return f"CIFAR10({'train' if self.train else 'test'}, {len(self)} images, from {self.source})"


def remove_orphans(root) -> list[Path]:
    """Remove scratch folders and partial downloads in ``root`` that killed processes left."""
    removed = scratch.remove_orphans(root, EXTRACT_PREFIX)
    for src in CIFAR10_SOURCES.values():
        removed += scratch.remove_orphans(root, f".{src.filename}.", PART_SUFFIX)
    return removed


def _source(layout) -> Source:
    if layout not in CIFAR10_SOURCES:
        raise ValueError(f"unknown CIFAR-10 layout {layout!r}: expected one of {sorted(CIFAR10_SOURCES)}")
    return CIFAR10_SOURCES[layout]


def _not_found_message(root: Path, default: bool) -> Message:
    where = f"{root} (the default: ${ENV_VAR} or ~/.cache/minires)" if default else str(root)
    fact = "{where} does not exist" if not root.exists() else "nothing in {where}: looked for {names}"
    src = CIFAR10_SOURCES["python"]
    return Message("CIFAR-10 not found: " + fact + ". Download {url} and pass the folder that holds "
                   "{name} (or the extracted {folder}/) as {root}{or_download}.", where=where,
                   names=", ".join(_copy_names()), url=src.url, name=src.filename, folder=FOLDERS["python"])


def _load(found: Found, train: bool, root: Path, verified: bool):
    if found.kind == "folder":
        return _read_split(_folder_reader(found.path, str(found.path)), found.layout, train)
    official = {s.filename: s for s in CIFAR10_SOURCES.values()}.get(found.path.name)
    if official is not None and not verified:
        _verify_local(found.path, official)
    tarball = Tarball(found.path)
    inside = [(layout, f) for layout, f in FOLDERS.items() if tarball.is_folder(f)]
    if not inside:
        raise DatasetError(f"{found.path} holds neither {' nor '.join(FOLDERS.values())}/: "
                           "it is not a CIFAR-10 archive")
    layout, folder = inside[0]
    read = _tarball_reader(tarball, folder)
    if not writable_folder(root):  # a read-only folder (a shared data directory)
        return _read_split(read, layout, train)
    # Both splits are validated before anything is cached: a bad archive leaves no half cache.
    splits = {t: _read_split(read, layout, t) for t in (True, False)}
    _write_cache(root / folder, {name: read(name) for name in tarball.files_in(folder)})
    return splits[train]


def _verify_local(path: Path, src: Source):
    got = path.stat().st_size
    fix = " Delete it, then download {url} again yourself{or_download}."
    if got != src.size:
        raise DatasetError(Message("{path} is {got} bytes, expected {size} for the official {name}: "
                                   "it is incomplete or a different file." + fix, path=path, got=got,
                                   size=src.size, name=src.filename, url=src.url))
    digest = md5sum(path)
    if digest != src.md5:
        raise DatasetError(Message("{path} has MD5 {digest}, expected {md5} for the official {name}: "
                                   "it is corrupt or a different file." + fix, path=path, digest=digest,
                                   md5=src.md5, name=src.filename, url=src.url))


def _write_cache(cache: Path, files: dict):
    """Write ``files`` ({name: bytes}) as the folder ``cache``, whole or not at all.

    They go to a scratch folder beside it (flushed to disk), which is then renamed
    into place.  On any OSError (disk full, no permission) the scratch folder is
    removed and the error names the file that could not be written.
    """
    target, tmp = cache, None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=scratch.owner_prefix(EXTRACT_PREFIX), dir=cache.parent))
        staged = tmp / cache.name
        staged.mkdir()
        for name, data in files.items():
            target = cache / name
            with open(staged / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        target = cache
        if cache.is_symlink() and not cache.exists():  # a dangling link where the cache goes
            cache.unlink()
        try:
            os.replace(staged, cache)
        except OSError:  # another process cached it first: theirs is as good as ours
            if not cache.is_dir():
                raise
    except OSError as e:
        raise OSError(e.errno, f"{target}: writing the CIFAR-10 cache failed ({e.strerror or e}); "
                      "nothing was kept. Free some space (or make the folder writable, or pass "
                      "another --data-dir) and run again") from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _tarball_reader(tarball: Tarball, folder: str):
    def read(name):
        return tarball.read(f"{folder}/{name}")
    read.label = f"{tarball.path}:{folder}"
    return read


def _folder_reader(folder: Path, label: str):
    def read(name):
        path = folder / name
        return path.read_bytes() if path.is_file() else None
    read.label = label
    return read


def _file_names(layout, train):
    return [n + ".bin" if layout == "binary" else n for n in BATCHES[train]]


def _read_split(read, layout, train):
    """(images, labels) of one split; ``read(name)`` gives a file's bytes or None if absent."""
    label = read.label
    parse = _parse_python if layout == "python" else _parse_binary
    images, labels = [], []
    for name in _file_names(layout, train):
        data = read(name)
        if data is None:
            raise DatasetError(f"{label}/{name} is missing: a CIFAR-10 {layout} folder holds "
                               f"{', '.join(_file_names(layout, True) + _file_names(layout, False))}")
        x, y = parse(data, f"{label}/{name}")
        if y.min() < 0 or y.max() >= len(CIFAR10_CLASSES):
            raise DatasetError(f"{label}/{name}: labels must lie in 0..9, found {y.min()}..{y.max()}")
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def _parse_python(data: bytes, where: str):
    batch = safe_loads(data, where)
    if not isinstance(batch, dict):
        raise DatasetError(f"{where}: expected a pickled dict with 'data' and 'labels', "
                           f"got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    x, y = batch.get("data"), batch.get("labels")
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2
            and x.shape[1] == PIXELS and len(x) > 0):
        got = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DatasetError(f"{where}: 'data' should be a uint8 array of shape (N, {PIXELS}), got {got}")
    y = np.asarray(y if y is not None else [])
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
        raise DatasetError(f"{where}: 'labels' should be {len(x)} integers (one per image), "
                           f"got {len(y)} of dtype {y.dtype}")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)


def _parse_binary(data: bytes, where: str):
    if len(data) == 0 or len(data) % RECORD:
        raise DatasetError(f"{where}: {len(data)} bytes is not a whole number of {RECORD}-byte records "
                           "(1 label byte + 3072 pixel bytes); the file is truncated or damaged")
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)
