"""conv2d by Winograd's minimal filtering, for the 3x3, stride-1, padding-1 layers on the CPU.

The transforms and their formula (Y = A^T [(G g G^T) ⊙ (B^T d B)] A) are in
kernels/cpu/winograd.py.  Here they are put together per chunk of images, on
channels-last memory like the im2col path (ops/conv.py), with a = m + 2 and
P the chunk's tiles:

    forward   V  = B^T x B         (a*a, P, C)
              M  = V @ U           a*a GEMMs (P, C) @ (C, K)    U = G w G^T  (a*a, C, K)
              y  = A^T M A         (N, H, W, K), channels-last
    dW        dM = A g A^T         (a*a, P, K)
              dU = V^T @ dM        a*a GEMMs (C, P) @ (P, K), summed over chunks
              dW = G^T dU G
    dx        the forward's adjoint on the same dM:
              dZ = dM @ U^T        a*a GEMMs (P, K) @ (K, C)
              dx = B dZ B^T        summed where the tiles overlap (F(2x2), even sizes);
              F(4x4) and odd sizes: the forward's three steps on g with the flipped,
              transposed filter w'[c, k] = w[k, c, ::-1, ::-1]
    no graph  conv2d_batch_norm_eval: the forward, its output transform writing
              relu(y·scale + shift + residual) -- evaluation's batch norm, folded in
              (ops/fused.py's conv2d_batch_norm_relu_eval)

Which algorithm runs: ``set_conv_algorithm`` or the MINIRES_CONV_ALGO
environment variable, one of

    auto       im2col, except for the layer shapes in AUTO_WINOGRAD (default)
    im2col     always im2col + GEMM
    winograd2  F(2x2, 3x3) wherever it applies (2.25x fewer multiplies)
    winograd4  F(4x4, 3x3) wherever it applies (4x fewer multiplies)
    direct     a direct convolution wherever it applies (ops/direct.py: for few input channels)

Accuracy (tests/test_winograd.py): in float64 both equal im2col to ~1e-15 of the
result's scale; in float32, max |error| / max |float64 result| for the output, dx
and dW measured at most 5.4e-7 for im2col, 8.6e-7 for F(2x2) and 6.6e-6 for F(4x4)
(the tests hold them to 1e-6, 2e-6 and 2e-5).

"Applies" means a CPU conv2d with a 3x3 kernel, stride 1,
padding 1, dilation 1 and one group; every other layer (and every GPU layer)
runs im2col whatever the setting.
"""
from __future__ import annotations

import os

import numpy as np

from .. import backend
from ..tensor import Tensor

ENV_VAR = "MINIRES_CONV_ALGO"
TILE_SIZES = {"winograd2": 2, "winograd4": 4}     # algorithm -> output tile m
ALGORITHMS = ("auto", "im2col", *TILE_SIZES, "direct")

# The layers "auto" runs as Winograd or direct: (C_in, C_out, H, W) -> algorithm, from
# benchmarks/conv_winograd.py (it prints the table to put here): the stage layers of
# CIFAR ResNets, and since the faster transforms of 2026-12-02 the stem (C_in = 3; it
# had been 1.4x slower as Winograd): its forward + dW at batch 128 took 8.7 ms as F(2x2)
# against 10.4 as im2col, and a ResNet-20 step 235-238 against 242-244 ms (batch 32:
# within noise), 2-core Xeon.
# A whole ResNet-20 training step at batch 128 on a quiet 2-core AVX2 EPYC (2026-12-02,
# three interleaved rounds of 8 steps): im2col 1232-1364 ms, F(4x4) 1087-1228 ms,
# F(2x2) 1071-1171 ms.  F(2x2) is as fast here and ~8x more accurate in float32 (F(4x4)'s
# larger error moved a float32 ResNet-20's gradients 5 % from the GPU's after two steps),
# so auto uses F(2x2).
# The stem runs the direct convolution since 2026-12-04 (ops/direct.py): forward + dW at
# batch 32 took 1.0 ms against F(2x2)'s 1.9 and im2col's 2.3 (PyTorch 0.7), Zen 5.
# The same ResNet on Fashion-MNIST's 28x28 greyscale images (`conv_winograd.py --images
# fashion-mnist`, batch 128, 2026-12-04, Zen 5): stem direct 1.3 ms against im2col's 3.9;
# 16 channels at 28x28 F(2x2) 8.6 against 15.5, 32 at 14x14 5.6 against 9.4; at 7x7 F(2x2)
# was within 5 % of im2col (6.2 against 6.5) and F(4x4) is too inexact, so im2col stays.
# d2l's ResNet-18 at 96x96 (`--images d2l-resnet18`, batch 64, same day): F(2x2) took 0.54 /
# 0.62 / 0.80 of im2col's time at 24x24 / 12x12 / 6x6; at 3x3 (512 channels) 1.61, so im2col.
AUTO_WINOGRAD: dict[tuple[int, int, int, int], str] = {
    (3, 16, 32, 32): "direct",
    (16, 16, 32, 32): "winograd2", (32, 32, 16, 16): "winograd2", (64, 64, 8, 8): "winograd2",
    (1, 16, 28, 28): "direct", (16, 16, 28, 28): "winograd2", (32, 32, 14, 14): "winograd2",
    (64, 64, 24, 24): "winograd2", (128, 128, 12, 12): "winograd2", (256, 256, 6, 6): "winograd2"}

_chosen = None        # set_conv_algorithm's choice; None: the environment decides


def set_conv_algorithm(name):
    """Choose conv2d's algorithm for the 3x3 stride-1 layers (see the module docstring);
    None goes back to $MINIRES_CONV_ALGO (default auto)."""
    global _chosen
    if name is not None and name not in ALGORITHMS:
        raise ValueError(f"set_conv_algorithm: unknown algorithm {name!r}; expected one of "
                         f"{', '.join(ALGORITHMS)} (or None for ${ENV_VAR})")
    _chosen = name


def conv_algorithm():
    """The algorithm in force: set_conv_algorithm's, else $MINIRES_CONV_ALGO's, else auto."""
    if _chosen is not None:
        return _chosen
    name = os.environ.get(ENV_VAR, "auto")
    if name not in ALGORITHMS:
        raise ValueError(f"conv2d: {ENV_VAR}={name!r} is not an algorithm; expected one of "
                         f"{', '.join(ALGORITHMS)} (or leave it unset for auto)")
    return name


def algorithm_for(x, weight, stride, padding, dilation, groups):
    """The algorithm conv2d(x, weight, ...) runs: im2col, winograd2, winograd4 or direct."""
    if not (x.xp is np and weight.shape[2:] == (3, 3) and stride == (1, 1) and padding == (1, 1)
            and dilation == (1, 1) and groups == 1):               # (conv2d took float32/64 only)
        return "im2col"
    name = conv_algorithm()
    if name == "auto":
        name = AUTO_WINOGRAD.get((x.shape[1], weight.shape[0], *x.shape[2:]), "im2col")
    return name


def tile_size(x, weight, stride, padding, dilation, groups):
    """m when conv2d(x, weight, ...) runs as Winograd F(m x m, 3 x 3); None otherwise."""
    return TILE_SIZES.get(algorithm_for(x, weight, stride, padding, dilation, groups))


def conv2d(x, weight, bias, m):
    """NCHW conv2d with a 3x3 kernel, stride 1 and padding 1, as Winograd F(m x m, 3 x 3).
    The inputs are checked by ops.conv2d, which calls this when ``tile_size`` says so."""
    K = backend.kernels_for(np)
    n, c, h, w = x.shape
    c_out = weight.shape[0]
    a2 = (m + 2) ** 2
    tiles, chunks, threads = _tiling(K, x.shape, c_out, m, x.dtype)
    x_cl = _channels_last(x.data)                               # (N, H, W, C)

    u = K.winograd_filter(weight.data, m)                       # (a*a, C, K)
    out_cl = _forward(K, x_cl, u, chunks, m, threads=threads)   # (N, H, W, K)
    if bias is not None:
        out_cl += bias.data
    out = out_cl.transpose(0, 3, 1, 2)                          # NCHW view

    def backward(g):
        g_cl = _channels_last(g)
        gx_cl = np.empty((n, h, w, c), dtype=x.dtype) if x.requires_grad else None
        # dx as the forward's adjoint, dx = B (dM @ U^T) B^T, shares dM with dW; where that
        # kernel is missing (F(4x4), odd sizes) dx is a forward pass with the flipped filter
        adjoint = gx_cl is not None and K.winograd_f2_applies(gx_cl.shape, m)
        u_flipped = (K.winograd_filter(weight.data[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), m)
                     if gx_cl is not None and not adjoint else None)   # (a*a, K, C)
        # (a*a, K, C), copied: OpenBLAS took 1.6x as long on the transposed view at C = 16
        u_t = np.ascontiguousarray(u.transpose(0, 2, 1)) if adjoint else None

        def backward_share(share):
            """dx for the share's images; its partial dU (summed over shares below)."""
            du = None
            for n0, n1 in share:
                dm = None
                if weight.requires_grad or adjoint:
                    dm = K.workspace("winograd.grad", (a2, (n1 - n0) * tiles, c_out), x.dtype)
                    K.winograd_output_grad(g_cl[n0:n1], m, out=dm)
                if weight.requires_grad:
                    vt = _transformed_input(K, x_cl, n0, n1, m).transpose(0, 2, 1)   # (a*a, C, P)
                    if du is None:        # the first chunk writes dU, later ones add to it
                        du = K.matmul(vt, dm)
                    else:
                        du += K.matmul(vt, dm, out=K.workspace("winograd.dU", du.shape, x.dtype))
                if adjoint:
                    dz = K.workspace("winograd.prod", (a2, dm.shape[1], c), x.dtype)
                    K.winograd_input_grad(K.matmul(dm, u_t, out=dz), m, out=gx_cl[n0:n1])
                elif gx_cl is not None:
                    _convolve(K, g_cl, u_flipped, gx_cl, n0, n1, m)
            return du
        partial_du = backend.parallel_for(np, backward_share, chunks, threads=threads)
        gw = K.winograd_filter_grad(sum(partial_du[1:], partial_du[0]), m) if weight.requires_grad else None
        grads = (None if gx_cl is None else gx_cl.transpose(0, 3, 1, 2), gw)
        if bias is not None:
            grads += (g.sum(axis=(0, 2, 3)) if bias.requires_grad else None,)
        return grads
    return Tensor.from_op(out, (x, weight) if bias is None else (x, weight, bias), backward, "conv2d")


def conv2d_batch_norm_eval(x, weight, m, scale, shift, residual, relu):
    """relu(conv2d(x, weight)·scale + shift + residual) as arrays, no graph: an
    evaluation-mode batch norm (scale = γ/√(var+ε), shift = β - mean·scale per output
    channel; then a basic block's addition and ReLU) applied by the output transform as
    it writes each tile, so that the convolution's output is written once and never
    read again.  x (N, C, H, W), weight (K, C, 3, 3), residual (N, K, H, W) or None;
    F(2x2) on even H and W (``K.winograd_f2_applies``).  -> (N, K, H, W), channels-last
    memory.  minires/ops/fused.py's conv2d_batch_norm_relu_eval checks the arguments."""
    K = backend.kernels_for(np)
    _, chunks, threads = _tiling(K, x.shape, weight.shape[0], m, x.dtype)
    r_cl = None if residual is None else _channels_last(residual)
    epilogue = (scale.astype(x.dtype, copy=False), shift.astype(x.dtype, copy=False), r_cl, relu)
    out_cl = _forward(K, _channels_last(x), K.winograd_filter(weight, m), chunks, m, epilogue, threads)
    return out_cl.transpose(0, 3, 1, 2)


def _forward(K, x_cl, u, chunks, m, epilogue=None, threads=None):
    """The forward over all images, chunks shared across ``threads``: x_cl (N, H, W, C)
    convolved with the transformed filter u (a*a, C, K) -> (N, H, W, K)."""
    n, h, w, _ = x_cl.shape
    out_cl = np.empty((n, h, w, u.shape[2]), dtype=x_cl.dtype)

    def forward_share(share):
        for n0, n1 in share:
            _convolve(K, x_cl, u, out_cl, n0, n1, m, epilogue)
    backend.parallel_for(np, forward_share, chunks, threads=threads)
    return out_cl


def _tiling(K, shape, c_out, m, dtype):
    """(P tiles per image, chunks of images, threads) for an (N, C, H, W) input: chunks whose
    transformed tiles stay in cache between transform and GEMM, and how many threads share
    them (backend.conv_threads, by the direct convolution's multiply-adds)."""
    n, c, h, w = shape
    th, tw = K.winograd_tile_grid(h, w, m)
    per_image = (m + 2) ** 2 * th * tw * max(c, c_out) * dtype.itemsize
    threads = backend.conv_threads(np, n * c_out * c * 9 * h * w)
    return th * tw, backend.batch_chunks(np, n, K.CONV_WORKSPACE_BYTES // per_image, threads), threads


def _transformed_input(K, src_cl, n0, n1, m):
    """B^T d B of images n0:n1's tiles: (a*a, P, channels of src), in a workspace."""
    th, tw = K.winograd_tile_grid(src_cl.shape[1], src_cl.shape[2], m)
    v = K.workspace("winograd.in", ((m + 2) ** 2, (n1 - n0) * th * tw, src_cl.shape[3]), src_cl.dtype)
    return K.winograd_input(src_cl[n0:n1], m, out=v)


def _convolve(K, src_cl, u, dst_cl, n0, n1, m, epilogue=None):
    """dst[n0:n1] = the Winograd convolution of src[n0:n1] with the transformed filter u
    (then (scale, shift, residual, relu) applied as the tiles are written, when given)."""
    v = _transformed_input(K, src_cl, n0, n1, m)
    prod = K.workspace("winograd.prod", (v.shape[0], v.shape[1], u.shape[2]), src_cl.dtype)
    K.matmul(v, u, out=prod)
    if epilogue is None:
        K.winograd_output(prod, m, out=dst_cl[n0:n1])
    else:
        scale, shift, r_cl, relu = epilogue
        K.winograd_output(prod, m, dst_cl[n0:n1], scale, shift, None if r_cl is None else r_cl[n0:n1], relu)


def _channels_last(a):
    """An NCHW array's data as a C-contiguous (N, H, W, C) array (no copy when already so)."""
    return backend.contiguous(np, a.transpose(0, 2, 3, 1))
