"""im2col / col2im: turn a convolution into a matrix product.

Images are channels-last here, x (N, H, W, C); the columns have one row per
output pixel and, for channel group g, kernel tap (i, j) and channel cg of the
group (Cg = C / groups channels each):

    cols[(n*Ho + oh)*Wo + ow, ((g*kh + i)*kw + j)*Cg + cg] = x[n, oh*sh - ph + i*dh, ow*sw - pw + j*dw, g*Cg + cg]

(zero in the padding).  Why this layout (shared with the CUDA kernels):
  * for one output pixel and one kernel row i, the taps (j, c) are the input
    pixels ow-pw .. ow-pw+kw-1 of row ih with all their channels -- one
    contiguous run of kw*C numbers in channels-last memory.  im2col is a series
    of short memcpys and col2im a series of short vector adds;
  * every GEMM of conv2d then runs with the pixels as its long dimension and the
    taps contiguous, which OpenBLAS does 1.6-2x faster than the tap-major layout
    when Cout is small (docs/benchmarks.md);
  * out^T = cols @ W^T is (pixels, Cout): the next layer's channels-last input as is.

The kernels work on a zero-padded copy of the input (no bounds checks in the
loops), are serial and release the GIL: conv2d runs them on chunks of images,
one chunk per core at a time (``minires.backend.parallel_for``).
"""
import numpy as np
from numba import njit, uint64

from .workspace import workspace


# Index arithmetic is unsigned on purpose: with signed indices Numba must allow for
# negative (wrap-around) indexing on every access, which stops LLVM from
# vectorising the copies -- measured 7x slower.  Everything is non-negative here
# because the input is padded.  (Mixing uint64 with int64 in Numba gives float64:
# the wrappers pass the geometry as uint64 and shapes are converted on entry.)
@njit(nogil=True, cache=True, fastmath=True)
def _im2col_padded(xpad, cols, kh, kw, sh, sw, dh, dw, ho, wo, groups):
    n_img, hp, wp, ch = uint64(xpad.shape[0]), uint64(xpad.shape[1]), uint64(xpad.shape[2]), uint64(xpad.shape[3])
    ntap = uint64(cols.shape[1])
    cg = ch // groups
    run = kw * ch                        # taps (j, c) of one kernel row: contiguous when
    merged = groups == 1 and dw == 1     # there is one group and no dilation
    x, out = xpad.reshape(-1), cols.reshape(-1)
    for n in range(n_img):
        for oh in range(ho):
            for ow in range(wo):
                dst = ((n * ho + oh) * wo + ow) * ntap
                for i in range(kh):
                    src = ((n * hp + oh * sh + i * dh) * wp + ow * sw) * ch
                    if merged:
                        d0 = dst + i * run
                        for t in range(run):
                            out[d0 + t] = x[src + t]
                        continue
                    for g in range(groups):
                        for j in range(kw):
                            s0 = src + j * dw * ch + g * cg
                            d0 = dst + ((g * kh + i) * kw + j) * cg
                            for t in range(cg):
                                out[d0 + t] = x[s0 + t]


@njit(nogil=True, cache=True, fastmath=True)
def _col2im_padded(cols, xpad, kh, kw, sh, sw, dh, dw, ho, wo, groups):
    """xpad (zeroed by the caller) += the taps of cols: the adjoint of _im2col_padded."""
    n_img, hp, wp, ch = uint64(xpad.shape[0]), uint64(xpad.shape[1]), uint64(xpad.shape[2]), uint64(xpad.shape[3])
    ntap = uint64(cols.shape[1])
    cg = ch // groups
    run = kw * ch
    merged = groups == 1 and dw == 1
    x, inp = xpad.reshape(-1), cols.reshape(-1)
    for n in range(n_img):
        for oh in range(ho):
            for ow in range(wo):
                src = ((n * ho + oh) * wo + ow) * ntap
                for i in range(kh):
                    dst = ((n * hp + oh * sh + i * dh) * wp + ow * sw) * ch
                    if merged:
                        s0 = src + i * run
                        for t in range(run):
                            x[dst + t] += inp[s0 + t]
                        continue
                    for g in range(groups):
                        for j in range(kw):
                            d0 = dst + j * dw * ch + g * cg
                            s0 = src + ((g * kh + i) * kw + j) * cg
                            for t in range(cg):
                                x[d0 + t] += inp[s0 + t]


def _unsigned(*values):
    return tuple(np.uint64(v) for v in values)


def _padded(x, ph, pw):
    """x (N, H, W, C) zero-padded, in this thread's reusable buffer (only the interior
    is rewritten; the border stays zero)."""
    if ph == 0 and pw == 0:
        return np.ascontiguousarray(x)
    n, h, w, c = x.shape
    xpad = workspace("im2col.padded", (n, h + 2 * ph, w + 2 * pw, c), x.dtype, zero_on_resize=True)
    xpad[:, ph:ph + h, pw:pw + w] = x
    return xpad


def im2col(x, kernel, stride, padding, dilation, out_hw, groups=1, out=None):
    """x (N, H, W, C) channels-last -> cols (N*Ho*Wo, C*kh*kw), written into ``out`` when given."""
    n, c = x.shape[0], x.shape[3]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    if out is None:
        out = np.empty((n * ho * wo, c * kh * kw), dtype=x.dtype)
    _im2col_padded(_padded(x, ph, pw), out, *_unsigned(kh, kw, sh, sw, dh, dw, ho, wo, groups))
    return out


def col2im(cols, x_shape, kernel, stride, padding, dilation, out_hw, groups=1, out=None):
    """cols (N*Ho*Wo, C*kh*kw) -> x (N, H, W, C) channels-last, summing overlapping taps
    (im2col's adjoint).  ``out`` (shape x_shape) is overwritten when given."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    n, h, w, c = x_shape
    xpad = workspace("col2im.padded", (n, h + 2 * ph, w + 2 * pw, c), cols.dtype)
    xpad[...] = 0
    _col2im_padded(np.ascontiguousarray(cols), xpad, *_unsigned(kh, kw, sh, sw, dh, dw, ho, wo, groups))
    if out is None:
        out = np.empty(x_shape, dtype=cols.dtype)
    out[...] = xpad[:, ph:ph + h, pw:pw + w]
    return out
