"""Training batch norm's channels-last passes, on rows as they are and on widened rows.

    python benchmarks/batchnorm_rows.py [--batch 32] [--blocks 20] [--reps 20]

For each CIFAR ResNet stage (C = 16, 32, 64 channels on 32x32, 16x16, 8x8 images) the
activation is M = batch·H·W rows of C channels (what conv2d returns).  The kernels of
minires/kernels/cpu/batchnorm.py, one thread, and the whole forward and backward
(batch_norm_relu's, the threads meeting halfway, kernels/cpu/rows.py):

    moments    Σ (x - x[0]) and Σ (x - x[0])² per channel      forward, first pass
    affine     y = max(x·scale + shift, 0)                      forward, last pass
    grad_sums  Σ g·[y > 0] and Σ g·[y > 0]·(x - mean)            backward, first pass
    dx         dx = scale·(g·[y > 0] - a - (x - mean)·b)          backward, last pass
    forward    both forward passes, split across the threads
    backward   both backward passes, split across the threads

each timed on rows as they are (R = 1) and widened (R rows as one row of R·C lanes, as
batchnorm.py runs them: the R it picks is printed).  Printed: the minimum microseconds
over --blocks blocks of --reps calls, the two variants alternating block by block (the
machine's speed drifts; the minimum of alternating blocks is the figure that compares),
and the ratio widened / as they are.  The data stays in cache between calls: this is
the kernels' own speed, not a training step's (benchmarks/cpu_sweep.py times those).
"""
import argparse
import time

import numpy as np

from _timing import cpu_description, machine
from minires.kernels.cpu import batchnorm as bn

STAGES = [(16, 32), (32, 16), (64, 8)]           # (channels, H = W)


def passes(m, ch, rng):
    """{name: fn(widening)} for one stage's (m, ch) rows: each runs one pass with R rows as one."""
    x = rng.standard_normal((m, ch)).astype(np.float32)
    g = rng.standard_normal((m, ch)).astype(np.float32)
    y = np.maximum(x, 0)
    out = np.empty_like(x)
    vec = np.ones(ch, np.float32)
    mean, invstd = np.zeros(ch), np.ones(ch)

    def on_rows(kernel, arrays, vectors):
        views = {}                        # r -> the widened arrays and tiled vectors, made once

        def run(r):
            if r not in views:
                views[r] = [bn._wide(a, r) for a in arrays], [bn._tiled(v, r) for v in vectors]
            kernel(*views[r], m // r)
        return run

    def whole(fn):
        def run(r):
            saved = bn._widening
            bn._widening = lambda rows, c: r
            try:
                fn()
            finally:
                bn._widening = saved
        return run

    return {
        "moments": on_rows(lambda a, v, n: bn._shifted_sums(a[0], 0, n, v[0]), [x], [mean]),
        "affine": on_rows(lambda a, v, n: bn._affine(a[0], 0, n, v[0], v[0], a[0], a[1], False, True),
                          [x, out], [vec]),
        "grad_sums": on_rows(lambda a, v, n: bn._grad_sums(a[0], a[1], a[2], 0, n, v[0], True),
                             [g, x, y], [mean]),
        "dx": on_rows(lambda a, v, n: bn._dx(a[0], a[1], a[2], 0, n, v[0], v[0], v[0], v[0], a[3], True),
                      [g, x, y, out], [vec]),
        "forward": whole(lambda: bn._forward_rows(x, vec, vec, 1e-5, out, True)),
        "backward": whole(lambda: bn._backward_rows(g, x, y, mean, invstd, vec, out, True)),
    }


def best_us(fn, blocks, reps):
    """Minimum µs per call over ``blocks`` blocks of ``reps`` calls, one block per yield."""
    fn()
    best = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - start) / reps * 1e6)
        yield best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    if min(args.batch, args.blocks, args.reps) < 1:
        ap.error("--batch, --blocks and --reps must be >= 1")
    print(f"# batch norm's channels-last passes, float32, batch {args.batch}, min µs over "
          f"{args.blocks} alternating blocks of {args.reps} calls; {machine()}")
    print(f"# {cpu_description()}")
    print(f"{'stage':<18}{'pass':<11}{'R':>3}{'rows µs':>10}{'widened µs':>12}{'ratio':>7}")
    rng = np.random.default_rng(0)
    for ch, hw in STAGES:
        m = args.batch * hw * hw
        r = bn._widening(m, ch)
        for name, run in passes(m, ch, rng).items():
            plain = best_us(lambda: run(1), args.blocks, args.reps)
            wide = best_us(lambda: run(r), args.blocks, args.reps)
            for a, b in zip(plain, wide):         # alternate: one block of each at a time
                pass
            print(f"{f'C={ch} {hw}x{hw}':<18}{name:<11}{r:>3}{a:10.1f}{b:12.1f}{b / a:7.2f}")


if __name__ == "__main__":
    main()
