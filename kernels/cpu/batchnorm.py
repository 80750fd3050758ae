"""Batch normalisation, training mode, as two fused kernels over x viewed as (N, C, L).

Forward: per channel, mean and (biased) variance in two passes with float64
accumulators, then y = x*scale + shift in a third -- no NumPy temporaries.
Backward (x̂ = (x - mean)·invstd, M = N·L):
    dbeta  = Σ g          dgamma = Σ g·x̂
    dx     = gamma·invstd · (g - dbeta/M - x̂·dgamma/M)
Channels are independent, so the parallel loop runs over channels.
"""
import math

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, fastmath=True)
def _forward(x, gamma, beta, eps, y, mean, var, invstd):
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
def _backward(g, x, mean, invstd, gamma, dx, dgamma, dbeta):
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


def batch_norm_forward(x, gamma, beta, eps):
    """x (N, C, L) -> y, mean, var (biased), invstd; the statistics are float64 (C,)."""
    x = np.ascontiguousarray(x)
    ch = x.shape[1]
    y = np.empty_like(x)
    mean, var, invstd = (np.empty(ch, dtype=np.float64) for _ in range(3))
    _forward(x, gamma, beta, float(eps), y, mean, var, invstd)
    return y, mean, var, invstd


def batch_norm_backward(g, x, mean, invstd, gamma):
    """-> dx (N, C, L), dgamma (C,), dbeta (C,)."""
    g = np.ascontiguousarray(g)
    dx = np.empty_like(x)
    dgamma = np.empty(x.shape[1], dtype=x.dtype)
    dbeta = np.empty(x.shape[1], dtype=x.dtype)
    _backward(g, x, mean, invstd, gamma, dx, dgamma, dbeta)
    return dx, dgamma, dbeta
