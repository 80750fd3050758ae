"""Where a memory-bound kernel runs: on the calling thread, or split across minires's threads.

The batch-norm and ReLU passes stream whole activations.  On 2 cores (Zen 4,
2026-12-02) one core streams such a pass at ~16 GB/s, and handing half the rows to a
second thread pays only once the arrays outgrow the shared cache -- batch norm's
moments, one thread against the rows split over two: 2 MiB 0.09 / 0.21 ms, 8 MiB
0.49 / 0.54, 16 MiB 1.05 / 0.83, 32 MiB 1.43 / 0.85.  Numba's own prange (workqueue
layer) was slower than one thread at every size up to 16 MiB (0.28 against 0.02 ms at
0.5 MiB: each parallel region wakes its threads).  So those kernels (batchnorm.py's
channels-last passes, elementwise.py's) are serial, GIL-free functions of a range -- of
rows, or of elements of a flat array -- and ``over_rows`` decides how to run them.
"""
import numpy as np

from ... import backend          # minires.backend: the thread pool conv2d uses too

SPLIT_BYTES = 12 << 20           # a pass that reads and writes more than this is split


def row_ranges(rows, nbytes):
    """[(r0, r1), ...] covering rows 0..rows-1: one range when the pass moves fewer than
    SPLIT_BYTES, else one per thread of minires's pool."""
    parts = backend.num_threads() if nbytes > SPLIT_BYTES else 1
    parts = max(1, min(parts, rows))
    return [(k * rows // parts, (k + 1) * rows // parts) for k in range(parts)]


def over_rows(kernel, rows, nbytes):
    """Run kernel(r0, r1) over ``row_ranges(rows, nbytes)``; a list of its results, in order."""
    ranges = row_ranges(rows, nbytes)
    if len(ranges) == 1:
        return [kernel(*ranges[0])]
    shares = backend.parallel_for(np, lambda share: [kernel(*r) for r in share], ranges)
    # parallel_for deals the ranges out round-robin: share k holds ranges k, k + T, ...
    results = [None] * len(ranges)
    for k, share in enumerate(shares):
        results[k::len(shares)] = share
    return results
