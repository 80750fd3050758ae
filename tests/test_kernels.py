"""Kernels against slow, obviously-correct references, through the one kernel interface
(CPU: Numba; GPU, mirrored: CUDA).  Odd shapes on purpose."""
import re

import numpy as np
import pytest

from minires import backend


def kernels(device):
    return backend.kernels_for(backend.xp_for_device(device))


def dev(a, device):
    return backend.to_device(np.ascontiguousarray(a), device)


def naive_im2col(x, kernel, stride, padding, dilation, out_hw, groups=1):
    """x (N, H, W, C) -> cols[(b*Ho + oh)*Wo + ow, ((g*kh + i)*kw + j)*Cg + cg], element by element."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = kernel, stride, padding, dilation, out_hw
    cpg = c // groups
    cols = np.zeros((n * ho * wo, c * kh * kw), x.dtype)
    for b in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for g in range(groups):
                    for i in range(kh):
                        for j in range(kw):
                            ih, iw = oh * sh - ph + i * dh, ow * sw - pw + j * dw
                            if 0 <= ih < h and 0 <= iw < w:
                                for cg in range(cpg):
                                    cols[(b * ho + oh) * wo + ow, ((g * kh + i) * kw + j) * cpg + cg] = \
                                        x[b, ih, iw, g * cpg + cg]
    return cols


GEOMETRIES = [  # x shape (N, H, W, C), kernel, stride, padding, dilation, groups
    ((2, 5, 5, 3), (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((2, 7, 6, 3), (3, 3), (2, 2), (1, 1), (1, 1), 1),
    ((1, 9, 7, 2), (5, 3), (3, 2), (2, 0), (1, 1), 1),
    ((3, 8, 8, 1), (3, 3), (1, 1), (2, 2), (2, 2), 1),
    ((2, 7, 7, 4), (1, 1), (2, 2), (0, 0), (1, 1), 1),
    ((1, 4, 6, 3), (4, 6), (1, 1), (0, 0), (1, 1), 1),      # kernel == input
    ((2, 6, 5, 6), (3, 3), (1, 1), (1, 1), (1, 1), 3),      # grouped
    ((2, 7, 7, 4), (3, 2), (2, 1), (1, 1), (2, 1), 2),      # grouped, strided, dilated
]


def out_hw(shape, kernel, stride, padding, dilation):
    return tuple((shape[1 + a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1
                 for a in (0, 1))


@pytest.mark.parametrize("geo", GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_matches_reference(geo, dtype, device):
    shape, *rest, groups = geo
    hw = out_hw(shape, *rest)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    cols = kernels(device).im2col(dev(x, device), *rest, hw, groups=groups)
    np.testing.assert_array_equal(backend.to_numpy(cols), naive_im2col(x, *rest, hw, groups))


@pytest.mark.parametrize("geo", GEOMETRIES)
def test_col2im_is_the_adjoint_of_im2col(geo, device):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: col2im is exactly im2col's transpose."""
    shape, *rest, groups = geo
    hw = out_hw(shape, *rest)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    c = rng.standard_normal((shape[0] * hw[0] * hw[1], shape[3] * rest[0][0] * rest[0][1]))
    K = kernels(device)
    lhs = float((backend.to_numpy(K.im2col(dev(x, device), *rest, hw, groups=groups)) * c).sum())
    rhs = float((x * backend.to_numpy(K.col2im(dev(c, device), shape, *rest, hw, groups=groups))).sum())
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


def test_col2im_writes_into_out_and_overwrites_it(device):
    shape, *rest, groups = GEOMETRIES[1]
    hw = out_hw(shape, *rest)
    K = kernels(device)
    c = dev(np.random.default_rng(2).standard_normal((shape[0] * hw[0] * hw[1], shape[3] * 9)), device)
    out = dev(np.full(shape, 123.0), device)                  # garbage must not leak in
    K.col2im(c, shape, *rest, hw, out=out)
    np.testing.assert_allclose(backend.to_numpy(out), backend.to_numpy(K.col2im(c, shape, *rest, hw)))


@pytest.mark.parametrize("shape", [(4, 3, 5), (7, 1, 1), (2, 5, 33)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_kernels(shape, dtype, device):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    gamma, beta = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    eps = 1e-5
    K = kernels(device)
    y, mean, var, invstd = (backend.to_numpy(a) for a in
                            K.batch_norm_forward(dev(x, device), dev(gamma, device), dev(beta, device), eps))
    x64 = x.astype(np.float64)
    m_ref, v_ref = x64.mean(axis=(0, 2)), x64.var(axis=(0, 2))
    xhat = (x64 - m_ref[:, None]) / np.sqrt(v_ref[:, None] + eps)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(mean, m_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(var, v_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(v_ref + eps), rtol=tol)
    np.testing.assert_allclose(y, xhat * gamma[:, None] + beta[:, None], rtol=tol * 10, atol=tol * 10)

    dx, dgamma, dbeta = (backend.to_numpy(a) for a in K.batch_norm_backward(
        dev(g, device), dev(x, device), dev(mean, device), dev(invstd, device), dev(gamma, device)))
    m = shape[0] * shape[2]
    g64 = g.astype(np.float64)
    dbeta_ref = g64.sum(axis=(0, 2))
    dgamma_ref = (g64 * xhat).sum(axis=(0, 2))
    dx_ref = gamma[:, None] / np.sqrt(v_ref[:, None] + eps) * (
        g64 - dbeta_ref[:, None] / m - xhat * dgamma_ref[:, None] / m)
    np.testing.assert_allclose(dbeta, dbeta_ref, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(dgamma, dgamma_ref, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol * 100, atol=tol * 100)


@pytest.mark.parametrize("rows", [2, 37, 301, 304])
@pytest.mark.parametrize("ch", [3, 16, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", [False, True])
def test_batch_norm_row_kernels(rows, ch, dtype, split, monkeypatch):
    """The channels-last (M, C, 1) path: one-pass shifted moments and the four-row sums
    (row counts with and without a remainder), plain and with ReLU, against float64
    references, on one thread and with the rows split across threads (kernels/cpu/rows.py);
    a mean far from 0 (x ~ 50 ± 3) checks that the one-pass variance does not cancel.
    Even row counts run on widened rows (R rows as one, batchnorm.py): 304 rows of 16
    channels as 38 of 128 lanes."""
    from minires.kernels import cpu as K
    from minires.kernels.cpu import batchnorm as bn, rows as row_split
    assert bn._widening(304, 16) == 8 and bn._widening(304, 40) == 2 and bn._widening(301, 3) == 1
    if split:
        monkeypatch.setattr(row_split, "SPLIT_BYTES", 0)
        monkeypatch.setattr(backend, "num_threads", lambda: 3)
    rng = np.random.default_rng(rows * ch)
    x = (rng.standard_normal((rows, ch, 1)) * 3 + 50).astype(dtype)
    gamma, beta = rng.standard_normal(ch).astype(dtype), rng.standard_normal(ch).astype(dtype)
    g = rng.standard_normal((rows, ch, 1)).astype(dtype)
    eps = 1e-5
    x64, g64 = x[:, :, 0].astype(np.float64), g[:, :, 0].astype(np.float64)
    m_ref, v_ref = x64.mean(axis=0), x64.var(axis=0)
    xhat = (x64 - m_ref) / np.sqrt(v_ref + eps)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for relu, forward, backward in ((False, K.batch_norm_forward, K.batch_norm_backward),
                                    (True, K.batch_norm_relu_forward, None)):
        y, mean, var, invstd = forward(x, gamma, beta, eps)
        np.testing.assert_allclose(mean, m_ref, rtol=1e-12 if dtype == np.float64 else 1e-6)
        np.testing.assert_allclose(var, v_ref, rtol=tol, atol=1e-12)
        y_ref = xhat * gamma + beta
        mask = y_ref > 0 if relu else np.ones_like(y_ref, dtype=bool)
        np.testing.assert_allclose(y[:, :, 0], np.where(mask, y_ref, 0), rtol=tol, atol=tol)
        if relu:
            dx, dgamma, dbeta = K.batch_norm_relu_backward(g, x, y, mean, invstd, gamma)
            # the ReLU's mask is a select: bit for bit the plain backward on g·[y > 0]
            plain = K.batch_norm_backward(np.where(y > 0, g, 0).astype(dtype), x, mean, invstd, gamma)
            for name, a, b in zip(("dx", "dgamma", "dbeta"), (dx, dgamma, dbeta), plain):
                np.testing.assert_array_equal(a, b, err_msg=f"relu backward vs plain on masked g: {name}")
        else:
            dx, dgamma, dbeta = backward(g, x, mean, invstd, gamma)
        gm = np.where(y[:, :, 0] > 0, g64, 0) if relu else g64
        dbeta_ref, dgamma_ref = gm.sum(axis=0), (gm * xhat).sum(axis=0)
        dx_ref = gamma / np.sqrt(v_ref + eps) * (gm - dbeta_ref / rows - xhat * dgamma_ref / rows)
        np.testing.assert_allclose(dbeta, dbeta_ref, rtol=tol, atol=tol * 10, err_msg=f"relu={relu} dbeta")
        np.testing.assert_allclose(dgamma, dgamma_ref, rtol=tol, atol=tol * 10, err_msg=f"relu={relu} dgamma")
        np.testing.assert_allclose(dx[:, :, 0], dx_ref, rtol=tol * 10, atol=tol * 10, err_msg=f"relu={relu} dx")


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [203, 208])          # 208 x 24: widened to 52 rows of 96 lanes
def test_batch_norm_passes_together_equal_one_after_the_other(threads, dtype, rows, monkeypatch):
    """rows.rows_together runs both passes of a batch norm in one fork-join, the threads
    meeting halfway; its results must be bit for bit those of the two separate split
    passes (same ranges, partial sums added in the same order) -- forward, forward with
    residual + ReLU, and backward with and without the ReLU mask -- also when the call
    comes from inside a parallel share, where the threads are busy and it falls back."""
    from minires.kernels import cpu as K
    from minires.kernels.cpu import batchnorm as bn, rows as row_split
    monkeypatch.setattr(row_split, "SPLIT_BYTES", 0)
    monkeypatch.setattr(backend, "num_threads", lambda: threads)
    rng = np.random.default_rng(threads)
    x, r, g = (rng.standard_normal((rows, 24, 1)).astype(dtype) for _ in range(3))
    gamma, beta = rng.standard_normal(24).astype(dtype), rng.standard_normal(24).astype(dtype)

    def everything():
        y, mean, var, invstd = K.batch_norm_relu_forward(x, gamma, beta, 1e-5)
        y2, *stats2 = K.batch_norm_add_relu_forward(x, r, gamma, beta, 1e-5)
        return (y, mean, var, invstd, y2, *stats2, *K.batch_norm_backward(g, x, mean, invstd, gamma),
                *K.batch_norm_relu_backward(g, x, y, mean, invstd, gamma))

    calls = []
    real_together = row_split.rows_together
    monkeypatch.setattr(bn, "rows_together", lambda *a: calls.append(1) or real_together(*a))
    together = everything()
    assert len(calls) == 4
    monkeypatch.setattr(bn, "rows_together", lambda *a: False)         # the two-pass path
    apart = everything()
    for a, b in zip(together, apart):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(bn, "rows_together", real_together)
    nested = backend.parallel_for(np, lambda share: everything(), range(threads))[0]   # pool busy
    for a, b in zip(nested, apart):
        np.testing.assert_array_equal(a, b)


def naive_pool(x, kernel, stride, padding, mode):
    """Max / average pooling window by window on an explicitly padded copy."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    fill = -np.inf if mode == "max" else 0.0
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    real = np.pad(np.ones((h, w)), ((ph, ph), (pw, pw)))            # 1 where a pixel is real
    out = np.zeros((n, c, ho, wo))
    for oh in range(ho):
        for ow in range(wo):
            rows, cols = slice(oh * sh, oh * sh + kh), slice(ow * sw, ow * sw + kw)
            win = padded[:, :, rows, cols]
            if mode == "max":
                out[:, :, oh, ow] = win.max(axis=(2, 3))
            else:
                # PyTorch's divisor: window cells inside the padded input, or only real ones
                count = win.shape[2] * win.shape[3] if mode == "avg_include_pad" else real[rows, cols].sum()
                out[:, :, oh, ow] = win.sum(axis=(2, 3)) / count
    return out


@pytest.mark.parametrize("kernel,stride,padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)),
                                                   ((3, 2), (1, 2), (1, 1)), ((3, 3), (2, 2), (0, 0))])
def test_pooling_kernels(kernel, stride, padding, device):
    x = np.random.default_rng(4).standard_normal((2, 3, 7, 6))
    K = kernels(device)
    ref = naive_pool(x, kernel, stride, padding, "max")
    hw = ref.shape[2:]
    out, argmax = K.max_pool2d_forward(dev(x, device), kernel, stride, padding, hw)
    np.testing.assert_array_equal(backend.to_numpy(out), ref)
    g = np.random.default_rng(5).standard_normal(ref.shape)
    dx = backend.to_numpy(K.max_pool2d_backward(dev(g, device), argmax, x.shape))
    assert np.isclose(dx.sum(), g.sum()) and np.count_nonzero(dx) <= g.size
    for include_pad, mode in ((True, "avg_include_pad"), (False, "avg")):
        ref = naive_pool(x, kernel, stride, padding, mode)
        out = K.avg_pool2d_forward(dev(x, device), kernel, stride, padding, hw, include_pad)
        np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=1e-12)


def test_cpu_kernels_hold_blas_to_one_thread():
    """conv2d runs one BLAS call per core; a multi-threaded call elsewhere would leave
    BLAS's workers spinning on those cores (kernels/cpu/__init__.py)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    backend.kernels_for(np)
    blas = [lib for lib in threadpoolctl.threadpool_info()      # (not a BLAS PyTorch loaded later)
            if lib["user_api"] == "blas" and "torch" not in lib["filepath"]]
    assert blas, "NumPy's BLAS not found by threadpoolctl"
    assert [lib["num_threads"] for lib in blas] == [1] * len(blas), blas


@pytest.mark.parametrize("split", [False, True])
def test_add_relu_and_relu_mask_kernels(split, monkeypatch):
    """The residual add + ReLU and ReLU's backward mask, on one thread and split."""
    from minires.kernels import cpu as K
    from minires.kernels.cpu import rows as row_split
    if split:
        monkeypatch.setattr(row_split, "SPLIT_BYTES", 0)
        monkeypatch.setattr(backend, "num_threads", lambda: 3)
    rng = np.random.default_rng(5)
    a, b, g = (rng.standard_normal((3, 5, 4, 7)).astype(np.float32) for _ in range(3))
    y = K.add_relu_forward(a, b)
    np.testing.assert_array_equal(y, np.maximum(a + b, 0))
    np.testing.assert_array_equal(K.relu_backward(g, y), np.where(y > 0, g, 0))


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "mixed"])
@pytest.mark.parametrize("split", [False, True])
def test_backend_add_equals_numpy_bit_for_bit(layout, split, monkeypatch):
    """backend.add (autograd's fan-out sums): NumPy's a + b exactly, in the inputs' layout,
    on one thread or split; mixed layouts fall back to NumPy."""
    from minires.kernels.cpu import rows as row_split
    if split:
        monkeypatch.setattr(row_split, "SPLIT_BYTES", 0)
        monkeypatch.setattr(backend, "num_threads", lambda: 3)
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    b = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    if layout != "nchw":
        a = np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if layout == "channels_last":
        b = np.ascontiguousarray(b.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    out = backend.add(a, b)
    np.testing.assert_array_equal(out, a + b)
    if layout != "mixed":
        assert out.strides == a.strides


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nesterov,dampening,weight_decay,momentum",
                         [(False, 0, 1e-4, 0.9), (True, 0, 1e-4, 0.9), (False, 0.1, 0, 0.9), (False, 0, 1e-4, 0)])
def test_cpu_sgd_kernel_equals_the_array_code_bit_for_bit(dtype, nesterov, dampening, weight_decay, momentum):
    """kernels/cpu/optim.py: the per-parameter Numba pass against the NumPy array code it
    replaced, over three steps (the first initialises the momentum buffers); a
    non-contiguous parameter takes the array code."""
    from minires.kernels.cpu import optim
    rng = np.random.default_rng(1)
    shapes = [(16, 3, 3, 3), (10,), (8, 8, 3, 3)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    params.append(rng.standard_normal((6, 4)).astype(dtype).T)          # not C-contiguous
    grads = [np.ascontiguousarray(rng.standard_normal(p.shape).astype(dtype)) for p in params]
    fast, slow = [p.copy() for p in params], [p.copy() for p in params]
    fast[-1], slow[-1] = params[-1].copy().T.copy().T, params[-1].copy().T.copy().T
    bufs_fast = [np.empty_like(p) for p in params] if momentum else None
    bufs_slow = [np.empty_like(p) for p in params] if momentum else None
    for step in range(3):
        optim.sgd_step(fast, grads, bufs_fast, 0.1, momentum, weight_decay, dampening, nesterov, step == 0)
        for i, (p, g) in enumerate(zip(slow, grads)):
            optim._sgd_arrays(p, g, bufs_slow[i] if momentum else None, 0.1, momentum, weight_decay,
                              dampening, nesterov, step == 0)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    assert not fast[-1].flags.c_contiguous


def test_batch_norm_rows_benchmark_runs():
    """benchmarks/batchnorm_rows.py runs its eighteen rows (one block of one call each: a
    run, not a timing), widening every stage of a batch-2 ResNet, with finite ratios."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "batchnorm_rows.py"),
                           "--batch", "2", "--blocks", "1", "--reps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if not line.startswith("#")][1:]
    assert [row[2] for row in rows] == ["moments", "affine", "grad_sums", "dx", "forward", "backward"] * 3
    assert [int(row[3]) for row in rows] == [8] * 6 + [4] * 6 + [2] * 6, done.stdout
    assert all(np.isfinite(float(row[-1])) and float(row[-1]) > 0 for row in rows), done.stdout


def test_conv_split_benchmark_runs():
    """benchmarks/conv_split.py times a batch-2 and a batch-4 step under each of its three
    thresholds (one round of one step: a run, not a timing) and prints finite times."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "conv_split.py"),
                           "--batches", "2,4", "--rounds", "1", "--steps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("batch")]
    assert [row.split()[1] for row in rows] == ["2", "4"], done.stdout
    for row in rows:
        cells = re.findall(r"(\S+) M: +([\d.]+) / +([\d.]+)", row)
        assert [c[0] for c in cells] == ["0", "3", "inf"], row
        assert all(float(v) > 0 for c in cells for v in c[1:]), row


def test_conv_layers_benchmark_runs():
    """benchmarks/conv_layers.py runs every layer row at batch 2 (a run, not a timing), with
    its PyTorch column from a subprocess when PyTorch is installed."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "conv_layers.py"),
                           "--batch", "2", "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("stem", "stage"))]
    assert len(rows) == 6, done.stdout
    with_torch = "no torch column" not in done.stdout
    assert all(len(row.split()) == (8 if with_torch else 6) for row in rows), done.stdout
