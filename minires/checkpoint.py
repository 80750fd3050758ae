"""Checkpoints without pickle: one .npz holding named arrays plus a JSON document.

    save_checkpoint(path, arrays={"model/conv1.weight": ..., ...}, meta={...})
    arrays, meta = load_checkpoint(path)

The JSON travels inside the archive as a uint8 array (``__meta__``), so a
checkpoint is a single file; it is written to a temporary file in the same
folder and renamed over the old one, so a crash mid-write never leaves a
half-written checkpoint.  Loading uses ``allow_pickle=False``: a checkpoint
cannot run code.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from . import backend

_META = "__meta__"
FORMAT = "minires-checkpoint-1"


class CheckpointError(ValueError):
    pass


def save_checkpoint(path, arrays, meta):
    arrays = {k: backend.to_numpy(v) for k, v in arrays.items()}
    if _META in arrays:
        raise CheckpointError(f"save_checkpoint: {_META!r} is a reserved array name")
    document = json.dumps({"format": FORMAT, **meta}, sort_keys=True).encode()
    arrays[_META] = np.frombuffer(document, dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path):
    """-> (arrays, meta).  Raises CheckpointError for files that are not minires checkpoints."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({e})") from None
    if _META not in arrays:
        raise CheckpointError(f"{path} has no {_META} entry: not a minires checkpoint")
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}, "
                              f"expected {FORMAT!r}")
    return arrays, meta
