"""Image trees in the folder-per-class layout (``root/<class>/*.jpg``), folder or tarball.

    root/cat/0001.jpg        classes: the sub-folder names, sorted (torchvision's
    root/cat/0002.png        ImageFolder order); label = index of the image's class;
    root/dog/a/0003.jpg      images: every image file below a class folder, class by
                             class in label order, sorted by path within a class

Images are decoded with Pillow (``pip install "minires[images]"``) once, stacked
into one uint8 (N, C, H, W) array -- what the device-side DataLoader moves to the
device -- and cached as ``.npz``: beside the data when the folder is writable
(``root/.minires-cache-<settings>.npz``, or ``.<tarball>.minires-cache-<settings>.npz``
beside a tarball), else under ``default_root()/imagefolder-cache/``.  The cache
records a fingerprint of what it was decoded from (every file's path, size and
mtime; a tarball's own size and mtime) and is used only while that still matches,
so adding, replacing or removing an image decodes again.

Colour: ``mode=None`` gives one channel when every image is grayscale and three
(RGB, alpha dropped) otherwise; ``mode="RGB"`` or ``"L"`` forces one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .archive import Tarball
from .errors import DatasetError, DatasetNotFoundError
from .paths import default_root, writable_folder

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif", ".tiff",
                  ".webp")
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
MODES = (None, "RGB", "L")
CACHE_VERSION = 1  # bump when the cache's content or layout changes
PILLOW_HINT = 'reading image folders needs Pillow: pip install "minires[images]" (or pip install pillow)'


def pillow():
    """The PIL.Image module, or an ImportError whose one line says how to install it."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError(PILLOW_HINT) from e
    return Image


def is_tarball(path) -> bool:
    return Path(path).name.lower().endswith(TARBALL_SUFFIXES)


class ImageFolder:
    """One image tree: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,), ``classes``
    (names, in label order) and ``files`` (each image's path inside the tree).

    ``root``: a folder, or a tarball read in place (never extracted); ``subfolder``: the
    tree's path inside it (e.g. ``"cifar-10-jpeg/train"``).  ``resize``: None keeps the
    images' size (they must all have one), an int N or (H, W) resizes each bilinearly
    (Pillow's antialiased BILINEAR, torchvision's Resize default).  ``classes``: the class
    folders in label order, to insist on a fixed set and order (default: all, sorted).
    ``cache=False`` decodes without reading or writing a cache.
    """

    def __init__(self, root, resize=None, *, subfolder=None, classes=None, mode=None, cache=True,
                 progress=True):
        if mode not in MODES:
            raise ValueError(f"ImageFolder: mode must be None (RGB, or L when every image is "
                             f"grayscale), 'RGB' or 'L'; got {mode!r}")
        self.root = Path(root).expanduser()
        self.subfolder = posixpath.normpath(str(subfolder).replace("\\", "/")) if subfolder else None
        self.resize = _size(resize)
        self.mode = mode
        if not self.root.exists():
            raise DatasetNotFoundError(f"ImageFolder: {self.root} does not exist; expected a folder "
                                       "(or tarball) holding one sub-folder of images per class")
        if self.root.is_file() and not is_tarball(self.root):
            raise DatasetError(f"ImageFolder: {self.root} is a file but not a tarball "
                               f"({', '.join(TARBALL_SUFFIXES)}); pass the folder that holds the "
                               "class folders")
        self.where = f"{self.root}:{self.subfolder}" if self.root.is_file() and self.subfolder else (
            str(self.root / self.subfolder) if self.subfolder else str(self.root))
        settings = {"version": CACHE_VERSION, "subfolder": self.subfolder, "resize": self.resize,
                    "mode": mode, "classes": list(classes) if classes is not None else None}
        tag = _digest(json.dumps(settings, sort_keys=True))[:12]
        if self.root.is_file():
            self._tree = _TarTree(self.root, self.subfolder, self.where)
            beside = self.root.parent / f".{self.root.name}.minires-cache-{tag}.npz"
        else:
            self._tree = _FolderTree(self.root / self.subfolder if self.subfolder else self.root, self.where)
            beside = self._tree.top / f".minires-cache-{tag}.npz"
        fallback = (default_root() / "imagefolder-cache"
                    / f"{_digest(str(self.root.resolve()) + json.dumps(settings, sort_keys=True))[:20]}.npz")
        self.cache_path = None
        fingerprint = self._tree.fingerprint()
        if cache:
            for path in (beside, fallback):
                hit = _read_cache(path, fingerprint)
                if hit is not None:
                    self.images, self.labels, self.classes, self.files = hit
                    self.cache_path = path
                    return
        self.images, self.labels, self.classes, self.files = self._decode_all(classes, progress)
        if cache:
            self.cache_path = _write_cache((beside, fallback), fingerprint, self.images, self.labels,
                                           self.classes, self.files)

    def __len__(self):
        return len(self.labels)

    def __repr__(self):
        return (f"ImageFolder({self.where}, {len(self)} images of {len(self.classes)} classes, "
                f"{'x'.join(map(str, self.images.shape[1:]))})")

    def _decode_all(self, expected_classes, progress):
        Image = pillow()
        classes, entries = self._tree.list()      # entries: (path inside the tree, bytes or Path)
        if expected_classes is not None:
            expected_classes = tuple(expected_classes)
            missing = sorted(set(expected_classes) - set(classes))
            unexpected = sorted(set(classes) - set(expected_classes))
            if missing or unexpected:
                raise DatasetError(f"ImageFolder {self.where}: expected exactly the class folders "
                                   f"{', '.join(expected_classes)}; missing: {', '.join(missing) or '-'}, "
                                   f"unexpected: {', '.join(unexpected) or '-'}")
            classes = expected_classes
        if not classes:
            raise DatasetNotFoundError(f"ImageFolder: {self.where} has no class sub-folders; expected "
                                       f"{self.where}/<class>/<image>, e.g. {self.where}/cat/0001.jpg")
        index = {c: i for i, c in enumerate(classes)}
        entries = sorted(entries, key=lambda e: (index[e[0].split("/", 1)[0]], e[0]))  # label order
        counts = dict.fromkeys(classes, 0)
        for rel, _ in entries:
            counts[rel.split("/", 1)[0]] += 1
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            raise DatasetError(f"ImageFolder {self.where}: no image files ({', '.join(IMG_EXTENSIONS)}) "
                               f"in the class folder(s) {', '.join(empty)}; remove them or add images")
        from tqdm import tqdm
        arrays = []
        # disable=None: a bar in a terminal only, never a flood of \r lines in a log
        for rel, content in tqdm(entries, desc=f"decoding {self.where}", unit="img", leave=False,
                                 disable=None if progress else True):
            arrays.append(_decode(Image, content, f"{self.where}/{rel}", self.mode, self.resize))
        shapes = {a.shape[:2] for a in arrays}
        if len(shapes) > 1:
            first = arrays[0].shape[:2]
            other = next(i for i, a in enumerate(arrays) if a.shape[:2] != first)
            raise DatasetError(
                f"ImageFolder {self.where}: images differ in size ({entries[0][0]} is "
                f"{first[1]}x{first[0]}, {entries[other][0]} is {arrays[other].shape[1]}x"
                f"{arrays[other].shape[0]}, {len(shapes)} sizes in all); pass resize=(H, W) "
                "(minires train --resize N) to bring them to one size")
        # One channel only if every image is; a grayscale image among colour ones is
        # replicated into R, G and B, exactly what Pillow's convert("RGB") does.
        channels = max(a.shape[2] for a in arrays)
        images = np.stack([np.broadcast_to(a, a.shape[:2] + (channels,)) for a in arrays])
        labels = np.array([index[rel.split("/", 1)[0]] for rel, _ in entries], dtype=np.int64)
        return (np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels, tuple(classes),
                tuple(rel for rel, _ in entries))


class _FolderTree:
    def __init__(self, top: Path, where: str):
        self.top, self.where = top, where
        if not top.is_dir():
            raise DatasetNotFoundError(f"ImageFolder: {where} is not a folder; expected one sub-folder "
                                       "of images per class")
        self._scan = None

    def _files(self):
        """(class names, sorted paths inside the tree of every image file), scanned once."""
        if self._scan is None:
            classes = class_folders(self.top)
            files = []
            for c in classes:
                for folder, dirs, names in os.walk(self.top / c, followlinks=True):
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
                    rel = Path(folder).relative_to(self.top).as_posix()
                    files += [f"{rel}/{n}" for n in names if _is_image_name(n)]
            self._scan = classes, sorted(files)
        return self._scan

    def fingerprint(self) -> str:
        lines = []
        for rel in self._files()[1]:
            st = (self.top / rel).stat()
            lines.append(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}")
        return _digest("\n".join(lines))

    def list(self):
        classes, files = self._files()
        return classes, [(rel, self.top / rel) for rel in files]


class _TarTree:
    """The tree at ``subfolder`` inside a tarball, verified and read straight into memory
    (archive.Tarball); nothing is extracted."""

    def __init__(self, path: Path, subfolder: str | None, where: str):
        self.path, self.where = path, where
        self.prefix = "" if subfolder in (None, ".") else subfolder.strip("/") + "/"

    def fingerprint(self) -> str:
        st = self.path.stat()  # a tarball changes as a whole: no need to read it to notice
        return _digest(f"{self.path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}")

    def list(self):
        tarball = Tarball(self.path)  # verified whole first: gzip CRC and length, tar structure, links
        classes, entries = set(), []
        for name, member in tarball.members.items():
            if not name.startswith(self.prefix) or name == self.prefix.rstrip("/"):
                continue
            parts = name[len(self.prefix):].split("/")
            if any(p.startswith(".") for p in parts):
                continue
            if member.isdir():
                classes.add(parts[0])
            elif len(parts) > 1 and _is_image_name(parts[-1]):
                content = tarball.read(name)            # links followed; None for anything else
                if content is not None:
                    classes.add(parts[0])
                    entries.append(("/".join(parts), bytes(content)))
        if not classes:
            raise DatasetNotFoundError(f"ImageFolder: {self.where} holds no class folders: the tarball "
                                       f"has nothing under {self.prefix or '/'}; pass subfolder= the tree's "
                                       "path inside it")
        return sorted(classes), sorted(entries, key=lambda e: e[0])


def class_folders(folder: Path) -> list[str]:
    """The class sub-folders of ``folder``, sorted; hidden ones (.ipynb_checkpoints, ...) skipped."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def _decode(Image, content, where, mode, resize) -> np.ndarray:
    """One image as uint8 (H, W, C), C = 1 (grayscale) or 3."""
    try:
        with Image.open(io.BytesIO(content) if isinstance(content, bytes) else content) as img:
            img.load()
            target = mode or ("L" if img.mode in GRAY_MODES else "RGB")
            img = img.convert(target)
            if resize is not None and img.size != (resize[1], resize[0]):
                img = img.resize((resize[1], resize[0]), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(f"{where}: not a readable image ({reason}); delete or replace the file") from e
    return array[:, :, None] if array.ndim == 2 else array


def _size(resize):
    if resize is None:
        return None
    size = (resize, resize) if np.isscalar(resize) else tuple(resize)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in size):
        raise ValueError(f"ImageFolder: resize must be None, an int N or (H, W) of positive ints; "
                         f"got {resize!r}")
    return [int(size[0]), int(size[1])]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read_cache(path: Path, fingerprint: str):
    """(images, labels, classes, files) from a cache file whose fingerprint matches, else None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint:
                return None
            return z["images"], z["labels"], tuple(z["classes"].tolist()), tuple(z["files"].tolist())
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error):
        return None  # absent, of an older format or damaged: decode again


def _make_folder(folder: Path) -> bool:
    """Create ``folder`` (default_root()/imagefolder-cache) unless its nearest existing
    ancestor is read-only; whether it can now be written into."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not writable_folder(existing):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    return writable_folder(folder)


def _write_cache(paths, fingerprint, images, labels, classes, files):
    """Write the cache to the first of ``paths`` that takes it (temp file + rename); its path."""
    reasons = []
    for path in paths:
        try:
            if not _make_folder(path.parent):
                reasons.append(f"{path.parent} is read-only")
                continue
            fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".part", dir=path.parent)
            try:
                os.chmod(tmp, 0o644)              # mkstemp's 0600 would hide it from other users
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, images=images, labels=labels, classes=np.array(classes, dtype=str),
                             files=np.array(files, dtype=str), fingerprint=np.array(fingerprint))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return path
        except OSError as e:
            reasons.append(f"{path}: {e}")
    warnings.warn(f"ImageFolder: could not cache the decoded images ({'; '.join(reasons)}); "
                  "the next run decodes them again", stacklevel=3)
    return None


class ImageFolderSplit(ImageFolder):
    """``root/train`` or ``root/test`` of a train/test image tree: what ``minires train
    --dataset imagefolder --data-dir ROOT`` reads.  Both splits take their labels from
    the class folders of ``root/train`` (sorted), so a test tree with a class missing
    or extra is an error rather than shifted labels."""

    def __init__(self, root=None, train=True, resize=None, *, progress=True):
        usage = ("an image-folder data set is ROOT/train/<class>/<image> and ROOT/test/<class>/<image>, "
                 "the same class folders in both")
        if root is None:
            raise DatasetNotFoundError(f"the imagefolder data set needs its folder (--data-dir ROOT): "
                                       f"{usage}")
        root = Path(root).expanduser()
        for split in ("train", "test"):
            if not (root / split).is_dir():
                raise DatasetNotFoundError(f"{root} has no {split}/ folder: {usage}")
        classes = class_folders(root / "train")
        self.train = bool(train)
        super().__init__(root, resize, subfolder="train" if self.train else "test", classes=classes,
                         progress=progress)


def channel_stats(images, chunk=4096) -> tuple[tuple, tuple]:
    """Per-channel (mean, std) of uint8 (N, C, H, W) images scaled to [0, 1], in float64,
    a chunk at a time (no float copy of the whole array)."""
    total = np.zeros(images.shape[1])
    squares = np.zeros(images.shape[1])
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].astype(np.float64) / 255
        total += x.sum(axis=(0, 2, 3))
        squares += (x * x).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
