"""Max and average pooling over (N, C, H, W), one (image, channel) plane per parallel iteration."""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def _max_forward(x, out, argmax, kh, kw, sh, sw, ph, pw):
    n_img, ch, h, w = x.shape
    ho, wo = out.shape[2], out.shape[3]
    for nc in prange(n_img * ch):
        n = nc // ch
        c = nc % ch
        for oh in range(ho):
            for ow in range(wo):
                best = -np.inf
                where = -1
                for i in range(kh):
                    ih = oh * sh - ph + i
                    if ih < 0 or ih >= h:
                        continue
                    for j in range(kw):
                        iw = ow * sw - pw + j
                        if iw < 0 or iw >= w:
                            continue
                        v = x[n, c, ih, iw]
                        if v > best or where < 0:   # first maximum wins, NaN-free input
                            best = v
                            where = ih * w + iw
                out[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = where


@njit(parallel=True, cache=True)
def _max_backward(g, argmax, dx):
    n_img, ch, h, w = dx.shape
    ho, wo = g.shape[2], g.shape[3]
    for nc in prange(n_img * ch):
        n = nc // ch
        c = nc % ch
        for oh in range(ho):
            for ow in range(wo):
                k = argmax[n, c, oh, ow]
                dx[n, c, k // w, k % w] += g[n, c, oh, ow]


@njit(cache=True)
def _window(o, s, p, k, size):
    lo = o * s - p
    hi = lo + k
    return max(lo, 0), min(hi, size), min(hi, size + p) - lo


@njit(parallel=True, cache=True)
def _avg_forward(x, out, kh, kw, sh, sw, ph, pw, include_pad):
    n_img, ch, h, w = x.shape
    ho, wo = out.shape[2], out.shape[3]
    for nc in prange(n_img * ch):
        n = nc // ch
        c = nc % ch
        for oh in range(ho):
            h0, h1, hspan = _window(oh, sh, ph, kh, h)
            for ow in range(wo):
                w0, w1, wspan = _window(ow, sw, pw, kw, w)
                total = 0.0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        total += x[n, c, ih, iw]
                # PyTorch's divisor: the window clipped to the padded input, or
                # only its valid part when padding is not counted.
                div = hspan * wspan if include_pad else (h1 - h0) * (w1 - w0)
                out[n, c, oh, ow] = total / div


@njit(parallel=True, cache=True)
def _avg_backward(g, dx, kh, kw, sh, sw, ph, pw, include_pad):
    n_img, ch, h, w = dx.shape
    ho, wo = g.shape[2], g.shape[3]
    for nc in prange(n_img * ch):
        n = nc // ch
        c = nc % ch
        for oh in range(ho):
            h0, h1, hspan = _window(oh, sh, ph, kh, h)
            for ow in range(wo):
                w0, w1, wspan = _window(ow, sw, pw, kw, w)
                div = hspan * wspan if include_pad else (h1 - h0) * (w1 - w0)
                share = g[n, c, oh, ow] / div
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        dx[n, c, ih, iw] += share


def max_pool2d_forward(x, kernel, stride, padding, out_hw):
    """-> out (N, C, Ho, Wo), argmax (int32 flat index into each input plane)."""
    x = np.ascontiguousarray(x)
    shape = x.shape[:2] + tuple(out_hw)
    out = np.empty(shape, dtype=x.dtype)
    argmax = np.empty(shape, dtype=np.int32)
    _max_forward(x, out, argmax, *kernel, *stride, *padding)
    return out, argmax


def max_pool2d_backward(g, argmax, x_shape):
    dx = np.zeros(x_shape, dtype=g.dtype)
    _max_backward(np.ascontiguousarray(g), argmax, dx)
    return dx


def avg_pool2d_forward(x, kernel, stride, padding, out_hw, count_include_pad):
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape[:2] + tuple(out_hw), dtype=x.dtype)
    _avg_forward(x, out, *kernel, *stride, *padding, bool(count_include_pad))
    return out


def avg_pool2d_backward(g, x_shape, kernel, stride, padding, count_include_pad):
    dx = np.zeros(x_shape, dtype=g.dtype)
    _avg_backward(np.ascontiguousarray(g), dx, *kernel, *stride, *padding, bool(count_include_pad))
    return dx
