"""im2col / col2im: turn a convolution into a matrix product.

Column layout, shared with the CUDA kernels:
    cols[(c*kh + i)*kw + j, (n*Ho + oh)*Wo + ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
(zero where the index falls in the padding).  Rows are ordered by input
channel, so the rows of one channel group are contiguous (grouped convolution
is a batch of GEMMs over row blocks), and the GEMM  W(Cout, C*kh*kw) @ cols
gives the output as (Cout, N*Ho*Wo).

The loops compute, for each kernel tap, the range of output columns whose input
column is inside the image, so the inner loops are branch-free copies that
LLVM vectorises (a plain memcpy-like stride when sw == 1).

These kernels are serial and release the GIL: conv2d runs them on chunks of
images, one chunk per core at a time (``minires.backend.parallel_for``),
each followed by a single-threaded GEMM on the same cache-resident columns.
"""
import numpy as np
from numba import njit


@njit(inline="always")
def _valid_range(k_offset, stride, pad, size, out_size):
    """Output positions o in [lo, hi) with 0 <= o*stride - pad + k_offset < size."""
    first = pad - k_offset                     # o*stride >= first
    lo = 0 if first <= 0 else (first + stride - 1) // stride
    last = size - 1 + pad - k_offset           # o*stride <= last
    hi = 0 if last < 0 else min(out_size, last // stride + 1)
    return lo, max(lo, hi)


@njit(nogil=True, cache=True, fastmath=True)
def _im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n_img, ch, h, w = x.shape
    plane = ho * wo
    for row in range(ch * kh * kw):          # one row per (channel, kernel tap)
        c = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        lo, hi = _valid_range(j * dw, sw, pw, w, wo)
        shift = j * dw - pw
        for n in range(n_img):
            for oh in range(ho):
                ih = oh * sh - ph + i * dh
                dst = n * plane + oh * wo
                if ih < 0 or ih >= h:
                    for ow in range(wo):
                        cols[row, dst + ow] = 0
                    continue
                for ow in range(lo):
                    cols[row, dst + ow] = 0
                for ow in range(lo, hi):
                    cols[row, dst + ow] = x[n, c, ih, ow * sw + shift]
                for ow in range(hi, wo):
                    cols[row, dst + ow] = 0


@njit(nogil=True, cache=True, fastmath=True)
def _col2im(cols, x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    n_img, ch, h, w = x.shape
    plane = ho * wo
    for nc in range(n_img * ch):
        n = nc // ch
        c = nc % ch
        for ih in range(h):
            for iw in range(w):
                x[n, c, ih, iw] = 0
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                lo, hi = _valid_range(j * dw, sw, pw, w, wo)
                shift = j * dw - pw
                for oh in range(ho):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    src = n * plane + oh * wo
                    for ow in range(lo, hi):
                        x[n, c, ih, ow * sw + shift] += cols[row, src + ow]


def im2col(x, kernel, stride, padding, dilation, out_hw, out=None):
    """x (N, C, H, W) -> cols (C*kh*kw, N*Ho*Wo), written into ``out`` when given."""
    n, c = x.shape[:2]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    if out is None:
        out = np.empty((c * kh * kw, n * ho * wo), dtype=x.dtype)
    _im2col(np.ascontiguousarray(x), out, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)
    return out


def col2im(cols, x_shape, kernel, stride, padding, dilation, out_hw, out=None):
    """cols (C*kh*kw, N*Ho*Wo) -> x (N, C, H, W), summing overlapping taps (im2col's adjoint).

    ``out`` (contiguous, shape x_shape) is overwritten when given.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    if out is None:
        out = np.empty(x_shape, dtype=cols.dtype)
    _col2im(np.ascontiguousarray(cols), out, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)
    return out
