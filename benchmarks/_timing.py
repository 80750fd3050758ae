"""Timing helpers shared by the benchmark scripts: warm up, then the median of repeats."""
import statistics
import time


def median_ms(fn, repeats=5, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def try_import_torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def machine():
    import os
    import platform
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}"
