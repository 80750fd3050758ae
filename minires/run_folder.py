"""The run folder's whole life: settings, checkpoint, metrics, lock, clean-up, resume.

    R/config.json      the run's settings (TrainConfig as JSON): what --resume continues
    R/checkpoint.npz   model, optimizer, schedule, RNG and the per-epoch history: the commit point
    R/metrics.jsonl    one JSON row per epoch, derived from the checkpoint's history
    R/curves.png       the history as plots
    R/train.lock       locked (flock) while a trainer uses the folder; holds the trainer's pid

The commit protocol, once per epoch (and once at an interrupt):

    1. the checkpoint, history included, is written to a temporary file, fsynced and
       renamed over checkpoint.npz; then the folder is fsynced.
    2. metrics.jsonl is rewritten from that history the same way.

A crash (kill -9, power, disk full) before the rename in 1 leaves the previous commit;
one between 1 and 2 leaves metrics.jsonl a row behind, and every start rewrites
metrics.jsonl from the checkpoint, so a trainer never sees the two disagree and the
folder is never stuck.  Orphaned ``.tmp-*`` files of a killed writer are removed at the
next start, under the lock, so a live writer's temporary file is never touched.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path

from .checkpoint import CheckpointWriteError, load_checkpoint, meta_value, save_checkpoint

CONFIG, CHECKPOINT, METRICS, CURVES, LOCK = (
    "config.json", "checkpoint.npz", "metrics.jsonl", "curves.png", "train.lock")
TEMP_PREFIX = ".tmp-"
RUN_FILES = (CONFIG, CHECKPOINT, METRICS)          # any of these: the folder holds a run

# Settings that --resume may change because they cannot change the result, and the
# run's length, which may grow.  Everything else given with --resume is refused.
# --graph is one of them: a CUDA-graph step computes what the eager step computes (bit
# for bit with the same GEMM), so a run may be resumed with or without it.
SAFE_TO_CHANGE = ("device", "progress", "download", "graph")
LENGTHS = ("epochs", "iterations")
# TrainConfig fields whose command-line flag is not simply --field-name.
FLAG_NAMES = {"download": "--no-download", "progress": "--no-progress",
              "augment": "--augment/--no-augment", "graph": "--graph/--no-graph"}


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked: one line naming the folder or file."""


def flag(field):
    """The command-line spelling of a TrainConfig field: 'batch_size' -> '--batch-size'."""
    return FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def file_mode():
    """The mode every run-folder file gets: 0o666 less the umask, like open() would give."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder):
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cannot_write(path, error, what_next):
    return RunFolderError(f"cannot write {path}: {error.strerror or error}; {what_next}")


def atomic_write(path: Path, text: str):
    """Write ``text`` to ``path`` whole or not at all: temp file, fsync, rename, folder fsync."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + "-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class RunFolder:
    """One run folder, opened by one trainer at a time.

    ``with RunFolder(path) as folder:`` creates the folder, takes its lock (refusing
    when another live trainer holds it), removes orphaned temporary files and rewrites
    metrics.jsonl from the checkpoint.  Every error names the file and says what to do.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock_fd, self._created = None, False

    def file(self, name) -> Path:
        return self.path / name

    # ------------------------------------------------------------ open and close
    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def open(self):
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"--out {self.path}: cannot create the run folder "
                                 f"({e.strerror or e}); choose another --out") from None
        if not self.path.is_dir():
            raise RunFolderError(f"--out {self.path} is not a folder; choose another --out")
        self._take_lock()
        self._remove_orphans()
        self.sync_metrics()

    def close(self):
        if self._lock_fd is not None:
            # Unlink before closing, while still holding the lock: see _take_lock.
            try:
                os.unlink(self.file(LOCK))
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None
            if self._created and not any(self.path.iterdir()):
                self.path.rmdir()               # a start that failed leaves no empty folder

    def _take_lock(self):
        path = self.file(LOCK)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:        # the first write into the folder: read-only, full, ...
                raise RunFolderError(f"--out {self.path} is not writable ({e.strerror or e}); "
                                     f"choose another --out") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunFolderError(
                    f"{self.path} is in use by another trainer (pid {holder}); wait for it to "
                    f"finish or stop it, or choose another --out") from None
            # The kernel drops a dead process's flock, so a stale lock file never blocks.
            # The holder unlinks the file before closing it: if ours is no longer the file
            # at `path`, we locked a removed inode and must try again.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _remove_orphans(self):
        for p in self.path.glob(TEMP_PREFIX + "*"):
            try:
                p.unlink()
            except OSError:
                pass

    # ------------------------------------------------------------ what the folder holds
    def run_files(self):
        """The run files present (config, checkpoint, metrics): a fresh start must find none."""
        return [name for name in RUN_FILES if self.file(name).exists()]

    def refuse_existing_run(self):
        present = self.run_files()
        if present:
            raise RunFolderError(f"{self.path} already holds a run ({', '.join(present)}): continue "
                                 f"it with --resume --out {self.path}, or choose another --out")

    def read_settings(self):
        """The saved settings (a dict), from config.json, else from the checkpoint; None if neither."""
        path = self.file(CONFIG)
        if path.exists():
            try:
                settings = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise RunFolderError(f"{path} is not readable JSON ({e}); restore it from the "
                                     f"checkpoint's copy or start another --out") from None
            if not isinstance(settings, dict):
                raise RunFolderError(f"{path} does not hold a settings object")
            return settings
        state = self.load()
        return None if state is None else meta_value(self.file(CHECKPOINT), state[1], "config", dict)

    def write_settings(self, settings: dict):
        path = self.file(CONFIG)
        try:
            atomic_write(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")
        except OSError as e:
            raise _cannot_write(path, e, "free space or choose another --out") from None

    def load(self):
        """(arrays, meta) of the checkpoint, or None when there is none yet."""
        path = self.file(CHECKPOINT)
        return load_checkpoint(path) if path.exists() else None

    # ------------------------------------------------------------ the commit point
    def commit(self, arrays, meta):
        """Write the checkpoint (meta["history"] included), then metrics.jsonl from it."""
        try:        # atomic, umask mode, folder fsync: checkpoint.py's job
            save_checkpoint(self.file(CHECKPOINT), arrays, meta)
        except CheckpointWriteError as e:       # names the file and says what to do
            raise RunFolderError(str(e)) from None
        self.write_metrics(meta["history"])

    def write_metrics(self, history):
        path = self.file(METRICS)
        try:
            atomic_write(path, _rows(history))
        except OSError as e:
            raise _cannot_write(path, e, f"{CHECKPOINT} holds {len(history)} epochs and "
                                f"--resume --out {self.path} rewrites {METRICS} from it") from None

    def sync_metrics(self):
        """Make metrics.jsonl the checkpoint's history again (a crash between the two writes)."""
        state = self.load()
        if state is None:
            return
        path, history = self.file(METRICS), meta_value(self.file(CHECKPOINT), state[1], "history", list)
        if not path.exists() or path.read_text() != _rows(history):
            self.write_metrics(history)


def _rows(history):
    # Sorted keys, as in the checkpoint's JSON, so a rewrite from it changes no byte.
    return "".join(json.dumps(row, sort_keys=True) + "\n" for row in history)


def resume_settings(saved: dict, changes: dict):
    """The settings of a resumed run: ``saved`` with ``changes`` (field -> new value) applied.

    Only the SAFE_TO_CHANGE fields and a longer run may change; anything else raises
    RunFolderError naming the flag.  Returns (settings, notes): notes are lines that say
    how the schedule stretches when the run gets longer.
    """
    settings, notes = dict(saved), []
    changes = {k: v for k, v in changes.items() if k != "out" and saved.get(k) != v}
    for field in sorted(changes):
        if field not in SAFE_TO_CHANGE and field not in LENGTHS:
            shown = "" if isinstance(changes[field], bool) else f" {_show(changes[field])}"
            raise RunFolderError(
                f"{flag(field)}{shown} would change the saved run (it has {flag(field)} "
                f"{_show(saved.get(field))}); with --resume only --device, --threads, "
                f"--graph/--no-graph, --no-progress and a longer --epochs/--iterations may be given")
    settings.update({k: v for k, v in changes.items() if k in SAFE_TO_CHANGE})
    lengths = {k: v for k, v in changes.items() if k in LENGTHS and v is not None}
    if lengths:
        unit = "epochs" if saved.get("epochs") is not None else "iterations"
        if unit not in lengths:
            other = next(iter(lengths))
            raise RunFolderError(f"{flag(other)}: this run counts in {unit} ({saved[unit]}); "
                                 f"lengthen it with {flag(unit)} N")
        old, new = saved[unit], lengths[unit]
        if new < old:
            raise RunFolderError(f"{flag(unit)} {new} would shorten the saved run of {old} {unit}; "
                                 f"only a longer run can be resumed (or start another --out)")
        settings[unit] = new
        notes.append(f"lengthening the run from {old} to {new} {unit}")
        schedule = saved.get("schedule")
        if schedule == "multistep" and saved.get("milestones"):
            settings["milestones"] = [m * new / old for m in saved["milestones"]]
            notes.append(f"multistep milestones scale with it: now {_show(settings['milestones'])} "
                         f"{unit} (were {_show(saved['milestones'])})")
        elif schedule == "multistep":
            notes.append(f"multistep milestones at 50% and 75% of the run: now "
                         f"{_show([0.5 * new, 0.75 * new])} {unit}")
        elif schedule == "cosine":
            notes.append(f"the cosine schedule now anneals over {new} {unit}")
    return settings, notes


def _show(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "unset"
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
