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

The kernels are serial and release the GIL: conv2d runs them on chunks of
images, one chunk per core at a time (``minires.backend.parallel_for``).
"""
import numpy as np
from numba import njit, uint64



# The loops decide with signed arithmetic whether a tap falls in the padding, then
# index with unsigned integers: with signed indices Numba must allow for negative
# (wrap-around) indexing on every access, which stops LLVM from vectorising the
# copies -- measured 7x slower.  (In Numba, uint64 mixed with int64 gives float64,
# so each index is converted once, after the bounds logic.)
@njit(nogil=True, cache=True, fastmath=True)
def _im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, groups):
    n_img, h, w, ch = x.shape
    cg = ch // groups
    run = uint64(kw * ch)                # taps (j, c) of one kernel row: contiguous when
    merged = groups == 1 and dw == 1     # there is one group and no dilation
    ntap = cols.shape[1]
    src, out = x.reshape(-1), cols.reshape(-1)
    for n in range(n_img):
        for oh in range(ho):
            for ow in range(wo):
                row = ((n * ho + oh) * wo + ow) * ntap
                iw0 = ow * sw - pw
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    line = ((n * h + ih) * w) * ch
                    if merged and 0 <= ih < h and 0 <= iw0 and iw0 + kw <= w:
                        s0, d0 = uint64(line + iw0 * ch), uint64(row + i * kw * ch)
                        for t in range(run):                    # the common case: one run
                            out[d0 + t] = src[s0 + t]
                        continue
                    for g in range(groups):
                        for j in range(kw):
                            d0 = uint64(row + ((g * kh + i) * kw + j) * cg)
                            iw = iw0 + j * dw
                            if 0 <= ih < h and 0 <= iw < w:
                                s0 = uint64(line + iw * ch + g * cg)
                                for t in range(uint64(cg)):
                                    out[d0 + t] = src[s0 + t]
                            else:                               # padding
                                for t in range(uint64(cg)):
                                    out[d0 + t] = 0


@njit(nogil=True, cache=True, fastmath=True)
def _col2im(cols, x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, groups):
    """x = the sum of the taps of cols that read each element: the adjoint of _im2col."""
    n_img, h, w, ch = x.shape
    cg = ch // groups
    run = uint64(kw * ch)
    merged = groups == 1 and dw == 1
    ntap = cols.shape[1]
    dst, inp = x.reshape(-1), cols.reshape(-1)
    dst[:] = 0
    for n in range(n_img):
        for oh in range(ho):
            for ow in range(wo):
                row = ((n * ho + oh) * wo + ow) * ntap
                iw0 = ow * sw - pw
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    line = ((n * h + ih) * w) * ch
                    if merged and 0 <= iw0 and iw0 + kw <= w:
                        d0, s0 = uint64(line + iw0 * ch), uint64(row + i * kw * ch)
                        for t in range(run):
                            dst[d0 + t] += inp[s0 + t]
                        continue
                    for g in range(groups):
                        for j in range(kw):
                            iw = iw0 + j * dw
                            if 0 <= iw < w:
                                d0 = uint64(line + iw * ch + g * cg)
                                s0 = uint64(row + ((g * kh + i) * kw + j) * cg)
                                for t in range(uint64(cg)):
                                    dst[d0 + t] += inp[s0 + t]


def im2col(x, kernel, stride, padding, dilation, out_hw, groups=1, out=None):
    """x (N, H, W, C) channels-last -> cols (N*Ho*Wo, kh*kw*C), written into ``out`` when given;
    taps ordered (group, i, j, channel of the group), see the module docstring."""
    n, c = x.shape[0], x.shape[3]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    if out is None:
        out = np.empty((n * ho * wo, c * kh * kw), dtype=x.dtype)
    _im2col(np.ascontiguousarray(x), out, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, groups)
    return out


def col2im(cols, x_shape, kernel, stride, padding, dilation, out_hw, groups=1, out=None):
    """cols (N*Ho*Wo, kh*kw*C) -> x (N, H, W, C) channels-last, summing overlapping taps
    (im2col's adjoint).  ``out`` (C-contiguous, shape x_shape) is overwritten when given."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    if out is None:
        out = np.empty(x_shape, dtype=cols.dtype)
    _col2im(np.ascontiguousarray(cols), out, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, groups)
    return out
