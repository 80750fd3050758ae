"""minires.forkjoin: the CPU thread pool behind backend.parallel_for."""
import os
import signal
import threading
import time

import numpy as np
import pytest

import minires as mr
from minires.forkjoin import ForkJoinPool


@pytest.fixture
def pool():
    p = ForkJoinPool(3)
    yield p
    p.close()


def test_results_in_share_order_and_on_distinct_threads(pool):
    seen = []

    def work(share):
        seen.append(threading.get_ident())
        time.sleep(0.01)              # long enough that the shares overlap
        return [v * 10 for v in share]
    for _ in range(3):                # the pool is reused between calls
        seen.clear()
        assert pool.run(work, [[1], [2, 3], [4]]) == [[10], [20, 30], [40]]
        assert len(set(seen)) == 3
        assert threading.get_ident() in seen      # the caller ran share 0 itself


def test_shares_run_at_the_same_time(pool):
    barrier = threading.Barrier(3, timeout=5)     # breaks unless all three are inside at once
    assert pool.run(lambda s: barrier.wait() >= 0, [0, 1, 2]) == [True, True, True]


def test_fewer_shares_than_threads(pool):
    assert pool.run(lambda s: s + 1, [1]) == [2]
    assert pool.run(lambda s: s + 1, [1, 2]) == [2, 3]


def test_too_many_shares_is_a_clear_error(pool):
    with pytest.raises(ValueError, match="4 shares for 3 threads"):
        pool.run(lambda s: s, [0, 1, 2, 3])


@pytest.mark.parametrize("failing", [0, 2])
def test_an_exception_in_any_share_reaches_the_caller_after_all_finished(pool, failing):
    finished = []

    def work(share):
        if share == failing:
            raise KeyError(f"share {share}")
        time.sleep(0.02)
        finished.append(share)
        return share
    with pytest.raises(KeyError, match=f"share {failing}"):
        pool.run(work, [0, 1, 2])
    assert sorted(finished) == sorted({0, 1, 2} - {failing})   # nobody still running
    assert pool.run(lambda s: s, [0, 1, 2]) == [0, 1, 2]       # and the pool still works


def test_nested_call_runs_serially_instead_of_deadlocking(pool):
    def outer(share):
        return pool.run(lambda s: s * 2, [share, share + 1])
    assert pool.run(outer, [1, 10]) == [[2, 4], [20, 22]]


def test_concurrent_callers_both_get_their_results(pool):
    out = {}

    def caller(tag):
        out[tag] = [pool.run(lambda s: (tag, s), [0, 1, 2]) for _ in range(50)]
    threads = [threading.Thread(target=caller, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert out["a"] == [[("a", 0), ("a", 1), ("a", 2)]] * 50
    assert out["b"] == [[("b", 0), ("b", 1), ("b", 2)]] * 50


def test_interrupt_while_waiting_waits_for_the_helpers(pool):
    """A signal's exception raised in the caller (Ctrl-C) must not return while a helper
    still writes into its share's buffers."""
    buffer = np.zeros(3)
    release = threading.Event()

    def work(share):
        if share == 0:
            raise KeyboardInterrupt   # as if Ctrl-C arrived in the caller's share
        release.wait(5)
        buffer[share] = 1
        return share
    threading.Timer(0.05, release.set).start()
    with pytest.raises(KeyboardInterrupt):
        pool.run(work, [0, 1, 2])
    assert buffer.tolist() == [0, 1, 1]


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_a_signal_during_the_wait_is_raised_after_the_helpers_finish(pool):
    buffer = np.zeros(3)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    def work(share):
        if share:
            time.sleep(0.3)           # still running when the signal arrives
            buffer[share] = 1
        return share
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            pool.run(work, [0, 1, 2])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert buffer.tolist() == [0, 1, 1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_its_shares_itself(pool):
    pool.run(lambda s: s, [0, 1, 2])              # the parent's helpers exist
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                  # the child: no helper threads were copied
        try:
            ok = pool.run(lambda s: s * 3, [1, 2, 3]) == [3, 6, 9]
            os.write(write, b"ok" if ok else b"bad")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 10) == b"ok"
    os.waitpid(pid, 0)


def test_parallel_for_uses_every_thread_and_keeps_the_results():
    mr.backend.set_num_threads(2)
    try:
        got = mr.backend.parallel_for(np, lambda share: sum(share), range(7))
        assert got == [0 + 2 + 4 + 6, 1 + 3 + 5]
    finally:
        mr.backend.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                   else os.cpu_count())


def test_publish_then_spin_publishes_then_reports_what_it_saw():
    """The helper's wait between calls: the done flag is written first; True once the
    next call's flag holds the value (after ``settle`` more pauses), False if it never does."""
    from minires.kernels.cpu.spin import publish_then_spin
    flags = np.zeros(16, np.int64)
    assert publish_then_spin(flags, 8, 5, 0, 1, 1000, 100) is False and flags[8] == 5
    flags[0] = 1
    assert publish_then_spin(flags, 8, 6, 0, 1, 1000, 100) is True and flags[8] == 6
    assert publish_then_spin(flags, 8, 7, 0, 1, 1000, 0) is True and flags[8] == 7


def test_spin_until_sees_a_flag_written_by_another_thread_while_it_spins():
    """The load must be re-read on every pass (an ordinary load could be hoisted out of
    the loop and spin forever); spin_until releases the GIL, so the writer can run."""
    from minires.kernels.cpu.spin import spin_until
    flags = np.zeros(16, np.int64)
    assert spin_until(flags, 3, 0, 1) is True
    assert spin_until(flags, 3, 1, 1000) is False
    writer = threading.Timer(0.02, lambda: flags.__setitem__(3, 1))
    writer.start()
    start = time.perf_counter()
    assert spin_until(flags, 3, 1, 10**12) is True          # would take hours if it missed it
    assert time.perf_counter() - start < 5
    writer.join()


def test_meet_gives_up_when_a_party_never_arrives():
    """A barrier whose partner never comes returns False after its spins (the batch-norm
    kernels then raise) instead of hanging the step."""
    from minires.kernels.cpu.spin import meet
    flags = np.zeros(16, np.int64)
    assert meet(flags, 0, 2, 1000) is False
    flags[8] = 1                                   # now the other party has arrived
    assert meet(flags, 0, 2, 1000) is True
