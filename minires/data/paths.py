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
