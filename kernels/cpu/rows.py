"""Where a memory-bound kernel runs: on the calling thread, or split across minires's threads.

The batch-norm and ReLU passes stream whole activations.  Handing half the rows to a
second thread costs a fork-join (minires/forkjoin.py: tens of µs, the GIL's hand-over
included), so small passes stay on the calling thread.  Alone, in cache, splitting
paid from ~8 MiB (2-core Xeon, 2026-12-02: BN's dx pass one thread / split: 2 MiB
325 / 287 µs, 8 MiB 1238 / 766); inside a
training step, where the activation arrives from the other core's cache or from
memory, it paid from far smaller passes: a ResNet-56 step at batch 32 took 248-254 ms
with the split from 12 MiB of traffic, 233 ms from 1 MiB; ResNet-20 at batch 128
267-282 against 252-260 ms; ResNet-20 at batch 32 within noise (82-85 against 84-88).
Numba's own prange (workqueue layer) was slower than one thread at every size up to
16 MiB (each parallel region wakes its threads: 0.28 against 0.02 ms at 0.5 MiB on
Zen 4).  So those kernels (batchnorm.py's channels-last passes, elementwise.py's) are
serial, GIL-free functions of a range -- of rows, or of elements of a flat array --
and ``over_rows`` decides how to run them.  Rechecked after batch norm's two passes
became one fork-join (``rows_together``): 256 KiB, 512 KiB and 1 MiB were within noise
of each other, 2-4 MiB 3-6 % slower (ResNet-20/56 steps at batch 32).
"""
import numpy as np

from ... import backend          # minires.backend: the thread pool conv2d uses too

SPLIT_BYTES = 1 << 20            # a pass that reads and writes more than this is split


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


def rows_together(kernel, rows, nbytes):
    """Run kernel(r0, r1, k, parts) for the k-th of ``row_ranges(rows, nbytes)``, every
    range on a thread of its own at the same time, so that the kernels can meet halfway
    (spin.meet) -- one fork-join for two passes, and each thread's second pass reads the
    rows its first pass left in its cache.  True when it ran; False when the pass is too
    small to split or the threads are not free (the caller then runs its passes one after
    the other)."""
    ranges = row_ranges(rows, nbytes)
    if len(ranges) == 1:
        return False
    parts = len(ranges)            # one range per thread: parallel_for gives each a share
    done = backend.parallel_for(np, lambda share: [kernel(r0, r1, k, parts) for k, (r0, r1) in share],
                                list(enumerate(ranges)), together=True)
    return done is not None
