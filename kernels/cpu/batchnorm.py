"""Batch normalisation, training mode, as fused kernels over x viewed as (N, C, L).

Forward: per channel, mean and (biased) variance in two passes with float64
accumulators, then y = x*scale + shift in a third -- no NumPy temporaries.
Backward (x̂ = (x - mean)·invstd, M = N·L):
    dbeta  = Σ g          dgamma = Σ g·x̂
    dx     = gamma·invstd · (g - dbeta/M - x̂·dgamma/M)

The same kernels with ``relu`` set are batch norm + ReLU in one op
(batch_norm_relu_forward/backward, minires/ops/fused.py): the third forward pass
writes y = max(x*scale + shift, 0), and backward reads g·[y > 0] -- ReLU's backward
mask -- wherever it reads g, so neither the BN output before the ReLU nor the
masked gradient is ever stored.

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
def _forward_planes(x, gamma, beta, eps, y, mean, var, invstd, relu):
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
                out = x[n, c, k] * scale + shift
                if relu and out < 0:
                    out = 0.0
                y[n, c, k] = out
        mean[c] = m
        var[c] = v
        invstd[c] = inv


@njit(parallel=True, cache=True, fastmath=True)
def _backward_planes(g, x, y, mean, invstd, gamma, dx, dgamma, dbeta, relu):
    """relu: g is read as g·[y > 0] (y: the fused forward's output; unread otherwise)."""
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
                if relu and not y[n, c, k] > 0:
                    gv = 0.0
                sum_g += gv
                sum_gx += gv * (x[n, c, k] - m)
        dbeta[c] = sum_g
        dgamma[c] = sum_gx * inv
        scale = gamma[c] * inv
        a = sum_g / count
        b = sum_gx * inv * inv / count
        for n in range(n_img):
            for k in range(length):
                gv = g[n, c, k]
                if relu and not y[n, c, k] > 0:
                    gv = 0.0
                dx[n, c, k] = scale * (gv - a - (x[n, c, k] - m) * b)


# ---------------------------------------------------------------- (M, C): row-block-parallel
# Rows are split into _BLOCKS blocks (enough to balance the threads, few partial
# sums to add); indices are unsigned so that LLVM vectorises over the channels
# (signed ones make Numba check for wrap-around on every access).
_BLOCKS = 64


# The per-channel sums take four rows per step of the channel loop: with one, each
# row's acc[c] += waits for the previous row's store to acc (a store-to-load chain),
# and the sums over 8 MiB ran 4.7x slower (measured: 1.21 against 0.25 ms, one core).
# Four rows are added in the data's precision first, then into float64.
@njit(nogil=True, cache=True, fastmath=True)
def _shifted_sums(flat, ch, r0, r1, ref, acc, acc_sq):
    """acc[c] += Σ (x - ref[c]), acc_sq[c] += Σ (x - ref[c])² over rows r0..r1-1 of flat (M*C)."""
    c_ = uint64(ch)
    r = r0
    while r + 4 <= r1:
        b = uint64(r) * c_
        for c in range(c_):
            d0, d1 = flat[b + c] - ref[c], flat[b + c_ + c] - ref[c]
            d2, d3 = flat[b + uint64(2) * c_ + c] - ref[c], flat[b + uint64(3) * c_ + c] - ref[c]
            acc[c] += (d0 + d1) + (d2 + d3)
            acc_sq[c] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
        r += 4
    for q in range(r, r1):
        b = uint64(q) * c_
        for c in range(c_):
            d = flat[b + c] - ref[c]
            acc[c] += d
            acc_sq[c] += d * d


@njit(parallel=True, cache=True, fastmath=True)
def _moments_partials(x, ref, partial):
    """partial[b] = the sums of _shifted_sums over row block b of x (M, C)."""
    rows, ch = x.shape
    flat = x.reshape(-1)
    per = (rows + _BLOCKS - 1) // _BLOCKS
    for b in prange(_BLOCKS):
        _shifted_sums(flat, ch, b * per, min(rows, (b + 1) * per), ref, partial[b, 0], partial[b, 1])


def _moments_rows(x):
    """Per-channel mean and biased variance of x (M, C): float64 sums, one pass over x.
    The sums are of x - x[0] (the first row): a shift that keeps the one-pass variance,
    Σd²/M - (Σd/M)², free of the cancellation that Σx²/M - mean² suffers when the mean
    is large against the spread.  (The reductions after the parallel loop are NumPy's:
    inside a parallel=True function each array expression is a parallel region of its
    own, ~0.1 ms of thread wake-ups apiece.)"""
    ref = x[0].copy()
    partial = np.zeros((_BLOCKS, 2, x.shape[1]), dtype=np.float64)
    _moments_partials(x, ref, partial)
    total = partial.sum(axis=0)
    shift = total[0] / x.shape[0]
    return ref + shift, np.maximum(total[1] / x.shape[0] - shift * shift, 0.0)


@njit(parallel=True, cache=True, fastmath=True)
def _affine_rows(x, scale, shift, y, relu):
    rows, ch = x.shape
    src, dst = x.reshape(-1), y.reshape(-1)
    per = (rows + _BLOCKS - 1) // _BLOCKS
    for b in prange(_BLOCKS):
        for r in range(b * per, min(rows, (b + 1) * per)):
            base = uint64(r * ch)
            for c in range(uint64(ch)):
                v = src[base + c] * scale[c] + shift[c]
                if relu and v < 0:
                    v = 0.0
                dst[base + c] = v


@njit(parallel=True, cache=True, fastmath=True)
def _affine_add_relu_rows(x, scale, shift, residual, y):
    """y = max(x·scale + shift + residual, 0): a basic block's second BN, shortcut and ReLU."""
    rows, ch = x.shape
    src, res, dst = x.reshape(-1), residual.reshape(-1), y.reshape(-1)
    per = (rows + _BLOCKS - 1) // _BLOCKS
    for b in prange(_BLOCKS):
        for r in range(b * per, min(rows, (b + 1) * per)):
            base = uint64(r * ch)
            for c in range(uint64(ch)):
                v = src[base + c] * scale[c] + shift[c] + res[base + c]
                if v < 0:
                    v = 0.0
                dst[base + c] = v


@njit(nogil=True, cache=True, fastmath=True)
def _grad_sums(gf, xf, yf, ch, r0, r1, mean, relu, acc_g, acc_gx):
    """acc_g[c] += Σ g, acc_gx[c] += Σ g·(x - mean[c]) over rows r0..r1-1, four rows a step
    (as _shifted_sums); g read as g·[y > 0] when relu."""
    c_ = uint64(ch)
    r = r0
    while r + 4 <= r1:
        b = uint64(r) * c_
        for c in range(c_):
            i0, i1, i2, i3 = b + c, b + c_ + c, b + uint64(2) * c_ + c, b + uint64(3) * c_ + c
            g0, g1, g2, g3 = gf[i0], gf[i1], gf[i2], gf[i3]
            if relu:
                g0 = g0 if yf[i0] > 0 else 0.0
                g1 = g1 if yf[i1] > 0 else 0.0
                g2 = g2 if yf[i2] > 0 else 0.0
                g3 = g3 if yf[i3] > 0 else 0.0
            m = mean[c]
            acc_g[c] += (g0 + g1) + (g2 + g3)
            acc_gx[c] += (g0 * (xf[i0] - m) + g1 * (xf[i1] - m)) + (g2 * (xf[i2] - m) + g3 * (xf[i3] - m))
        r += 4
    for q in range(r, r1):
        b = uint64(q) * c_
        for c in range(c_):
            gv = gf[b + c]
            if relu and not yf[b + c] > 0:
                gv = 0.0
            acc_g[c] += gv
            acc_gx[c] += gv * (xf[b + c] - mean[c])


@njit(parallel=True, cache=True, fastmath=True)
def _grad_sums_partials(g, x, y, mean, relu, partial):
    """partial[b] = the sums of _grad_sums over row block b."""
    rows, ch = x.shape
    gf, xf, yf = g.reshape(-1), x.reshape(-1), y.reshape(-1)
    per = (rows + _BLOCKS - 1) // _BLOCKS
    for b in prange(_BLOCKS):
        _grad_sums(gf, xf, yf, ch, b * per, min(rows, (b + 1) * per), mean, relu, partial[b, 0], partial[b, 1])


def _grad_sums_rows(g, x, y, mean, relu):
    """Per channel: Σ g and Σ g·(x - mean), float64 (relu: g read as g·[y > 0])."""
    partial = np.zeros((_BLOCKS, 2, x.shape[1]), dtype=np.float64)
    _grad_sums_partials(g, x, y, mean.astype(x.dtype), relu, partial)
    total = partial.sum(axis=0)
    return total[0], total[1]


@njit(parallel=True, cache=True, fastmath=True)
def _dx_rows(g, x, y, mean, scale, a, b_coef, dx, relu):
    rows, ch = x.shape
    gf, xf, yf, out = g.reshape(-1), x.reshape(-1), y.reshape(-1), dx.reshape(-1)
    per = (rows + _BLOCKS - 1) // _BLOCKS
    for blk in prange(_BLOCKS):
        for r in range(blk * per, min(rows, (blk + 1) * per)):
            base = uint64(r * ch)
            for c in range(uint64(ch)):
                gv = gf[base + c]
                if relu and not yf[base + c] > 0:
                    gv = 0.0
                out[base + c] = scale[c] * (gv - a[c] - (xf[base + c] - mean[c]) * b_coef[c])


# ---------------------------------------------------------------- the interface
def _rows(a):
    """a (M, C, 1) as its (M, C) rows when it is channels-last memory, else None."""
    return a[:, :, 0] if a.shape[2] == 1 and a[:, :, 0].flags.c_contiguous else None


def _forward(x, gamma, beta, eps, relu):
    rows = _rows(x)
    if rows is not None:                                            # channels-last rows
        mean, var = _moments_rows(rows)
        invstd = 1.0 / np.sqrt(var + eps)
        scale = (gamma * invstd).astype(x.dtype)
        shift = (beta - mean * gamma * invstd).astype(x.dtype)
        y = np.empty_like(x)
        _affine_rows(rows, scale, shift, y[:, :, 0], relu)
        return y, mean, var, invstd
    x = np.ascontiguousarray(x)
    ch = x.shape[1]
    y = np.empty_like(x)
    mean, var, invstd = (np.empty(ch, dtype=np.float64) for _ in range(3))
    _forward_planes(x, gamma, beta, float(eps), y, mean, var, invstd, relu)
    return y, mean, var, invstd


def _backward(g, x, y, mean, invstd, gamma, relu):
    """y: the forward's output when relu (its y > 0 is ReLU's mask); unread otherwise."""
    count = x.shape[0] * x.shape[2]
    rows = _rows(x)
    if rows is not None:
        g_rows = np.ascontiguousarray(g[:, :, 0])
        y_rows = np.ascontiguousarray(y[:, :, 0]) if relu else rows
        sum_g, sum_gx = _grad_sums_rows(g_rows, rows, y_rows, mean, relu)
        scale = (gamma * invstd).astype(x.dtype)
        a = (sum_g / count).astype(x.dtype)
        b = (sum_gx * invstd * invstd / count).astype(x.dtype)
        dx = np.empty_like(x)
        _dx_rows(g_rows, rows, y_rows, mean.astype(x.dtype), scale, a, b, dx[:, :, 0], relu)
        return dx, (sum_gx * invstd).astype(x.dtype), sum_g.astype(x.dtype)
    g = np.ascontiguousarray(g)
    y = np.ascontiguousarray(y) if relu else x
    dx = np.empty_like(x)
    dgamma = np.empty(x.shape[1], dtype=x.dtype)
    dbeta = np.empty(x.shape[1], dtype=x.dtype)
    _backward_planes(g, x, y, mean, invstd, gamma, dx, dgamma, dbeta, relu)
    return dx, dgamma, dbeta


def batch_norm_forward(x, gamma, beta, eps):
    """x (N, C, L) -> y (same layout), mean, var (biased), invstd; statistics float64 (C,)."""
    return _forward(x, gamma, beta, eps, relu=False)


def batch_norm_backward(g, x, mean, invstd, gamma):
    """-> dx (N, C, L) in x's layout, dgamma (C,), dbeta (C,)."""
    return _backward(g, x, None, mean, invstd, gamma, relu=False)


def batch_norm_relu_forward(x, gamma, beta, eps):
    """relu(batch_norm(x)) in one pass: -> y, mean, var, invstd (as batch_norm_forward)."""
    return _forward(x, gamma, beta, eps, relu=True)


def batch_norm_add_relu_forward(x, residual, gamma, beta, eps):
    """relu(batch_norm(x) + residual) in one pass after the statistics, for x and residual
    (M, C, 1) channels-last rows: -> y, mean, var, invstd; None for any other layout (the
    op then runs batch_norm_forward and adds in place).  Its backward is relu_backward
    (the gradient of both x's BN output and the residual), then batch_norm_backward."""
    rows, res = _rows(x), _rows(residual)
    if rows is None or res is None:
        return None
    mean, var = _moments_rows(rows)
    invstd = 1.0 / np.sqrt(var + eps)
    scale = (gamma * invstd).astype(x.dtype)
    shift = (beta - mean * gamma * invstd).astype(x.dtype)
    y = np.empty_like(x)
    _affine_add_relu_rows(rows, scale, shift, res, y[:, :, 0])
    return y, mean, var, invstd


def batch_norm_relu_backward(g, x, y, mean, invstd, gamma):
    """Backward of relu(batch_norm(x)), y its output: batch_norm_backward of g·[y > 0],
    the mask applied as g is read.  -> dx, dgamma, dbeta."""
    return _backward(g, x, y, mean, invstd, gamma, relu=True)


def batch_norm_affine(x, scale, shift, relu):
    """Evaluation mode: y = x·scale + shift per channel (then max(y, 0) when relu), x (N, C, L)
    -> y in x's layout; one parallel pass on channels-last rows, NumPy array code otherwise."""
    scale, shift = scale.astype(x.dtype, copy=False), shift.astype(x.dtype, copy=False)
    rows = _rows(x)
    if rows is None:
        y = x * scale[:, None]
        y += shift[:, None]
        return np.maximum(y, 0, out=y) if relu else y
    y = np.empty_like(x)
    _affine_rows(rows, scale, shift, y[:, :, 0], relu)
    return y


def batch_norm_update_running(running_mean, running_var, mean, var, count, momentum):
    """In place: running = (1 - momentum) running + momentum batch, the batch variance
    made unbiased (x count / (count - 1)) as in PyTorch."""
    running_mean[...] = (1 - momentum) * running_mean + momentum * mean
    running_var[...] = (1 - momentum) * running_var + momentum * (var * (count / (count - 1)))
