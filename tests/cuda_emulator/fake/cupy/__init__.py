"""A fake ``cupy`` for running minires's GPU path on the CPU: NumPy arrays, emulated kernels.

What it is for: the op glue (ops -> kernels/cuda -> RawModule launches) runs as it
would on a GPU, and what real CuPy refuses, or does differently from NumPy, fails
or differs here too, so that a test which passes against this fake has a fair
chance of passing on a GPU.  It is NOT CuPy: no asynchrony, no concurrent streams,
no cuBLAS (see tests/cuda_emulator/README.md).  Stream capture is emulated by
recording (the "stream capture" section below): captured work runs only at each
Graph.launch(), host reads, cuBLAS and cuRAND are refused during capture, and a
graph that uses memory freed back to the default pool refuses to launch.

Arrays.  ``cupy.ndarray`` is a NumPy subclass defined in this module
(``type(a).__module__ == 'cupy'``).  Where CuPy differs from NumPy in ways code can
rely on, the fake follows CuPy:

* ufuncs, operators and cupy functions refuse NumPy arrays and lists mixed in with
  device arrays (TypeError, CuPy's "Unsupported type"); NumPy and Python scalars are
  fine.  ``numpy.asarray``/``array``/``asanyarray``/``ascontiguousarray``/
  ``asfortranarray`` refuse device arrays ("Implicit conversion to a NumPy array is
  not allowed") -- the fake wraps those five NumPy functions, since NumPy never asks
  a subclass (CUDA_EMU_STRICT_HOST=0 turns that off);
* NumPy functions called on device arrays dispatch like CuPy's
  ``__array_function__``: only to functions CuPy 14 has, else TypeError;
* reductions, ``a[i]`` of a 1-d array, ``argmax`` ... give 0-d device arrays, never
  NumPy scalars; ``cupy.ascontiguousarray`` takes device arrays only; ``.get()`` /
  ``cupy.asnumpy`` copy to the host; ``flags`` has only c_contiguous, f_contiguous
  and owndata; ``.base`` is the array owning the memory (None for an owner);
* ``cupy.empty`` returns garbage (every byte 0xFF: NaN, -1), and each allocation has
  guard bytes around it that are checked after every kernel launch (out-of-bounds
  writes raise OutOfBoundsError);
* products (matmul, @) and float32 sums round differently from the CPU's BLAS and
  NumPy, as cuBLAS and CuPy's reductions do (CUDA_EMU_ROUNDING=numpy: NumPy's own);
* ``cupy.random.default_rng`` has CuPy 14's Generator methods only (random, uniform,
  integers, standard_normal, ...: no permutation/choice/shuffle/normal), and
  ``integers(size=None)`` returns a 0-d array;
* ``Device().mem_info`` reports CUDA_EMU_MEMORY bytes (default 4 GiB) minus the live
  allocations.

Still NumPy: type promotion is NumPy 2's (NEP 50), as in CuPy 14; CuPy 13 promotes
NumPy scalars by value -- CUDA_EMU_PROMOTION_REPORT=1 lists, at exit, the operations
whose dtype would differ there.  ``isinstance(a, numpy.ndarray)`` is True for a fake
array (False for a CuPy one).  Random streams differ from CuPy's.

Kernels.  ``RawModule(code=...)`` finds, by the SHA-256 of the source text, the
library gen.py built from the same .cu file (``manifest.json`` in $CUDA_EMU_BUILD).
Every launch checks the grid and block limits and each argument against its C
parameter (pointers: a C-contiguous device array of the pointee's dtype, writable
unless the pointee is const, or a numpy.uint64 address; scalars: exactly the NumPy
type of the C type -- CuPy would pass a Python int as 64 bits), runs the kernel and
checks the guards of the arrays passed (of every live allocation when a uint64
pointer table is passed).
"""
from __future__ import annotations

import collections
import ctypes
import hashlib
import json
import os
import sys
import threading
import types
import weakref

import numpy as _np

__version__ = "14.0.0-emulated"

_BUILD = os.environ.get("CUDA_EMU_BUILD", "")
# The emulated device's memory (what mem_info reports; nothing enforces it): 4 GiB unless
# CUDA_EMU_MEMORY says otherwise -- tests that need more skip themselves.
_MEMORY = int(float(os.environ.get("CUDA_EMU_MEMORY", 4 << 30)))
# cuBLAS and CuPy's reductions do not round like the CPU's BLAS and NumPy's pairwise sums.
# By default the fake does not either (products: K in tiles of 32 summed in turn; float32
# sums accumulated in float64): a test that passes only because GPU and CPU results
# are bit-identical fails here as it might on a GPU.  CUDA_EMU_ROUNDING=numpy: NumPy's own.
_DIFFERENT_ROUNDING = os.environ.get("CUDA_EMU_ROUNDING", "different") != "numpy"
LAUNCHES = collections.deque(maxlen=10000)   # (kernel name, grid, block) of the latest launches

# --------------------------------------------------------------------- names
# Top-level names of real CuPy 14 (its __init__.py), minus its private imports.
# Anything else is an AttributeError here, as it would be there.
_CUPY_NAMES = frozenset("""
AxisError ComplexWarning DataSource ElementwiseKernel Inf Infinity ModuleDeprecationWarning NAN NINF NZERO
NaN PINF PZERO RankWarning RawKernel RawModule ReductionKernel TooHardError VisibleDeprecationWarning abs
absolute acos acosh add all allclose amax amin angle any append apply_along_axis apply_over_axes arange
arccos arccosh arcsin arcsinh arctan arctan2 arctanh argmax argmin argpartition argsort argwhere around array
array2string array_equal array_equiv array_repr array_split array_str asanyarray asarray asarray_chkfinite
ascontiguousarray asfortranarray asin asinh asnumpy astype atan atan2 atanh atleast_1d atleast_2d
atleast_3d average bartlett base_repr binary_repr bincount bitwise_and bitwise_count bitwise_invert
bitwise_left_shift bitwise_not bitwise_or bitwise_right_shift bitwise_xor blackman bool bool_ broadcast
broadcast_arrays broadcast_shapes broadcast_to byte c_ can_cast cbrt cdouble ceil cfloat choose clip
column_stack common_type complex128 complex64 complexfloating compress concat concatenate conj
conjugate convolve copy copysign copyto corrcoef correlate cos cosh count_nonzero cov cross csingle cuda
cumprod cumsum cumulative_prod cumulative_sum deg2rad degrees delete diag diag_indices diag_indices_from
diagflat diagonal diff digitize divide divmod dot double dsplit dstack dtype e ediff1d einsum empty empty_like
equal euler_gamma exp exp2 expand_dims expm1 extract eye fabs fft fill_diagonal finfo fix flatnonzero flip
fliplr flipud float16 float32 float64 float_power floating floor floor_divide fmax fmin fmod
format_float_positional format_float_scientific frexp from_dlpack frombuffer fromfile fromfunction fromiter
fromstring full full_like fuse gcd generic genfromtxt get_array_module get_default_memory_pool
get_default_pinned_memory_pool gradient greater greater_equal half hamming hanning heaviside histogram
histogram2d histogramdd hsplit hstack hypot i0 identity iinfo imag in1d index_exp indices inexact inf inner
int16 int32 int64 int8 int_ intc integer interp intersect1d intp invert is_available isclose iscomplex
iscomplexobj isdtype isfinite isfortran isin isinf isnan isneginf isposinf isreal isrealobj isscalar
issubdtype iterable ix_ kaiser kron lcm ldexp left_shift less less_equal lexsort linalg linspace load loadtxt
log log10 log1p log2 logaddexp logaddexp2 logical_and logical_not logical_or logical_xor logspace long longlong
mask_indices matmul matrix_transpose max maximum may_share_memory mean median meshgrid mgrid min
min_scalar_type minimum mintypecode mod modf moveaxis nan nan_to_num nanargmax nanargmin nancumprod
nancumsum nanmax nanmean nanmedian nanmin nanprod nanstd nansum nanvar ndarray ndim ndindex negative newaxis
nextafter nonzero not_equal number ogrid ones ones_like outer packbits pad partition percentile permute_dims pi
piecewise place poly poly1d polyadd polyfit polymul polysub polyval positive pow power printoptions prod
promote_types ptp put put_along_axis putmask quantile r_ rad2deg radians random ravel ravel_multi_index real
real_if_close reciprocal remainder repeat require reshape resize result_type right_shift rint roll rollaxis
roots rot90 round s_ save savetxt savez savez_compressed searchsorted select set_printoptions setdiff1d
setxor1d shape shares_memory short show_config sign signbit signedinteger sin sinc single sinh size sort
sort_complex split sqrt square squeeze stack std subtract sum swapaxes take take_along_axis tan tanh tensordot
testing tile trace transpose trapezoid tri tril tril_indices tril_indices_from trim_zeros triu triu_indices
triu_indices_from true_divide trunc typename ubyte ufunc uint uint16 uint32 uint64 uint8 uintc uintp ulong
ulonglong union1d unique unique_all unique_counts unique_inverse unique_values unpackbits unravel_index
unsignedinteger unwrap ushort vander var vdot vectorize vsplit vstack where zeros zeros_like
""".split())

# cupy functions that take host data (NumPy arrays, lists) as their input
_HOST_INPUT_OK = frozenset("array asarray asanyarray asarray_chkfinite asnumpy get_array_module isscalar ndim "
                           "shape size result_type can_cast min_scalar_type iterable".split())


# ----------------------------------------------------------- guarded memory
_ALIGN = 256                       # CuPy's allocation granularity
_GUARD = 256                       # guard bytes before and after every allocation
_GUARD_BYTE = 0xFF
_live = weakref.WeakValueDictionary()     # id(raw) -> raw: guarded allocations, checked after launches
_lock = threading.Lock()


class OutOfBoundsError(RuntimeError):
    pass


class _Raw(_np.ndarray):
    """The bytes behind one allocation, guards included (never handed out)."""

    def __array_finalize__(self, obj):
        pass


def _alloc(shape, dtype):
    """A guarded, garbage-filled root array (the analogue of a cudaMalloc'ed block)."""
    dtype = _np.dtype(dtype)
    if dtype.hasobject or dtype.kind in "OSUV":
        raise ValueError(f"Unsupported dtype {dtype}")
    shape = _shape_tuple(shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    nbytes = int(_np.prod(shape, dtype=_np.int64)) * dtype.itemsize
    raw = _np.empty(nbytes + 2 * _GUARD + _ALIGN, dtype=_np.uint8).view(_Raw)
    start = _GUARD + (-(raw.ctypes.data + _GUARD)) % _ALIGN
    raw.view(_np.ndarray)[:] = _GUARD_BYTE
    raw._fake_guard = (start, nbytes)
    a = _np.ndarray(shape, dtype=dtype, buffer=raw.view(_np.ndarray), offset=start).view(ndarray)
    a._guard = raw
    with _lock:
        _live[id(raw)] = raw
    pool = _current_pool()
    if pool is not None:
        pool._blocks.append(a)              # a private pool keeps its blocks, freed or not
    return a


def _current_pool():
    """The private MemoryPool that allocations go to now (using_allocator / set_allocator), else None."""
    if getattr(_tls, "probing", False):        # a probe's results are dropped at once
        return None
    allocator = getattr(_tls, "allocator", None) or _global_allocator[0]
    pool = getattr(allocator, "__self__", None)
    return pool if hasattr(pool, "_blocks") else None


_global_allocator = [None]


def _check_guards(raw, what):
    start, nbytes = raw._fake_guard
    raw = raw.view(_np.ndarray)
    front, back = raw[:start], raw[start + nbytes:]
    if not ((front == _GUARD_BYTE).all() and (back == _GUARD_BYTE).all()):
        bad_front = _np.flatnonzero(front != _GUARD_BYTE)
        bad_back = _np.flatnonzero(back != _GUARD_BYTE)
        raise OutOfBoundsError(
            f"{what}: out-of-bounds write around a device allocation of {nbytes} bytes: "
            f"{len(bad_front)} byte(s) changed before it (from {start - bad_front[0] if len(bad_front) else 0} "
            f"bytes before), {len(bad_back)} after it (up to {bad_back[-1] + 1 if len(bad_back) else 0} bytes past)")


def _root(a):
    """The guarded root (a fake ndarray with _guard) that a's memory belongs to, else None."""
    x = a
    while x is not None:
        if isinstance(x, ndarray) and x.__dict__.get("_guard") is not None:
            return x
        x = _np.ndarray.base.__get__(x) if isinstance(x, _np.ndarray) else None
    return None


def _raw_of(root):
    return root.__dict__["_guard"]


def _shape_tuple(shape):
    if isinstance(shape, (int, _np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


# ------------------------------------------------- CuPy 13's type promotion
# The fake promotes like NumPy 2 (NEP 50), as CuPy 14 does.  CuPy 13 still promotes
# NumPy scalars by value (float32 array * numpy.float64 scalar -> float32, where NumPy 2
# and CuPy 14 give float64).  CUDA_EMU_PROMOTION_REPORT=1 lists, at exit, the lines
# where an operation's dtype would differ under CuPy 13.
_PROMOTION_REPORT = {} if os.environ.get("CUDA_EMU_PROMOTION_REPORT", "0") != "0" else None


def _note_legacy_promotion(ufunc, inputs):
    arrays = [x.dtype for x in inputs if isinstance(x, ndarray) and x.ndim > 0]
    scalars = [_np.dtype(type(x)) for x in inputs if isinstance(x, _np.generic)]
    scalars += [x.dtype for x in inputs if isinstance(x, ndarray) and x.ndim == 0]
    if not arrays or not scalars:
        return
    nep50 = _np.result_type(*arrays, *scalars)
    legacy = _np.result_type(*arrays)
    if nep50 == legacy or _np.dtype(legacy).kind not in "iuf" or any(
            _np.dtype(s).kind == "f" and _np.dtype(legacy).kind in "iu" for s in scalars):
        return
    import traceback
    here = os.path.dirname(os.path.abspath(__file__))
    site = "?"
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not frame.filename.startswith(here) and "/numpy/" not in frame.filename:
            site = f"{frame.filename}:{frame.lineno}: {frame.line}"
            break
    key = (site, ufunc.__name__, str(legacy), str(nep50))
    _PROMOTION_REPORT[key] = _PROMOTION_REPORT.get(key, 0) + 1


def _print_promotion_report():
    if not _PROMOTION_REPORT:
        print("fake cupy: no operation would promote differently under CuPy 13", file=sys.stderr)
        return
    print("fake cupy: operations whose dtype differs under CuPy 13 (NumPy/0-d scalars promote by value):",
          file=sys.stderr)
    for (site, name, legacy, nep50), n in sorted(_PROMOTION_REPORT.items()):
        print(f"  {n:6d}x {name}: CuPy 13 {legacy}, NumPy 2/CuPy 14 {nep50}  at {site}", file=sys.stderr)


if _PROMOTION_REPORT is not None:
    import atexit
    atexit.register(_print_promotion_report)


# ------------------------------------------------------------ stream capture
# CuPy 14's Stream.begin_capture / end_capture -> Graph, emulated by recording.
# While the current stream is capturing, every device operation -- RawKernel
# launches, ufuncs and reductions, cupy functions, fills, device-to-device copies,
# indexing that copies, __setitem__ -- is recorded as a closure and NOT executed
# (CUDA does not run captured work): a result allocated during capture is garbage
# (0xFF bytes) until a Graph.launch() runs the closures in order.  The closures hold
# the arrays they touch weakly (by their root allocation, offset, shape and strides),
# as a CUDA graph holds bare addresses: Graph.launch() raises GraphMemoryError when
# one of them has been freed back to the default memory pool since -- on a GPU the
# replay would write into memory the pool hands out again (or that free_all_blocks
# returned to the driver).  Memory allocated from a private pool
# (cupy.cuda.using_allocator(pool.malloc)) stays owned by that pool, freed or not,
# as long as the pool lives: CuPy's pool keeps freed blocks in its free lists.
_tls = threading.local()
_capture = None                       # the _Capture in progress (one at a time here)


class GraphMemoryError(RuntimeError):
    """A captured graph would replay into memory that is no longer its own."""


class _Capture:
    def __init__(self, stream):
        self.stream, self.ops, self.invalid = stream, [], None


def _suspended():
    return getattr(_tls, "suspend", 0) > 0


class _Suspend:
    """Run eagerly (a replay, or a probe for a result's shape) without recording."""

    def __enter__(self):
        _tls.suspend = getattr(_tls, "suspend", 0) + 1

    def __exit__(self, *exc):
        _tls.suspend -= 1
        return False


def _current_stream():
    stack = getattr(_tls, "streams", None)
    return stack[-1] if stack else cuda.Stream.null


def _recorder(what):
    """The capture that an operation on the current stream joins, else None (run it)."""
    cap = _capture
    if cap is None or _suspended():
        return None
    stream = _current_stream()
    if stream is cap.stream:
        if cap.invalid is not None:
            raise _runtime.CUDARuntimeError(
                f"cudaErrorStreamCaptureInvalidated: operation failed due to a previous error during "
                f"capture ({cap.invalid}); fake cupy: {what}")
        return cap
    if stream.ptr == 0 and not cap.stream.non_blocking:
        # the legacy default stream synchronises with every blocking stream
        cap.invalid = f"{what} on the legacy default stream"
        raise _runtime.CUDARuntimeError(
            f"cudaErrorStreamCaptureImplicit: operation would make the legacy stream depend on a "
            f"capturing blocking stream (fake cupy: {what} on the null stream while another stream "
            f"captures)")
    return None


def _host_sync(what):
    """A device-to-host read or a synchronisation: refused while the current stream captures."""
    cap = _capture
    if cap is None or _suspended():
        return
    stream = _current_stream()
    if stream is cap.stream or (stream.ptr == 0 and not cap.stream.non_blocking) or what.startswith("device"):
        cap.invalid = what
        raise _runtime.CUDARuntimeError(
            f"cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing "
            f"(fake cupy: {what} during stream capture; the capture is invalidated)")


def _refuse_in_capture(what, exc=NotImplementedError, message=None):
    if _recorder(what) is not None:
        raise exc(message or f"fake cupy: {what} during stream capture")


_CUBLAS_MSG = "calling cuBLAS API during stream capture is currently unsupported"
_CURAND_MSG = "calling cuRAND API during stream capture is currently unsupported"


class _Ref:
    """A device array as a captured graph sees it: an address range, not an object."""
    __slots__ = ("root", "strong", "offset", "shape", "strides", "dtype", "writeable")

    def __init__(self, a):
        root = _root(a)
        self.shape, self.strides, self.dtype = a.shape, a.strides, a.dtype
        self.writeable = _np.ndarray.flags.__get__(a).writeable
        if root is None:                         # an array of unknown origin: keep it
            self.root, self.strong, self.offset = None, a, 0
        else:
            self.root, self.strong = weakref.ref(root), None
            self.offset = a.ctypes.data - root.ctypes.data if a.size else 0

    def alive(self):
        return self.strong is not None or self.root() is not None

    def get(self):
        if self.strong is not None:
            return self.strong
        root = self.root()
        if root is None:
            raise GraphMemoryError(f"a {self.dtype} array of shape {self.shape} was freed")
        v = _np.ndarray(self.shape, self.dtype, buffer=root.view(_np.ndarray), offset=self.offset,
                        strides=self.strides).view(ndarray)
        if not self.writeable:
            v.flags.writeable = False
        return v


def _pack(x, refs, depth=0):
    """Arguments of a recorded operation: device arrays -> _Ref, host arrays copied (constants)."""
    if isinstance(x, ndarray):
        r = _Ref(x)
        refs.append(r)
        return r
    if isinstance(x, _np.ndarray):
        return x.copy()
    if isinstance(x, (list, tuple)) and depth < 4:
        packed = [_pack(v, refs, depth + 1) for v in x]
        return packed if isinstance(x, list) else tuple(packed)
    if isinstance(x, dict) and depth < 4:
        return {k: _pack(v, refs, depth + 1) for k, v in x.items()}
    if isinstance(x, slice):
        return slice(_pack(x.start, refs, depth + 1), _pack(x.stop, refs, depth + 1),
                     _pack(x.step, refs, depth + 1))
    return x


def _unpack(x):
    if isinstance(x, _Ref):
        return x.get()
    if isinstance(x, list):
        return [_unpack(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_unpack(v) for v in x)
    if isinstance(x, dict):
        return {k: _unpack(v) for k, v in x.items()}
    if isinstance(x, slice):
        return slice(_unpack(x.start), _unpack(x.stop), _unpack(x.step))
    return x


def _record(cap, what, fn, *args, _extra_refs=(), **kwargs):
    """Append fn(*args, **kwargs) to the capture, to run at each Graph.launch()."""
    refs = list(_extra_refs)
    packed = _pack((args, kwargs), refs)
    cap.ops.append((what, fn, packed, refs))


class _RawRef:
    """An allocation that a captured kernel reaches through a pointer table."""
    __slots__ = ("raw", "dtype", "shape")

    def __init__(self, raw):
        self.raw, self.dtype, self.shape = weakref.ref(raw), "uint8", (raw._fake_guard[1],)

    def alive(self):
        return self.raw() is not None


def _refs_at_addresses(addresses):
    """_RawRefs of the live allocations that contain any of these addresses."""
    with _lock:
        raws = list(_live.values())
    spans = sorted((r.ctypes.data + r._fake_guard[0], r._fake_guard[1], r) for r in raws)
    starts = [s for s, _, _ in spans]
    import bisect
    found = {}
    for addr in addresses:
        i = bisect.bisect_right(starts, int(addr)) - 1
        if i >= 0 and starts[i] <= addr < starts[i] + max(spans[i][1], 1):
            found[id(spans[i][2])] = spans[i][2]
    return [_RawRef(r) for r in found.values()]


def _garbage_like(r):
    """Fresh garbage allocations shaped like the result(s) r of a probe."""
    if isinstance(r, _np.ndarray):
        return _alloc(r.shape, r.dtype)
    if isinstance(r, tuple):
        return tuple(_garbage_like(v) for v in r)
    if isinstance(r, list):
        return [_garbage_like(v) for v in r]
    return r


def _input_roots(x, roots, depth=0):
    if isinstance(x, ndarray):
        root = _root(x)
        if root is not None:
            roots.add(id(root))
    elif isinstance(x, (list, tuple)) and depth < 4:
        for v in x:
            _input_roots(v, roots, depth + 1)
    elif isinstance(x, dict) and depth < 4:
        for v in x.values():
            _input_roots(v, roots, depth + 1)
    return roots


def _is_view_of(r, roots):
    root = _root(r) if isinstance(r, _np.ndarray) else None
    return root is not None and id(root) in roots


def _store(outs, results):
    """Copy a replayed computation's results into the arrays handed out at capture."""
    if isinstance(outs, (tuple, list)):
        for o, r in zip(outs, results):
            _store(o, r)
    elif isinstance(outs, _np.ndarray):
        _np.copyto(outs.view(_np.ndarray), _unwrap(results), casting="unsafe")


def _probe(compute, args, kwargs):
    """Run a captured computation once, now, on whatever the inputs hold (garbage, for
    results of the capture) -- only for the shapes and dtypes of its results, which
    do not depend on the values.  Garbage can make NumPy warn, or index out of bounds
    where the GPU would read whatever is there: then integer inputs are zeroed."""
    import warnings
    _tls.probing = True
    try:
        with _Suspend(), _np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return compute(*args, **kwargs)
            except IndexError:
                def zeroed(x, depth=0):
                    if isinstance(x, ndarray) and x.dtype.kind in "iu":
                        return zeros(x.shape, x.dtype)
                    if isinstance(x, (list, tuple)) and depth < 4:
                        return type(x)(zeroed(v, depth + 1) for v in x)
                    return x
                return compute(*zeroed(args), **{k: zeroed(v) for k, v in kwargs.items()})
    finally:
        _tls.probing = False


def _captured_call(cap, what, compute, *args, **kwargs):
    """A pure device computation during capture: probe it for its result's shapes, hand
    out garbage of those shapes (views of the inputs stay views) and record the
    computation into them."""
    probe = _probe(compute, args, kwargs)
    roots = _input_roots((args, kwargs), set())
    if isinstance(probe, _np.ndarray) and _is_view_of(probe, roots):
        return probe                              # a view: nothing runs on the device
    if isinstance(probe, (tuple, list)) and all(_is_view_of(v, roots) or not isinstance(v, _np.ndarray)
                                                for v in probe):
        return probe
    if not isinstance(probe, (_np.ndarray, tuple, list)):
        _host_sync(f"{what} (its result {type(probe).__name__} is a host value)")
        return probe
    out = _garbage_like(probe)

    def replay(outs, *a, **k):
        _store(outs, compute(*a, **k))
    _record(cap, what, replay, out, *args, **kwargs)
    return out


_RUN = object()                        # _capture_function: "not device work, run it as usual"
# functions that only look at shapes and dtypes (no device work)
_METADATA = frozenset("shape ndim size result_type can_cast min_scalar_type iscomplexobj isrealobj "
                      "may_share_memory shares_memory isfortran iterable isscalar get_array_module "
                      "broadcast_shapes".split())
_IN_PLACE = frozenset("copyto put place putmask fill_diagonal put_along_axis".split())
_CUBLAS = frozenset("matmul dot vdot inner tensordot einsum".split())


def _has_float(args):
    return any(isinstance(x, _np.ndarray) and x.dtype.kind in "fc" for x in _flat(args))


def _flat(x, depth=0):
    if isinstance(x, (list, tuple)) and depth < 3:
        for v in x:
            yield from _flat(v, depth + 1)
    elif isinstance(x, dict) and depth < 2:
        for v in x.values():
            yield from _flat(v, depth + 1)
    else:
        yield x


def _refuse_host_copy(what):
    raise RuntimeError(f"fake cupy: {what} during stream capture: a host-to-device copy would be "
                       f"captured reading a host staging buffer again at every launch; copy the data "
                       f"before capturing, into a device array that the graph reads")


def _capture_ufunc(cap, ufunc, method, inputs, out, kwargs):
    name = f"cupy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    if ufunc is _np.matmul and _has_float(inputs):
        raise NotImplementedError(_CUBLAS_MSG)
    kwargs = {k: v for k, v in kwargs.items() if k != "out"}     # (out: the device arrays)
    if out is not None and not isinstance(out, tuple):
        out = (out,)

    def run(*ins, out=None, **kw):
        first = next((x for x in ins + (out or ()) if isinstance(x, ndarray)), None)
        return ndarray.__array_ufunc__(first, ufunc, method, *ins, out=out, **kw)
    if out is not None or method == "at":
        _record(cap, name, run, *inputs, out=out, **kwargs)
        if method == "at":
            return None
        return out[0] if len(out) == 1 else out
    return _captured_call(cap, name, run, *inputs, **kwargs)


def _capture_function(cap, name, call, args, kwargs, module):
    """A cupy function (or ndarray method) called during capture: recorded, or _RUN."""
    if name in _METADATA:
        return _RUN
    if (name in _CUBLAS or module.startswith("numpy.linalg")) and _has_float((args, kwargs)):
        raise NotImplementedError(_CUBLAS_MSG)
    out = kwargs.get("out")
    if name in _IN_PLACE or isinstance(out, ndarray):
        _record(cap, name, call, *args, **kwargs)
        return out
    return _captured_call(cap, name, call, *args, **kwargs)


class _Graph:
    """cupy.cuda.Graph: the recorded operations, run in order by launch()."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("currently this class cannot be initiated by the user and must be "
                                  "created via stream capture")

    @classmethod
    def _from_ops(cls, ops):
        g = cls.__new__(cls)
        g._ops = ops
        return g

    def _check_memory(self):
        for what, _fn, _packed, refs in self._ops:
            for r in refs:
                if not r.alive():
                    raise GraphMemoryError(
                        f"fake cupy: Graph.launch(): the captured '{what}' uses a {r.dtype} array of "
                        f"shape {r.shape} whose memory went back to the default memory pool after it "
                        f"was captured; a GPU replay would write into memory the pool hands out again. "
                        f"Keep every array the graph uses alive, or allocate during capture from a "
                        f"private pool: with cupy.cuda.using_allocator(pool.malloc) (the pool outliving "
                        f"the graph)")

    def launch(self, stream=None):
        if _capture is not None and not _suspended():
            raise NotImplementedError("fake cupy: launching a graph inside a capture (a child graph) "
                                      "is not emulated")
        self._check_memory()
        global LAUNCHES_OF_GRAPHS
        LAUNCHES_OF_GRAPHS += 1
        with _Suspend():
            for what, fn, packed, _refs in self._ops:
                args, kwargs = _unpack(packed)
                fn(*args, **kwargs)

    def upload(self, stream=None):
        self._check_memory()

    def __len__(self):
        return len(self._ops)


LAUNCHES_OF_GRAPHS = 0                 # Graph.launch() calls (tests count replays with it)


def _begin_capture(stream, mode):
    global _capture
    if stream.ptr == 0:
        raise RuntimeError("cannot capture on the default (legacy) stream")
    if _capture is not None:
        raise _runtime.CUDARuntimeError("cudaErrorIllegalState: a stream capture is already in progress "
                                        "(fake cupy: one capture at a time)")
    _capture = _Capture(stream)


def _end_capture(stream):
    global _capture
    cap = _capture
    if cap is None or cap.stream is not stream:
        raise _runtime.CUDARuntimeError("cudaErrorIllegalState: the stream is not capturing")
    _capture = None
    if cap.invalid is not None:
        raise _runtime.CUDARuntimeError(
            f"cudaErrorStreamCaptureInvalidated: operation failed due to a previous error during capture "
            f"(fake cupy: {cap.invalid})")
    return _Graph._from_ops(cap.ops)


# ------------------------------------------------------------------ ndarray
class _MemoryPointer:
    __slots__ = ("ptr", "device_id", "_owner")

    def __init__(self, ptr, owner):
        self.ptr = ptr
        self.device_id = 0
        self._owner = owner

    def __int__(self):
        return self.ptr

    def __repr__(self):
        return f"<fake cupy MemoryPointer 0x{self.ptr:x}>"


class _Flags:
    """CuPy's flags: c_contiguous, f_contiguous, owndata -- nothing about writeability."""
    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, c, f, own):
        self.c_contiguous, self.f_contiguous, self.owndata = c, f, own

    def __getitem__(self, name):
        key = {"C_CONTIGUOUS": "c_contiguous", "C": "c_contiguous", "F_CONTIGUOUS": "f_contiguous",
               "F": "f_contiguous", "OWNDATA": "owndata"}.get(name)
        if key is None:
            raise KeyError(f"{name} is not defined for cupy.ndarray.flags")
        return getattr(self, key)

    def __repr__(self):
        return f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}\n  OWNDATA : {self.owndata}"


def _unwrap(x):
    """Fake arrays -> plain NumPy views (recursively through lists/tuples/dicts)."""
    if isinstance(x, ndarray):
        return x.view(_np.ndarray)
    if isinstance(x, list):
        return [_unwrap(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _find_host_array(x, depth=0):
    """A NumPy ndarray (not a device array) somewhere in x, else None."""
    if isinstance(x, ndarray):
        return None
    if isinstance(x, _np.ndarray):
        return x
    if depth < 3 and isinstance(x, (list, tuple)):
        for v in x:
            h = _find_host_array(v, depth + 1)
            if h is not None:
                return h
    if depth < 1 and isinstance(x, dict):
        for v in x.values():
            h = _find_host_array(v, depth + 1)
            if h is not None:
                return h
    return None


def _refuse_host(what, args, kwargs=None):
    h = _find_host_array(args)
    if h is None and kwargs:
        h = _find_host_array(tuple(kwargs.values()))
    if h is not None:
        raise TypeError(f"Unsupported type {type(h)} (a NumPy array given to {what}; "
                        f"real CuPy refuses host arrays here: use cupy.asarray first)")


def _wrap(r):
    """Results of NumPy computations -> device arrays: fresh arrays are copied into
    guarded allocations, views stay views, NumPy scalars become 0-d arrays."""
    if isinstance(r, ndarray):
        return r
    if isinstance(r, _np.ndarray):
        if r.flags.owndata or _np.ndarray.base.__get__(r) is None:
            out = _alloc(r.shape, r.dtype)
            _np.copyto(out.view(_np.ndarray), r, casting="no")
            return out
        return r.view(ndarray)
    if isinstance(r, _np.generic):
        out = _alloc((), r.dtype)
        out.view(_np.ndarray)[()] = r
        return out
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


class ndarray(_np.ndarray):
    """cupy.ndarray, emulated (see the module docstring)."""
    __array_priority__ = 100.0

    def __array_finalize__(self, obj):
        pass

    # ---- NumPy protocol: behave like CuPy's __array_ufunc__ / __array_function__
    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        for x in inputs:
            if isinstance(x, ndarray) or isinstance(x, (_np.generic, int, float, complex, bool)):
                continue
            raise TypeError(f"Unsupported type {type(x)} (operand of cupy ufunc {ufunc.__name__}.{method}: "
                            f"real CuPy does not mix device arrays with host arrays or lists)")
        if out is not None:
            outs = out if isinstance(out, tuple) else (out,)
            for o in outs:
                if o is not None and not isinstance(o, ndarray):
                    raise TypeError(f"Unsupported type {type(o)} as out= of cupy ufunc {ufunc.__name__}")
            kwargs["out"] = tuple(None if o is None else o.view(_np.ndarray) for o in outs)
        if "where" in kwargs and isinstance(kwargs["where"], _np.ndarray) and not isinstance(kwargs["where"], ndarray):
            raise TypeError("Unsupported type numpy.ndarray as where=")
        cap = _recorder(f"cupy.{ufunc.__name__}")
        if cap is not None:
            return _capture_ufunc(cap, ufunc, method, inputs, out, kwargs)
        if _PROMOTION_REPORT is not None and method == "__call__":
            _note_legacy_promotion(ufunc, inputs)
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        if _DIFFERENT_ROUNDING and method == "__call__" and ufunc is _np.matmul and not out and not kwargs:
            return _wrap(_gpu_matmul(*_unwrap(inputs)))
        if (_DIFFERENT_ROUNDING and method == "reduce" and ufunc is _np.add and len(inputs) == 1
                and inputs[0].dtype == _np.float32 and kwargs.get("dtype") in (None, _np.float32)
                and "initial" not in kwargs and "where" not in kwargs):
            kw = dict(kwargs, dtype=_np.float64)
            kw.pop("out", None)
            r = _np.add.reduce(inputs[0].view(_np.ndarray), **kw).astype(_np.float32)
            if out is not None:
                outs[0].view(_np.ndarray)[...] = r
                return outs[0]
            return _wrap(r)
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if method == "at":
            return None
        if out is not None:
            return outs[0] if len(outs) == 1 else outs
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        name = func.__name__
        module = getattr(func, "__module__", "") or ""
        if module.startswith(("numpy.linalg", "numpy.fft")):
            pass                                  # cupy.linalg / cupy.fft mirror these
        elif name not in _CUPY_NAMES and name not in _ARRAY_FUNCTION_EXTRA:
            return NotImplemented            # NumPy then raises TypeError, as with CuPy
        if name not in _HOST_INPUT_OK:
            _refuse_host(f"numpy.{name} on device arrays (dispatched to cupy.{name})", args, kwargs)

        def call(*a, **k):
            out = k.get("out")
            result = func(*_unwrap(a), **_unwrap(k))
            return out if isinstance(out, ndarray) else _wrap(result)
        cap = _recorder(f"cupy.{name}")
        if cap is not None:
            r = _capture_function(cap, name, call, args, kwargs, module)
            if r is not _RUN:
                return r
        return call(*args, **kwargs)

    # ---- indexing: a scalar result is a 0-d view, as in CuPy
    def __getitem__(self, key):
        cap = _recorder("indexing")
        if cap is not None:
            return _captured_call(cap, "a[index]", ndarray.__getitem__, self, key)
        key = _index_key(key)
        r = _np.ndarray.__getitem__(self, key)
        if isinstance(r, ndarray):
            return r
        if isinstance(r, _np.ndarray):           # advanced indexing made a fresh array
            return _wrap(r)
        # a scalar: redo as a 0-d view
        k = key if isinstance(key, tuple) else (key,)
        return _np.ndarray.__getitem__(self, k + (Ellipsis,))

    def __setitem__(self, key, value):
        cap = _recorder("a[index] = value")
        if cap is not None:
            if isinstance(value, (list, tuple, _np.ndarray)) and not isinstance(value, ndarray):
                _refuse_host_copy("a[index] = host data")
            _record(cap, "a[index] = value", ndarray.__setitem__, self, key, value)
            return
        if isinstance(value, (list, tuple)) and _find_host_array(value) is None:
            value = _np.asarray(value)
        _np.ndarray.__setitem__(self, _index_key(key), value.view(_np.ndarray) if isinstance(value, ndarray) else value)

    # ---- CuPy-only attributes
    @property
    def data(self):
        return _MemoryPointer(self.ctypes.data, self)

    @property
    def device(self):
        return cuda.Device(0)

    @property
    def flags(self):
        f = _np.ndarray.flags.__get__(self)
        return _Flags(f.c_contiguous, f.f_contiguous, self.__dict__.get("_guard") is not None or f.owndata)

    @property
    def base(self):
        if self.__dict__.get("_guard") is not None:
            return None                             # owns its memory
        return _root(_np.ndarray.base.__get__(self))

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ctypes.data, False),
                "strides": None if _np.ndarray.flags.__get__(self).c_contiguous else self.strides,
                "version": 3}

    def get(self, stream=None, order="C", out=None, blocking=True):
        _host_sync("ndarray.get() (a device-to-host copy)")
        if out is not None:
            if type(out) is not _np.ndarray:
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            out[...] = self.view(_np.ndarray)
            return out
        return _np.array(self.view(_np.ndarray), order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, _np.ndarray) or isinstance(arr, ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self.shape:
            raise ValueError("Shape mismatch")
        if _recorder("ndarray.set") is not None:
            _refuse_host_copy("ndarray.set(host array)")
        self.view(_np.ndarray)[...] = arr

    # ---- host reads: a device-to-host copy that waits for the device
    def item(self, *args):
        _host_sync("ndarray.item()")
        return _np.ndarray.item(self.view(_np.ndarray), *args)

    def tolist(self):
        _host_sync("ndarray.tolist()")
        return _np.ndarray.tolist(self.view(_np.ndarray))

    def __float__(self):
        _host_sync("float(a)")
        return float(self.view(_np.ndarray))

    def __int__(self):
        _host_sync("int(a)")
        return int(self.view(_np.ndarray))

    def __index__(self):
        _host_sync("operator.index(a)")
        return _np.ndarray.__index__(self.view(_np.ndarray))

    def __complex__(self):
        _host_sync("complex(a)")
        return complex(self.view(_np.ndarray))

    def __bool__(self):
        _host_sync("bool(a)")
        return bool(self.view(_np.ndarray))

    # ---- copies and casts: device work, so recorded during capture
    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        cap = _recorder("ndarray.astype")
        if cap is None:
            return _np.ndarray.astype(self, dtype, order=order, casting=casting, subok=subok, copy=copy)
        return _captured_call(cap, "astype", lambda s: _wrap(_np.ndarray.astype(
            s.view(_np.ndarray), dtype, order=order, casting=casting, copy=copy)), self)

    def copy(self, order="C"):
        cap = _recorder("ndarray.copy")
        if cap is None:
            return _np.ndarray.copy(self, order=order)
        return _captured_call(cap, "copy", lambda s: _wrap(_np.ndarray.copy(s.view(_np.ndarray), order=order)),
                              self)

    def fill(self, value):
        cap = _recorder("ndarray.fill")
        if cap is None:
            return _np.ndarray.fill(self, value)
        _record(cap, "fill", lambda s, v: _np.ndarray.fill(s.view(_np.ndarray), _unwrap(v)), self, value)

    def _maybe_copy(name):
        def method(self, *args, **kwargs):
            cap = _recorder(f"ndarray.{name}")
            fn = getattr(_np.ndarray, name)
            if cap is None:
                return fn(self, *args, **kwargs)
            return _captured_call(cap, name, lambda s, *a, **k: fn(s, *a, **k), self, *args, **kwargs)
        method.__name__ = name
        return method

    for _name in ("reshape", "ravel", "flatten"):
        locals()[_name] = _maybe_copy(_name)
    del _name, _maybe_copy

    def toDlpack(self):
        raise NotImplementedError("fake cupy: no DLPack")

    # ---- NumPy methods whose results NumPy would hand out as scalars or base arrays
    def _wrapped(name):
        def call(self, *args, **kwargs):
            out = kwargs.get("out")
            r = getattr(_np.ndarray, name)(self.view(_np.ndarray), *_unwrap(args), **_unwrap(kwargs))
            return out if isinstance(out, ndarray) else _wrap(r)

        def method(self, *args, **kwargs):
            _refuse_host(f"cupy.ndarray.{name}", args, kwargs)
            cap = _recorder(f"cupy.ndarray.{name}")
            if cap is not None:
                r = _capture_function(cap, name, call, (self,) + args, kwargs, "")
                if r is not _RUN:
                    return r
            return call(self, *args, **kwargs)
        method.__name__ = name
        return method

    for _name in ("argmax", "argmin", "argsort", "nonzero", "take", "dot", "searchsorted", "trace",
                  "repeat", "compress", "choose", "cumsum", "cumprod", "round", "clip", "sum", "prod",
                  "mean", "var", "std", "max", "min", "all", "any", "ptp", "argpartition"):
        if hasattr(_np.ndarray, _name):
            locals()[_name] = _wrapped(_name)
    del _name, _wrapped

    def __array__(self, dtype=None, copy=None):
        # NumPy does not call this for a subclass in np.asarray(), but other paths do.
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __repr__(self):
        _host_sync("repr(a)")
        return repr(self.view(_np.ndarray))

    def __str__(self):
        _host_sync("str(a)")
        return str(self.view(_np.ndarray))

    def __format__(self, spec):
        _host_sync("format(a)")
        return format(self.view(_np.ndarray) if self.ndim else self.view(_np.ndarray)[()], spec)

    def __reduce__(self):
        return (_rebuild, (self.get(),))

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        for i in range(self.shape[0]):
            yield self[i]


def _rebuild(host):
    return asarray(host)


def _index_key(key):
    """Indices: NumPy arrays and lists are accepted (CuPy copies them to the device)."""
    return _unwrap(key)


# NumPy functions dispatched through __array_function__ that exist in CuPy under
# another spelling (or as ndarray methods only)
_ARRAY_FUNCTION_EXTRA = frozenset({"amax", "amin", "around", "round_", "copyto", "result_type", "can_cast",
                                   "may_share_memory", "shares_memory", "atleast_1d", "ndim", "shape", "size",
                                   "iscomplexobj", "isrealobj", "array_equal", "allclose", "isclose",
                                   "ravel", "reshape", "transpose", "swapaxes", "squeeze", "moveaxis"})


# ------------------------------------------------------------ array creation
def empty(shape, dtype=float, order="C"):
    return _alloc(shape, dtype)


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    _need_device(prototype, "empty_like")
    return _alloc(prototype.shape if shape is None else shape, prototype.dtype if dtype is None else dtype)


def _filled(shape, dtype, value):
    a = _alloc(shape, dtype)
    cap = _recorder("a fill")
    if cap is not None:                  # a fill kernel, recorded
        _record(cap, "fill", lambda o, v: o.view(_np.ndarray).__setitem__(Ellipsis, _unwrap(v)), a, value)
        return a
    a.view(_np.ndarray)[...] = _unwrap(value)
    return a


def zeros(shape, dtype=float, order="C"):
    return _filled(shape, dtype, 0)


def ones(shape, dtype=float, order="C"):
    return _filled(shape, dtype, 1)


def full(shape, fill_value, dtype=None, order="C"):
    if isinstance(fill_value, _np.ndarray) and not isinstance(fill_value, ndarray):
        raise TypeError("Unsupported type numpy.ndarray as the fill value of cupy.full")
    if dtype is None:
        dtype = fill_value.dtype if isinstance(fill_value, ndarray) else _np.asarray(fill_value).dtype
    return _filled(shape, dtype, fill_value)


def _need_device(a, what):
    if not isinstance(a, ndarray):
        raise TypeError(f"cupy.{what}: expected cupy.ndarray, got {type(a)}")


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    _need_device(a, "zeros_like")
    return _filled(a.shape if shape is None else shape, a.dtype if dtype is None else dtype, 0)


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    _need_device(a, "ones_like")
    return _filled(a.shape if shape is None else shape, a.dtype if dtype is None else dtype, 1)


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    _need_device(a, "full_like")
    return full(a.shape if shape is None else shape, fill_value, a.dtype if dtype is None else dtype)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        if copy is False and (dtype is None or _np.dtype(dtype) == obj.dtype) and obj.ndim >= ndmin:
            return obj
        cap = _recorder("cupy.array (a device-to-device copy)")
        if cap is not None:
            return _captured_call(cap, "cupy.array", lambda o: array(o, dtype=dtype, order=order, ndmin=ndmin),
                                  obj)
        src = obj.view(_np.ndarray)
    else:
        if _recorder("cupy.array") is not None:
            if _find_host_array(obj) is not None or not isinstance(obj, (list, tuple)) or not all(
                    isinstance(v, ndarray) for v in obj):
                _refuse_host_copy(f"cupy.array/asarray of host data ({type(obj).__name__})")
        src = _unwrap(obj)          # a list of device arrays is accepted by CuPy too
    host = _np.array(src, dtype=dtype, copy=True, ndmin=ndmin, order="C" if order in ("K", "A", None) else order)
    if host.dtype.hasobject:
        raise ValueError(f"Unsupported dtype object (from {type(obj)})")
    out = _alloc(host.shape, host.dtype)
    out.view(_np.ndarray)[...] = host
    return out


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    if isinstance(a, ndarray) and (dtype is None or _np.dtype(dtype) == a.dtype) and copy is not True:
        return a
    if copy is False:
        raise ValueError("cupy.asarray(copy=False): a copy is needed")
    return array(a, dtype=dtype, copy=True, order=order or "K")


asanyarray = asarray


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"Argument 'a' has incorrect type (expected cupy._core.core._ndarray_base, "
                        f"got {type(a).__name__})")
    dtype = a.dtype if dtype is None else _np.dtype(dtype)
    if a.ndim == 0:
        a = a.reshape(1)
        if dtype == a.dtype:
            return a
    if dtype == a.dtype and _np.ndarray.flags.__get__(a).c_contiguous:
        return a
    out = _alloc(a.shape, dtype)
    cap = _recorder("cupy.ascontiguousarray (a copy)")
    if cap is not None:
        _record(cap, "ascontiguousarray", lambda o, s: o.view(_np.ndarray).__setitem__(
            Ellipsis, s.view(_np.ndarray)), out, a)
        return out
    out.view(_np.ndarray)[...] = a.view(_np.ndarray)
    return out


def asfortranarray(a, dtype=None):
    _need_device(a, "asfortranarray")
    return _wrap(_np.asfortranarray(a.view(_np.ndarray), dtype=dtype).copy(order="F"))


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        _host_sync("cupy.asnumpy (a device-to-host copy)")
        return a.get(stream=stream, order=order, out=out)
    r = _np.asarray(a, order=order)
    if out is not None:
        out[...] = r
        return out
    return r


def get_array_module(*args):
    for a in args:
        if isinstance(a, ndarray):
            return sys.modules[__name__]
    return _np


def is_available():
    return True


def show_config(*a, **k):
    print("fake cupy (CPU emulation); build:", _BUILD)


def get_default_memory_pool():
    return _memory_pool


def get_default_pinned_memory_pool():
    return _pinned_pool


class _MemoryPool:
    """Numbers for code that reports memory: bytes of the live guarded allocations."""

    def used_bytes(self):
        with _lock:
            return int(sum(r._fake_guard[1] for r in list(_live.values())))

    def total_bytes(self):
        return self.used_bytes()

    def free_bytes(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def n_free_blocks(self):
        return 0

    def set_limit(self, size=None, fraction=None):
        pass

    def get_limit(self):
        return 0

    def malloc(self, size):
        raise NotImplementedError("fake cupy: MemoryPool.malloc is not callable here; use it as an "
                                  "allocator (cupy.cuda.using_allocator(pool.malloc))")


_memory_pool = _MemoryPool()
_pinned_pool = _MemoryPool()


# ----------------------------------------------- everything else: NumPy, wrapped
class _Ufunc:
    """A cupy ufunc: NumPy's, with device-array rules."""

    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__
        self.nin, self.nout, self.nargs = uf.nin, uf.nout, uf.nargs

    def _run(self, method, args, kwargs):
        if not any(isinstance(a, ndarray) for a in args):
            raise TypeError(f"Unsupported type(s) {[type(a).__name__ for a in args]} for cupy.{self.__name__}: "
                            f"needs a cupy.ndarray")
        return getattr(self._uf, method)(*args, **kwargs)          # -> ndarray.__array_ufunc__

    def __call__(self, *args, **kwargs):
        if not any(isinstance(a, ndarray) for a in args):
            # all scalars: CuPy computes on the device and returns a 0-d array
            for a in args:
                if not isinstance(a, (_np.generic, int, float, complex, bool)):
                    raise TypeError(f"Unsupported type {type(a)} for cupy.{self.__name__}")
            out = kwargs.get("out")
            r = self._uf(*args, **{k: v for k, v in kwargs.items() if k != "out"})
            if out is not None:
                o = out[0] if isinstance(out, tuple) else out
                o[...] = r
                return o
            if _recorder(f"cupy.{self.__name__}") is not None:
                return _filled((), _np.asarray(r).dtype, r)
            return _wrap(r)
        return self._uf(*args, **kwargs)

    def reduce(self, *args, **kwargs):
        return self._run("reduce", args, kwargs)

    def accumulate(self, *args, **kwargs):
        return self._run("accumulate", args, kwargs)

    def outer(self, *args, **kwargs):
        return self._run("outer", args, kwargs)

    def at(self, *args, **kwargs):
        return self._run("at", args, kwargs)

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"


def _function(fn, name):
    def call(*args, **kwargs):
        out = kwargs.get("out")
        r = fn(*_unwrap(args), **_unwrap(kwargs))
        if isinstance(out, ndarray):
            return out
        return _wrap(r)

    def wrapper(*args, **kwargs):
        if name not in _HOST_INPUT_OK:
            _refuse_host(f"cupy.{name}", args, kwargs)
        cap = _recorder(f"cupy.{name}")
        if cap is not None:
            r = _capture_function(cap, name, call, args, kwargs, "")
            if r is not _RUN:
                return r
        return call(*args, **kwargs)
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = f"cupy.{name} (fake: numpy.{name} on the emulated device)"
    return wrapper


_SUBMODULE_NAMES = {"random", "cuda", "linalg", "fft", "testing", "polynomial"}


def __getattr__(name):
    if name.startswith("__") or name not in _CUPY_NAMES or name in _SUBMODULE_NAMES:
        raise AttributeError(f"module 'cupy' has no attribute {name!r}"
                             + ("" if name in _CUPY_NAMES else " (not in CuPy 14 either)"))
    missing = object()
    target = getattr(_np, name, missing)
    if target is missing:
        raise AttributeError(f"fake cupy: {name!r} exists in CuPy but is not emulated")
    if isinstance(target, _np.ufunc):
        value = _Ufunc(target)
    elif callable(target) and not isinstance(target, type) and not isinstance(target, _np.dtype):
        value = _function(target, name)
    else:
        value = target                              # dtypes, scalar types, constants, finfo ...
    globals()[name] = value
    return value


_K_TILE = 32


def _gpu_matmul(a, b):
    """a @ b rounded unlike the CPU's BLAS (see _DIFFERENT_ROUNDING): the K dimension in
    tiles of 32, each tile's product added in turn to a running float32/float64 sum, as
    a GPU GEMM's threads accumulate in registers.  Same precision class as cuBLAS, not
    the same bits as the CPU's BLAS."""
    a, b = _np.asarray(a), _np.asarray(b)
    if (not _DIFFERENT_ROUNDING or a.dtype != b.dtype or a.dtype.kind != "f" or a.ndim < 2 or b.ndim < 2
            or a.shape[-1] <= _K_TILE):
        return _np.matmul(a, b)
    k = a.shape[-1]
    out = None
    for k0 in range(0, k, _K_TILE):
        part = _np.matmul(a[..., k0:k0 + _K_TILE], b[..., k0:k0 + _K_TILE, :])
        out = part if out is None else _np.add(out, part, out=out)
    return out


def matmul(a, b, out=None, **kwargs):
    for x, what in ((a, "a"), (b, "b")):
        if not isinstance(x, ndarray):
            raise TypeError(f"Argument '{what}' has incorrect type (expected cupy.ndarray, got {type(x).__name__})")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("Scalar operands are not allowed, use '*' instead")
    if out is not None and not isinstance(out, ndarray):
        raise TypeError(f"out must be a cupy.ndarray, got {type(out).__name__}")
    cap = _recorder("cupy.matmul")
    if cap is not None:
        return _capture_function(cap, "matmul", matmul, (a, b), {"out": out} if out is not None else {}, "")
    r = _gpu_matmul(a.view(_np.ndarray), b.view(_np.ndarray))
    if out is None:
        return _wrap(r)
    if out.shape != r.shape:
        raise ValueError(f"Output array has an invalid size: out {out.shape}, result {r.shape}")
    out.view(_np.ndarray)[...] = r                    # CuPy casts into out (elementwise_copy)
    return out


# -------------------------------------------------------------------- random
def _make_random():
    m = types.ModuleType("cupy.random", "cupy.random (fake): Generator API and the legacy functions")

    class BitGenerator:
        def __init__(self, seed=None):
            self._seed_seq = seed if isinstance(seed, _np.random.SeedSequence) else _np.random.SeedSequence(seed)

    class XORWOW(BitGenerator):
        pass

    class Generator:
        """cupy.random.Generator: the methods CuPy 14 has (see cupy/random/_generator_api.pyx)."""

        def __init__(self, bit_generator):
            if not isinstance(bit_generator, BitGenerator):
                raise TypeError("Generator needs a cupy.random.BitGenerator")
            self.bit_generator = bit_generator
            self._rng = _np.random.Generator(_np.random.PCG64(bit_generator._seed_seq))

        @staticmethod
        def _float_dtype(dtype, what):
            d = _np.dtype(dtype)
            if d.char not in "fd":
                raise TypeError(f"Unsupported dtype {d.name} for {what}")
            return d

        @staticmethod
        def _check_out(out, dtype, size):
            if not isinstance(out, ndarray):
                raise TypeError("out must be a cupy.ndarray")
            if out.dtype != _np.dtype(dtype):
                raise TypeError(f"Supplied output array has the wrong type. Expected {_np.dtype(dtype).name}, "
                                f"got {out.dtype.name}")
            if size is not None and _shape_tuple(size) != out.shape:
                raise ValueError("size must match out.shape when used together")

        def random(self, size=None, dtype=_np.float64, out=None):
            d = self._float_dtype(dtype, "random")
            r = _wrap(_np.asarray(self._rng.random(size, dtype=d)))
            if out is not None:
                self._check_out(out, d, size)
                out[...] = r
                return out
            return r

        def uniform(self, low=0.0, high=1.0, size=None, dtype=_np.float64):
            low, high = _unwrap(low), _unwrap(high)
            d = self._float_dtype(dtype, "uniform")
            return _wrap(_np.asarray(self._rng.uniform(low, high, size)).astype(d))

        def integers(self, low, high=None, size=None, dtype=_np.int64, endpoint=False):
            if high is None:
                lo, hi = 0, int(low)
            else:
                lo, hi = int(low), int(high)      # CuPy: int() of the bounds -- no arrays
            if not endpoint:
                hi -= 1
            if lo > hi:
                raise ValueError("low >= high")
            info = _np.iinfo(dtype)
            if lo < info.min or hi > info.max:
                raise ValueError(f"bounds out of range for {_np.dtype(dtype).name}")
            r = self._rng.integers(lo, hi, size=size, dtype=_np.int64, endpoint=True).astype(dtype)
            return _wrap(_np.asarray(r))        # size=None: a 0-d array, not an int

        def standard_normal(self, size=None, dtype=_np.float64, out=None):
            d = self._float_dtype(dtype, "standard_normal")
            r = _wrap(_np.asarray(self._rng.standard_normal(size, dtype=d)))
            if out is not None:
                self._check_out(out, d, size)
                out[...] = r
                return out
            return r

        def standard_exponential(self, size=None, dtype=_np.float64, method="inv", out=None):
            d = self._float_dtype(dtype, "standard_exponential")
            r = _wrap(_np.asarray(self._rng.standard_exponential(size)).astype(d))
            if out is not None:
                out[...] = r
                return out
            return r

        def exponential(self, scale=1.0, size=None):
            return self.standard_exponential(size) * scale

        def gamma(self, shape, scale=1.0, size=None):
            return _wrap(_np.asarray(self._rng.gamma(_unwrap(shape), _unwrap(scale), size)))

        def standard_gamma(self, shape, size=None, dtype=_np.float64, out=None):
            return _wrap(_np.asarray(self._rng.standard_gamma(_unwrap(shape), size)).astype(dtype))

        def beta(self, a, b, size=None, dtype=_np.float64):
            return _wrap(_np.asarray(self._rng.beta(_unwrap(a), _unwrap(b), size)).astype(dtype))

        def binomial(self, n, p, size=None):
            return _wrap(_np.asarray(self._rng.binomial(_unwrap(n), _unwrap(p), size)))

        def poisson(self, lam=1.0, size=None):
            return _wrap(_np.asarray(self._rng.poisson(_unwrap(lam), size)))

    def _no_capture(fn):
        def wrapper(*args, **kwargs):
            # CuPy: cuRAND's setStream refuses a capturing stream (cupy_backends/cuda/libs/curand)
            if _recorder("cupy.random") is not None:
                raise NotImplementedError(_CURAND_MSG)
            return fn(*args, **kwargs)
        wrapper.__name__ = fn.__name__
        return wrapper

    for _n in ("random", "uniform", "integers", "standard_normal", "standard_exponential", "exponential",
               "gamma", "standard_gamma", "beta", "binomial", "poisson"):
        setattr(Generator, _n, _no_capture(getattr(Generator, _n)))

    def default_rng(seed=None):
        if isinstance(seed, Generator):
            return seed
        if isinstance(seed, BitGenerator):
            return Generator(seed)
        if isinstance(seed, ndarray):
            seed = seed.get()
        return Generator(XORWOW(seed))

    legacy = _np.random.RandomState(0)

    def _legacy(name):
        fn = getattr(legacy, name)

        def wrapper(*args, **kwargs):
            if _recorder("cupy.random") is not None:
                raise NotImplementedError(_CURAND_MSG)
            dtype = kwargs.pop("dtype", None)
            r = fn(*_unwrap(args), **kwargs)
            r = _np.asarray(r)
            if dtype is not None:
                r = r.astype(dtype)
            return _wrap(r)
        wrapper.__name__ = name
        return wrapper

    for name in ("rand", "randn", "random_sample", "uniform", "normal", "standard_normal", "randint",
                 "permutation", "choice", "beta", "binomial", "gamma", "poisson", "exponential"):
        setattr(m, name, _legacy(name))
    m.random = m.random_sample

    def seed(s=None):
        legacy.seed(s)

    def shuffle(a):
        if not isinstance(a, ndarray):
            raise TypeError("The array must be cupy.ndarray")
        legacy.shuffle(a.view(_np.ndarray))

    m.seed, m.shuffle = seed, shuffle
    m.default_rng, m.Generator, m.BitGenerator, m.XORWOW = default_rng, Generator, BitGenerator, XORWOW
    m.RandomState = None
    return m


random = _make_random()


# ---------------------------------------------------------------------- cuda
def _mem_info():
    """(free, total) bytes of the emulated device: total minus the live allocations."""
    return max(0, _MEMORY - _memory_pool.used_bytes()), _MEMORY


def _make_cuda():
    cuda_mod = types.ModuleType("cupy.cuda", "cupy.cuda (fake): one device, no asynchrony")

    class CUDARuntimeError(RuntimeError):
        pass

    runtime = types.ModuleType("cupy.cuda.runtime")
    runtime.CUDARuntimeError = CUDARuntimeError
    runtime.is_hip = False
    runtime.getDeviceCount = lambda: 1
    runtime.getDevice = lambda: 0
    runtime.setDevice = lambda i: None if i == 0 else (_ for _ in ()).throw(CUDARuntimeError("invalid device"))
    runtime.deviceSynchronize = lambda: _host_sync("device synchronize (cudaDeviceSynchronize)")
    runtime.runtimeGetVersion = lambda: 13000
    runtime.driverGetVersion = lambda: 13000
    runtime.memGetInfo = lambda: _mem_info()
    runtime.getDeviceProperties = lambda i: {"name": b"CUDA emulator (CPU)", "totalGlobalMem": _MEMORY,
                                             "multiProcessorCount": 1, "major": 8, "minor": 0,
                                             "maxThreadsPerBlock": 1024, "warpSize": 32}

    class Device:
        def __init__(self, device=None):
            self.id = 0 if device is None else int(device)
            if self.id != 0:
                raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

        def synchronize(self):
            _host_sync("device synchronize (Device.synchronize)")

        def use(self):
            pass

        @property
        def mem_info(self):
            return _mem_info()

        @property
        def compute_capability(self):
            return "80"

        @property
        def attributes(self):
            return {"MultiProcessorCount": 1, "MaxThreadsPerBlock": 1024}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __eq__(self, other):
            return isinstance(other, Device) and other.id == self.id

        def __hash__(self):
            return hash(("Device", self.id))

        def __repr__(self):
            return f"<CUDA Device {self.id}>"

    _stream_ptrs = iter(range(0x5000, 1 << 40, 0x100))

    class Stream:
        """cupy.cuda.Stream: no asynchrony (work runs at once, in order), but the current
        stream is tracked (``with stream:``, ``use()``) and a stream can capture."""
        null = None

        def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
            self.ptr = 0 if null else next(_stream_ptrs)
            self.non_blocking = bool(non_blocking) and not null
            self.device_id = -1 if null else 0

        def synchronize(self):
            if _capture is not None and _capture.stream is self:
                _host_sync("Stream.synchronize() of the capturing stream")

        def use(self):
            stack = getattr(_tls, "streams", None)
            if stack is None:
                stack = _tls.streams = []
            if stack:
                stack[-1] = self
            else:
                stack.append(self)
            return self

        def __enter__(self):
            stack = getattr(_tls, "streams", None)
            if stack is None:
                stack = _tls.streams = []
            stack.append(self)
            return self

        def __exit__(self, *exc):
            _tls.streams.pop()
            return False

        def begin_capture(self, mode=None):
            """Start recording the work issued on this stream (see the stream-capture section)."""
            _begin_capture(self, mode)

        def end_capture(self):
            return _end_capture(self)

        def is_capturing(self):
            return _capture is not None and _capture.stream is self

        def __repr__(self):
            return f"<fake cupy Stream 0x{self.ptr:x}{' (null)' if self.ptr == 0 else ''}>"

        def record(self, event=None):
            event = event or Event()
            event.record(self)
            return event

        def wait_event(self, event):
            pass

    Stream.null = Stream(null=True)

    import time as _time

    class Event:
        def __init__(self, block=False, disable_timing=False, interprocess=False):
            self._t = None
            self.disable_timing = disable_timing

        def record(self, stream=None):
            self._t = _time.perf_counter()

        def synchronize(self):
            pass

        @property
        def done(self):
            return True

    def get_elapsed_time(start_event, end_event):
        if start_event._t is None or end_event._t is None:
            raise CUDARuntimeError("cudaErrorInvalidResourceHandle: event not recorded")
        return (end_event._t - start_event._t) * 1000.0          # milliseconds

    def get_current_stream(device_id=None):
        return _current_stream()

    class _AllocatorScope:
        def __init__(self, allocator):
            self.allocator = allocator

        def __enter__(self):
            self.previous = getattr(_tls, "allocator", None)
            _tls.allocator = self.allocator
            return self

        def __exit__(self, *exc):
            _tls.allocator = self.previous
            return False

    def using_allocator(allocator=None):
        """Allocations of this thread go to ``allocator`` (e.g. a private pool's malloc)."""
        _check_allocator(allocator)
        return _AllocatorScope(allocator)

    def set_allocator(allocator=None):
        _check_allocator(allocator)
        if getattr(_tls, "allocator", None) is not None:
            raise ValueError("Can't change the global allocator inside `using_allocator` context manager")
        _global_allocator[0] = allocator

    def get_allocator():
        return getattr(_tls, "allocator", None) or _global_allocator[0] or _memory_pool.malloc

    def _check_allocator(allocator):
        owner = getattr(allocator, "__self__", None)
        if allocator is not None and not (isinstance(owner, _MemoryPool) and allocator.__name__ == "malloc"):
            raise NotImplementedError("fake cupy: only a MemoryPool's malloc (or None) is emulated as an "
                                      "allocator")

    class MemoryPool(_MemoryPool):
        """A private pool: it keeps every block it handed out until free_all_blocks() finds
        it unused (CuPy: free blocks stay in the pool's free lists until then)."""

        def __init__(self, allocator=None):
            self._blocks = []

        def used_bytes(self):
            return int(sum(b.nbytes for b in self._blocks if sys.getrefcount(b) > 3))

        def total_bytes(self):
            return int(sum(b.nbytes for b in self._blocks))

        def free_bytes(self):
            return self.total_bytes() - self.used_bytes()

        def free_all_blocks(self, stream=None):
            # blocks nobody references any more go back to the driver (cudaFree)
            self._blocks = [b for b in self._blocks if sys.getrefcount(b) > 3]

    memory = types.ModuleType("cupy.cuda.memory")
    memory.OutOfMemoryError = type("OutOfMemoryError", (MemoryError,), {})
    memory.MemoryPool = MemoryPool

    cuda_mod.runtime = runtime
    cuda_mod.Device = Device
    cuda_mod.Stream = Stream
    cuda_mod.Event = Event
    cuda_mod.get_elapsed_time = get_elapsed_time
    cuda_mod.get_current_stream = get_current_stream
    cuda_mod.MemoryPool = MemoryPool
    cuda_mod.PinnedMemoryPool = MemoryPool
    cuda_mod.memory = memory
    cuda_mod.is_available = lambda: True
    cuda_mod.get_device_id = lambda: 0
    cuda_mod.set_allocator = set_allocator
    cuda_mod.using_allocator = using_allocator
    cuda_mod.get_allocator = get_allocator
    cuda_mod.Graph = _Graph
    memory.using_allocator, memory.set_allocator = using_allocator, set_allocator
    cuda_mod.set_pinned_memory_allocator = lambda *a, **k: None
    cuda_mod.runtime.CUDARuntimeError = CUDARuntimeError
    return cuda_mod, runtime, memory


cuda, _runtime, _memory = _make_cuda()
sys.modules.setdefault("cupy.cuda", cuda)
sys.modules.setdefault("cupy.cuda.runtime", _runtime)
sys.modules.setdefault("cupy.cuda.memory", _memory)
sys.modules.setdefault("cupy.random", random)


# ------------------------------------------------------------ RawModule/RawKernel
_libs = {}
_SCALAR_TYPES = {"i": _np.int32, "u": _np.uint32, "l": _np.int64, "L": _np.uint64, "f": _np.float32,
                 "d": _np.float64, "b": _np.bool_}
_CTYPES = {"i": ctypes.c_int32, "u": ctypes.c_uint32, "l": ctypes.c_int64, "L": ctypes.c_uint64,
           "f": ctypes.c_float, "d": ctypes.c_double, "b": ctypes.c_bool}
_POINTEE = {"f32": _np.float32, "f64": _np.float64, "i32": _np.int32, "u32": _np.uint32, "i64": _np.int64,
            "u64": _np.uint64, "i8": _np.int8, "u8": _np.uint8, "i16": _np.int16, "u16": _np.uint16}


def _build_dir():
    """$CUDA_EMU_BUILD, read at each use (a test may point it at another build)."""
    build = os.environ.get("CUDA_EMU_BUILD") or _BUILD
    if not build:
        raise RuntimeError("fake cupy: set CUDA_EMU_BUILD to the folder of the emulation libraries "
                           "(tests/cuda_emulator/run.py does this)")
    return build


def _load_manifest():
    build = _build_dir()
    if build not in _manifests:
        with open(os.path.join(build, "manifest.json")) as f:
            _manifests[build] = json.load(f)
    return build, _manifests[build]


_manifests = {}


def _lib(build, stem, shared):
    key = (build, stem)
    if key not in _libs:
        lib = ctypes.CDLL(os.path.join(build, stem + ".so"))
        lib.emu_name.restype = ctypes.c_char_p
        lib.emu_sig.restype = ctypes.c_char_p
        lib.emu_error.restype = ctypes.c_char_p
        lib.emu_launch.argtypes = [ctypes.c_int] + [ctypes.c_uint] * 4 + [ctypes.POINTER(ctypes.c_void_p)]
        regions = (ctypes.c_ulonglong * (2 * len(shared) or 1))(*[v for off, size, _ in shared for v in (off, size)])
        lib.emu_set_shared(regions, len(shared))
        names = {lib.emu_name(i).decode(): (i, lib.emu_sig(i).decode().split(",")) for i in range(lib.emu_count())}
        _libs[key] = (lib, names)
    return _libs[key]


def _dim3(v, what, name):
    if isinstance(v, (int, _np.integer)):
        v = (v,)
    if not isinstance(v, tuple) or not 1 <= len(v) <= 3:
        raise TypeError(f"{name}: {what} must be a tuple of 1 to 3 ints, got {v!r}")
    for x in v:
        if not isinstance(x, (int, _np.integer)) or isinstance(x, bool):
            raise TypeError(f"{name}: {what} entries must be ints, got {type(x).__name__} {x!r}")
    return tuple(int(x) for x in v) + (1,) * (3 - len(v))


class RawKernel:
    def __init__(self, code=None, name=None, options=(), backend="nvrtc", *, _lib=None, _index=None,
                 _sig=None, _module=None, **kwargs):
        if _lib is None:
            raise NotImplementedError("fake cupy: only kernels from RawModule.get_function are emulated")
        self.lib, self.index, self.sig, self.name, self.module = _lib, _index, _sig, name, _module
        self.attributes = {}

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        name = self.name
        grid = _dim3(grid, "grid", name)
        block = _dim3(block, "block", name)
        if min(grid) < 1 or min(block) < 1:
            # CUDA: cudaErrorInvalidConfiguration for a zero dimension
            raise RuntimeError(f"cudaErrorInvalidConfiguration: {name} launched with grid {grid}, block {block}")
        if grid[0] > 2**31 - 1 or grid[1] > 65535 or grid[2] > 65535:
            raise RuntimeError(f"cudaErrorInvalidConfiguration: {name} grid {grid} exceeds (2^31-1, 65535, 65535)")
        if block[0] * block[1] * block[2] > 1024 or block[2] > 64:
            raise RuntimeError(f"cudaErrorInvalidConfiguration: {name} block {block} exceeds 1024 threads")
        if shared_mem:
            raise NotImplementedError(f"{name}: dynamic shared memory is not emulated")
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"{name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.sig):
            raise TypeError(f"{name}: {len(args)} arguments for {len(self.sig)} parameters ({','.join(self.sig)})")
        keep, ptrs = [], (ctypes.c_void_p * len(args))()
        roots, has_table = [], False
        for k, (a, code) in enumerate(zip(args, self.sig)):
            where = f"{name} argument {k} (parameter {code})"
            if code[0] in "pP":
                if isinstance(a, ndarray):
                    pointee = _POINTEE.get(code[1:])
                    if pointee is not None and a.dtype != _np.dtype(pointee):
                        raise TypeError(f"{where}: a {a.dtype} array for a pointer to {code[1:]}")
                    if not _np.ndarray.flags.__get__(a).c_contiguous:
                        raise ValueError(f"{where}: a non-C-contiguous array (shape {a.shape}, strides "
                                         f"{a.strides}): the kernel would index it as if it were contiguous")
                    if code[0] == "p" and not _np.ndarray.flags.__get__(a).writeable:
                        raise ValueError(f"{where}: a read-only view (e.g. broadcast_to) for a non-const pointer")
                    v = ctypes.c_void_p(a.ctypes.data if a.size else 0)
                    root = _root(a)
                    if root is not None:
                        roots.append(root)
                    has_table |= a.dtype == _np.uint64
                elif type(a) in (_np.uint64, _np.uintp):          # a raw address (0: nullptr)
                    v = ctypes.c_void_p(int(a))
                elif isinstance(a, _np.ndarray):
                    raise TypeError(f"Unsupported type {type(a)}: {where} got a host (NumPy) array")
                else:
                    raise TypeError(f"{where}: pointer parameter got {type(a).__name__} {a!r}")
            else:
                want = _SCALAR_TYPES.get(code)
                if want is None:
                    raise TypeError(f"{where}: parameter type {code!r} is not emulated")
                if type(a) is not want:
                    raise TypeError(f"{where}: needs {want.__name__}, got {type(a).__name__} {a!r} "
                                    f"(CuPy passes Python ints as 64-bit and floats as double: give the exact "
                                    f"NumPy scalar type)")
                v = _CTYPES[code](a.item())
            keep.append(v)
            ptrs[k] = ctypes.cast(ctypes.pointer(v), ctypes.c_void_p)
        cap = _recorder(f"kernel {name}")
        if cap is not None:                        # checked now, launched at each Graph.launch()
            addresses = [int(a) for a in args if type(a) in (_np.uint64, _np.uintp) and int(a)]
            for a in args:
                if isinstance(a, ndarray) and a.dtype == _np.uint64:
                    addresses.extend(int(v) for v in a.view(_np.ndarray).reshape(-1))
            extra = _refs_at_addresses(addresses) if addresses else ()
            _record(cap, f"kernel {name}", self, grid, block, tuple(args), _extra_refs=extra)
            return
        LAUNCHES.append((name, grid, block))
        rc = self.lib.emu_launch(self.index, grid[0], grid[1], grid[2], block[0], ptrs)
        if rc != 0:
            raise RuntimeError(f"{name}: {self.lib.emu_error().decode()}")
        to_check = {id(_raw_of(r)): _raw_of(r) for r in roots}
        if has_table:                                  # pointers inside a table: check everything
            with _lock:
                to_check.update({id(r): r for r in list(_live.values())})
        for raw in to_check.values():
            _check_guards(raw, f"after {name} (grid {grid}, block {block})")


class RawModule:
    def __init__(self, code=None, *, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=False):
        if code is None:
            raise NotImplementedError("fake cupy: RawModule(path=...) is not emulated; pass code=")
        if not isinstance(code, str):
            raise TypeError(f"RawModule code must be str, got {type(code).__name__}")
        if not isinstance(options, tuple) or not all(isinstance(o, str) for o in options):
            raise TypeError(f"RawModule options must be a tuple of str, got {options!r}")
        digest = hashlib.sha256(code.encode("utf-8")).hexdigest()
        build, manifest = _load_manifest()
        stems = [stem for stem, v in manifest.items() if v["sha256"] == digest]
        if not stems:
            raise RuntimeError(f"fake cupy: no emulation library in {build} was built from this source text "
                               "(rebuild with tests/cuda_emulator/gen.py after editing a .cu file)")
        self.stem = stems[0]
        self._build, self._shared = build, manifest[self.stem].get("shared", [])
        self.code = code
        self.options = options
        self.name_expressions = None if name_expressions is None else list(name_expressions)

    def get_function(self, name):
        if self.name_expressions is not None and name not in self.name_expressions:
            raise RuntimeError(f"cuModuleGetFunction failed: {name!r} is not among the name expressions "
                               f"{self.name_expressions} (a template must be instantiated by name)")
        lib, names = _lib(self._build, self.stem, self._shared)
        if name not in names:
            raise RuntimeError(f"cuModuleGetFunction failed: CUDA_ERROR_NOT_FOUND: named symbol not found: {name}")
        index, sig = names[name]
        return RawKernel(name=name, _lib=lib, _index=index, _sig=sig, _module=self)

    def compile(self, log_stream=None):
        pass


class ElementwiseKernel:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("fake cupy: ElementwiseKernel is not emulated")


ReductionKernel = ElementwiseKernel


def fuse(*args, **kwargs):
    raise NotImplementedError("fake cupy: fuse is not emulated")


# ------------------------------------------- implicit device -> host conversion
# Real CuPy arrays refuse numpy.asarray(a) and friends ("Implicit conversion to a
# NumPy array is not allowed"), through __array__.  NumPy never asks a subclass, so
# the fake replaces these module functions with ones that refuse device arrays.
# CUDA_EMU_STRICT_HOST=0 turns this off.
_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
             "NumPy array explicitly. (fake cupy: numpy.{} was given a device array)")


def _install_host_guard():
    def guarded(name, fn):
        def wrapper(a, *args, **kwargs):
            if isinstance(a, ndarray) or (isinstance(a, (list, tuple)) and any(isinstance(v, ndarray) for v in a)):
                if kwargs.get("like") is None:
                    raise TypeError(_IMPLICIT.format(name))
            return fn(a, *args, **kwargs)
        wrapper.__name__ = wrapper.__qualname__ = name
        wrapper.__doc__ = fn.__doc__
        wrapper.__wrapped_by_fake_cupy__ = fn
        return wrapper

    for name in ("asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray"):
        fn = getattr(_np, name)
        if not hasattr(fn, "__wrapped_by_fake_cupy__"):
            setattr(_np, name, guarded(name, fn))


if os.environ.get("CUDA_EMU_STRICT_HOST", "1") != "0":
    _install_host_guard()
