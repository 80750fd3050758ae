"""Winograd transforms for 3x3, stride-1 convolution (Lavin & Gray 2015).

F(m x m, 3 x 3) computes an m x m tile of outputs from an a x a tile of inputs
(a = m + 2) with a*a multiplies per channel pair instead of 9*m*m:

    Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A          summed over the input channels

for one input tile d (a x a), one filter g (3 x 3) and its output tile Y (m x m).
Written as one GEMM per position (xi, nu) of the a x a tile:

    V[xi,nu][p, c] = (B^T d_{p,c} B)[xi, nu]       input transform    (tile p, channel c)
    U[xi,nu][c, k] = (G g_{k,c} G^T)[xi, nu]       filter transform   (output channel k)
    M[xi,nu]       = V[xi,nu] @ U[xi,nu]           a*a GEMMs (P, C) @ (C, K)
    Y_{p,k}        = A^T M[:, :][p, k] A           output transform

F(2x2, 3x3), a = 4 (2.25x fewer multiplies than direct; coefficients exact in binary):

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [ 0    0    1 ]

F(4x4, 3x3), a = 6 (4x fewer multiplies; the larger coefficients cost accuracy):

    B^T = [4  0 -5  0  1  0]   G = [ 1/4     0     0  ]   A^T = [1  1  1  1  1  0]
          [0 -4 -4  1  1  0]       [-1/6  -1/6  -1/6  ]         [0  1 -1  2 -2  0]
          [0  4 -4 -1  1  0]       [-1/6   1/6  -1/6  ]         [0  1  1  4  4  0]
          [0 -2 -1  2  1  0]       [1/24  1/12   1/6  ]         [0  1 -1  8 -8  1]
          [0  2 -1 -2  1  0]       [1/24 -1/12   1/6  ]
          [0  4  0 -5  0  1]       [  0     0     1   ]

Layout.  Images are channels-last, x (N, H, W, C), as everywhere in conv2d.  Tile
p = (n*TH + ti)*TW + tj covers output rows ti*m .. ti*m+m-1 (TH = ceil(H/m): a
partial last tile is padded with zeros and its extra outputs dropped) and reads
input rows ti*m - 1 .. ti*m + m (padding 1).  V is (a*a, P, C) and M (a*a, P, K):
each GEMM operand is a C-contiguous matrix with the channels contiguous, and the
transforms below run along the channels (zero coefficients skipped, the padding
read as zeros).

Gradients:
  * M's adjoint through the output transform is dM = A dY A^T (``winograd_output_grad``:
    the input kernel with A for B^T, on the m x m tiles of dY);
  * dW: dU[xi,nu] = V[xi,nu]^T @ dM[xi,nu], then the filter transform's adjoint,
    dg = G^T dU G;
  * dx: dZ[xi,nu] = dM[xi,nu] @ U[xi,nu]^T, then the input transform's adjoint,
    B dZ B^T summed where the tiles overlap (``winograd_input_grad``, F(2x2) on even
    sizes).  Elsewhere dx is the convolution of dY with the flipped, transposed filter
    w'[c, k, i, j] = w[k, c, 2-i, 2-j] -- a forward pass on dY (two more transforms).

The transform kernels are serial and release the GIL: conv2d runs them on chunks
of images, one chunk per core at a time, like im2col (kernels/cpu/columns.py).
"""
import numpy as np
from numba import njit, uint64

# (B^T, G, A^T) per output tile size m, as float64; the kernels take them in the data's dtype.
TRANSFORMS = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                 dtype=np.float64)),
}


def winograd_tile_grid(h, w, m):
    """(TH, TW): the m x m output tiles that cover an h x w output."""
    return -(-h // m), -(-w // m)


# Each transform is separable: t applied along the rows, then along the columns, and
# each pass runs over a band of tiles at once (one tile row): the row pass on runs of
# W*C contiguous numbers, the column pass on TW runs of C, one per tile, for each
# coefficient -- the loops' overhead is paid per band, not per tile (3x faster at
# C = 16).  Offsets are unsigned, computed after the signed bounds logic: signed
# indices make Numba allow for negative (wrap-around) indexing on every access,
# which keeps LLVM from vectorising (the same lesson as columns.py's).
@njit(nogil=True, cache=True, fastmath=True)
def _scaled_runs(dst, d0, d_step, src, s0, s_step, count, run, coef, accumulate):
    """For q < count: dst[d0 + q*d_step :][:run] (+)= coef * src[s0 + q*s_step :][:run]."""
    for q in range(count):
        d, s = d0 + q * d_step, s0 + q * s_step
        if accumulate:
            for k in range(run):
                dst[d + k] += coef * src[s + k]
        else:
            for k in range(run):
                dst[d + k] = coef * src[s + k]


@njit(nogil=True, cache=True, fastmath=True)
def _zero_run(dst, d0, run):
    for k in range(run):
        dst[d0 + k] = 0


@njit(nogil=True, cache=True, fastmath=True)
def _tiles_in(x, t, m, offset, v):
    """v[xi*a + nu, p, :] = sum_ij t[xi, i] x[n, ti*m + offset + i, tj*m + offset + j, :] t[nu, j]
    (zero outside the image), for t (a, window) and every tile p of the m-grid; offset <= 0."""
    n_img, h, w, ch = x.shape
    a, window = t.shape
    th, tw = -(-h // m), -(-w // m)
    src, dst = x.reshape(-1), v.reshape(-1)
    one, run, plane = uint64(1), uint64(ch), uint64(v.shape[1] * ch)
    # t along the rows of one tile row: a band of image columns offset .. offset + cols - 1
    # (image columns 0 .. w-1 at band column -offset; zeros either side)
    cols = (tw - 1) * m + window
    band = np.zeros(a * cols * ch, dtype=v.dtype)
    line, lead = uint64(cols * ch), uint64(-offset * ch)
    for n in range(n_img):
        for ti in range(th):
            r0 = ti * m + offset
            for xi in range(a):
                accumulate = False
                for i in range(window):
                    if t[xi, i] != 0 and 0 <= r0 + i < h:
                        _scaled_runs(band, uint64(xi) * line + lead, one, src, uint64((n * h + r0 + i) * w * ch),
                                     one, one, uint64(w * ch), t[xi, i], accumulate)
                        accumulate = True
                if not accumulate:
                    _zero_run(band, uint64(xi) * line + lead, uint64(w * ch))
            p0 = uint64((n * th + ti) * tw * ch)
            for xi in range(a):
                for nu in range(a):
                    accumulate = False
                    for j in range(window):
                        if t[nu, j] != 0:
                            _scaled_runs(dst, uint64(xi * a + nu) * plane + p0, run,
                                         band, uint64(xi) * line + uint64(j * ch), uint64(m * ch),
                                         uint64(tw), run, t[nu, j], accumulate)
                            accumulate = True


@njit(nogil=True, cache=True, fastmath=True)
def _tiles_out(mt, at, m, y):
    """y[n, ti*m + r, tj*m + s, :] = sum_{xi,nu} at[r, xi] mt[xi*a + nu, p, :] at[s, nu]
    for the outputs inside y (N, H, W, K); at is A^T (m, a)."""
    n_img, h, w, ch = y.shape
    a = at.shape[1]
    th, tw = -(-h // m), -(-w // m)
    src, dst = mt.reshape(-1), y.reshape(-1)
    one, run, plane, row = uint64(1), uint64(ch), uint64(mt.shape[1] * ch), uint64(tw * ch)
    band = np.empty(m * a * tw * ch, dtype=y.dtype)   # A^T along the rows of one tile row's tiles
    for n in range(n_img):
        for ti in range(th):
            p0 = uint64((n * th + ti) * tw * ch)
            for r in range(m):
                for nu in range(a):
                    accumulate = False
                    for xi in range(a):
                        if at[r, xi] != 0:
                            _scaled_runs(band, uint64(r * a + nu) * row, one, src, uint64(xi * a + nu) * plane + p0,
                                         one, one, row, at[r, xi], accumulate)
                            accumulate = True
            for r in range(min(m, h - ti * m)):
                for s in range(m):
                    tiles = -(-(w - s) // m)                  # the tiles whose column s is inside y
                    accumulate = False
                    for nu in range(a):
                        if at[s, nu] != 0 and tiles > 0:
                            _scaled_runs(dst, uint64(((n * h + ti * m + r) * w + s) * ch), uint64(m * ch),
                                         band, uint64(r * a + nu) * row, run,
                                         uint64(tiles), run, at[s, nu], accumulate)
                            accumulate = True


# F(2x2, 3x3) on even H and W (every CIFAR ResNet layer): the same two passes with
# the coefficients written out.  B^T, A^T and A hold only 0 and ±1, so each output
# is two to four adds of whole runs, with no coefficient table, no multiplies and
# no per-run call; measured 1.2-2.6x faster than the table-driven kernels above on
# ResNet-20's layer shapes.  Odd sizes (partial tiles) and F(4x4) keep those.
# The input transform's column pass writes each output plane in a loop of its own, over
# the band's tiles and their channels: the loop that wrote all four planes at once (four
# loads, four stores per channel) ran 1.7-3x slower at C = 16 and 32 (2-core Xeon,
# 2026-12-02; 100 -> 58 µs for a 4-image chunk at 32x32x16).  Not confirmed in the
# assembly, but consistent with it: every vectorised run of C numbers starts with LLVM's
# run-time checks that the store streams miss the load streams, and with four of each
# those checks and the wide vector body outweigh a run of 16.  The same split did not pay
# in the other kernels' column passes (two loads and four stores, or four and two), so
# they keep their single loops; dx's column pass writes even and odd columns apart.
ADD, SUB = 0, 1                        # _pair_runs's op: a + b, a - b


@njit(nogil=True, cache=True, fastmath=True)
def _pair_runs(dst, d0, d_step, src, a0, b0, s_step, count, run, op):
    """For q < count, with A = src[a0 + q*s_step :][:run] and B = src[b0 + q*s_step :][:run]:
    dst[d0 + q*d_step :][:run] = A + B (op ADD) or A - B (op SUB)."""
    for q in range(count):
        d, a, b = d0 + q * d_step, a0 + q * s_step, b0 + q * s_step
        if op == ADD:
            for k in range(run):
                dst[d + k] = src[a + k] + src[b + k]
        else:
            for k in range(run):
                dst[d + k] = src[a + k] - src[b + k]


# B^T's rows as (ja, jb, op) on a tile's columns d[j]: row nu = d[ja] ± d[jb]
_BT_PAIRS = np.array([[0, 2, SUB], [1, 2, ADD], [2, 1, SUB], [1, 3, SUB]])


@njit(nogil=True, cache=True, fastmath=True)
def _input_f2(x, v):
    """v = B^T d B for F(2x2) with padding 1: x (N, H, W, C), H and W even; v (16, P, C)."""
    n_img, h, w, ch = x.shape
    th, tw = h // 2, w // 2
    src, dst = x.reshape(-1), v.reshape(-1)
    c_, run = uint64(ch), uint64(w * ch)
    plane = uint64(v.shape[1] * ch)
    line = uint64((w + 2) * ch)                       # a band row: image columns -1 .. w
    band = np.zeros(4 * (w + 2) * ch, dtype=v.dtype)  # its first and last columns stay zero
    for n in range(n_img):
        for ti in range(th):
            # rows d0..d3 = image rows 2ti-1 .. 2ti+2; d0 and d3 may lie in the padding
            # (read a valid row times 0 then, which keeps the loops branch-free)
            first = uint64((n * h + 2 * ti) * w * ch)   # d1
            f0 = 1.0 if ti > 0 else 0.0
            f3 = 1.0 if ti < th - 1 else 0.0
            o0 = first - run if ti > 0 else first
            o3 = first + uint64(2) * run if ti < th - 1 else first
            b0, b1, b2, b3 = c_, line + c_, uint64(2) * line + c_, uint64(3) * line + c_
            for q in range(run):                      # B^T along the rows
                d0, d1 = src[o0 + q] * f0, src[first + q]
                d2, d3 = src[first + run + q], src[o3 + q] * f3
                band[b0 + q] = d0 - d2
                band[b1 + q] = d1 + d2
                band[b2 + q] = d2 - d1
                band[b3 + q] = d1 - d3
            p0 = uint64((n * th + ti) * tw) * c_
            for xi in range(4):                       # B^T along the columns: d[ja] ± d[jb]
                row = uint64(xi) * line
                for nu in range(4):
                    _pair_runs(dst, uint64(4 * xi + nu) * plane + p0, c_,
                               band, row + uint64(_BT_PAIRS[nu, 0]) * c_, row + uint64(_BT_PAIRS[nu, 1]) * c_,
                               uint64(2) * c_, uint64(tw), c_, _BT_PAIRS[nu, 2])


@njit(nogil=True, cache=True, fastmath=True)
def _output_f2(mt, y, scale, shift, residual, relu):
    """y = A^T M A for F(2x2): mt (16, P, K), y (N, H, W, K) with H and W even.
    With scale (K,) given, each output v is written as v·scale + shift (+ residual, same
    shape as y, when given; then max(., 0) when relu): evaluation-mode batch norm applied
    as the tile is written, instead of a pass of its own.  scale None compiles that away."""
    n_img, h, w, ch = y.shape
    th, tw = h // 2, w // 2
    src, dst = mt.reshape(-1), y.reshape(-1)
    res = dst if residual is None else residual.reshape(-1)    # (dst: a stand-in, never read)
    k_, run = uint64(ch), uint64(tw * ch)             # a tile row's tiles in one plane
    plane = uint64(mt.shape[1] * ch)
    band = np.empty(8 * tw * ch, dtype=y.dtype)       # (r, nu) rows of A^T M, r < 2, nu < 4
    for n in range(n_img):
        for ti in range(th):
            p0 = uint64((n * th + ti) * tw) * k_
            for nu in range(4):                       # A^T along the rows: r0 = m0+m1+m2, r1 = m1-m2-m3
                i0 = uint64(nu) * plane + p0
                i1, i2, i3 = i0 + uint64(4) * plane, i0 + uint64(8) * plane, i0 + uint64(12) * plane
                o0, o1 = uint64(nu) * run, uint64(4 + nu) * run
                for q in range(run):
                    m1, m2 = src[i1 + q], src[i2 + q]
                    band[o0 + q] = src[i0 + q] + m1 + m2
                    band[o1 + q] = m1 - m2 - src[i3 + q]
            for r in range(2):                        # A^T along the columns, into image row 2ti+r
                out = uint64(((n * h + 2 * ti + r) * w) * ch)
                b = uint64(4 * r) * run
                for tj in range(uint64(tw)):
                    s, o = b + tj * k_, out + tj * uint64(2) * k_
                    for k in range(k_):
                        e1, e2 = band[s + run + k], band[s + uint64(2) * run + k]
                        v0 = band[s + k] + e1 + e2
                        v1 = e1 - e2 - band[s + uint64(3) * run + k]
                        if scale is not None:
                            v0 = v0 * scale[k] + shift[k]
                            v1 = v1 * scale[k] + shift[k]
                            if residual is not None:
                                v0 += res[o + k]
                                v1 += res[o + k_ + k]
                            if relu:
                                v0 = max(v0, 0.0)
                                v1 = max(v1, 0.0)
                        dst[o + k] = v0
                        dst[o + k_ + k] = v1


@njit(nogil=True, cache=True, fastmath=True)
def _output_grad_f2(g, dm):
    """dM = A g A^T for F(2x2): g (N, H, W, K) with H and W even; dm (16, P, K)."""
    n_img, h, w, ch = g.shape
    th, tw = h // 2, w // 2
    src, dst = g.reshape(-1), dm.reshape(-1)
    k_, run = uint64(ch), uint64(w * ch)
    plane = uint64(dm.shape[1] * ch)
    band = np.empty(4 * w * ch, dtype=g.dtype)        # A along the rows: g0, g0+g1, g0-g1, -g1
    for n in range(n_img):
        for ti in range(th):
            i0 = uint64((n * h + 2 * ti) * w * ch)
            for q in range(run):
                g0, g1 = src[i0 + q], src[i0 + run + q]
                band[q] = g0
                band[run + q] = g0 + g1
                band[uint64(2) * run + q] = g0 - g1
                band[uint64(3) * run + q] = -g1
            p0 = uint64((n * th + ti) * tw) * k_
            for xi in range(4):                       # A along the columns
                row = uint64(xi) * run
                out = uint64(4 * xi) * plane + p0
                for tj in range(uint64(tw)):
                    s, o = row + tj * uint64(2) * k_, out + tj * k_
                    for k in range(k_):
                        e0, e1 = band[s + k], band[s + k_ + k]
                        dst[o + k] = e0
                        dst[o + plane + k] = e0 + e1
                        dst[o + uint64(2) * plane + k] = e0 - e1
                        dst[o + uint64(3) * plane + k] = -e1


@njit(nogil=True, cache=True, fastmath=True)
def _input_grad_f2(z, dx):
    """dx = the adjoint of _input_f2: B Z B^T for every tile, summed where tiles overlap;
    z (16, P, C), dx (N, H, W, C) with H and W even.

    B's rows are (1 0 0 0), (0 1 -1 1), (-1 1 1 0), (0 0 0 -1), and the tiles step by 2
    over a window of 4, so every pixel gathers from two tiles per direction:
        row 2ti    = (Z1 - Z2 + Z3)(ti) - Z3(ti-1)      (Zxi: the planes of tile row ti)
        row 2ti+1  = (Z1 + Z2 - Z0)(ti) + Z0(ti+1)
    and the same along the columns -- a gather, no scatter-add."""
    n_img, h, w, ch = dx.shape
    th, tw = h // 2, w // 2
    src, dst = z.reshape(-1), dx.reshape(-1)
    c_, run = uint64(ch), uint64(tw * ch)             # a tile row's tiles in one plane
    plane = uint64(z.shape[1] * ch)
    line = uint64((tw + 2) * ch)                      # a band row: a zero tile either side
    band = np.zeros(8 * (tw + 2) * ch, dtype=dx.dtype)  # rows (parity r, nu): B along the rows
    for n in range(n_img):
        for ti in range(th):
            p0 = uint64((n * th + ti) * tw) * c_
            # the neighbouring tile rows; at the image's edge read this one times 0
            f_prev = 1.0 if ti > 0 else 0.0
            f_next = 1.0 if ti < th - 1 else 0.0
            prev = p0 - run if ti > 0 else p0
            nxt = p0 + run if ti < th - 1 else p0
            for nu in range(4):
                i0 = uint64(nu) * plane
                i1, i2, i3 = i0 + uint64(4) * plane, i0 + uint64(8) * plane, i0 + uint64(12) * plane
                e, o = uint64(nu) * line + c_, uint64(4 + nu) * line + c_
                for q in range(run):
                    z1, z2 = src[i1 + p0 + q], src[i2 + p0 + q]
                    band[e + q] = z1 - z2 + src[i3 + p0 + q] - f_prev * src[i3 + prev + q]
                    band[o + q] = z1 + z2 - src[i0 + p0 + q] + f_next * src[i0 + nxt + q]
            for r in range(2):                        # B along the columns, into image row 2ti+r
                out = uint64((n * h + 2 * ti + r) * w) * c_
                b = uint64(4 * r) * line + c_
                for tj in range(uint64(tw)):          # even columns
                    s, o = b + tj * c_, out + tj * uint64(2) * c_
                    for k in range(c_):
                        dst[o + k] = (band[s + line + k] - band[s + uint64(2) * line + k]
                                      + band[s + uint64(3) * line + k] - band[s + uint64(3) * line - c_ + k])
                for tj in range(uint64(tw)):          # odd columns
                    s, o = b + tj * c_, out + tj * uint64(2) * c_ + c_
                    for k in range(c_):
                        dst[o + k] = (band[s + line + k] + band[s + uint64(2) * line + k]
                                      - band[s + k] + band[s + c_ + k])


def winograd_f2_applies(shape, m):
    """Whether the written-out F(2x2) kernels run for images of this (N, H, W, C) shape:
    m = 2 and even H and W (no partial tiles).  winograd_input_grad exists only there."""
    return m == 2 and shape[1] % 2 == 0 and shape[2] % 2 == 0


def winograd_input(x, m, out):
    """V = B^T d B for every a x a input tile of x (N, H, W, C): out (a*a, N*TH*TW, C)."""
    if winograd_f2_applies(x.shape, m):
        _input_f2(np.ascontiguousarray(x), out)
        return out
    bt = TRANSFORMS[m][0].astype(x.dtype)
    _tiles_in(np.ascontiguousarray(x), bt, m, -1, out)
    return out


def winograd_output_grad(g, m, out):
    """dM = A dY A^T for every m x m tile of the upstream gradient g (N, H, W, K):
    out (a*a, N*TH*TW, K) -- the adjoint of the output transform."""
    if winograd_f2_applies(g.shape, m):
        _output_grad_f2(np.ascontiguousarray(g), out)
        return out
    a_mat = np.ascontiguousarray(TRANSFORMS[m][2].T.astype(g.dtype))
    _tiles_in(np.ascontiguousarray(g), a_mat, m, 0, out)
    return out


def winograd_input_grad(z, m, out):
    """dx = the input transform's adjoint, B Z B^T summed over the overlapping tiles:
    z (a*a, N*TH*TW, C) -> out (N, H, W, C).  F(2x2) on even images only
    (winograd_f2_applies); elsewhere dx is a forward pass with the flipped filter."""
    if not winograd_f2_applies(out.shape, m):
        raise ValueError(f"winograd_input_grad: F(2x2) on even images only, got m={m} and "
                         f"images {tuple(out.shape)} (N, H, W, C)")
    _input_grad_f2(np.ascontiguousarray(z), out)
    return out


def winograd_output(mt, m, out, scale=None, shift=None, residual=None, relu=False):
    """Y = A^T M A for every tile, written into out (N, H, W, K) (the tiles' overhang dropped).
    scale, shift (K,) in out's dtype: write Y·scale + shift per channel instead (+ residual,
    C-contiguous (N, H, W, K) like out; then max(., 0) when relu) -- an evaluation-mode
    batch norm (and a basic block's addition and ReLU) as the tiles are written, F(2x2)
    only (winograd_f2_applies)."""
    if (scale is None) != (shift is None) or (scale is None and (residual is not None or relu)):
        raise ValueError("winograd_output: the batch-norm epilogue takes scale and shift together "
                         "(and residual and relu only with them)")
    if winograd_f2_applies(out.shape, m):
        if residual is not None and (residual.shape != out.shape or not residual.flags.c_contiguous):
            raise ValueError(f"winograd_output: residual {residual.shape} must be C-contiguous "
                             f"and of the output's shape {out.shape} (N, H, W, K)")
        _output_f2(np.ascontiguousarray(mt), out, scale, shift, residual, relu)
        return out
    if scale is not None:
        raise ValueError(f"winograd_output: the batch-norm epilogue runs with F(2x2) on even "
                         f"images only, got m={m} and images {tuple(out.shape)} (N, H, W, K)")
    at = TRANSFORMS[m][2].astype(mt.dtype)
    _tiles_out(np.ascontiguousarray(mt), at, m, out)
    return out


# The filter transform U = G g G^T, in float64 (for accuracy; the data is float32).
# It is small (a ResNet-56 runs 55 per step, at most 64 x 64 filters) but it runs on one
# thread between the parallel parts: as a NumPy product (G ⊗ G @ the filters, with the
# casts and transposes around it) it and its adjoint took 9.8 ms of a 243 ms ResNet-56
# step at batch 32 (2-core Xeon, 2026-12-02).  This loop runs along the output channels
# k and took 4x less (C = K = 64: 58 against 245 µs).
@njit(nogil=True, cache=True)
def _filter_transform(wt, g, u):
    """u[xi*a + nu, c, :] = (G w[:, c] G^T)[xi, nu] over the output channels k;
    wt (C, 3, 3, K) float64 -- the filters with k last, so every loop runs along k."""
    n_in, _, _, n_out = wt.shape
    a = g.shape[0]
    t = np.empty((a, 3, n_out))                        # G w, for one input channel
    for c in range(n_in):
        for xi in range(a):
            g0, g1, g2 = g[xi, 0], g[xi, 1], g[xi, 2]
            for j in range(3):
                for k in range(n_out):
                    t[xi, j, k] = g0 * wt[c, 0, j, k] + g1 * wt[c, 1, j, k] + g2 * wt[c, 2, j, k]
        for xi in range(a):
            for nu in range(a):
                h0, h1, h2 = g[nu, 0], g[nu, 1], g[nu, 2]
                for k in range(n_out):
                    u[xi * a + nu, c, k] = t[xi, 0, k] * h0 + t[xi, 1, k] * h1 + t[xi, 2, k] * h2


def winograd_filter(weight, m):
    """U = G g G^T for every filter of weight (K, C, 3, 3): (a*a, C, K), C-contiguous."""
    k, c = weight.shape[:2]
    g = TRANSFORMS[m][1]
    u = np.empty((g.shape[0] ** 2, c, k), dtype=weight.dtype)
    _filter_transform(weight.transpose(1, 2, 3, 0).astype(np.float64), g, u)
    return u


# The adjoint, dW = G^T dU G, runs the same way: along k, in float64, one input channel at
# a time.  As one NumPy product, (G ⊗ G)^T @ dU in float64 with the casts and the transpose
# to (K, C, 3, 3) around it, it took 74 µs at C = K = 64 (6, 17 µs at 16, 32) on one Zen 5
# core, 2026-12-04: more than a batch-1 step's Winograd forward of that layer.
@njit(nogil=True, cache=True)
def _filter_transform_adjoint(du, g, dw):
    """dw[k, c] = G^T du[:, c, k] G, the (3, 3) filter gradient of every filter: du (a*a, C, K)
    in any float dtype, summed in float64; dw (K, C, 3, 3)."""
    _, n_in, n_out = du.shape
    a = g.shape[0]
    t = np.empty((3, a, n_out))                        # G^T dU, for one input channel
    s = np.empty((3, 3, n_out))                        # G^T dU G, for one input channel
    for c in range(n_in):
        t[:] = 0.0
        for xi in range(a):
            for nu in range(a):
                for i in range(3):
                    gi = g[xi, i]
                    for k in range(n_out):
                        t[i, nu, k] += gi * du[xi * a + nu, c, k]
        s[:] = 0.0
        for nu in range(a):
            h0, h1, h2 = g[nu, 0], g[nu, 1], g[nu, 2]
            for i in range(3):
                for k in range(n_out):
                    v = t[i, nu, k]
                    s[i, 0, k] += v * h0
                    s[i, 1, k] += v * h1
                    s[i, 2, k] += v * h2
        for k in range(n_out):
            for i in range(3):
                for j in range(3):
                    dw[k, c, i, j] = s[i, j, k]


def winograd_filter_grad(du, m):
    """dW = G^T dU G, the filter transform's adjoint: du (a*a, C, K) -> (K, C, 3, 3)."""
    _, c, k = du.shape
    dw = np.empty((k, c, 3, 3), dtype=du.dtype)
    _filter_transform_adjoint(np.ascontiguousarray(du), TRANSFORMS[m][1], dw)
    return dw
