"""Batch normalisation, training mode, as fused kernels over x viewed as (N, C, L).

Forward: per channel, mean and (biased) variance with float64 accumulators (two
passes over NCHW planes, one shifted pass over channels-last rows), then
y = x*scale + shift in a last pass -- no NumPy temporaries.
Backward (x̂ = (x - mean)·invstd, M = N·L):
    dbeta  = Σ g          dgamma = Σ g·x̂
    dx     = gamma·invstd · (g - dbeta/M - x̂·dgamma/M)

The same kernels with ``relu`` set are batch norm + ReLU in one op
(batch_norm_relu_forward/backward, minires/ops/fused.py): the last forward pass
writes y = max(x*scale + shift, 0), and backward reads g·[y > 0] -- ReLU's backward
mask -- wherever it reads g, so neither the BN output before the ReLU nor the
masked gradient is ever stored.

Two memory layouts, two loop orders:
  * NCHW memory, (N, C, L) with L = H*W: channels are independent -- the
    parallel loop runs over channels, each summing its own planes;
  * channels-last memory (what conv2d returns), viewed as (M, C, 1): each pass
    walks rows, all channels at once (a vector over C); big arrays have their
    rows split across threads and the partial sums added (kernels/cpu/rows.py).
"""
import math

import numpy as np
from numba import njit, prange, uint64

from ... import backend          # minires.backend: how many threads may meet
from .rows import over_rows, rows_together
from .spin import MEET_SPINS, meet

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


# ---------------------------------------------------------------- (M, C): row ranges
# Each kernel is a serial, GIL-free function of a row range r0..r1-1 that works on
# all channels at once (a vector over C); rows.over_rows runs it on this thread or
# splits the rows across minires's threads (kernels/cpu/rows.py says when, and why
# not Numba's prange).  Indices are unsigned so that LLVM vectorises over the
# channels (signed ones make Numba check for wrap-around on every access).
#
# The per-channel sums take four rows per step of the channel loop: with one, each
# row's acc[c] += waits for the previous row's store to acc (a store-to-load chain),
# and the sums over 8 MiB ran 4.7x slower (measured: 1.21 against 0.25 ms, one core).
# Four rows' terms are added first, then into the float64 accumulators.
#
# Narrow rows are widened.  At C = 16 a float32 row is one AVX-512 vector, fewer lanes
# than one step of the vector loop LLVM makes of a channel loop (four vectors), so the
# loops ran mostly in their scalar remainder.  R consecutive rows of (M, C) are one row
# of the (M/R, R·C) view -- free on contiguous memory -- so with the per-channel vectors
# tiled R times every kernel below runs unchanged on rows of R·C lanes, and per-lane
# sums are folded back to channels.  One core, in cache, 32768 x 16 float32, R = 8:
# affine 98.9 -> 49.2 µs, dx 171.4 -> 124.3, moments 64.1 -> 34.7 (benchmarks/batchnorm_rows.py,
# docs/benchmarks.md).
WIDE_ROW = 128          # the lanes a widened row aims at


def _widening(rows, ch):
    """R: the largest power of two with R·C <= WIDE_ROW that divides the row count."""
    r = 1
    while 2 * r * ch <= WIDE_ROW and rows % (2 * r) == 0:
        r *= 2
    return r


def _wide(a, r):
    """Rows (M, C) as (M/R, R·C): a view."""
    return a.reshape(a.shape[0] // r, a.shape[1] * r)


@njit(nogil=True, cache=True)
def _tiled(v, r):
    """A per-channel vector (C,) repeated for the R rows of a widened row: (R·C,)."""
    out = np.empty(v.size * r, dtype=v.dtype)
    for j in range(r):
        out[j * v.size:(j + 1) * v.size] = v
    return out


@njit(nogil=True, cache=True)
def _fold(total, ch):
    """Per-lane sums (k, R·C) -> per channel (k, C): lanes c, c + C, ... added in order."""
    out = total[:, :ch].copy()
    for j in range(1, total.shape[1] // ch):
        out += total[:, j * ch:(j + 1) * ch]
    return out


@njit(nogil=True, cache=True, fastmath=True)
def _shifted_sums(x, r0, r1, ref):
    """[Σ (x - ref), Σ (x - ref)²] per channel over rows r0..r1-1 of x (M, C): (2, C) float64."""
    ch = x.shape[1]
    flat, c_ = x.reshape(-1), uint64(ch)
    out = np.zeros((2, ch), dtype=np.float64)
    acc, acc_sq = out[0], out[1]
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
    return out


def _moments_rows(x):
    """Per-channel mean and biased variance of x (M, C): float64 sums, one pass over x.
    The sums are of x - x[0] (the first row): a shift that keeps the one-pass variance,
    Σd²/M - (Σd/M)², free of the cancellation that Σx²/M - mean² suffers when the mean
    is large against the spread."""
    ref = x[0].astype(np.float64)     # float64 differences: float32 squares overflow at 1.8e19
    r = _widening(*x.shape)
    xw, ref_w = _wide(x, r), _tiled(ref, r)
    total = _fold(sum(over_rows(lambda r0, r1: _shifted_sums(xw, r0, r1, ref_w), xw.shape[0], x.nbytes)),
                  x.shape[1])
    shift = total[0] / x.shape[0]
    return ref + shift, np.maximum(total[1] / x.shape[0] - shift * shift, 0.0)


@njit(nogil=True, cache=True, fastmath=True)
def _affine(x, r0, r1, scale, shift, residual, y, add, relu):
    """y = x·scale + shift (+ residual when add; then max(., 0) when relu), rows r0..r1-1:
    batch norm's last forward pass, and with add a basic block's second BN, shortcut and ReLU."""
    ch = x.shape[1]
    src, res, dst, c_ = x.reshape(-1), residual.reshape(-1), y.reshape(-1), uint64(ch)
    for r in range(r0, r1):
        base = uint64(r) * c_
        for c in range(c_):
            v = src[base + c] * scale[c] + shift[c]
            if add:
                v += res[base + c]
            if relu and v < 0:
                v = 0.0
            dst[base + c] = v


def _affine_rows(x, scale, shift, y, relu, residual=None):
    traffic = x.nbytes * (2 if residual is None else 3)
    r = _widening(*x.shape)
    xw, yw, res = _wide(x, r), _wide(y, r), _wide(x if residual is None else residual, r)
    scale, shift = _tiled(scale, r), _tiled(shift, r)
    over_rows(lambda r0, r1: _affine(xw, r0, r1, scale, shift, res, yw, residual is not None, relu),
              xw.shape[0], traffic)


@njit(nogil=True, cache=True, fastmath=True, inline="always")
def _add_four_rows(src, o, xf, b, c_, mean, acc_g, acc_gx):
    """acc_g += Σ g and acc_gx += Σ g·(x - mean) over four rows: g at src[o:], x at xf[b:]."""
    for c in range(c_):
        g0, g1, g2, g3 = src[o + c], src[o + c_ + c], src[o + uint64(2) * c_ + c], src[o + uint64(3) * c_ + c]
        i0, i1, i2, i3 = b + c, b + c_ + c, b + uint64(2) * c_ + c, b + uint64(3) * c_ + c
        m = mean[c]
        acc_g[c] += (g0 + g1) + (g2 + g3)
        acc_gx[c] += (g0 * (xf[i0] - m) + g1 * (xf[i1] - m)) + (g2 * (xf[i2] - m) + g3 * (xf[i3] - m))


_MASKED_ROWS = 64      # relu: rows of g·[y > 0] that _grad_sums buffers at a time


@njit(nogil=True, cache=True, fastmath=True)
def _grad_sums(g, x, y, r0, r1, mean, relu):
    """[Σ g, Σ g·(x - mean)] per channel over rows r0..r1-1, four rows a step (as
    _shifted_sums); g read as g·[y > 0] when relu: (2, C) float64.
    relu: up to 64 rows of g·[y > 0] go to a small buffer first, in a plain loop that LLVM
    vectorises.  With the mask inside the sums' loop that loop stayed scalar: 8 MiB at
    C = 16 took 2.5-4.7 ms against 0.5 without relu; buffered 4 rows at a time, 1.7-2.1;
    64 rows, 1.0-1.1 (one core, Zen 5; docs/benchmarks.md)."""
    ch = x.shape[1]
    gf, xf, yf, c_ = g.reshape(-1), x.reshape(-1), y.reshape(-1), uint64(ch)
    out = np.zeros((2, ch), dtype=np.float64)
    acc_g, acc_gx = out[0], out[1]
    masked = np.empty(_MASKED_ROWS * ch if relu else 0, dtype=g.dtype)
    r = r0
    while r + 4 <= r1:
        rows = uint64(min(_MASKED_ROWS, (r1 - r) // 4 * 4))
        b = uint64(r) * c_
        if relu:
            for k in range(rows * c_):
                v = gf[b + k]
                if not yf[b + k] > 0:
                    v = 0.0
                masked[k] = v
            for q in range(uint64(0), rows, uint64(4)):
                _add_four_rows(masked, q * c_, xf, b + q * c_, c_, mean, acc_g, acc_gx)
        else:
            for q in range(uint64(0), rows, uint64(4)):
                _add_four_rows(gf, b + q * c_, xf, b + q * c_, c_, mean, acc_g, acc_gx)
        r += rows
    for q in range(r, r1):
        b = uint64(q) * c_
        for c in range(c_):
            gv = gf[b + c]
            if relu and not yf[b + c] > 0:
                gv = 0.0
            acc_g[c] += gv
            acc_gx[c] += gv * (xf[b + c] - mean[c])
    return out


def _grad_sums_rows(g, x, y, mean, relu):
    """Per channel: Σ g and Σ g·(x - mean), float64 (relu: g read as g·[y > 0])."""
    r = _widening(*x.shape)
    gw, xw, yw, mean_w = _wide(g, r), _wide(x, r), _wide(y, r), _tiled(mean, r)
    total = _fold(sum(over_rows(lambda r0, r1: _grad_sums(gw, xw, yw, r0, r1, mean_w, relu), xw.shape[0],
                                x.nbytes * (3 if relu else 2))), x.shape[1])
    return total[0], total[1]


@njit(nogil=True, cache=True, fastmath=True)
def _dx(g, x, y, r0, r1, mean, scale, a, b_coef, dx, relu):
    """dx = scale·(g - a - (x - mean)·b) per channel, rows r0..r1-1 (g masked by y > 0 when relu)."""
    ch = x.shape[1]
    gf, xf, yf, out, c_ = g.reshape(-1), x.reshape(-1), y.reshape(-1), dx.reshape(-1), uint64(ch)
    for r in range(r0, r1):
        base = uint64(r) * c_
        for c in range(c_):
            gv = gf[base + c]
            if relu and not yf[base + c] > 0:
                gv = 0.0
            out[base + c] = scale[c] * (gv - a[c] - (xf[base + c] - mean[c]) * b_coef[c])


def _dx_rows(g, x, y, mean, scale, a, b_coef, dx, relu):
    r = _widening(*x.shape)
    gw, xw, yw, dxw = _wide(g, r), _wide(x, r), _wide(y, r), _wide(dx, r)
    mean, scale, a, b_coef = (_tiled(v, r) for v in (mean, scale, a, b_coef))
    over_rows(lambda r0, r1: _dx(gw, xw, yw, r0, r1, mean, scale, a, b_coef, dxw, relu), xw.shape[0],
              x.nbytes * (4 if relu else 3))


# Both passes in one fork-join (rows.rows_together): each thread sums its rows, the
# threads meet (spin.meet), each adds up all the partial sums in the same order -- so
# every thread holds the same statistics, bit for bit those of the two split passes one
# after the other (the fallback below, tested) -- and then writes its own rows, which
# its first pass has just read into its cache.
@njit(nogil=True, cache=True)
def _forward_factors(total, ref, count, gamma, beta, eps, like):
    """From Σ(x - ref) and Σ(x - ref)² (total, (2, C)): mean, var, invstd (float64) and the
    affine's scale and shift (the data's dtype, like ``like``) -- _forward_rows's formulas."""
    shift_ = total[0] / count
    mean = ref + shift_
    var = np.maximum(total[1] / count - shift_ * shift_, 0.0)
    invstd = 1.0 / np.sqrt(var + eps)
    scale, shift = np.empty_like(like), np.empty_like(like)
    for c in range(like.size):
        scale[c] = gamma[c] * invstd[c]
        shift[c] = beta[c] - mean[c] * gamma[c] * invstd[c]
    return mean, var, invstd, scale, shift


@njit(nogil=True, cache=True)
def _forward_together(x, r0, r1, k, parts, ref, partials, flags, gamma, beta, eps, residual, y,
                      add, relu, stats):
    """x, residual, y: widened rows (M/R, R·C); ref and the statistics per channel (C,)."""
    ch = ref.size
    r = x.shape[1] // ch
    partials[k] = _shifted_sums(x, r0, r1, _tiled(ref, r))
    if not meet(flags, k, parts, MEET_SPINS):
        raise RuntimeError("batch_norm: a thread of the split forward never reached the meeting")
    total = partials[0].copy()
    for j in range(1, parts):
        total += partials[j]
    mean, var, invstd, scale, shift = _forward_factors(_fold(total, ch), ref, x.shape[0] * r, gamma, beta,
                                                       eps, x[0, :ch])
    if k == 0:
        stats[0], stats[1], stats[2] = mean, var, invstd
    _affine(x, r0, r1, _tiled(scale, r), _tiled(shift, r), residual, y, add, relu)


def _forward_rows(x, gamma, beta, eps, y, relu, residual=None):
    """BN (+ residual, + ReLU) of channels-last rows x (M, C) into y: mean, var, invstd."""
    ch = x.shape[1]
    ref = x[0].astype(np.float64)     # the shift of _moments_rows
    traffic = x.nbytes * (3 if residual is None else 4)
    threads = backend.num_threads()
    r = _widening(*x.shape)
    xw, yw, res = _wide(x, r), _wide(y, r), _wide(x if residual is None else residual, r)
    partials, flags, stats = np.empty((threads, 2, r * ch)), np.zeros(8 * threads, np.int64), np.empty((3, ch))
    if rows_together(
            lambda r0, r1, k, parts: _forward_together(xw, r0, r1, k, parts, ref, partials, flags, gamma,
                                                       beta, eps, res, yw, residual is not None, relu, stats),
            xw.shape[0], traffic):
        return stats[0], stats[1], stats[2]
    mean, var = _moments_rows(x)
    invstd = 1.0 / np.sqrt(var + eps)
    scale = (gamma * invstd).astype(x.dtype)
    shift = (beta - mean * gamma * invstd).astype(x.dtype)
    _affine_rows(x, scale, shift, y, relu, residual)
    return mean, var, invstd


@njit(nogil=True, cache=True)
def _backward_together(g, x, y, r0, r1, k, parts, mean, mean_t, invstd, gamma, partials, flags, dx,
                       relu, sums):
    """g, x, y, dx: widened rows (M/R, R·C); the statistics per channel (C,)."""
    ch = mean.size
    r = x.shape[1] // ch
    partials[k] = _grad_sums(g, x, y, r0, r1, _tiled(mean, r), relu)
    if not meet(flags, k, parts, MEET_SPINS):
        raise RuntimeError("batch_norm: a thread of the split backward never reached the meeting")
    total = partials[0].copy()
    for j in range(1, parts):
        total += partials[j]
    total = _fold(total, ch)
    count = x.shape[0] * r
    scale, a, b = np.empty_like(mean_t), np.empty_like(mean_t), np.empty_like(mean_t)
    for c in range(ch):                # _backward_rows's formulas, in the data's dtype
        scale[c] = gamma[c] * invstd[c]
        a[c] = total[0, c] / count
        b[c] = total[1, c] * invstd[c] * invstd[c] / count
    if k == 0:
        sums[:] = total
    _dx(g, x, y, r0, r1, _tiled(mean_t, r), _tiled(scale, r), _tiled(a, r), _tiled(b, r), dx, relu)


def _backward_rows(g, x, y, mean, invstd, gamma, dx, relu):
    """dx of channels-last rows (M, C) into dx: Σ g and Σ g·(x - mean), float64."""
    ch = x.shape[1]
    threads = backend.num_threads()
    r = _widening(*x.shape)
    gw, xw, yw, dxw = _wide(g, r), _wide(x, r), _wide(y, r), _wide(dx, r)
    partials, flags, sums = np.empty((threads, 2, r * ch)), np.zeros(8 * threads, np.int64), np.empty((2, ch))
    mean_t = mean.astype(x.dtype)
    if rows_together(
            lambda r0, r1, k, parts: _backward_together(gw, xw, yw, r0, r1, k, parts, mean, mean_t, invstd,
                                                        gamma, partials, flags, dxw, relu, sums),
            xw.shape[0], x.nbytes * (5 if relu else 4)):
        return sums[0], sums[1]
    count = x.shape[0]
    sum_g, sum_gx = _grad_sums_rows(g, x, y, mean, relu)
    scale = (gamma * invstd).astype(x.dtype)
    a = (sum_g / count).astype(x.dtype)
    b = (sum_gx * invstd * invstd / count).astype(x.dtype)
    _dx_rows(g, x, y, mean_t, scale, a, b, dx, relu)
    return sum_g, sum_gx


# ---------------------------------------------------------------- the interface
def _rows(a):
    """a (M, C, 1) as its (M, C) rows when it is channels-last memory, else None."""
    return a[:, :, 0] if a.shape[2] == 1 and a[:, :, 0].flags.c_contiguous else None


def _forward(x, gamma, beta, eps, relu):
    rows = _rows(x)
    if rows is not None:                                            # channels-last rows
        y = np.empty_like(x)
        mean, var, invstd = _forward_rows(rows, gamma, beta, eps, y[:, :, 0], relu)
        return y, mean, var, invstd
    x = np.ascontiguousarray(x)
    ch = x.shape[1]
    y = np.empty_like(x)
    mean, var, invstd = (np.empty(ch, dtype=np.float64) for _ in range(3))
    _forward_planes(x, gamma, beta, float(eps), y, mean, var, invstd, relu)
    return y, mean, var, invstd


def _backward(g, x, y, mean, invstd, gamma, relu):
    """y: the forward's output when relu (its y > 0 is ReLU's mask); unread otherwise."""
    rows = _rows(x)
    if rows is not None:
        g_rows = np.ascontiguousarray(g[:, :, 0])
        y_rows = np.ascontiguousarray(y[:, :, 0]) if relu else rows
        dx = np.empty_like(x)
        sum_g, sum_gx = _backward_rows(g_rows, rows, y_rows, mean, invstd, gamma, dx[:, :, 0], relu)
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
    y = np.empty_like(x)
    mean, var, invstd = _forward_rows(rows, gamma, beta, eps, y[:, :, 0], True, residual=res)
    return y, mean, var, invstd


def batch_norm_relu_backward(g, x, y, mean, invstd, gamma):
    """Backward of relu(batch_norm(x)), y its output: batch_norm_backward of g·[y > 0],
    the mask applied as g is read.  -> dx, dgamma, dbeta."""
    return _backward(g, x, y, mean, invstd, gamma, relu=True)


def batch_norm_affine(x, scale, shift, relu, residual=None):
    """Evaluation mode: y = x·scale + shift per channel (+ residual, then max(y, 0) when
    relu), x and residual (N, C, L) -> y in x's layout; one parallel pass on channels-last
    rows, NumPy array code otherwise (the residual read in x's layout)."""
    scale, shift = scale.astype(x.dtype, copy=False), shift.astype(x.dtype, copy=False)
    rows = _rows(x)
    res = None if residual is None else _rows(residual)
    if rows is None or (residual is not None and res is None):
        y = x * scale[:, None]
        y += shift[:, None]
        if residual is not None:
            y += residual
        return np.maximum(y, 0, out=y) if relu else y
    y = np.empty_like(x)
    _affine_rows(rows, scale, shift, y[:, :, 0], relu, residual=res)
    return y


def batch_norm_update_running(running_mean, running_var, mean, var, count, momentum):
    """In place: running = (1 - momentum) running + momentum batch, the batch variance
    made unbiased (x count / (count - 1)) as in PyTorch."""
    running_mean[...] = (1 - momentum) * running_mean + momentum * mean
    running_var[...] = (1 - momentum) * running_var + momentum * (var * (count / (count - 1)))
