"""Loading the pickled CIFAR-10 batches without running anything in them.

``pickle.load`` calls whatever callable a file names, so a tampered file could
run any code.  The official files (Python 2 pickles, protocol 2) only hold
dicts, lists, bytes, ints and NumPy arrays; re-pickled by Python 3 they also
name ``_codecs.encode`` (protocol 2 spells bytes that way) or NumPy's
``_frombuffer`` (protocol 5).  ``find_class`` hands out checked stand-ins for
exactly those names and refuses every other one *before* anything is called,
so a refused file executes nothing.

The stand-ins also bound what an array may cost: every array is built from
bytes that are in the file, exactly shape x itemsize of them, C or Fortran
order, a plain numeric dtype.  ``numpy.ndarray(shape, dtype, buffer, offset,
strides)`` is never callable, so a tiny file cannot claim a huge array through
zero strides or an uninitialised allocation.
"""
from __future__ import annotations

import io
import math
import pickle

import numpy as np

from .errors import DatasetError, UnsafePickleError

# The function ndarray.__reduce__ names; taken from an array rather than imported
# from numpy.core, which NumPy 2 renamed to numpy._core (both spellings occur).
_reconstruct = np.empty(0).__reduce__()[0]
ARRAY_KINDS = "biufc"  # bool, int, uint, float, complex: fixed-size, no Python objects inside


class _Refused(Exception):
    """Raised by a stand-in; safe_loads turns it into UnsafePickleError naming the file."""


class _NDArrayTag:
    """What ``numpy.ndarray`` resolves to: the tag ``_reconstruct`` expects, never callable."""

    def __repr__(self):
        return "numpy.ndarray"

    def __call__(self, *args):
        raise _Refused("refused a direct call of numpy.ndarray(...) (it can build an array "
                       "from a few bytes with zero strides); NumPy never pickles arrays that way")


NDARRAY = _NDArrayTag()


def _checked_dtype(spec, align=False, copy=True):
    if not isinstance(spec, (str, bytes)) or not isinstance(align, int):  # Python 2 wrote 0, not False
        raise _Refused(f"refused numpy.dtype({spec!r}, {align!r}): only a type code such as 'u1' "
                       "is allowed")
    # Always a copy: BUILD then sets its byte order, which must not touch NumPy's shared dtypes.
    dtype = np.dtype(spec.decode("latin1") if isinstance(spec, bytes) else spec, bool(align), True)
    _check_kind(dtype)
    return dtype


def _check_kind(dtype):
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise _Refused(f"refused an array of dtype {dtype}: a dataset batch holds plain numbers")


def _checked_array_bytes(data, shape, dtype):
    """Refuse unless ``data`` holds exactly the bytes an array of ``shape`` x ``dtype`` needs."""
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise _Refused(f"refused an array with shape {shape!r}: expected a tuple of sizes")
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"refused an array with dtype {dtype!r}: expected a numpy.dtype")
    _check_kind(dtype)
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused(f"refused an array whose data is a {type(data).__name__}, not bytes")
    needed = math.prod(shape) * dtype.itemsize
    if len(data) != needed:
        raise _Refused(f"refused an array of shape {shape} {dtype} built from {len(data)} "
                       f"bytes; it needs exactly {needed}")


ALLOWED_GLOBALS = {  # the name in the file -> the RestrictedUnpickler attribute it gets
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",   # written by NumPy 1
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",  # re-pickled by NumPy 2
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",        # protocol 5, NumPy 1
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",       # protocol 5, NumPy 2
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("_codecs", "encode"): "latin1_bytes",                      # bytes, Python 3, protocol 2
    ("__builtin__", "bytes"): "empty_bytes",                    # b'', Python 3, protocol 2
}


class RestrictedUnpickler(pickle._Unpickler):
    """An Unpickler that can build only plain containers and checked NumPy arrays.

    The pure-Python Unpickler, because its BUILD step (``obj.__setstate__(state)``)
    can be intercepted: that is where NumPy fills an array, and where the state's
    shape and bytes are checked first.  What the stand-ins create is charged to
    ``budget``, twice the file's size: a genuine file never needs more (protocol 2
    decodes each byte once and copies it into its array once), while a crafted
    one could otherwise rebuild one memoised string or array state many times.
    """
    dispatch = dict(pickle._Unpickler.dispatch)
    ndarray = NDARRAY
    dtype = staticmethod(_checked_dtype)

    def __init__(self, file, size: int, what="pickle"):
        """``size``: the file's length in bytes, which sets the budget."""
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes, as the files were written
        self.what, self.budget = what, 2 * size

    def spend(self, n):
        self.budget -= n
        if self.budget < 0:
            raise _Refused("refused to build more data than twice the file's size (the same "
                           "string or array state reused over and over)")

    def find_class(self, module, name):
        try:
            return getattr(self, ALLOWED_GLOBALS[(module, name)])
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
            raise UnsafePickleError(
                f"{self.what}: refused to load the global {module}.{name}; a CIFAR-10 batch needs "
                f"only {allowed}. The file is not an official CIFAR-10 batch (or was tampered "
                "with); nothing in it was executed. Delete it and use the official archive."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.what}: refused a persistent id; nothing in it was executed")

    @staticmethod
    def reconstruct(subtype, shape, typecode):
        """``_reconstruct`` as ndarray.__reduce__ calls it: an empty array that BUILD then fills."""
        if subtype is not NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            raise _Refused(f"refused _reconstruct{(subtype, shape, typecode)!r}: NumPy calls it "
                           "only as _reconstruct(numpy.ndarray, (0,), b'b')")
        return _reconstruct(np.ndarray, (0,), b"b")

    def frombuffer(self, buf, dtype, shape, order):
        """NumPy's ``_frombuffer`` (pickle protocol 5, data in-band)."""
        _checked_array_bytes(buf, shape, dtype)
        if order not in ("C", "F"):
            raise _Refused(f"refused an array of order {order!r}: expected 'C' or 'F'")
        self.spend(len(buf))
        return np.frombuffer(buf, dtype).reshape(shape, order=order)

    def latin1_bytes(self, text, encoding):
        """``_codecs.encode`` as pickle protocol 2 writes bytes: ``encode(str, 'latin1')``."""
        if not isinstance(text, str) or encoding != "latin1":
            raise _Refused(f"refused _codecs.encode(..., {encoding!r}): pickle only ever calls "
                           "it on a str with 'latin1'")
        self.spend(len(text))
        return text.encode("latin1")

    @staticmethod
    def empty_bytes(*args):
        """``bytes()``: how protocol 2 writes b''; any argument (bytes(10**12)) is refused."""
        if args:
            raise _Refused("refused a call of bytes() with arguments; pickle writes only bytes()")
        return b""

    def load_build(self):
        state = self.stack.pop()
        obj = self.stack[-1]
        if type(obj) is np.ndarray:
            # ndarray state: (version, shape, dtype, is_fortran, data)
            if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
                raise _Refused("refused an array state that is not (1, shape, dtype, fortran, data)")
            _checked_array_bytes(state[4], state[1], state[2])
            self.spend(len(state[4]))
        elif isinstance(obj, np.dtype):
            # dtype state: (version, byte order, subdtype, names, fields, elsize, alignment, flags)
            if not (isinstance(state, tuple) and len(state) == 8 and state[2:5] == (None,) * 3):
                raise _Refused(f"refused the dtype state {state!r}: only plain numeric dtypes")
        else:
            raise _Refused(f"refused to set the state of a {type(obj).__name__}; only NumPy "
                           "arrays and dtypes carry one in a dataset batch")
        obj.__setstate__(state)
        if isinstance(obj, np.dtype):
            _check_kind(obj)

    dispatch[pickle.BUILD[0]] = load_build


def safe_loads(data: bytes, what="pickle"):
    """Unpickle ``data`` allowing only what the official CIFAR-10 files contain."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), len(data), what).load()
    except UnsafePickleError:
        raise
    except _Refused as e:
        raise UnsafePickleError(
            f"{what}: {e}. The file is not an official CIFAR-10 batch (or was tampered with); "
            "nothing in it was executed. Delete it and use the official archive.") from None
    except Exception as e:  # truncated or garbled: pickle raises many types
        raise DatasetError(
            f"{what}: not a readable pickle ({type(e).__name__}: {e}); the file is damaged") from e
