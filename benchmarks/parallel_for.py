"""What one backend.parallel_for costs on top of its work, against concurrent.futures.

    python benchmarks/parallel_for.py [--repeats 2000] [--work-us 0,20,100]

Each call runs two shares (one per core on a 2-core machine); each share is a GIL-free
busy wait of --work-us microseconds (kernels/cpu/spin.py's spin_until, which does
nothing but read memory), so the ideal wall time of a call is the work itself.
Printed per variant: the median wall microseconds per call and the overhead (wall -
work).  Variants:
  serial         both shares one after the other on the calling thread (2x the work);
  threadpool     ThreadPoolExecutor.map, what parallel_for used until 2026-12-02;
  forkjoin       minires.forkjoin.ForkJoinPool, what parallel_for uses now;
  forkjoin-idle  the same with a 2 ms pause between calls (the helper has gone to
                 sleep by then: its spin is shorter), what a call after a long serial
                 stretch pays.
"""
import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from minires.forkjoin import ForkJoinPool
from minires.kernels.cpu.spin import spin_until
from _timing import machine


def busy_wait(spins):
    flags = np.zeros(1, np.int64)
    return lambda share: spin_until(flags, 0, 1, spins)


def per_call_us(run, repeats, pause_s=0.0):
    times = []
    for _ in range(repeats):
        if pause_s:
            time.sleep(pause_s)
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2000)
    ap.add_argument("--work-us", default="0,20,100")
    args = ap.parse_args()
    flags = np.zeros(1, np.int64)
    spin_until(flags, 0, 1, 10)
    start = time.perf_counter()
    spin_until(flags, 0, 1, 1_000_000)
    spins_per_us = 1_000_000 / ((time.perf_counter() - start) * 1e6)

    pool = ForkJoinPool(2)
    executor = ThreadPoolExecutor(max_workers=2)
    print(f"# backend.parallel_for: two shares, median of {args.repeats} calls; {machine()}")
    print(f"{'work us':>8} {'variant':<14} {'wall us':>9} {'overhead us':>12}")
    for work in [float(w) for w in args.work_us.split(",")]:
        share = busy_wait(int(work * spins_per_us))
        variants = {
            "serial": lambda: [share(0), share(1)],
            "threadpool": lambda: list(executor.map(share, [0, 1])),
            "forkjoin": lambda: pool.run(share, [0, 1]),
        }
        for name, run in variants.items():
            wall = per_call_us(run, args.repeats)
            ideal = 2 * work if name == "serial" else work
            print(f"{work:8.0f} {name:<14} {wall:9.1f} {wall - ideal:12.1f}")
        wall = per_call_us(variants["forkjoin"], max(50, args.repeats // 20), pause_s=0.002)
        print(f"{work:8.0f} {'forkjoin-idle':<14} {wall:9.1f} {wall - work:12.1f}")
    pool.close()
    executor.shutdown()


if __name__ == "__main__":
    main()
