"""Direct 3x3 convolution, stride 1, padding 1, for layers with few input channels (the stem).

With C_in = 3 neither im2col + GEMM (an inner dimension of 27) nor Winograd (GEMMs with an
inner dimension of 3, transforms on 3-channel vectors) keeps the vector units busy.  Here
each output channel of an image is one long vector loop over the image's flat pixels, on
the zero-padded grid (row pitch P = W + 2, q = y·P + x; the two pad columns of each output
row are computed and dropped):

    forward   out[k, q]       = Σ_c Σ_ij w[k, c, i, j] · xpad[c, q + i·P + j]
    dW        dW[k, c, i, j]  = Σ_n Σ_q gpad[k, q] · xpad[c, q + i·P + j]
              (g laid on the same grid, zeros in its pad columns)
    dx        the forward on g with w'[c, k] = w[k, c, ::-1, ::-1] (ops/direct.py)

Each thread takes a range of images (rows.over_rows: the calling thread alone for small batches).

The forward takes a channel's nine taps in one pass, so that out[k] is loaded and stored
once per input channel; dW keeps its nine sums in registers.  Indices are unsigned so that
LLVM vectorises the q loops: with signed ones (checked for wrap-around on every access) a
batch-32 stem forward took 3.8 ms on one core against 0.9, and 0.5 with the nine taps
together (Zen 5).
"""
import numpy as np
from numba import njit, uint64

from .rows import over_rows


@njit(nogil=True, cache=True)
def _pad_image(x, n, xpad, pitch):
    """xpad[c] (rows of ``pitch``, zero borders) <- image n of x (N, C, H, W), any layout."""
    _, c_in, h, w = x.shape
    for c in range(c_in):
        for y in range(h):
            base = (y + 1) * pitch + 1
            for i in range(w):
                xpad[c, base + i] = x[n, c, y, i]


def _check(op, x, weight_shape, g=None):
    """The shapes the kernels index without bounds checks (a wrong one would write past an array)."""
    if x.ndim != 4 or len(weight_shape) != 4 or tuple(weight_shape[1:]) != (x.shape[1], 3, 3):
        raise ValueError(f"{op}: expected x (N, C, H, W) and a (K, C, 3, 3) filter, got x "
                         f"{tuple(x.shape)} and filter {tuple(weight_shape)}")
    n, _, h, w = x.shape
    if g is not None and tuple(g.shape) != (n, h, w, weight_shape[0]):
        raise ValueError(f"{op}: expected the gradient as (N, H, W, K) = {(n, h, w, weight_shape[0])}, "
                         f"got {tuple(g.shape)}")


def direct_conv3x3(x, weight):
    """conv(x, weight), 3x3, stride 1, padding 1: x (N, C, H, W) any layout, weight (K, C, 3, 3)
    -> (N, H, W, K), C-contiguous (channels-last); the images shared across the threads."""
    _check("direct_conv3x3", x, weight.shape)
    weight = np.ascontiguousarray(weight, dtype=x.dtype)
    n, _, h, w = x.shape
    out = np.empty((n, h, w, weight.shape[0]), dtype=x.dtype)
    over_rows(lambda n0, n1: _forward_images(x, weight, out, n0, n1), n, x.nbytes + out.nbytes)
    return out


def direct_conv3x3_filter_grad(x, g, k_out):
    """dW (K, C, 3, 3) in x's dtype of conv(x, ·) for the upstream gradient g (N, H, W, K), any
    layouts; float64 sums per thread's images, added in order."""
    _check("direct_conv3x3_filter_grad", x, (k_out, *x.shape[1:2], 3, 3), g)
    partial = over_rows(lambda n0, n1: _filter_grad_images(x, g, n0, n1), x.shape[0], x.nbytes + g.nbytes)
    return sum(partial[1:], partial[0]).astype(x.dtype)


@njit(nogil=True, cache=True, fastmath=True)
def _forward_images(x, weight, out, n0, n1):
    """out[n] = conv(x[n], weight) for images n0..n1-1: x (N, C, H, W) any layout, weight
    (K, C, 3, 3), out (N, H, W, K) channels-last."""
    _, c_in, h, w = x.shape
    k_out = weight.shape[0]
    pitch = w + 2
    xpad = np.zeros((c_in, (h + 2) * pitch + 2), dtype=x.dtype)    # +2: the last row's j = 1, 2
    plane = np.empty((k_out, h * pitch), dtype=x.dtype)
    length, one, two = uint64(h * pitch), uint64(1), uint64(2)
    row1, row2 = uint64(pitch), uint64(2 * pitch)
    for n in range(n0, n1):
        _pad_image(x, n, xpad, pitch)
        for k in range(k_out):
            acc = plane[k]
            for q in range(length):
                acc[q] = 0.0
            for c in range(c_in):
                src = xpad[c]
                w00, w01, w02 = weight[k, c, 0, 0], weight[k, c, 0, 1], weight[k, c, 0, 2]
                w10, w11, w12 = weight[k, c, 1, 0], weight[k, c, 1, 1], weight[k, c, 1, 2]
                w20, w21, w22 = weight[k, c, 2, 0], weight[k, c, 2, 1], weight[k, c, 2, 2]
                for q in range(length):
                    acc[q] += (w00 * src[q] + w01 * src[q + one] + w02 * src[q + two]
                               + w10 * src[q + row1] + w11 * src[q + row1 + one] + w12 * src[q + row1 + two]
                               + w20 * src[q + row2] + w21 * src[q + row2 + one] + w22 * src[q + row2 + two])
        for y in range(h):                   # the valid columns, channels-last
            for i in range(w):
                q = y * pitch + i
                for k in range(k_out):
                    out[n, y, i, k] = plane[k, q]


@njit(nogil=True, cache=True, fastmath=True)
def _filter_grad_images(x, g, n0, n1):
    """Σ over images n0..n1-1 of dW (K, C, 3, 3), float64: x (N, C, H, W) any layout, g
    (N, H, W, K) any layout (the upstream gradient)."""
    _, c_in, h, w = x.shape
    k_out = g.shape[3]
    pitch = w + 2
    xpad = np.zeros((c_in, (h + 2) * pitch + 2), dtype=x.dtype)
    gpad = np.zeros((k_out, h * pitch), dtype=x.dtype)             # pad columns stay zero
    dw = np.zeros((k_out, c_in, 3, 3))
    length, one, two = uint64(h * pitch), uint64(1), uint64(2)
    row1, row2 = uint64(pitch), uint64(2 * pitch)
    zero = xpad[0, 0]                      # a border: 0 in the data's dtype (float64 sums would halve the lanes)
    for n in range(n0, n1):
        _pad_image(x, n, xpad, pitch)
        for y in range(h):
            for i in range(w):
                q = y * pitch + i
                for k in range(k_out):
                    gpad[k, q] = g[n, y, i, k]
        for k in range(k_out):
            gk = gpad[k]
            for c in range(c_in):
                src = xpad[c]
                s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = zero
                for q in range(length):
                    gv = gk[q]
                    s00 += gv * src[q]
                    s01 += gv * src[q + one]
                    s02 += gv * src[q + two]
                    s10 += gv * src[q + row1]
                    s11 += gv * src[q + row1 + one]
                    s12 += gv * src[q + row1 + two]
                    s20 += gv * src[q + row2]
                    s21 += gv * src[q + row2 + one]
                    s22 += gv * src[q + row2 + two]
                d = dw[k, c]
                d[0, 0] += s00
                d[0, 1] += s01
                d[0, 2] += s02
                d[1, 0] += s10
                d[1, 1] += s11
                d[1, 2] += s12
                d[2, 0] += s20
                d[2, 1] += s21
                d[2, 2] += s22
    return dw
