"""Checkpoints without pickle: one .npz holding named arrays plus a JSON document,
sealed by a SHA-256 digest written last.

    save_checkpoint(path, arrays={"model/conv1.weight": ..., "optim/0/momentum_buffer": ...},
                    meta={"optimizer_groups": [...], ...})
    arrays, meta = load_checkpoint(path)          # refuses damaged files: CheckpointError
    restore_model(path, model, arrays)            # "model/<name>" arrays -> parameters, buffers
    restore_optimizer(path, optimizer, arrays, meta)    # "optim/<i>/<name>" + optimizer_groups
    epoch = meta_value(path, meta, "epoch", int)  # the caller's own fields, type-checked

Layout.  A zip archive (uncompressed members, fixed timestamps, so equal content
gives equal bytes) of ``.npy`` members plus ``__meta__``, the JSON document as a
uint8 array.  The archive comment is ``minires-sha256:<64 hex digits>``, the digest
of every byte before those digits: member names, dtypes, shapes, array bytes,
the meta document and the zip directory.  A flipped byte anywhere is refused
before numpy or zipfile parse anything; a truncated file has lost its digest
and is refused for that.

Writing: a temporary ``.tmp-*.npz`` in the same folder (mode from the umask, like
any new file), fsync, rename over the old checkpoint, fsync of the folder.  A
crash or a full disk at any instant leaves either the old or the new checkpoint,
never a mix; a failed write removes its temporary file and raises
CheckpointWriteError (an OSError) naming the file.

Older checkpoints (``minires-checkpoint-1``, written before the digest existed)
still load, so runs started before it can be resumed: they get every check below
except the digest.  Their zip CRC-32s guard the arrays and the meta, so a flipped
byte there is refused, and so is a directory listing a member twice; one in zip
bookkeeping (a timestamp, a header copy) that leaves the content intact goes
unnoticed.  The next save seals the run.

Everything loaded is checked: only bool/integer/float arrays, all floats finite,
the meta a JSON object of a known format; restore_* check names, shapes and
dtypes against the live model and optimizer and never cast.  Every refusal is a
CheckpointError of one line naming the file.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import numbers
import os
import secrets
import zipfile

import numpy as np

from . import backend

_META = "__meta__"
FORMAT = "minires-checkpoint-2"
LEGACY_FORMAT = "minires-checkpoint-1"       # no digest; still loadable
_TAG = b"minires-sha256:"
_HEX_DIGITS = 64
_EPOCH_1980 = (1980, 1, 1, 0, 0, 0)          # fixed member timestamps: same content, same bytes
_NUMERIC_KINDS = "biuf"                      # bool, int, uint, float
_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, damaged, or not matching the model."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (disk full, no permission, ...); the previous one is intact."""

    def __str__(self):
        return self.strerror


# ------------------------------------------------------------ writing
def save_checkpoint(path, arrays, meta):
    """Write ``arrays`` (name -> NumPy/CuPy array) and ``meta`` (a JSON-able dict) to ``path``
    atomically.  Raises CheckpointError for arrays load_checkpoint would refuse (non-numeric,
    non-finite) and CheckpointWriteError when the disk refuses (ENOSPC, EACCES, ...)."""
    path = os.fspath(path)
    arrays = {k: backend.to_numpy(v) for k, v in arrays.items()}
    if _META in arrays:
        raise CheckpointError(f"save_checkpoint: {_META!r} is a reserved array name")
    for name, value in arrays.items():
        problem = _array_problem(value)
        if problem:
            raise CheckpointError(f"save_checkpoint {path}: array {name!r} {problem}; "
                                  f"nothing was written")
    document = json.dumps({**meta, "format": FORMAT}, sort_keys=True).encode()
    arrays[_META] = np.frombuffer(document, dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}.npz")
    try:
        os.makedirs(folder, exist_ok=True)
        # os.open with 0o666 lets the umask decide the mode, as for every other run-folder file
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w+b") as f:
            _write_sealed_archive(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise CheckpointWriteError(e.errno, _write_failure(path, e)) from e
        raise
    try:
        _fsync_folder(folder)
    except OSError as e:
        raise CheckpointWriteError(e.errno, f"checkpoint {path} was written, but syncing its folder "
                                            f"failed ({e.strerror}): a power cut now could undo it") from e


def _write_sealed_archive(f, arrays):
    """The zip, then the digest of everything before it, written last as the archive comment."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.comment = _TAG + b"0" * _HEX_DIGITS          # placeholder of the final length
        for name, value in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=_EPOCH_1980)
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)
    end = f.seek(0, os.SEEK_END)
    digest = _digest(f, end - _HEX_DIGITS)
    f.seek(end - _HEX_DIGITS)
    f.write(digest.encode())


def _digest(f, length):
    """SHA-256 hex digest of the first ``length`` bytes of the open file ``f``."""
    h = hashlib.sha256()
    f.seek(0)
    while length > 0:
        chunk = f.read(min(_CHUNK, length))
        if not chunk:
            break
        h.update(chunk)
        length -= len(chunk)
    return h.hexdigest()


def _fsync_folder(folder):
    """Make the rename itself durable: without this a power cut can bring the old file back."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_failure(path, e):
    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some disk space, then continue with --resume"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "make the folder writable (or choose another --out), then continue with --resume"
    else:
        advice = "fix that, then continue with --resume"
    return (f"cannot write checkpoint {path}: {reason}; the previous checkpoint there (if any) "
            f"is unchanged; {advice}")


# ------------------------------------------------------------ reading
def load_checkpoint(path):
    """-> (arrays, meta): name -> NumPy array, and the JSON document (with its "format").

    Raises CheckpointError (one line naming ``path``) for a missing, empty, truncated or
    damaged file, a digest mismatch, a missing or malformed meta document, an unknown
    format, non-numeric arrays or non-finite floats."""
    path = os.fspath(path)
    data = _read_file(path)
    sealed = _sealed(path, data)
    arrays = _parse_archive(path, data)
    if _META not in arrays:
        raise CheckpointError(f"{path} has no {_META} entry: not a minires checkpoint")
    meta = _parse_meta(path, arrays.pop(_META))
    if meta["format"] == FORMAT and not sealed:
        raise _damaged(path, "its content digest is missing (the file's end was cut off or altered)")
    for name, value in arrays.items():
        problem = _array_problem(value)
        if problem:
            raise CheckpointError(f"checkpoint {path}: array {name!r} {problem}; "
                                  f"it cannot be used: restore a copy or start the run again")
    return arrays, meta


def _damaged(path, what):
    return CheckpointError(f"checkpoint {path} is damaged: {what}; it cannot be used: "
                           f"restore a copy or start the run again")


def _read_file(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if not data:
        raise _damaged(path, "it is empty (0 bytes), it was never completely written")
    return data


def _sealed(path, data):
    """True if ``data`` ends with a matching digest, False if it has none; raises on a mismatch."""
    stored, body = data[-_HEX_DIGITS:], data[:-_HEX_DIGITS]
    if len(data) <= len(_TAG) + _HEX_DIGITS or not body.endswith(_TAG):
        return False
    if stored != hashlib.sha256(body).hexdigest().encode():
        raise _damaged(path, "its SHA-256 content digest does not match (a changed byte or a "
                             "bad copy)")
    return True


def _parse_archive(path, data):
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:            # a damaged file fails in any of zipfile's or numpy's ways
        raise _damaged(path, f"not a readable .npz archive ({type(e).__name__}: {e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} is a single .npy array, not a minires checkpoint")
    if len(set(archive.files)) != len(archive.files):
        # a flipped byte in a zip directory name can make one member shadow another
        twice = sorted({n for n in archive.files if archive.files.count(n) > 1})
        archive.close()
        raise _damaged(path, f"it lists the array(s) {twice} twice")
    arrays = {}
    with archive:
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except Exception as e:    # Bad CRC-32, EOFError, zlib.error, object arrays, ...
                raise _damaged(path, f"array {name!r} cannot be read "
                                     f"({type(e).__name__}: {e})") from None
            if not isinstance(arrays[name], np.ndarray):     # numpy hands out other members as bytes
                raise _damaged(path, f"member {name!r} is not a .npy array")
    return arrays


def _parse_meta(path, raw):
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _damaged(path, f"{_META} is a {raw.dtype} array of shape {raw.shape}, "
                             f"expected JSON bytes")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except ValueError as e:            # UnicodeDecodeError, JSONDecodeError
        raise _damaged(path, f"its meta document is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise _damaged(path, f"its meta document is a JSON {type(meta).__name__}, expected an object")
    if meta.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}, "
                              f"expected {FORMAT!r}")
    return meta


def _array_problem(value):
    """Why ``value`` cannot be a checkpoint array, or None."""
    if value.dtype.kind not in _NUMERIC_KINDS:
        return f"has dtype {value.dtype}, expected bool, integer or float"
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        bad = int(value.size - np.isfinite(value).sum())
        return f"holds {bad} NaN or infinite value(s)"
    return None


# ------------------------------------------------------------ restoring
def restore_model(path, model, arrays):
    """Copy the ``model/<name>`` arrays into ``model``'s parameters and buffers (in place,
    keeping their device).  Every parameter and buffer must be there with its exact shape and
    dtype, and no other ``model/`` array: nothing is cast, nothing changes on a refusal."""
    saved = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    targets = _state_tensors(model)
    missing = [k for k in targets if k not in saved]
    unknown = [k for k in saved if k not in targets]
    problems = []
    if missing:
        problems.append(f"missing arrays {_names('model/', missing)}")
    if unknown:
        problems.append(f"unknown arrays {_names('model/', unknown)}")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit this {type(model).__name__}: "
                              f"{'; '.join(problems)}; was it saved from another model?")
    for name, t in targets.items():
        value = saved[name]
        if tuple(value.shape) != tuple(t.shape) or value.dtype != t.dtype:
            raise CheckpointError(
                f"checkpoint {path}: array 'model/{name}' is {value.dtype} {tuple(value.shape)}, "
                f"the model's is {t.dtype} {tuple(t.shape)}; was it saved from another model?")
        problem = _array_problem(value)
        if problem:
            raise CheckpointError(f"checkpoint {path}: array 'model/{name}' {problem}")
    model.load_state_dict(saved)


def _state_tensors(model):
    """name -> tensor for every parameter and buffer, under every name (as state_dict lists them)."""
    targets = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for registry in (module._parameters, module._buffers):
            for k, t in registry.items():
                if t is not None:
                    targets[f"{prefix}.{k}" if prefix else k] = t
    return targets


def _names(prefix, names, limit=5):
    shown = ", ".join(prefix + n for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def restore_optimizer(path, optimizer, arrays, meta):
    """Load ``meta["optimizer_groups"]`` (hyper-parameters per group) and the
    ``optim/<i>/<name>`` arrays (state of the i-th parameter, in group order) into
    ``optimizer`` -- the layout of ``Optimizer.state_dict()``.

    The groups must match the optimizer's one for one, with the same hyper-parameter names
    and types (a saved group can never replace the parameters it trains); each state array
    must belong to an existing parameter and match its shape and dtype."""
    groups = meta_value(path, meta, "optimizer_groups", list)
    live = optimizer.param_groups
    if len(groups) != len(live):
        raise CheckpointError(f"checkpoint {path}: meta 'optimizer_groups' holds {len(groups)} "
                              f"groups, this optimizer has {len(live)}; was it saved by another "
                              f"model or setup?")
    for g, (saved, group) in enumerate(zip(groups, live)):
        _check_group(path, g, saved, group)
    params = [p for group in live for p in group["params"]]
    state = {}
    for key, value in arrays.items():
        if not key.startswith("optim/"):
            continue
        _, index, name = (key.split("/", 2) + ["", ""])[:3]
        if not index.isdigit() or int(index) >= len(params) or not name:
            raise CheckpointError(f"checkpoint {path}: unknown optimizer array {key!r} (this "
                                  f"optimizer has {len(params)} parameters, arrays are "
                                  f"optim/<index>/<name>)")
        p = params[int(index)]
        if tuple(value.shape) != tuple(p.shape) or value.dtype != p.dtype:
            raise CheckpointError(f"checkpoint {path}: optimizer array {key!r} is {value.dtype} "
                                  f"{tuple(value.shape)}, its parameter is {p.dtype} {tuple(p.shape)}")
        problem = _array_problem(value)
        if problem:
            raise CheckpointError(f"checkpoint {path}: optimizer array {key!r} {problem}")
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"groups": groups, "state": state})


def _check_group(path, g, saved, group):
    where = f"checkpoint {path}: optimizer group {g}"
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where} is a JSON {type(saved).__name__}, expected an object")
    expected = set(group) - {"params"}
    if set(saved) != expected:
        raise CheckpointError(f"{where} has hyper-parameters {sorted(saved)}, expected "
                              f"{sorted(expected)}")
    for k, v in saved.items():
        current = group[k]
        if isinstance(current, bool):
            ok = isinstance(v, bool)
        else:
            ok = (isinstance(v, numbers.Real) and not isinstance(v, bool)
                  and math.isfinite(v) and v >= 0)
        if not ok:
            kind = "true or false" if isinstance(current, bool) else "a finite number >= 0"
            raise CheckpointError(f"{where}: {k!r} is {v!r}, expected {kind}")


def meta_value(path, meta, key, types):
    """``meta[key]``, refused with a CheckpointError naming the file unless it is one of
    ``types`` (bool is not taken for int) -- for the caller's own meta fields."""
    types = types if isinstance(types, tuple) else (types,)
    if key not in meta:
        raise _damaged(path, f"its meta document has no {key!r}")
    value = meta[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(t.__name__ for t in types)
        raise _damaged(path, f"meta {key!r} is {type(value).__name__} {value!r:.60}, "
                             f"expected {names}")
    return value
