"""Loading the pickled CIFAR-10 batches without running anything in them.

``pickle.load`` calls whatever callable a file names, so a tampered file could
run any code.  The official files (Python 2 pickles, protocol 2) only hold
dicts, lists, bytes, ints and NumPy arrays; an array is rebuilt from three
globals.  ``find_class`` hands out those three and refuses every other name
*before* anything is called, so a refused file executes nothing.
"""
from __future__ import annotations

import io
import pickle

import numpy as np

from .errors import DatasetError, UnsafePickleError

# The function ndarray.__reduce__ names; taken from an array rather than imported
# from numpy.core, which NumPy 2 renamed to numpy._core (both spellings occur).
_reconstruct = np.empty(0).__reduce__()[0]

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,   # files written by NumPy 1
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # re-pickled by NumPy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that can build only plain containers and NumPy arrays."""

    def __init__(self, file, what="pickle"):
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes, as the files were written
        self.what = what

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
            raise UnsafePickleError(
                f"{self.what}: refused to load the global {module}.{name}; a CIFAR-10 batch needs "
                f"only {allowed}. The file is not an official CIFAR-10 batch (or was tampered "
                "with); nothing in it was executed. Delete it and use the official archive."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.what}: refused a persistent id; nothing was executed")


def safe_loads(data: bytes, what="pickle"):
    """Unpickle ``data`` allowing only what the official CIFAR-10 files contain."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), what).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or garbled: pickle raises many types
        raise DatasetError(
            f"{what}: not a readable pickle ({type(e).__name__}: {e}); the file is damaged") from e
