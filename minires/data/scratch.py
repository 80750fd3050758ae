"""Scratch files and folders named after the process writing them, so orphans can be removed.

A half-extracted cache folder or a half-downloaded file is renamed into place
only when complete; a kill -9 leaves it behind under its scratch name.  That
name carries ``<pid>@<host>``, so a later start can tell an orphan from work a
live process is still doing: it is removed when its writer is gone (same host),
and otherwise (a writer on another host, a name from before this scheme) when
it was not touched for STALE_AFTER seconds.
"""
from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

STALE_AFTER = 3600  # seconds; a live writer touches its file far more often (downloads time out after 60)


def owner_prefix(prefix: str) -> str:
    """``prefix`` + '<pid>@<host>-': give it to tempfile.mkstemp/mkdtemp, which append a random tail."""
    return f"{prefix}{os.getpid()}@{socket.gethostname()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def is_orphan(path: Path, tag: str, now: float) -> bool:
    """``tag`` is the part of the name after the prefix: '<pid>@<host>-<random>' (or anything)."""
    pid, at, rest = tag.partition("@")
    if at and pid.isdigit() and rest.rpartition("-")[0] == socket.gethostname():
        return not _alive(int(pid))
    try:
        return now - path.lstat().st_mtime > STALE_AFTER
    except FileNotFoundError:  # removed meanwhile by its writer or another cleaner
        return False


def remove_orphans(folder, prefix: str, suffix: str = "") -> list[Path]:
    """Remove the orphaned scratch entries ``<prefix>...<suffix>`` in ``folder``; those removed."""
    try:
        names = os.listdir(folder)
    except OSError:  # no folder yet, or not readable: nothing of ours can be there
        return []
    removed, now = [], time.time()
    for name in names:
        if not (name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix)):
            continue
        path = Path(folder) / name
        if not is_orphan(path, name[len(prefix):len(name) - len(suffix)], now):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:  # a read-only folder, or gone meanwhile: it is harmless where it is
            pass
    return removed
