"""The backend seam: where arrays live and which kernels run on them.

Every op in minires is written once against ``xp`` -- NumPy on the CPU, CuPy on
the GPU -- chosen from the data it is given.  Only the kernels (im2col, col2im,
batchnorm, pooling, ...) differ per device; ``kernels_for`` hands an op the
right set.  Both kernel modules expose the same functions with the same
signatures (see ``kernels/cpu/__init__.py``).

CuPy is optional: it is imported only when a CuPy array or the GPU is asked
for, so ``import minires`` works without it.
"""
from __future__ import annotations

import importlib
import os

import numpy as np

from .forkjoin import ForkJoinPool
from .messages import Message

CPU = "cpu"
CUDA = "cuda"

_INSTALL_HINT = (
    "the GPU backend needs CuPy, which is not installed. Install the wheel that "
    "matches your CUDA toolkit: pip install 'minires[cuda12]' (CUDA 12.x) or "
    "pip install 'minires[cuda13]' (CUDA 13.x)"
)


def _cupy_or_none():
    try:
        return importlib.import_module("cupy")
    except ImportError:
        return None


def cupy_module():
    """The cupy module, or a clear error saying how to install it."""
    cp = _cupy_or_none()
    if cp is None:
        raise RuntimeError("minires: " + _INSTALL_HINT)
    return cp


def cuda_is_available() -> bool:
    """True when CuPy is installed and sees at least one CUDA device."""
    cp = _cupy_or_none()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device: CuPy raises its own error types
        return False


def is_cupy_array(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def get_array_module(*arrays):
    """numpy or cupy, from the arrays given (NumPy for anything that is not CuPy)."""
    for a in arrays:
        if is_cupy_array(a):
            return cupy_module()
    return np


def device_of(a) -> str:
    return CUDA if is_cupy_array(a) else CPU


def normalize_device(device) -> str:
    """Accept 'cpu', 'cuda', 'cuda:0', 'gpu' (an alias of cuda)."""
    name = str(device).lower()
    if name == CPU:
        return CPU
    if name in ("cuda", "gpu", "cuda:0"):
        return CUDA
    raise ValueError(Message("{device_arg}unknown device {device!r}: expected {devices}", device=device))


def xp_for_device(device):
    return cupy_module() if normalize_device(device) == CUDA else np


def to_device(a, device):
    """Copy an array to the device (no copy when it is already there)."""
    device = normalize_device(device)
    if device == device_of(a):
        return a
    if device == CPU:
        return a.get()
    cp = cupy_module()
    if not cuda_is_available():
        raise RuntimeError("minires: CuPy is installed but sees no CUDA device")
    return cp.asarray(a)


def to_numpy(a):
    return a.get() if is_cupy_array(a) else np.asarray(a)


def contiguous(xp, a):
    """``a`` as a C-contiguous array: ``a`` itself when it already is.  The check comes
    first because CuPy's ascontiguousarray costs microseconds even when it copies
    nothing, and a GPU training step is bound by such host-side costs."""
    return a if a.flags.c_contiguous else xp.ascontiguousarray(a)


_cpu_kernels = None     # minires.kernels.cpu once imported: every op asks for it


def kernels_for(xp):
    """The kernel module for the array module: minires.kernels.cpu or .cuda."""
    global _cpu_kernels
    if xp is np:
        if _cpu_kernels is None:
            from .kernels import cpu
            _cpu_kernels = cpu
        return _cpu_kernels
    from .kernels import cuda
    return cuda


def add(a, b):
    """a + b for two arrays of one shape: on the CPU one pass split across minires's
    threads where they share a layout (autograd's fan-out sums -- a residual block's input
    gets a gradient from each branch, an activation-sized add that NumPy runs on one core:
    7.7 ms of a ResNet-20 step at batch 128); elsewhere the array module's +."""
    if type(a) is np.ndarray and type(b) is np.ndarray:
        out = kernels_for(np).add(a, b)
        if out is not None:
            return out
    return a + b


def scatter_add(xp, target, index, values):
    """target[index] += values, summing duplicates (np.add.at / cupyx.scatter_add)."""
    if xp is np:
        np.add.at(target, index, values)
    else:
        importlib.import_module("cupyx").scatter_add(target, index, values)


# ---------------------------------------------------------------- CPU threads
# On the CPU, minires owns the parallelism: conv2d splits the batch into
# chunks and runs one chunk per core at a time (im2col + a GEMM on columns that
# stay in cache).  BLAS is held to one thread for the whole process (kernels/cpu
# sets it when it loads) -- two thread pools on the same cores (BLAS's spinning
# workers and ours) made a ResNet-20 step 5x slower when measured (docs/benchmarks.md).
_threads = None
_pool = None


def num_threads() -> int:
    """set_num_threads's count, else the cores this process may use (read once: the
    system call showed in the profile of a batch-32 step)."""
    global _threads
    if _threads is None:
        try:
            _threads = len(os.sched_getaffinity(0))
        except AttributeError:              # not on Linux
            _threads = os.cpu_count() or 1
    return _threads


def set_num_threads(n: int):
    """How many CPU threads minires's kernels use (default: the cores this process may use)."""
    global _threads, _pool
    if n < 1:
        raise ValueError(f"set_num_threads: need n >= 1, got {n}")
    _threads = int(n)
    if _pool is not None:
        _pool.close()
        _pool = None


# A convolution's images are shared across as many threads as get at least this many of the
# forward's multiply-adds each (counted as a direct convolution's, N·K·C·9·H·W for a 3x3
# layer, whatever the algorithm; the backward uses the forward's threads): with less, the
# fork-join's hand-over (minires/forkjoin.py) and the activations that then cross between the
# cores' caches cost more than another core saves.  A CIFAR ResNet's 3x3 layers do 2.4 M per
# image (1.2 M the stride-2 ones), so on 2 cores at batch 2 every layer runs on one thread,
# the stride-2 ones up to batch 5; on 8 cores batch 8 takes 6 threads, not all or none.
# benchmarks/conv_split.py (ResNet-20, 2 cores, Zen 5, 2026-12-04; min ms, always split /
# 3 M / never split): training at batch 2 6.47 / 6.16 / 6.21, 3 7.79 / 7.84 / 7.46, 4 8.48 /
# 8.60 / 9.41, 8 11.90 / 11.69 / 15.12; evaluation at 2 2.02 / 1.95 / 1.94, 4 2.37 / 2.48 /
# 2.67.  Where the split starts to pay moves with the machine's load (docs/benchmarks.md has a
# run where one thread led up to batch 4).  0 splits every convolution across every thread.
CONV_SPLIT_MACS = 3_000_000


def conv_threads(xp, macs):
    """How many CPU threads a convolution of ``macs`` multiply-adds shares its images across:
    as many as get CONV_SPLIT_MACS each, at most minires's threads, at least one (1 on the GPU)."""
    if xp is not np:
        return 1
    return max(1, min(num_threads(), int(macs // max(CONV_SPLIT_MACS, 1))))


def batch_chunks(xp, n, most, threads=None):
    """[(n0, n1), ...]: images 0..n-1 in chunks of at most ``most`` images, near-equal in
    size and, on the CPU, as many as a multiple of ``threads`` (default: minires's threads;
    ``conv_threads`` for a convolution) or n, so that ``parallel_for``'s shares are even.
    Cutting 32 images into chunks of at most 27 as 27 + 5 left one core idle most of the
    time; this cuts them as 16 + 16."""
    count = -(-n // max(1, most))
    if xp is np:
        threads = num_threads() if threads is None else threads
        count = min(n, -(-count // threads) * threads)
    size, extra = divmod(n, count)
    bounds = [0]
    for k in range(count):
        bounds.append(bounds[-1] + size + (k < extra))
    return list(zip(bounds[:-1], bounds[1:]))


def parallel_for(xp, worker, items, together=False, threads=None):
    """Run ``worker(share)`` over interleaved shares of ``items``; a list of the results.

    CPU: one share per thread (``threads`` of them, default all of minires's), each running
    single-threaded BLAS (kernels/cpu holds BLAS to one thread).  GPU (or a single item or
    thread): one call on all items, on the calling thread -- the device is parallel already.
    together=True: every share runs on a thread of its own at the same time, or nothing runs
    and the result is None (minires.forkjoin.ForkJoinPool.run).
    """
    global _pool
    items = list(items)
    threads = min(num_threads() if threads is None else threads, len(items))
    if xp is not np or threads <= 1:
        return None if together else [worker(items)]
    if _pool is None or _pool.threads != num_threads():
        if _pool is not None:
            _pool.close()
        _pool = ForkJoinPool(num_threads())
    return _pool.run(worker, [items[k::threads] for k in range(threads)], together)
