"""Batch normalisation, training mode, as fused kernels over x viewed as (N, C, L).

Forward: per channel, mean and (biased) variance in two passes with float64
accumulators, then y = x*scale + shift in a third -- no NumPy temporaries.
Backward (x̂ = (x - mean)·invstd, M = N·L):
    dbeta  = Σ g          dgamma = Σ g·x̂
    dx     = gamma·invstd · (g - dbeta/M - x̂·dgamma/M)

Two memory layouts, two loop orders:
  * NCHW memory, (N, C, L) with L = H*W: channels are independent -- the
    parallel loop runs over channels, each summing its own planes;
  * channels-last memory (what conv2d returns), viewed as (M, C, 1): the rows
    are split into blocks across threads, each block summing all channels at
    once (a vector over C), then the blocks' partial sums are added.
"""
import math

import numpy as np
from numba import njit, prange, uint64

# ---------------------------------------------------------------- (N, C, L): channel-parallel


@njit(parallel=True, cache=True, fastmath=True)
def _forward_planes(x, gamma, beta, eps, y, mean, var, invstd):
    n_img, ch, length = x.shape
    count = n_img * length
    for c in prange(ch):
        total = 0.0
        for n in range(n_img):
            for k in range(length):
                total += x[n, c, k]
        m = total / count
        sq = 0.0
        for n in range(n_img):
            for k in range(length):
                d = x[n, c, k] - m
                sq += d * d
        v = sq / count
        inv = 1.0 / math.sqrt(v + eps)
        scale = gamma[c] * inv
        shift = beta[c] - m * scale
        for n in range(n_img):
            for k in range(length):
                y[n, c, k] = x[n, c, k] * scale + shift
        mean[c] = m
        var[c] = v
        invstd[c] = inv


@njit(parallel=True, cache=True, fastmath=True)
def _backward_planes(g, x, mean, invstd, gamma, dx, dgamma, dbeta):
    n_img, ch, length = x.shape
    count = n_img * length
    for c in prange(ch):
        m = mean[c]
        inv = invstd[c]
        sum_g = 0.0
        sum_gx = 0.0
        for n in range(n_img):
            for k in range(length):
                gv = g[n, c, k]
                sum_g += gv
                sum_gx += gv * (x[n, c, k] - m)
        dbeta[c] = sum_g
        dgamma[c] = sum_gx * inv
        scale = gamma[c] * inv
        a = sum_g / count
        b = sum_gx * inv * inv / count
        for n in range(n_img):
            for k in range(length):
                dx[n, c, k] = scale * (g[n, c, k] - a - (x[n, c, k] - m) * b)


# ---------------------------------------------------------------- (M, C): row-block-parallel
# Rows are split into _BLOCKS blocks (enough to balance the threads, few partial
# sums to add); indices are unsigned so that LLVM vectorises over the channels
# (signed ones make Numba check for wrap-around on every access).
_BLOCKS = 64


@njit(parallel=True, cache=True, fastmath=True)
def _moments_rows(x):
    """Per-channel mean and biased variance of x (M, C): float64, two passes."""
    rows, ch = x.shape
    flat = x.reshape(-1)
    per = (rows + _BLOCKS - 1) // _BLOCKS
    partial = np.zeros((_BLOCKS, ch), dtype=np.float64)
    for b in prange(_BLOCKS):
        acc = partial[b]
        for r in range(b * per, min(rows, (b + 1) * per)):
            base = uint64(r * ch)
            for c in range(uint64(ch)):
                acc[c] += flat[base + c]
    mean = partial.sum(axis=0) / rows
    partial[:] = 0
    for b in prange(_BLOCKS):
        acc = partial[b]
        for r in range(b * per, min(rows, (b + 1) * per)):
            base = uint64(r * ch)
            for c in range(uint64(ch)):
                d = flat[base + c] - mean[c]
                acc[c] += d * d
    return mean, partial.sum(axis=0) / rows


@njit(parallel=True, cache=True, fastmath=True)
def _affine_rows(x, scale, shift, y):
    rows, ch = x.shape
    src, dst = x.reshape(-1), y.reshape(-1)
    per = (rows + _BLOCKS - 1) // _BLOCKS
    for b in prange(_BLOCKS):
        for r in range(b * per, min(rows, (b + 1) * per)):
            base = uint64(r * ch)
            for c in range(uint64(ch)):
                dst[base + c] = src[base + c] * scale[c] + shift[c]


@njit(parallel=True, cache=True, fastmath=True)
def _grad_sums_rows(g, x, mean):
    """Per channel: Σ g and Σ g·(x - mean), float64."""
    rows, ch = x.shape
    gf, xf = g.reshape(-1), x.reshape(-1)
    per = (rows + _BLOCKS - 1) // _BLOCKS
    partial = np.zeros((_BLOCKS, 2, ch), dtype=np.float64)
    for b in prange(_BLOCKS):
        acc_g, acc_gx = partial[b, 0], partial[b, 1]
        for r in range(b * per, min(rows, (b + 1) * per)):
            base = uint64(r * ch)
            for c in range(uint64(ch)):
                gv = gf[base + c]
                acc_g[c] += gv
                acc_gx[c] += gv * (xf[base + c] - mean[c])
    total = partial.sum(axis=0)
    return total[0], total[1]


@njit(parallel=True, cache=True, fastmath=True)
def _dx_rows(g, x, mean, scale, a, b_coef, dx):
    rows, ch = x.shape
    gf, xf, out = g.reshape(-1), x.reshape(-1), dx.reshape(-1)
    per = (rows + _BLOCKS - 1) // _BLOCKS
    for blk in prange(_BLOCKS):
        for r in range(blk * per, min(rows, (blk + 1) * per)):
            base = uint64(r * ch)
            for c in range(uint64(ch)):
                out[base + c] = scale[c] * (gf[base + c] - a[c] - (xf[base + c] - mean[c]) * b_coef[c])


# ---------------------------------------------------------------- the interface
def batch_norm_forward(x, gamma, beta, eps):
    """x (N, C, L) -> y (same layout), mean, var (biased), invstd; statistics float64 (C,)."""
    if x.shape[2] == 1 and x[:, :, 0].flags.c_contiguous:          # channels-last rows
        rows = x[:, :, 0]
        mean, var = _moments_rows(rows)
        invstd = 1.0 / np.sqrt(var + eps)
        scale = (gamma * invstd).astype(x.dtype)
        shift = (beta - mean * gamma * invstd).astype(x.dtype)
        y = np.empty_like(x)
        _affine_rows(rows, scale, shift, y[:, :, 0])
        return y, mean, var, invstd
    x = np.ascontiguousarray(x)
    ch = x.shape[1]
    y = np.empty_like(x)
    mean, var, invstd = (np.empty(ch, dtype=np.float64) for _ in range(3))
    _forward_planes(x, gamma, beta, float(eps), y, mean, var, invstd)
    return y, mean, var, invstd


def batch_norm_backward(g, x, mean, invstd, gamma):
    """-> dx (N, C, L) in x's layout, dgamma (C,), dbeta (C,)."""
    count = x.shape[0] * x.shape[2]
    if x.shape[2] == 1 and x[:, :, 0].flags.c_contiguous:
        rows, g_rows = x[:, :, 0], np.ascontiguousarray(g[:, :, 0])
        sum_g, sum_gx = _grad_sums_rows(g_rows, rows, mean)
        scale = (gamma * invstd).astype(x.dtype)
        a = (sum_g / count).astype(x.dtype)
        b = (sum_gx * invstd * invstd / count).astype(x.dtype)
        dx = np.empty_like(x)
        _dx_rows(g_rows, rows, mean.astype(x.dtype), scale, a, b, dx[:, :, 0])
        return dx, (sum_gx * invstd).astype(x.dtype), sum_g.astype(x.dtype)
    g = np.ascontiguousarray(g)
    dx = np.empty_like(x)
    dgamma = np.empty(x.shape[1], dtype=x.dtype)
    dbeta = np.empty(x.shape[1], dtype=x.dtype)
    _backward_planes(g, x, mean, invstd, gamma, dx, dgamma, dbeta)
    return dx, dgamma, dbeta


def batch_norm_update_running(running_mean, running_var, mean, var, count, momentum):
    """In place: running = (1 - momentum) running + momentum batch, the batch variance
    made unbiased (x count / (count - 1)) as in PyTorch."""
    running_mean[...] = (1 - momentum) * running_mean + momentum * mean
    running_var[...] = (1 - momentum) * running_var + momentum * (var * (count / (count - 1)))
