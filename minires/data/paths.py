"""Where datasets are looked for when no folder is given."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MINIRES_DATA"


def default_root() -> Path:
    """``$MINIRES_DATA`` when set, else ``~/.cache/minires``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minires"


def default_dirs(subdir: str, system_dirs=()) -> list[Path]:
    """The folders searched for ``subdir`` (e.g. 'fashion-mnist'), in order, without duplicates."""
    dirs = [default_root() / subdir, Path.home() / ".cache" / "minires" / subdir, *map(Path, system_dirs)]
    return list(dict.fromkeys(dirs))


def writable_folder(folder) -> bool:
    """Whether to write into ``folder``: it exists, we may write, and its mode bits allow it
    (root may write anywhere, but a folder marked r-x for everyone, like a shared data
    folder, is meant to stay as it is)."""
    try:
        return os.access(folder, os.W_OK) and bool(Path(folder).stat().st_mode & 0o222)
    except OSError:
        return False
