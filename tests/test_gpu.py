"""The CUDA kernels (kernels/cuda) against the CPU kernels, the CPU ops and CuPy.

Needs a CUDA GPU and CuPy (marker ``gpu``; conftest skips it elsewhere).  Odd
shapes on purpose.  Tolerances, relative to the reference's largest magnitude:
float32 1e-4, float64 1e-10.
"""
import itertools

import numpy as np
import pytest

import minires as mr
from helpers import assert_close
from minires.kernels import cpu as KC
from minires.kernels import cuda as KG

pytestmark = pytest.mark.gpu
cp = pytest.importorskip("cupy")

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def gpu(a):
    return cp.asarray(np.ascontiguousarray(a))


def host(a):
    return cp.asnumpy(a)


def close(actual, expected, dtype, what):
    assert_close(host(actual) if isinstance(actual, cp.ndarray) else actual,
                 host(expected) if isinstance(expected, cp.ndarray) else expected, RTOL[dtype], what)


def rand(rng, shape, dtype, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


# ------------------------------------------------------------------ columns
GEOMETRIES = [  # x shape (N, H, W, C) channels-last, kernel, stride, padding, dilation
    ((2, 5, 5, 3), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 7, 6, 3), (3, 3), (2, 2), (1, 1), (1, 1)),
    ((1, 9, 7, 2), (5, 3), (3, 2), (2, 0), (1, 1)),
    ((3, 8, 8, 1), (3, 3), (1, 1), (2, 2), (2, 2)),
    ((2, 7, 7, 4), (1, 1), (2, 2), (0, 0), (1, 1)),
    ((1, 4, 6, 3), (4, 6), (1, 1), (0, 0), (1, 1)),
    ((3, 11, 13, 5), (3, 2), (2, 1), (1, 2), (2, 1)),
    ((5, 33, 31, 16), (3, 3), (1, 1), (1, 1), (1, 1)),
]


def out_hw(shape, kernel, stride, padding, dilation):
    return tuple((shape[1 + a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1
                 for a in (0, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_grouped_columns_match_cpu(dtype):
    shape, kernel, stride, padding, dilation = (2, 7, 6, 6), (3, 3), (1, 2), (1, 1), (1, 1)
    hw = out_hw(shape, kernel, stride, padding, dilation)
    rng = np.random.default_rng(3)
    x = rand(rng, shape, dtype)
    cols = KG.im2col(gpu(x), kernel, stride, padding, dilation, hw, groups=3)
    np.testing.assert_array_equal(host(cols), KC.im2col(x, kernel, stride, padding, dilation, hw, groups=3))
    c = rand(rng, cols.shape, dtype)
    close(KG.col2im(gpu(c), shape, kernel, stride, padding, dilation, hw, groups=3),
          KC.col2im(c, shape, kernel, stride, padding, dilation, hw, groups=3), dtype, "grouped col2im")


@pytest.mark.parametrize("geo", GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_col2im_match_cpu(geo, dtype):
    shape, *rest = geo
    hw = out_hw(shape, *rest)
    rng = np.random.default_rng(0)
    x = rand(rng, shape, dtype)
    cols = KG.im2col(gpu(x), *rest, hw)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(host(cols), KC.im2col(x, *rest, hw))
    c = rand(rng, cols.shape, dtype)
    close(KG.col2im(gpu(c), shape, *rest, hw), KC.col2im(c, shape, *rest, hw), dtype, "col2im")


@pytest.mark.parametrize("dtype", DTYPES)
def test_columns_out_is_written_in_place_and_overwritten(dtype):
    """As conv2d uses them: im2col into a slice of a workspace, col2im into a slice of gx."""
    shape, *rest = GEOMETRIES[6]
    hw = out_hw(shape, *rest)
    rng = np.random.default_rng(1)
    x = rand(rng, shape, dtype)
    rows, ncol = shape[0] * hw[0] * hw[1], shape[3] * rest[0][0] * rest[0][1]   # (N*L, K)
    workspace = cp.full(rows * ncol + 17, np.nan, dtype=dtype)
    cols = workspace[:rows * ncol].reshape(rows, ncol)
    assert KG.im2col(gpu(x), *rest, hw, out=cols) is cols
    np.testing.assert_array_equal(host(cols), KC.im2col(x, *rest, hw))
    assert bool(cp.isnan(workspace[rows * ncol:]).all())

    c = rand(rng, (rows, ncol), dtype)
    gx = cp.full((shape[0] + 2,) + shape[1:], 123.0, dtype=dtype)
    assert KG.col2im(gpu(c), shape, *rest, hw, out=gx[1:1 + shape[0]]) is not None
    close(gx[1:1 + shape[0]], KC.col2im(c, shape, *rest, hw), dtype, "col2im out")
    assert bool((gx[0] == 123).all()) and bool((gx[-1] == 123).all())
    with pytest.raises(ValueError):
        KG.im2col(gpu(x), *rest, hw, out=cp.empty((rows, ncol + 1), dtype=dtype))


def test_im2col_takes_non_contiguous_input():
    shape, *rest = GEOMETRIES[1]
    hw = out_hw(shape, *rest)
    big = np.random.default_rng(2).standard_normal(shape[:3] + (2 * shape[3],))
    x = gpu(big)[..., ::2]
    assert not x.flags.c_contiguous
    np.testing.assert_array_equal(host(KG.im2col(x, *rest, hw)), KC.im2col(big[..., ::2], *rest, hw))


def test_columns_index_past_2_to_the_31():
    """64-bit index math: a columns matrix of more than 2^31 elements (needs ~11 GB)."""
    free, _ = cp.cuda.Device().mem_info
    if free < 14 << 30:
        pytest.skip("needs ~14 GB of free GPU memory")
    side = 16384
    x = cp.arange(side * side, dtype=cp.float32).reshape(1, side, side, 1) / side
    cols = KG.im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), (side, side))
    assert cols.size > 2**31
    xh = host(x)[0, :, :, 0]
    for tap in (0, 4, 8):
        i, j = divmod(tap, 3)
        for pixel in (0, side * side - 1, side * side - side - 2, 12345678):
            oh, ow = divmod(pixel, side)
            ih, iw = oh - 1 + i, ow - 1 + j
            want = xh[ih, iw] if 0 <= ih < side and 0 <= iw < side else 0.0
            assert float(cols[pixel, tap]) == want, (pixel, tap)
    back = KG.col2im(cols, (1, side, side, 1), (3, 3), (1, 1), (1, 1), (1, 1), (side, side))
    del cols
    # interior pixels are read by all 9 taps, corners by 4
    assert float(back[0, side // 2, side // 2, 0]) == pytest.approx(9 * float(x[0, side // 2, side // 2, 0]),
                                                                   rel=1e-6)
    assert float(back[0, -1, -1, 0]) == pytest.approx(4 * float(x[0, -1, -1, 0]), rel=1e-6)


# --------------------------------------------------------------- batch norm
BN_SHAPES = [(4, 3, 5), (7, 1, 1), (2, 5, 33), (3, 17, 97), (9, 2, 1100), (128, 16, 64)]


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shift", [2.0, 1000.0])
def test_batch_norm_matches_cpu(shape, dtype, shift):
    rng = np.random.default_rng(3)
    x = rand(rng, shape, dtype, 3.0, shift)
    gamma, beta, g = rand(rng, shape[1], dtype), rand(rng, shape[1], dtype), rand(rng, shape, dtype)
    ref = KC.batch_norm_forward(x, gamma, beta, 1e-5)
    out = KG.batch_norm_forward(gpu(x), gpu(gamma), gpu(beta), 1e-5)
    assert out[0].dtype == dtype and all(s.dtype == np.float64 for s in out[1:])
    for name, a, e in zip(("y", "mean", "var", "invstd"), out, ref):
        close(a, e, dtype, name)
    _, mean, _, invstd = ref
    ref_b = KC.batch_norm_backward(g, x, mean, invstd, gamma)
    out_b = KG.batch_norm_backward(gpu(g), gpu(x), out[1], out[3], gpu(gamma))
    for name, a, e in zip(("dx", "dgamma", "dbeta"), out_b, ref_b):
        assert a.dtype == dtype
        close(a, e, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_update_running_matches_cpu(dtype):
    rng = np.random.default_rng(7)
    rm, rv = rand(rng, 13, dtype), rand(rng, 13, dtype, shift=2.0)
    mean, var = rng.standard_normal(13), rng.random(13) + 0.5          # float64, as the kernels give
    grm, grv = gpu(rm), gpu(rv)
    KC.batch_norm_update_running(rm, rv, mean, var, 40, 0.1)
    KG.batch_norm_update_running(grm, grv, gpu(mean), gpu(var), 40, 0.1)
    close(grm, rm, dtype, "running_mean")
    close(grv, rv, dtype, "running_var")


def test_batch_norm_update_running_refuses_what_it_cannot_update_in_place():
    stats = gpu(np.zeros(4)), gpu(np.ones(4))
    with pytest.raises(ValueError, match="running_mean .* must be 1-d"):
        KG.batch_norm_update_running(gpu(np.zeros((2, 2))), stats[1], *stats, 8, 0.1)
    with pytest.raises(ValueError, match="running_var must be a C-contiguous float64 array of shape"):
        KG.batch_norm_update_running(stats[0], gpu(np.ones(5)), *stats, 8, 0.1)
    with pytest.raises(TypeError, match="running_mean must be a CuPy array"):
        KG.batch_norm_update_running(np.zeros(4), stats[1], *stats, 8, 0.1)


@pytest.mark.parametrize("shape", BN_SHAPES[:4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_relu_fused_matches_unfused(shape, dtype):
    rng = np.random.default_rng(4)
    x, g = gpu(rand(rng, shape, dtype, 2.0, 0.3)), gpu(rand(rng, shape, dtype))
    gamma, beta = gpu(rand(rng, shape[1], dtype)), gpu(rand(rng, shape[1], dtype))
    y, mean, var, invstd = KG.batch_norm_forward(x, gamma, beta, 1e-5)
    yf, meanf, varf, invstdf = KG.batch_norm_relu_forward(x, gamma, beta, 1e-5)
    close(yf, cp.maximum(y, 0), dtype, "y")
    for a, e in ((meanf, mean), (varf, var), (invstdf, invstd)):
        close(a, e, dtype, "stats")
    ref = KG.batch_norm_backward(g * (yf > 0), x, mean, invstd, gamma)
    out = KG.batch_norm_relu_backward(g, x, yf, meanf, invstdf, gamma)
    for name, a, e in zip(("dx", "dgamma", "dbeta"), out, ref):
        close(a, e, dtype, name)


# ------------------------------------------------------------------ pooling
POOLS = [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 1)),
         ((3, 3), (2, 2), (0, 0)), ((2, 3), (1, 2), (1, 1)), ((3, 3), (3, 3), (1, 1)),
         ((1, 1), (2, 3), (0, 0))]


@pytest.mark.parametrize("shape", [(2, 3, 7, 6), (3, 4, 9, 11)])
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_matches_cpu(shape, pool, dtype):
    kernel, stride, padding = pool
    hw = tuple((shape[2 + a] + 2 * padding[a] - kernel[a]) // stride[a] + 1 for a in (0, 1))
    rng = np.random.default_rng(5)
    x = rand(rng, shape, dtype)
    x[0, 0, :3, :3] = 0.5                      # ties: the first maximum must win on both
    g = rand(rng, shape[:2] + hw, dtype)

    out, argmax = KG.max_pool2d_forward(gpu(x), kernel, stride, padding, hw)
    out_c, argmax_c = KC.max_pool2d_forward(x, kernel, stride, padding, hw)
    np.testing.assert_array_equal(host(out), out_c)
    assert argmax.dtype == np.int32 and argmax.shape == out.shape
    np.testing.assert_array_equal(host(argmax), argmax_c)
    assert KG.pooling._geometry_record(argmax) is not None, "forward's argmax should carry its geometry"
    dx_c = KC.max_pool2d_backward(g, argmax_c, shape)
    close(KG.max_pool2d_backward(gpu(g), argmax, shape), dx_c, dtype, "max dx")
    # an argmax from elsewhere (no geometry record): the full-plane scan, same result
    close(KG.max_pool2d_backward(gpu(g), gpu(argmax_c), shape), dx_c, dtype, "max dx (scan)")

    for include_pad in (True, False):
        close(KG.avg_pool2d_forward(gpu(x), kernel, stride, padding, hw, include_pad),
              KC.avg_pool2d_forward(x, kernel, stride, padding, hw, include_pad), dtype, "avg out")
        close(KG.avg_pool2d_backward(gpu(g), shape, kernel, stride, padding, include_pad),
              KC.avg_pool2d_backward(g, shape, kernel, stride, padding, include_pad), dtype, "avg dx")


# --------------------------------------------------------------------- GEMM
GEMM_SHAPES = [(1, 1, 1), (17, 33, 65), (64, 64, 64), (65, 17, 1), (3, 1000, 5), (128, 576, 8192)]


def _operands(rng, m, k, n, dtype, trans_a, trans_b, batch=()):
    a_op, b_op = rand(rng, batch + (m, k), dtype), rand(rng, batch + (k, n), dtype)
    a = np.ascontiguousarray(np.swapaxes(a_op, -1, -2)) if trans_a else a_op
    b = np.ascontiguousarray(np.swapaxes(b_op, -1, -2)) if trans_b else b_op
    return gpu(a), gpu(b), gpu(a_op), gpu(b_op)


@pytest.mark.parametrize("mkn", GEMM_SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("dtype", DTYPES)
def test_own_gemm_matches_cupy_matmul(mkn, trans_a, trans_b, dtype):
    a, b, a_op, b_op = _operands(np.random.default_rng(6), *mkn, dtype, trans_a, trans_b)
    out = KG.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    assert out.shape == mkn[:1] + mkn[2:] and out.dtype == dtype
    close(out, cp.matmul(a_op, b_op), dtype, f"gemm {mkn}")


@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("dtype", DTYPES)
def test_own_gemm_batched_broadcast_accumulate(trans_a, trans_b, dtype):
    rng = np.random.default_rng(7)
    a, b, a_op, b_op = _operands(rng, 17, 33, 65, dtype, trans_a, trans_b, batch=(3,))
    close(KG.gemm(a, b, trans_a=trans_a, trans_b=trans_b), cp.matmul(a_op, b_op), dtype, "batched")
    a2, _, a2_op, _ = _operands(rng, 17, 33, 65, dtype, trans_a, trans_b)
    close(KG.gemm(a2, b, trans_a=trans_a, trans_b=trans_b), cp.matmul(a2_op, b_op), dtype, "2-d @ 3-d")
    close(KG.gemm(a[:1], b, trans_a=trans_a, trans_b=trans_b), cp.matmul(a_op[:1], b_op), dtype, "batch 1")
    c0 = gpu(rand(rng, (3, 17, 65), dtype))
    out = c0.copy()
    assert KG.gemm(a, b, out=out, trans_a=trans_a, trans_b=trans_b, accumulate=True) is out
    close(out, c0 + cp.matmul(a_op, b_op), dtype, "accumulate")
    out = cp.full((3, 17, 65), np.nan, dtype=dtype)            # garbage must not leak in
    KG.gemm(a, b, out=out, trans_a=trans_a, trans_b=trans_b)
    close(out, cp.matmul(a_op, b_op), dtype, "out=")


def test_own_gemm_edge_cases():
    a, b = cp.ones((4, 0)), cp.ones((0, 5))
    np.testing.assert_array_equal(host(KG.gemm(a, b)), np.zeros((4, 5)))
    assert KG.gemm(cp.ones((0, 3)), cp.ones((3, 5))).shape == (0, 5)
    with pytest.raises(ValueError):
        KG.gemm(cp.ones((4, 3)), cp.ones((4, 3)))
    with pytest.raises(ValueError):
        KG.gemm(cp.ones((4, 6))[:, ::2], cp.ones((3, 2)))
    with pytest.raises(TypeError):
        KG.gemm(cp.ones((4, 3), dtype=cp.float32), cp.ones((3, 2)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_switch(dtype, monkeypatch):
    """GEMM = 'own' routes conv2d's three products (views included) through gemm.cu."""
    rng = np.random.default_rng(8)
    w = gpu(rand(rng, (2, 8, 27), dtype))            # (G, Cout/G, rows/G)
    cols = gpu(rand(rng, (2, 27, 300), dtype))       # (G, rows/G, n*L)
    g2 = gpu(rand(rng, (2, 8, 300), dtype))
    for mode in ("cublas", "own"):
        monkeypatch.setattr(KG, "GEMM", mode)
        close(KG.matmul(w, cols), cp.matmul(w, cols), dtype, f"{mode} W @ cols")
        close(KG.matmul(g2, cols.transpose(0, 2, 1)), cp.matmul(g2, cols.transpose(0, 2, 1)), dtype,
              f"{mode} g2 @ cols^T")
        close(KG.matmul(w.transpose(0, 2, 1), g2), cp.matmul(w.transpose(0, 2, 1), g2), dtype,
              f"{mode} W^T @ g2")
        x2, wt = gpu(rand(rng, (37, 20), dtype)), gpu(rand(rng, (10, 20), dtype))
        close(KG.matmul(x2, wt.T), x2 @ wt.T, dtype, f"{mode} linear")
        out = cp.empty((2, 8, 300), dtype=dtype)
        assert KG.matmul(w, cols, out=out) is out
        close(out, cp.matmul(w, cols), dtype, f"{mode} out=")
        # conv2d with groups > 1 writes each group's product into a column block of
        # the output rows: an out= that is neither C-contiguous nor transposed
        a2, b2 = cp.ascontiguousarray(cols[0].T), w[0].T            # (300, 27) @ (27, 8)
        res = cp.full((300, 19), np.nan, dtype=dtype)
        assert KG.matmul(a2, b2, out=res[:, 5:13]) is not None
        close(res[:, 5:13], cp.matmul(a2, b2), dtype, f"{mode} out= column block")
        assert bool(cp.isnan(res[:, :5]).all()) and bool(cp.isnan(res[:, 13:]).all())
        res_t = cp.empty((8, 300), dtype=dtype)                      # out= a transposed view
        KG.matmul(a2, b2, out=res_t.T)
        close(res_t.T, cp.matmul(a2, b2), dtype, f"{mode} out= transposed")
    monkeypatch.setattr(KG, "GEMM", "nonsense")
    with pytest.raises(ValueError):
        KG.matmul(w, cols)


# ---------------------------------------------------------------------- SGD
SGD_SHAPES = [(16, 3, 3, 3), (16,), (1,), (7, 5), (4097,), (0,), (10, 64), (4096,)]


@pytest.mark.parametrize("momentum,weight_decay,dampening,nesterov",
                         [(0.0, 0.0, 0.0, False), (0.0, 5e-4, 0.0, False), (0.9, 5e-4, 0.0, False),
                          (0.9, 1e-4, 0.0, True), (0.5, 0.0, 0.3, False)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_sgd_matches_cpu_optimizer(momentum, weight_decay, dampening, nesterov, dtype):
    rng = np.random.default_rng(9)
    init = [rand(rng, s, dtype) for s in SGD_SHAPES]
    cpu_params = [mr.tensor(v, requires_grad=True) for v in init]
    opt = mr.optim.SGD(cpu_params, lr=0.1, momentum=momentum, weight_decay=weight_decay,
                       nesterov=nesterov, dampening=dampening)
    params = [gpu(v) for v in init]
    bufs = [cp.full(v.shape, np.nan, dtype=dtype) for v in init] if momentum else None
    lr_device = cp.asarray([0.1], dtype=cp.float64)
    for step in range(4):
        grads = [rand(rng, s, dtype) for s in SGD_SHAPES]
        for p, g in zip(cpu_params, grads):
            p.grad = mr.tensor(g)
        opt.step()
        lr = lr_device if step % 2 else 0.1            # the device learning rate, every other step
        KG.sgd_step(params, [gpu(g) for g in grads], bufs, lr, momentum, weight_decay, dampening,
                    nesterov, first_step=step == 0)
    for i, (p, q) in enumerate(zip(params, cpu_params)):
        close(p, q.data, dtype, f"param {i}")
        if momentum and q.size:
            close(bufs[i], opt.state[id(q)]["momentum_buffer"], dtype, f"buffer {i}")


def test_fused_sgd_mixed_dtypes_and_table_cache():
    rng = np.random.default_rng(10)
    init = [rand(rng, (33,), np.float32), rand(rng, (5, 5), np.float64), rand(rng, (4100,), np.float32)]
    params = [gpu(v) for v in init]
    grads = [gpu(rand(rng, v.shape, v.dtype)) for v in init]
    bufs = [cp.zeros_like(p) for p in params]
    KG.sgd_step(params, grads, bufs, 0.5, 0.9, 0.0, 0.0, False, first_step=True)
    cached = len(KG.sgd._sgd_tables)
    KG.sgd_step(params, grads, bufs, 0.5, 0.9, 0.0, 0.0, False, first_step=False)
    assert len(KG.sgd._sgd_tables) == cached                  # same arrays: the tables are reused
    for v, p, g in zip(init, params, grads):
        g = host(g)
        buf = 0.9 * g + g
        close(p, v - 0.5 * g - 0.5 * buf, v.dtype.type, "mixed")
    with pytest.raises(ValueError):
        KG.sgd_step(params, grads[:2], bufs, 0.5, 0.9, 0.0, 0.0, False, True)


# ------------------------------------------------------------ cross-entropy
@pytest.mark.parametrize("n,c", [(1, 1), (5, 10), (33, 7), (7, 100), (4, 1000), (130, 10)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target_dtype", [np.int64, np.int32])
def test_cross_entropy_kernels_match_cpu_op(n, c, dtype, target_dtype):
    rng = np.random.default_rng(11)
    z = rand(rng, (n, c), dtype, 3.0)
    t = rng.integers(0, c, n).astype(target_dtype)
    losses, lse = KG.cross_entropy_forward(gpu(z), gpu(t))
    logits = mr.tensor(z, requires_grad=True)
    close(losses, mr.ops.cross_entropy(logits, t, reduction="none").data, dtype, "losses")
    for reduction, scale in (("mean", 1.0 / n), ("sum", 1.0)):
        logits.grad = None
        mr.ops.cross_entropy(logits, t, reduction=reduction).backward()
        up = cp.asarray(1.0, dtype=dtype)
        close(KG.cross_entropy_backward(gpu(z), gpu(t), lse, up, scale), logits.grad.data, dtype, reduction)
    up = rand(rng, (n,), dtype)
    logits.grad = None
    mr.ops.cross_entropy(logits, t, reduction="none").backward(mr.tensor(up))
    close(KG.cross_entropy_backward(gpu(z), gpu(t), lse, gpu(up)), logits.grad.data, dtype, "none")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_bad_target_is_nan_not_an_error(dtype):
    rng = np.random.default_rng(12)
    n, c = 6, 10
    z = rand(rng, (n, c), dtype)
    t = rng.integers(0, c, n)
    bad = t.copy()
    bad[1], bad[4] = c, -1
    with pytest.raises(ValueError):                      # the CPU op checks on the host
        mr.ops.cross_entropy(mr.tensor(z), bad)
    losses, lse = KG.cross_entropy_forward(gpu(z), gpu(bad))
    losses = host(losses)
    assert np.isnan(losses[[1, 4]]).all()
    good = [0, 2, 3, 5]
    ref = mr.ops.cross_entropy(mr.tensor(z), t, reduction="none").data
    close(losses[good], ref[good], dtype, "valid rows")
    assert np.isnan(float(cp.asarray(losses).mean()))    # a mean over the batch shows it
    grad = host(KG.cross_entropy_backward(gpu(z), gpu(bad), lse, cp.asarray(1.0, dtype=dtype), 1 / n))
    assert np.isnan(grad[[1, 4]]).all() and np.isfinite(grad[good]).all()


def test_grid_stride_loops_cover_everything(monkeypatch):
    """With the grids capped far below one thread per element, every kernel's loop must still cover all."""
    monkeypatch.setattr(KG._launch, "_MAX_GRID_X", 3)
    monkeypatch.setattr(KG._launch, "_MAX_GRID_YZ", 2)
    rng = np.random.default_rng(13)
    dtype = np.float64
    shape, *rest = GEOMETRIES[6]
    hw = out_hw(shape, *rest)
    x = rand(rng, shape, dtype)
    cols = KG.im2col(gpu(x), *rest, hw)
    np.testing.assert_array_equal(host(cols), KC.im2col(x, *rest, hw))
    close(KG.col2im(cols, shape, *rest, hw), KC.col2im(host(cols), shape, *rest, hw), dtype, "col2im")

    x3, g3 = rand(rng, (5, 7, 300), dtype), rand(rng, (5, 7, 300), dtype)
    gamma, beta = rand(rng, 7, dtype), rand(rng, 7, dtype)
    ref = KC.batch_norm_forward(x3, gamma, beta, 1e-5)
    out = KG.batch_norm_forward(gpu(x3), gpu(gamma), gpu(beta), 1e-5)
    for a, e in zip(out, ref):
        close(a, e, dtype, "bn forward")
    for a, e in zip(KG.batch_norm_backward(gpu(g3), gpu(x3), out[1], out[3], gpu(gamma)),
                    KC.batch_norm_backward(g3, x3, ref[1], ref[3], gamma)):
        close(a, e, dtype, "bn backward")

    xp = rand(rng, (3, 4, 9, 11), dtype)
    pool = ((3, 3), (2, 2), (1, 1))
    hw = (5, 6)
    out, argmax = KG.max_pool2d_forward(gpu(xp), *pool, hw)
    out_c, argmax_c = KC.max_pool2d_forward(xp, *pool, hw)
    np.testing.assert_array_equal(host(argmax), argmax_c)
    gp = rand(rng, (3, 4) + hw, dtype)
    close(KG.max_pool2d_backward(gpu(gp), argmax, xp.shape), KC.max_pool2d_backward(gp, argmax_c, xp.shape),
          dtype, "max dx")
    close(KG.avg_pool2d_backward(gpu(gp), xp.shape, *pool, False),
          KC.avg_pool2d_backward(gp, xp.shape, *pool, False), dtype, "avg dx")

    a, b, a_op, b_op = _operands(rng, 9, 20, 11, dtype, False, True, batch=(5,))
    close(KG.gemm(a, b, trans_b=True), cp.matmul(a_op, b_op), dtype, "gemm batch loop")

    z, t = rand(rng, (40, 9), dtype), rng.integers(0, 9, 40)
    losses, lse = KG.cross_entropy_forward(gpu(z), gpu(t))
    logits = mr.tensor(z, requires_grad=True)
    mr.ops.cross_entropy(logits, t).backward()
    close(KG.cross_entropy_backward(gpu(z), gpu(t), lse, 1.0, 1 / 40), logits.grad.data, dtype, "ce grad")


def test_workspace_holds_a_resnet20_batch():
    rows, plane = 16 * 9, 32 * 32
    assert KG.CONV_WORKSPACE_BYTES // (rows * plane * 4) >= 128
