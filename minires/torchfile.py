"""Reading PyTorch checkpoint files into NumPy without PyTorch and without running pickle code.

    obj = load_torch_file("resnet20-12fca82f.th")   # {'state_dict': {'module.conv1.weight': ndarray ...}, ...}

``torch.save`` writes one of two formats, both read here:

    zip (torch >= 1.6)  ARCHIVE/data.pkl (the object, tensors as persistent ids)
                        ARCHIVE/data/<key> (each storage's raw bytes), ARCHIVE/byteorder
    legacy (older, and  five pickles and raw bytes back to back: magic number, protocol
    _use_new_zipfile_   version, sys_info (endianness), the object, the list of storage
    serialization=False) keys; then per key an int64 element count and the storage's bytes

A tensor in the object pickle is a call of torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...), its storage a persistent id ('storage', torch.FloatStorage,
key, location, numel[, view]).  Like ``torch.load(weights_only=True)``, the unpickler
hands out only those names (and OrderedDict), each mapped to a NumPy stand-in here;
any other global -- os.system, builtins.eval, ... -- is refused *before* anything is
called, so a refused file executes nothing.  Tensors come back as NumPy arrays
(copies, C-contiguous), CUDA storages included; Python numbers, strings and
containers as themselves.
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> NumPy dtype (little-endian; a big-endian file swaps them)
STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "LongStorage": "i8",
    "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


class TorchFileError(ValueError):
    """A file is not a PyTorch checkpoint this reader understands, or is damaged."""


class UnsafeTorchFileError(TorchFileError, pickle.UnpicklingError):
    """A checkpoint's pickle names something a tensor checkpoint never needs."""


class _Refuses:
    """Base of every object the unpickler hands out: a pickle's BUILD cannot rewrite one."""
    __slots__ = ()

    def __setstate__(self, state):
        raise UnsafeTorchFileError(f"refused to set the state of a {type(self).__name__.strip('_')} "
                                   "(a tensor checkpoint never does); nothing was executed")


class _Allowed(_Refuses):
    """An allowed global: callable, and nothing else about it reachable from the pickle."""
    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)


class _StorageType(_Refuses):
    """What the pickle's torch.FloatStorage (etc.) becomes: a dtype, not callable."""
    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        self.name, self.dtype = name, np.dtype(dtype)


class _Storage(_Refuses):
    """A storage's identity until its bytes are read; ``view`` (root, offset) for the
    slices of a root storage that torch < 1.0 wrote."""
    __slots__ = ("key", "dtype", "numel", "view", "array")

    def __init__(self, key, dtype, numel, view=None):
        self.key, self.dtype, self.numel, self.view = key, dtype, numel, view
        self.array = None                       # filled in once the bytes are read


class _Tensor(_Refuses):
    """A tensor that waits for its storage's bytes (the legacy format stores them after the object)."""
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """torch._utils._rebuild_tensor(_v2); the arguments are checked once the bytes are in."""
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
    return data                                  # a Parameter is its tensor here


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _Allowed(collections.OrderedDict),
    ("torch._utils", "_rebuild_tensor_v2"): _Allowed(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor"): _Allowed(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Allowed(_rebuild_parameter),
    **{(module, name): _StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()
       for module in ("torch", "torch.cuda")},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, what, storages):
        super().__init__(file, encoding="utf-8")
        self.what, self.storages = what, storages   # key -> _Storage, shared by all tensors

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeTorchFileError(
                f"{self.what}: refused to load the global {module}.{name}: a tensor checkpoint needs "
                "only torch tensors, storages and OrderedDict. Nothing in the file was executed; "
                "do not load it with torch.load either, and get the file from its publisher again."
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise UnsafeTorchFileError(f"{self.what}: refused the persistent id {pid!r:.80}: "
                                       "not a ('storage', ...) record of a tensor checkpoint")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise UnsafeTorchFileError(f"{self.what}: a storage of type {storage_type!r:.60}; "
                                       f"expected one of torch.{', torch.'.join(STORAGE_DTYPES)}")
        if not _naturals([numel]) or not isinstance(key, str):
            raise TorchFileError(f"{self.what}: a storage record with key {key!r:.40}, size {numel!r:.40}")
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, numel)
        storage = self.storages[key]
        if view is None:
            return storage
        # torch < 1.0 legacy files: (view key, offset, size) into the root storage
        if not (isinstance(view, tuple) and len(view) == 3 and _naturals(view[1:])):
            raise TorchFileError(f"{self.what}: a storage view record {view!r:.60}; the file is damaged")
        view_key, offset, size = view
        return _Storage(view_key, storage.dtype, size, view=(storage, offset))

    def load(self):
        try:
            return super().load()
        except TorchFileError:
            raise
        except Exception as e:        # truncated, garbled, a non-callable reduced: pickle raises many types
            raise TorchFileError(f"{self.what}: not a readable checkpoint pickle "
                                 f"({type(e).__name__}: {e})") from e


def load_torch_file(path):
    """The object ``torch.save`` wrote to ``path``, tensors as NumPy arrays; see the module docstring."""
    path = Path(path)
    what = f"load_torch_file: {path}"
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file")
    if zipfile.is_zipfile(path):
        return _load_zip(path, what)
    with open(path, "rb") as f:
        return _load_legacy(f, what)


def _load_zip(path, what):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise TorchFileError(f"{what}: a zip file but not a PyTorch checkpoint "
                                 f"(expected one ARCHIVE/data.pkl, found {len(pickles)})")
        prefix = pickles[0][: -len("data.pkl")]
        order = archive.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names \
            else "little"
        if order not in ("little", "big"):
            raise TorchFileError(f"{what}: byteorder {order!r}, expected 'little' or 'big'")
        storages = {}
        obj = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), what, storages).load()
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise TorchFileError(f"{what}: the storage {member} is missing; the file is damaged")
            size = archive.getinfo(member).file_size          # checked before anything is inflated
            if size != storage.numel * storage.dtype.itemsize:
                raise TorchFileError(f"{what}: storage {key} has {size} bytes, its record says "
                                     f"{storage.numel} x {storage.dtype.itemsize}; the file is damaged")
            storage.array = _storage_array(archive.read(member), storage, order, what)
    return _materialise(obj, what)


def _load_legacy(f, what):
    def next_pickle():
        return _RestrictedUnpickler(f, what, storages).load()

    storages = {}
    try:
        magic = next_pickle()
    except UnsafeTorchFileError:
        raise
    except TorchFileError:
        raise TorchFileError(f"{what}: neither a zip nor a legacy PyTorch checkpoint "
                             "(no magic number at the start)") from None
    if magic != LEGACY_MAGIC:
        raise TorchFileError(f"{what}: not a PyTorch checkpoint (magic number {magic!r:.40})")
    protocol, sys_info = next_pickle(), next_pickle()
    if protocol != LEGACY_PROTOCOL:
        raise TorchFileError(f"{what}: legacy protocol {protocol!r}, this reader knows {LEGACY_PROTOCOL}")
    order = "little" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else "big"
    obj = next_pickle()
    keys = next_pickle()
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise TorchFileError(f"{what}: the list of storages does not match the tensors; the file is damaged")
    for key in keys:
        storage = storages[key]
        count = np.frombuffer(_read_exactly(f, 8, what), dtype=np.dtype("i8").newbyteorder(
            "<" if order == "little" else ">"))[0]
        if count != storage.numel:
            raise TorchFileError(f"{what}: storage {key} holds {count} elements, its record says "
                                 f"{storage.numel}; the file is damaged")
        storage.array = _storage_array(_read_exactly(f, storage.numel * storage.dtype.itemsize, what),
                                       storage, order, what)
    return _materialise(obj, what)


def _read_exactly(f, n, what):
    data = f.read(n)
    if len(data) != n:
        raise TorchFileError(f"{what}: the file ends early (wanted {n} more bytes, got {len(data)}); "
                             "it is truncated")
    return data


def _storage_array(raw, storage, order, what):
    dtype = storage.dtype.newbyteorder("<" if order == "little" else ">")
    if len(raw) != storage.numel * dtype.itemsize:
        raise TorchFileError(f"{what}: storage {storage.key} has {len(raw)} bytes, expected "
                             f"{storage.numel} x {dtype.itemsize}; the file is damaged")
    return np.frombuffer(raw, dtype=dtype).astype(storage.dtype.newbyteorder("="))


def _materialise(obj, what):
    """Replace every _Tensor in ``obj`` (nested dicts, lists, tuples) by its NumPy array.

    A pickle can share one object many times (its memo) and nest deeply, so objects are
    converted once each, and the tensors may together hold at most twice the bytes of the
    file's storages (views of one storage, as t.t() and t[1] make, stay well inside that)."""
    stored = sum(s.array.nbytes for s in _storages(obj))
    budget = [2 * stored + (1 << 20)]
    done = {}

    def convert(o):
        if id(o) in done:
            return done[id(o)]
        if isinstance(o, _Tensor):
            out = _tensor_array(o, what)
            budget[0] -= out.nbytes
            if budget[0] < 0:
                raise TorchFileError(f"{what}: its tensors claim more than twice the {stored} bytes "
                                     "of its storages; refused (a tensor checkpoint does not)")
        elif isinstance(o, dict):
            out = type(o)() if isinstance(o, collections.OrderedDict) else {}
            for k, v in o.items():
                out[k] = convert(v)
        elif isinstance(o, (list, tuple)):
            out = type(o)(convert(v) for v in o)
        elif isinstance(o, (_Storage, _StorageType, _Allowed)):
            raise TorchFileError(f"{what}: a bare {type(o).__name__.strip('_')} outside a tensor; "
                                 "not a tensor checkpoint")
        else:
            out = o
        done[id(o)] = out
        return out

    try:
        return convert(obj)
    except RecursionError:
        raise TorchFileError(f"{what}: nested too deeply for a tensor checkpoint; refused") from None


def _storages(obj):
    """The distinct root storages the tensors in ``obj`` read."""
    found, stack, seen = {}, [obj], set()
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, _Tensor) and isinstance(o.storage, _Storage):
            root = o.storage.view[0] if o.storage.view is not None else o.storage
            found[id(root)] = root
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
    return [s for s in found.values() if s.array is not None]


def _naturals(values):
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


def _tensor_array(t, what):
    """The tensor's elements as a C-contiguous array, after checking that they lie in its storage."""
    storage = t.storage
    if not isinstance(storage, _Storage):
        raise UnsafeTorchFileError(f"{what}: a tensor was to be built from {type(storage).__name__}, "
                                   "not from a storage")
    if not (isinstance(t.size, (tuple, list)) and isinstance(t.stride, (tuple, list))
            and len(t.size) == len(t.stride) and _naturals([t.offset, *t.size, *t.stride])):
        raise TorchFileError(f"{what}: a tensor with offset {t.offset!r:.20}, size {t.size!r:.40}, "
                             f"stride {t.stride!r:.40}; the file is damaged")
    if storage.view is None:
        flat = storage.array
    else:
        root, start = storage.view
        if start + storage.numel > root.numel:
            raise TorchFileError(f"{what}: a storage view reaches past its root storage")
        flat = root.array[start:start + storage.numel]
    size, stride = tuple(t.size), tuple(t.stride)
    if 0 in size:
        return np.zeros(size, dtype=flat.dtype)
    # the furthest element read must lie inside the storage: as_strided does not check
    last = t.offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= len(flat):
        raise TorchFileError(f"{what}: a tensor of size {size}, stride {stride}, offset {t.offset} "
                             f"reaches past its storage of {len(flat)} elements; the file is damaged")
    if not size:                                   # as_strided reads shape () as "keep the shape"
        return flat[t.offset:t.offset + 1].reshape(())
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(flat[t.offset:], shape=size,
                                           strides=[s * item for s in stride], writeable=False)
    return np.ascontiguousarray(view)
