"""The F(2x2) Winograd transforms on one conv2d chunk, against a plain pass over the same bytes.

    python benchmarks/winograd_transforms.py [--blocks 30] [--reps 50]

For each CIFAR ResNet stage (C = 16, 32, 64 channels on 32x32, 16x16, 8x8 images), one
chunk of images as minires.ops.winograd.conv2d cuts it (CONV_WORKSPACE_BYTES of tiles:
about a core's L2), on one thread:

    input         V  = B^T d B       x (n, H, W, C) -> V (16, P, C)    forward, and dW's recompute
    output        y  = A^T M A       M (16, P, C) -> y (n, H, W, C)
    output_bn     relu(y·scale + shift + r)   the same, with evaluation's batch norm, a
                                     residual r (n, H, W, C) read, and the ReLU
                                     (ops/fused.py's conv2d_batch_norm_relu_eval)
    output_grad   dM = A g A^T       g (n, H, W, C) -> dM (16, P, C)
    input_grad    dx = B dZ B^T      dZ (16, P, C) -> dx (n, H, W, C)

(the kernels themselves, without the public wrappers' checks) and, as the floor a
transform cannot beat, a Numba pass over the same bytes ("copy bound": V is 4x the
image, so the image is copied four times into V, or V's four quarters summed into an
image; output_bn's bound is output's, so its ratio also counts reading r).  Printed: the minimum microseconds over --blocks blocks of --reps calls, every
variant alternating block by block (the machine's speed drifts; the minimum of
alternating blocks is the figure that compares), and each transform's ratio to its bound.
"""
import argparse
import time

import numpy as np
from numba import njit, uint64

from _timing import cpu_description, machine
from minires.kernels.cpu import CONV_WORKSPACE_BYTES
from minires.kernels.cpu import winograd as W

STAGES = [(16, 32), (32, 16), (64, 8)]           # (channels, H = W)


@njit(nogil=True, cache=True, fastmath=True)
def _spread(dst, src):
    """dst (r*n numbers) = r copies of src (n): dst written once, src read r times (from cache)."""
    d, s = dst.reshape(-1), src.reshape(-1)
    n = uint64(s.size)                   # unsigned offsets, as in the kernels: LLVM vectorises
    for j in range(uint64(d.size) // n):
        for k in range(n):
            d[j * n + k] = s[k] * np.float32(1.0001)


@njit(nogil=True, cache=True, fastmath=True)
def _gather(dst, src):
    """dst (n numbers) = the sum of src's r blocks of n: src read once, dst updated r times (in cache)."""
    d, s = dst.reshape(-1), src.reshape(-1)
    n = uint64(d.size)
    for k in range(n):
        d[k] = s[k]
    for j in range(uint64(1), uint64(s.size) // n):
        for k in range(n):
            d[k] += s[j * n + k]


def copy_bound(dst, src):
    """The copy bound's pass for a kernel that reads src and writes dst."""
    return _spread(dst, src) if dst.size >= src.size else _gather(dst, src)


def best_us(fns, blocks, reps):
    """Per function: the minimum microseconds a call over `blocks` alternating blocks of `reps` calls."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(blocks):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / reps * 1e6)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--blocks", type=int, default=30, help="alternating blocks per variant")
    ap.add_argument("--reps", type=int, default=50, help="calls per block")
    args = ap.parse_args()
    print(f"# F(2x2) transforms, float32, one thread; {cpu_description()}; {machine()}")
    print(f"# min over {args.blocks} alternating blocks of {args.reps} calls, microseconds per chunk")
    print(f"{'chunk (n, H, W, C)':>20} {'kernel':>12} {'us':>7} {'bound us':>9} {'ratio':>6} {'MiB out':>8}")
    rng = np.random.default_rng(0)
    for c, hw in STAGES:
        tiles = (hw // 2) ** 2
        n = max(1, CONV_WORKSPACE_BYTES // (16 * tiles * c * 4))
        img = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
        tiles_arr = rng.standard_normal((16, n * tiles, c)).astype(np.float32)
        out_tiles, out_img = np.empty_like(tiles_arr), np.empty_like(img)
        scale, shift = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
        residual = rng.standard_normal(img.shape).astype(np.float32)
        kernels = [("input", lambda: W._input_f2(img, out_tiles), img, out_tiles),
                   ("output", lambda: W._output_f2(tiles_arr, out_img, None, None, None, False), tiles_arr, out_img),
                   ("output_bn", lambda: W._output_f2(tiles_arr, out_img, scale, shift, residual, True),
                    tiles_arr, out_img),
                   ("output_grad", lambda: W._output_grad_f2(img, out_tiles), img, out_tiles),
                   ("input_grad", lambda: W._input_grad_f2(tiles_arr, out_img), tiles_arr, out_img)]
        fns = []
        for _, run, src, dst in kernels:
            fns += [run, (lambda s=src, d=dst: copy_bound(d, s))]
        times = best_us(fns, args.blocks, args.reps)
        for i, (name, _, _, dst) in enumerate(kernels):
            t, bound = times[2 * i], times[2 * i + 1]
            print(f"{str((n, hw, hw, c)):>20} {name:>12} {t:7.1f} {bound:9.1f} {t / bound:6.2f} "
                  f"{dst.nbytes / 2**20:8.2f}")


if __name__ == "__main__":
    main()
