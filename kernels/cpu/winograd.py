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

Gradients (the same kernels):
  * dx is the convolution of the upstream gradient with the flipped, transposed
    filter w'[c, k, i, j] = w[k, c, 2-i, 2-j] -- a forward pass on g;
  * dW: M's adjoint through the output transform is dM = A dY A^T (``winograd_output_grad``:
    the input kernel with A for B^T, on the m x m tiles of dY), then
    dU[xi,nu] = V[xi,nu]^T @ dM[xi,nu] and dW = the filter transform's adjoint,
    dg = G^T dU G.

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


def winograd_input(x, m, out):
    """V = B^T d B for every a x a input tile of x (N, H, W, C): out (a*a, N*TH*TW, C)."""
    bt = TRANSFORMS[m][0].astype(x.dtype)
    _tiles_in(np.ascontiguousarray(x), bt, m, -1, out)
    return out


def winograd_output_grad(g, m, out):
    """dM = A dY A^T for every m x m tile of the upstream gradient g (N, H, W, K):
    out (a*a, N*TH*TW, K) -- the adjoint of the output transform."""
    a_mat = np.ascontiguousarray(TRANSFORMS[m][2].T.astype(g.dtype))
    _tiles_in(np.ascontiguousarray(g), a_mat, m, 0, out)
    return out


def winograd_output(mt, m, out):
    """Y = A^T M A for every tile, written into out (N, H, W, K) (the tiles' overhang dropped)."""
    at = TRANSFORMS[m][2].astype(mt.dtype)
    _tiles_out(np.ascontiguousarray(mt), at, m, out)
    return out


def winograd_filter(weight, m):
    """U = G g G^T for every filter of weight (K, C, 3, 3): (a*a, C, K), C-contiguous."""
    g = TRANSFORMS[m][1]
    a = g.shape[0]
    u = np.einsum("xi,kcij,yj->xyck", g, weight, g, optimize=True)    # float64 for accuracy
    return np.ascontiguousarray(u.reshape(a * a, *weight.shape[1::-1]), dtype=weight.dtype)


def winograd_filter_grad(du, m):
    """dW = G^T dU G, the filter transform's adjoint: du (a*a, C, K) -> (K, C, 3, 3)."""
    g = TRANSFORMS[m][1]
    a = g.shape[0]
    dw = np.einsum("xi,xyck,yj->kcij", g, du.reshape(a, a, *du.shape[1:]), g, optimize=True)
    return np.ascontiguousarray(dw, dtype=du.dtype)
