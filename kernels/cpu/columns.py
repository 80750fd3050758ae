"""im2col / col2im: turn a convolution into a matrix product.

Column layout (shared with the CUDA kernels), one row per output pixel:
    cols[(n*Ho + oh)*Wo + ow, (c*kh + i)*kw + j] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
(zero where the index falls in the padding).  Pixel-major rows make every GEMM
of conv2d run with the pixels as the long dimension and the taps contiguous:
    forward   out^T (n*L, Cout) = cols @ W^T
    dW        (Cout, K)         = g^T @ cols
    dcols     (n*L, K)          = g @ W
which OpenBLAS runs ~1.6-2x faster than the tap-major layout when Cout is small
(16 channels: 74 vs 45 GFLOP/s on one core; docs/benchmarks.md).  Columns of
one channel group are a contiguous block of K.

The kernels work on a zero-padded copy of the input, so their loops have no
bounds checks, and they fill the columns one output line at a time: the (Wo, K)
block being written stays in L1 (writing column by column across the whole chunk
made two threads no faster than one; tap by tap within a line, the inner loop is a
contiguous read that LLVM vectorises).  They are serial and
release the GIL: conv2d runs them on chunks of images, one chunk per core at a
time (``minires.backend.parallel_for``).
"""
import numpy as np
from numba import njit

from .workspace import workspace


@njit(nogil=True, cache=True, fastmath=True)
def _im2col_padded(xpad, cols, kh, kw, sh, sw, dh, dw, ho, wo):
    n_img, ch = xpad.shape[0], xpad.shape[1]
    for n in range(n_img):
        for oh in range(ho):
            # the rows of one output line: a (Wo, K) block that stays in L1 while it fills
            block = cols[(n * ho + oh) * wo:(n * ho + oh + 1) * wo]
            for c in range(ch):
                for i in range(kh):
                    src = xpad[n, c, oh * sh + i * dh]
                    for j in range(kw):
                        col = (c * kh + i) * kw + j
                        for ow in range(wo):
                            block[ow, col] = src[ow * sw + j * dw]


@njit(nogil=True, cache=True, fastmath=True)
def _col2im_padded(cols, xpad, kh, kw, sh, sw, dh, dw, ho, wo):
    """xpad (zeroed by the caller) += the taps of cols: the adjoint of _im2col_padded."""
    n_img, ch = xpad.shape[0], xpad.shape[1]
    for n in range(n_img):
        for oh in range(ho):
            block = cols[(n * ho + oh) * wo:(n * ho + oh + 1) * wo]
            for c in range(ch):
                for i in range(kh):
                    dst = xpad[n, c, oh * sh + i * dh]
                    for j in range(kw):
                        col = (c * kh + i) * kw + j
                        for ow in range(wo):
                            dst[ow * sw + j * dw] += block[ow, col]


def _padded(x, ph, pw):
    """x zero-padded, in this thread's reusable buffer (only the interior is rewritten)."""
    if ph == 0 and pw == 0:
        return np.ascontiguousarray(x)
    n, c, h, w = x.shape
    xpad = workspace("im2col.padded", (n, c, h + 2 * ph, w + 2 * pw), x.dtype, zero_on_resize=True)
    xpad[:, :, ph:ph + h, pw:pw + w] = x
    return xpad


def im2col(x, kernel, stride, padding, dilation, out_hw, out=None):
    """x (N, C, H, W) -> cols (N*Ho*Wo, C*kh*kw), written into ``out`` when given."""
    n, c = x.shape[:2]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    if out is None:
        out = np.empty((n * ho * wo, c * kh * kw), dtype=x.dtype)
    _im2col_padded(_padded(x, ph, pw), out, kh, kw, sh, sw, dh, dw, ho, wo)
    return out


def col2im(cols, x_shape, kernel, stride, padding, dilation, out_hw, out=None):
    """cols (N*Ho*Wo, C*kh*kw) -> x (N, C, H, W), summing overlapping taps (im2col's adjoint).

    ``out`` (shape x_shape) is overwritten when given.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    n, c, h, w = x_shape
    xpad = workspace("col2im.padded", (n, c, h + 2 * ph, w + 2 * pw), cols.dtype)
    xpad[...] = 0
    _col2im_padded(np.ascontiguousarray(cols), xpad, kh, kw, sh, sw, dh, dw, ho, wo)
    if out is None:
        out = np.empty(x_shape, dtype=cols.dtype)
    out[...] = xpad[:, :, ph:ph + h, pw:pw + w]
    return out
