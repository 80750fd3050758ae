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
transforms below run along those channel vectors (a vector loop per coefficient,
zero coefficients and padding skipped).

Gradients (the same kernels):
  * dx is the convolution of the upstream gradient with the flipped, transposed
    filter w'[c, k, i, j] = w[k, c, 2-i, 2-j] -- a forward pass on g;
  * dW: M's adjoint through the output transform is dM = A dY A^T (``tiles_in``
    with A in place of B^T, reading the m x m tiles of dY without offset), then
    dU[xi,nu] = V[xi,nu]^T @ dM[xi,nu] and dW = the filter transform's adjoint,
    dg = G^T dU G.

The transform kernels are serial and release the GIL: conv2d runs them on chunks
of images, one chunk per core at a time, like im2col (kernels/cpu/columns.py).
"""
import numpy as np
from numba import njit

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


@njit(nogil=True, cache=True, fastmath=True)
def _tiles_in(x, t, m, offset, v):
    """v[xi*a + nu, p, :] = sum_ij t[xi, i] x[n, ti*m + offset + i, tj*m + offset + j, :] t[nu, j]
    (zero outside the image), for t (a, window) and every tile p of the m-grid."""
    n_img, h, w, ch = x.shape
    a, window = t.shape
    th, tw = -(-h // m), -(-w // m)
    rows = np.empty((a, window, ch), dtype=v.dtype)      # t applied along the tile's rows
    for n in range(n_img):
        for ti in range(th):
            for tj in range(tw):
                p = (n * th + ti) * tw + tj
                r0, c0 = ti * m + offset, tj * m + offset
                for xi in range(a):
                    for j in range(window):
                        acc = rows[xi, j]
                        acc[:] = 0
                        if not 0 <= c0 + j < w:
                            continue
                        for i in range(window):
                            coef = t[xi, i]
                            if coef != 0 and 0 <= r0 + i < h:
                                src = x[n, r0 + i, c0 + j]
                                for c in range(ch):
                                    acc[c] += coef * src[c]
                for xi in range(a):
                    for nu in range(a):
                        out = v[xi * a + nu, p]
                        out[:] = 0
                        for j in range(window):
                            coef = t[nu, j]
                            if coef != 0 and 0 <= c0 + j < w:
                                src = rows[xi, j]
                                for c in range(ch):
                                    out[c] += coef * src[c]


@njit(nogil=True, cache=True, fastmath=True)
def _tiles_out(mt, at, m, y):
    """y[n, ti*m + r, tj*m + s, :] = sum_{xi,nu} at[r, xi] mt[xi*a + nu, p, :] at[s, nu]
    for the outputs inside y (N, H, W, K); at is A^T (m, a)."""
    n_img, h, w, ch = y.shape
    a = at.shape[1]
    th, tw = -(-h // m), -(-w // m)
    rows = np.empty((m, a, ch), dtype=y.dtype)           # A^T applied along the columns
    for n in range(n_img):
        for ti in range(th):
            for tj in range(tw):
                p = (n * th + ti) * tw + tj
                for r in range(m):
                    for nu in range(a):
                        acc = rows[r, nu]
                        acc[:] = 0
                        for xi in range(a):
                            coef = at[r, xi]
                            if coef != 0:
                                src = mt[xi * a + nu, p]
                                for c in range(ch):
                                    acc[c] += coef * src[c]
                for r in range(min(m, h - ti * m)):
                    for s in range(min(m, w - tj * m)):
                        out = y[n, ti * m + r, tj * m + s]
                        out[:] = 0
                        for nu in range(a):
                            coef = at[s, nu]
                            if coef != 0:
                                src = rows[r, nu]
                                for c in range(ch):
                                    out[c] += coef * src[c]


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
    _tiles_out(mt, at, m, out)
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
