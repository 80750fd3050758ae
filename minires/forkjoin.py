"""A fork-join thread pool for the CPU kernels: ``run(worker, shares)`` calls
worker(share) for every share at once, one per thread, and returns the results.

Why not concurrent.futures.ThreadPoolExecutor (what parallel_for used before): one
map over two shares cost ~90 µs of futures, queues and condition variables on the
2-core Xeon (2026-12-02), while the calling thread sat idle -- and a ResNet-20 step
makes ~40 such calls, plus the batch-norm passes that were kept on one thread because
splitting them did not pay.  Here the calling thread runs share 0 itself and each
other share goes to a worker parked on a lock of its own: one lock release wakes it,
one release tells the caller it is done.  Nothing else is allocated per call.

Sleeping on a lock is not enough on its own: waking a sleeping thread took ~80 µs on
the same VM, as long as a batch-norm pass at batch 32.  So each side watches a flag
first, without the GIL (kernels/cpu/spin.py), and sleeps only after a while: a helper
for HELPER_SPIN_US after its share (the next parallel call usually comes sooner), the
caller for CALLER_SPIN_US while its helpers finish.  A helper sets its "done" flag only
after it has let go of the GIL, so the caller it wakes does not then sleep on the GIL
(that cost ~40 µs a call).  What is left is the start: a helper that wakes while the
caller runs its share's Python sleeps on the GIL until the caller's first kernel lets
go of it, ~50-60 µs a call inside a ResNet-56 step at batch 32 (measured per call:
helper start 65 µs, caller start 10 µs, end lag 7 µs, mean of 1500 calls) -- so a helper
that sees a call waits HELPER_SETTLE_US more before it asks for the GIL.
benchmarks/parallel_for.py: two shares of 20 µs cost 121 µs on top of the work with
ThreadPoolExecutor and 56 µs with the locks and flags (2-core Xeon, 2026-12-02); a
ResNet-20 step at batch 32 went from 99.7 to 87.3 ms.

The kernels release the GIL (Numba ``nogil=True``, BLAS), so the shares really run at
once; only the Python between kernels takes turns.

A call made while the pool is busy -- from a share itself, or from a second thread --
runs its shares one after the other on its own thread instead of waiting for the pool
(or, in together mode, not at all: see ``run``).
A child process made by fork gets a pool of its own (a fork copies no threads).
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

HELPER_SPIN_US = 300     # how long a helper watches for the next call before it sleeps
CALLER_SPIN_US = 2000    # how long the caller watches for its helpers before it sleeps
# How long a helper that has seen a new call waits, still without the GIL, before it asks
# for the GIL.  The caller holds the GIL until its own share's first kernel lets go of it;
# a helper that asks at once sleeps on the GIL and is woken late.  Measured inside ResNet
# training steps at batch 32 (Zen 5, 2026-12-04, the delay alternated in one process):
# the helper started a median 33-44 µs after the call with no wait, 14-20 µs with 5-15
# µs; ResNet-56 steps min 102.7 ms with none, 94.0 / 98.1 / 93.0 with 5 / 10 / 15 µs
# (medians 146.2 against 132-135), ResNet-20 at batch 128 within noise (137.9, 140.9).
# A call whose caller lets go of the GIL at once pays up to this much more
# (benchmarks/parallel_for.py).
HELPER_SETTLE_US = 10


class ForkJoinPool:
    def __init__(self, threads: int):
        self.threads = threads
        self._busy = threading.Lock()
        self._pid = os.getpid()
        from .kernels.cpu import spin               # here: kernels import backend, which imports this
        spins = _spins_per_us(spin.spin_until)
        self._workers = [_Worker(k, spin, spins) for k in range(1, threads)]

    def run(self, worker, shares, together=False):
        """[worker(s) for s in shares], the shares run concurrently (at most ``threads``).

        together=True promises every share a thread of its own, all running at once, so
        that shares may wait for each other (kernels/cpu/spin.py's meet); where the pool
        cannot keep that promise (busy, or a forked child) it runs nothing and returns None."""
        if len(shares) > self.threads:
            raise ValueError(f"ForkJoinPool.run: {len(shares)} shares for {self.threads} threads")
        if self._pid != os.getpid() or not self._busy.acquire(blocking=False):
            if together:
                return None
            return [worker(s) for s in shares]          # forked child, or a nested/concurrent call
        try:
            helpers = self._workers[:len(shares) - 1]
            for helper, share in zip(helpers, shares[1:]):
                helper.start(worker, share)
            try:
                first = worker(shares[0])
            finally:
                outcomes = _join_all(helpers)
            results = [first]
            for ok, value in outcomes:
                if not ok:
                    raise value
                results.append(value)
            return results
        finally:
            self._busy.release()

    def close(self):
        for helper in self._workers:
            helper.stop()
        self._workers = []


def _join_all(helpers):
    """Every helper's outcome.  All of them must have finished before their shares' buffers
    are reused, so a signal's exception (Ctrl-C, the CLI's SIGTERM) raised during the wait
    is held until then and raised after."""
    outcomes, signalled = [], None
    for helper in helpers:
        while True:
            try:
                outcomes.append(helper.join())
                break
            except BaseException as error:
                signalled = error
    if signalled is not None:
        raise signalled
    return outcomes


def _spins_per_us(spin_until):
    """How many unanswered reads spin_until makes in a microsecond on this machine."""
    flags = np.zeros(1, np.int64)
    spin_until(flags, 0, 1, 10)                        # compiled or loaded from the cache
    start = time.perf_counter()
    spin_until(flags, 0, 1, 20_000)
    return max(1, int(20_000 / max(1e-3, (time.perf_counter() - start) * 1e6)))


class _Worker:
    """One parked thread: ``start`` hands it a call, ``join`` waits for the outcome.

    Flags (int64, 64 bytes apart so that the two threads' writes do not share a cache
    line): [0] the number of calls handed over, [8] the number finished."""

    def __init__(self, index, spin, spins_per_us):
        self._spin_until = spin.spin_until
        self._publish_then_spin = spin.publish_then_spin
        self._helper_spins = HELPER_SPIN_US * spins_per_us
        self._settle_spins = HELPER_SETTLE_US * spins_per_us
        self._caller_spins = CALLER_SPIN_US * spins_per_us
        self._flags = np.zeros(16, np.int64)
        self._calls = 0
        self._go = threading.Lock()
        self._done = threading.Lock()
        self._go.acquire()                 # held: the thread parks on it
        self._done.acquire()               # held until a call has finished
        self._call = None
        self._outcome = None
        self._thread = threading.Thread(target=self._loop, name=f"minires-{index}", daemon=True)
        self._thread.start()

    def start(self, fn, arg):
        self._call = (fn, arg)
        self._calls += 1
        self._go.release()                 # before the flag: a helper that sees it never sleeps
        self._flags[0] = self._calls

    def join(self):
        self._spin_until(self._flags, 8, self._calls, self._caller_spins)
        self._done.acquire()
        outcome, self._outcome = self._outcome, None
        return outcome

    def stop(self):
        self._call = None
        self._calls += 1
        self._go.release()
        self._flags[0] = self._calls

    def _loop(self):
        finished = 0
        self._spin_until(self._flags, 0, 1, self._helper_spins)
        while True:
            self._go.acquire()
            call, self._call = self._call, None
            if call is None:
                return
            fn, arg = call
            try:
                self._outcome = (True, fn(arg))
            except BaseException as error:  # handed to the caller, raised there
                self._outcome = (False, error)
            finished += 1
            self._done.release()
            # the flag is set only once this thread has let go of the GIL: a caller woken
            # by it finds the GIL free (setting it from Python first cost ~40 µs a call)
            self._publish_then_spin(self._flags, 8, finished, 0, finished + 1, self._helper_spins,
                                    self._settle_spins)
