"""SGD on the GPU (sgd.cu): one kernel launch per dtype updates every parameter."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ._launch import _ceil_div, _ctype, _cupy, _is_cupy, _kernel
from ._sources import CTYPES, expr

# Launch shape; SGD_CHUNK must match sgd.cu (tests/test_cuda_sources.py checks).
SGD_CHUNK = 4096            # elements per block in the fused SGD (sgd.cu: SGD_CHUNK)
SGD_THREADS = 256

# Pointer tables of sgd_step, keyed by the arrays' addresses and sizes.  The key
# changes whenever a gradient is a fresh array -- as minires's autograd makes
# them today -- and then the table is rebuilt and uploaded (a few KB, a host to
# device copy that waits for the device).  For the table to be reused step after
# step, and above all for a captured CUDA graph (whose replay reads the table it
# was captured with and must not copy from the host), parameters, gradients and
# momentum buffers must live in persistent buffers: e.g. the optimizer owns one
# flat gradient buffer, and backward writes each parameter's gradient into its
# slice instead of allocating.  A stale entry is harmless: it is only used for
# arrays at exactly its addresses and sizes, which is exactly what it describes.
_sgd_tables = OrderedDict()
_SGD_TABLE_CACHE = 16


def _sgd_table(triples):
    """(device table, number of blocks) for [(param, grad, buf or None), ...] (see sgd.cu)."""
    cp = _cupy()
    key = (cp.cuda.runtime.getDevice(),
           tuple((p.data.ptr, g.data.ptr, 0 if b is None else b.data.ptr, p.size) for p, g, b in triples))
    entry = _sgd_tables.get(key)
    if entry is not None:
        _sgd_tables.move_to_end(key)
        return entry
    count = len(triples)
    sizes = np.array([p.size for p, _, _ in triples], dtype=np.int64)
    first_block = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(_ceil_div(sizes, SGD_CHUNK), out=first_block[1:])
    host = np.empty(5 * count + 1, dtype=np.uint64)
    host[0:count] = [p.data.ptr for p, _, _ in triples]
    host[count:2 * count] = [g.data.ptr for _, g, _ in triples]
    host[2 * count:3 * count] = [0 if b is None else b.data.ptr for _, _, b in triples]
    host[3 * count:4 * count] = sizes
    host[4 * count:] = first_block
    entry = (cp.asarray(host), int(first_block[-1]))
    _sgd_tables[key] = entry
    if len(_sgd_tables) > _SGD_TABLE_CACHE:
        _sgd_tables.popitem(last=False)
    return entry


def sgd_step(params, grads, bufs, lr, momentum, weight_decay, dampening, nesterov, first_step):
    """One SGD step over all parameters, one kernel launch per dtype (sgd.cu).

    params, grads, bufs: lists of C-contiguous CuPy arrays, matched by position;
    bufs (the momentum buffers, updated in place) may be None when momentum == 0.
    first_step: the buffers are (re)initialised to the gradient, as PyTorch does
    when a parameter has no buffer yet.  lr: a number, or a float64 CuPy array of
    one element that the kernel reads on the device (so that a captured graph
    follows a schedule that writes into it).  Parameters are updated in place.
    """
    cp = _cupy()
    params, grads = list(params), list(grads)
    use_momentum = momentum != 0
    bufs = list(bufs) if use_momentum else [None] * len(params)
    if not (len(params) == len(grads) == len(bufs)):
        raise ValueError(f"sgd_step: {len(params)} parameters, {len(grads)} gradients, {len(bufs)} buffers")
    groups = {}
    for i, (p, g, b) in enumerate(zip(params, grads, bufs)):
        arrays = (p, g) if b is None else (p, g, b)
        if use_momentum and b is None:
            raise ValueError(f"sgd_step: parameter {i} has no momentum buffer (momentum={momentum})")
        for a in arrays:
            if not _is_cupy(a):
                raise TypeError(f"sgd_step: parameter {i}: expected CuPy arrays, got {type(a).__name__}")
            if a.shape != p.shape or a.dtype != p.dtype or not a.flags.c_contiguous:
                raise ValueError(f"sgd_step: parameter {i}: parameter, gradient and buffer must be "
                                 f"C-contiguous with one shape and dtype, got "
                                 f"{[(tuple(x.shape), str(x.dtype), x.flags.c_contiguous) for x in arrays]}")
        _ctype(p.dtype, f"sgd_step parameter {i}")
        if p.size:
            groups.setdefault(p.dtype.name, []).append((p, g, b))
    if _is_cupy(lr):
        if lr.dtype != cp.float64 or lr.size != 1:
            raise ValueError(f"sgd_step: a device learning rate must be one float64 element, "
                             f"got {lr.dtype} of shape {tuple(lr.shape)}")
        lr_value, lr_ptr = 0.0, lr
    else:
        lr_value, lr_ptr = float(lr), np.uint64(0)
    for dtype_name, triples in groups.items():
        table, n_blocks = _sgd_table(triples)
        _kernel("sgd.cu", expr("sgd_multi_tensor_kernel", CTYPES[dtype_name]))(
            (n_blocks,), (SGD_THREADS,),
            (table, np.int32(len(triples)), np.float64(lr_value), lr_ptr, np.float64(momentum),
             np.float64(weight_decay), np.float64(dampening), np.int32(bool(nesterov)),
             np.int32(bool(first_step))))

