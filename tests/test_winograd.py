"""Winograd conv2d (3x3, stride 1, padding 1, CPU): the transforms against slow references,
forward / dx / dW against the im2col path (float64 to rounding, float32 within stated
bounds), gradchecks, and which layers the algorithm setting sends down the Winograd path;
the same for the direct convolution of the same layers (ops/direct.py, the stem's)."""
import numpy as np
import pytest

import minires as mr
from minires.kernels import cpu
from minires.kernels.cpu.winograd import TRANSFORMS
from minires.nn import functional as F
from minires.ops import winograd
from helpers import assert_close, make

TILES = [2, 4]
ALGORITHM = {2: "winograd2", 4: "winograd4"}
# (N, C_in, C_out, H, W): odd sizes (partial tiles), batch 1, one channel, a ResNet-like block
SHAPES = [(2, 3, 4, 5, 7), (1, 1, 1, 1, 1), (1, 1, 2, 6, 3), (3, 5, 2, 9, 4), (2, 8, 8, 8, 8)]
# float32 error bounds, max |err| / max |float64 result|, for forward, dx and dW
# (measured on these shapes and at ResNet-20's channel counts: im2col <= 5.4e-7,
# F(2x2) <= 8.6e-7, F(4x4) <= 6.6e-6)
# The transforms' shapes (N, H, W, C): odd sizes run the table-driven kernels; even
# ones, for m = 2, the written-out F(2x2) kernels (kernels/cpu/winograd.py)
TRANSFORM_SHAPES = [(2, 5, 7, 3), (1, 1, 1, 2), (1, 4, 8, 1), (2, 6, 4, 5), (1, 2, 2, 3)]
FLOAT32_BOUND = {"im2col": 1e-6, "winograd2": 2e-6, "winograd4": 2e-5, "direct": 1e-6}


@pytest.fixture(autouse=True)
def algorithm_from_environment():
    """Every test starts from, and leaves, the environment's choice."""
    winograd.set_conv_algorithm(None)
    yield
    winograd.set_conv_algorithm(None)


# ------------------------------------------------------------------ transforms
def tiles_of(x, m, offset, window):
    """The (window x window) tiles of x (N, H, W, C) read by the m-grid, zero-padded:
    (N*TH*TW, window, window, C)."""
    n, h, w, c = x.shape
    th, tw = cpu.winograd_tile_grid(h, w, m)
    pad = np.zeros((n, th * m + window + 2, tw * m + window + 2, c))
    pad[:, 2:2 + h, 2:2 + w] = x
    return np.stack([pad[b, 2 + ti * m + offset:2 + ti * m + offset + window,
                         2 + tj * m + offset:2 + tj * m + offset + window]
                     for b in range(n) for ti in range(th) for tj in range(tw)])


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("shape", TRANSFORM_SHAPES)
def test_input_transform_is_bt_d_b_per_tile(m, shape):
    bt = TRANSFORMS[m][0]
    x = np.random.default_rng(0).standard_normal(shape)
    d = tiles_of(x, m, -1, m + 2)
    expected = np.einsum("xi,pijc,yj->xypc", bt, d, bt).reshape((m + 2) ** 2, len(d), shape[3])
    out = cpu.winograd_input(x, m, np.empty_like(expected))
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("shape", TRANSFORM_SHAPES)
def test_output_transform_is_at_m_a_per_tile_cropped(m, shape):
    n, h, w, k = shape
    at = TRANSFORMS[m][2]
    th, tw = cpu.winograd_tile_grid(h, w, m)
    mt = np.random.default_rng(1).standard_normal(((m + 2) ** 2, n * th * tw, k))
    y = np.einsum("rx,xypk,sy->prsk", at, mt.reshape(m + 2, m + 2, -1, k), at)    # (P, m, m, K)
    grid = y.reshape(n, th, tw, m, m, k).transpose(0, 1, 3, 2, 4, 5).reshape(n, th * m, tw * m, k)
    out = cpu.winograd_output(mt, m, np.empty(shape))
    np.testing.assert_allclose(out, grid[:, :h, :w], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (2, 6, 4, 3)])
def test_output_grad_transform_is_the_output_transforms_adjoint(m, shape):
    """<winograd_output(M), g> == <M, winograd_output_grad(g)> for all M, g."""
    rng = np.random.default_rng(2)
    n, h, w, k = shape
    th, tw = cpu.winograd_tile_grid(h, w, m)
    mt = rng.standard_normal(((m + 2) ** 2, n * th * tw, k))
    g = rng.standard_normal(shape)
    lhs = (cpu.winograd_output(mt, m, np.empty(shape)) * g).sum()
    rhs = (mt * cpu.winograd_output_grad(g, m, np.empty_like(mt))).sum()
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


@pytest.mark.parametrize("shape", [(2, 6, 4, 3), (1, 2, 2, 1), (3, 4, 8, 16)])
def test_input_grad_transform_is_the_input_transforms_adjoint(shape):
    """<winograd_input(x), Z> == <x, winograd_input_grad(Z)> for all x, Z: the F(2x2) dx
    kernel on even images (its overlapping tiles gather from both neighbours)."""
    rng = np.random.default_rng(4)
    n, h, w, c = shape
    x = rng.standard_normal(shape)
    z = rng.standard_normal((16, n * h * w // 4, c))
    assert cpu.winograd_f2_applies(shape, 2)
    lhs = (cpu.winograd_input(x, 2, np.empty_like(z)) * z).sum()
    rhs = (x * cpu.winograd_input_grad(z, 2, np.empty(shape))).sum()
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


@pytest.mark.parametrize("m, shape", [(4, (1, 4, 4, 2)), (2, (1, 5, 4, 2)), (2, (1, 4, 3, 2))])
def test_input_grad_transform_elsewhere_is_a_clear_error(m, shape):
    assert not cpu.winograd_f2_applies(shape, m)
    th, tw = cpu.winograd_tile_grid(shape[1], shape[2], m)
    with pytest.raises(ValueError, match=r"winograd_input_grad: F\(2x2\) on even images only"):
        cpu.winograd_input_grad(np.zeros(((m + 2) ** 2, th * tw, 2)), m, np.empty(shape))


@pytest.mark.parametrize("m", TILES)
def test_filter_transform_and_its_adjoint(m):
    rng = np.random.default_rng(3)
    g_mat = TRANSFORMS[m][1]
    w = rng.standard_normal((4, 3, 3, 3))
    u = cpu.winograd_filter(w, m)
    expected = np.einsum("xi,kcij,yj->xyck", g_mat, w, g_mat).reshape(-1, 3, 4)
    np.testing.assert_allclose(u, expected, rtol=1e-13, atol=1e-13)
    du = rng.standard_normal(u.shape)
    assert abs((u * du).sum() - (w * cpu.winograd_filter_grad(du, m)).sum()) <= 1e-12 * abs((u * du).sum())


# ------------------------------------------------------------------ conv2d against im2col
def forward_backward(algorithm, x, w, b, g, dtype):
    """conv2d (3x3, padding 1) with ``algorithm``: output, dx, dW, db as float64 arrays."""
    winograd.set_conv_algorithm(algorithm)
    x, w, b = (mr.tensor(a.astype(dtype), requires_grad=True) for a in (x, w, b))
    y = F.conv2d(x, w, b, padding=1)
    y.backward(g.astype(dtype))
    return [a.astype(np.float64) for a in (y.numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy())]


def random_layer(shape, seed=0):
    n, c, k, h, w = shape
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w)), rng.standard_normal((k, c, 3, 3)) / (3 * np.sqrt(c)),
            rng.standard_normal(k), rng.standard_normal((n, k, h, w)))


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("shape", SHAPES)
def test_float64_equals_im2col(m, shape):
    layer = random_layer(shape)
    expected = forward_backward("im2col", *layer, np.float64)
    for what, got, ref in zip(("output", "dx", "dW", "db"), forward_backward(ALGORITHM[m], *layer, np.float64),
                              expected):
        assert_close(got, ref, 1e-12, f"{ALGORITHM[m]} {shape} {what}")


@pytest.mark.parametrize("algorithm", ["im2col", "winograd2", "winograd4"])
@pytest.mark.parametrize("shape", [(2, 16, 16, 16, 16), (2, 64, 64, 8, 8), (3, 5, 2, 9, 4)])
def test_float32_error_bound(algorithm, shape):
    layer = random_layer(shape, seed=1)
    expected = forward_backward("im2col", *layer, np.float64)
    for what, got, ref in zip(("output", "dx", "dW"), forward_backward(algorithm, *layer, np.float32), expected):
        assert_close(got, ref, FLOAT32_BOUND[algorithm], f"{algorithm} float32 {shape} {what}")


# (H, W): odd H runs dx as a forward pass with the flipped filter; even sizes, for F(2x2),
# the input transform's adjoint (minires/ops/winograd.py)
IMAGE_SIZES = [(5, 6), (4, 6)]


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("hw", IMAGE_SIZES)
def test_gradcheck(m, bias, hw, rng):
    winograd.set_conv_algorithm(ALGORITHM[m])
    x, w = make(rng, 2, 3, *hw), make(rng, 4, 3, 3, 3)
    inputs = (x, w, make(rng, 4)) if bias else (x, w)
    assert mr.gradcheck(lambda x, w, b=None: F.conv2d(x, w, b, padding=1), inputs)


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("hw", IMAGE_SIZES)
def test_gradient_of_one_input_only(m, hw, rng):
    """dx without dW (a frozen filter) and dW without dx (the stem's input)."""
    winograd.set_conv_algorithm(ALGORITHM[m])
    x, w = make(rng, 2, 3, *hw), make(rng, 4, 3, 3, 3, requires_grad=False)
    assert mr.gradcheck(lambda x: F.conv2d(x, w, padding=1), (x,))
    x, w = make(rng, 2, 3, *hw, requires_grad=False), make(rng, 4, 3, 3, 3)
    assert mr.gradcheck(lambda w: F.conv2d(x, w, padding=1), (w,))


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("hw", [(6, 7), (6, 4)])
def test_in_several_chunks_matches_one(m, hw, threads, rng, monkeypatch):
    """One image per chunk, the chunks on the calling thread or shared across three
    (these layers are far below backend.CONV_SPLIT_MACS, so the split is forced)."""
    from minires import backend
    winograd.set_conv_algorithm(ALGORITHM[m])
    layer = random_layer((5, 3, 4, *hw))
    whole = forward_backward(ALGORITHM[m], *layer, np.float64)
    monkeypatch.setattr(cpu, "CONV_WORKSPACE_BYTES", 1)        # one image per chunk
    monkeypatch.setattr(backend, "num_threads", lambda: threads)
    monkeypatch.setattr(backend, "CONV_SPLIT_MACS", 0)
    for got, ref in zip(forward_backward(ALGORITHM[m], *layer, np.float64), whole):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["im2col", "winograd2"])
@pytest.mark.parametrize("cores,n,threads", [(2, 2, 1), (2, 3, 2), (2, 32, 2), (8, 8, 6), (8, 32, 8)])
def test_small_convolutions_use_fewer_threads(algorithm, cores, n, threads, monkeypatch):
    """A CIFAR stage-1 layer (16 -> 16 channels, 32x32: 2.4 M multiply-adds per image) shares
    its images across as many threads as get 3 M each (backend.CONV_SPLIT_MACS): at batch 2
    the forward and the backward run on the calling thread (Winograd's in one chunk of both
    images: its chunks hold 4) -- a fork-join there cost more than it saved -- and on 8
    cores batch 8 takes 6 threads, not all or none."""
    from minires import backend
    monkeypatch.setattr(backend, "num_threads", lambda: cores)
    monkeypatch.setattr(backend, "CONV_SPLIT_MACS", 3_000_000)
    calls, real = [], backend.parallel_for
    monkeypatch.setattr(backend, "parallel_for",
                        lambda xp, worker, items, together=False, threads=None:
                        calls.append((threads, list(items))) or real(xp, worker, items, together, threads))
    winograd.set_conv_algorithm(algorithm)
    rng = np.random.default_rng(n)
    x = mr.tensor(rng.standard_normal((n, 16, 32, 32)).astype(np.float32), requires_grad=True)
    w = mr.tensor(rng.standard_normal((16, 16, 3, 3)).astype(np.float32), requires_grad=True)
    F.conv2d(x, w, padding=1).backward(np.ones((n, 16, 32, 32), np.float32))
    assert [t for t, _ in calls] == [threads, threads], calls          # forward, backward
    chunks = calls[0][1]
    assert chunks[0][0] == 0 and chunks[-1][1] == n
    assert len(chunks) % threads == 0 or len(chunks) == n, chunks     # even shares
    if threads == 1 and algorithm == "winograd2":
        assert chunks == [(0, n)], chunks


# ------------------------------------------------------------------ which path runs
@pytest.fixture
def winograd_calls(monkeypatch):
    """The tile sizes conv2d ran the Winograd path with, in order."""
    calls, real = [], winograd.conv2d

    def spy(x, weight, bias, m):
        calls.append(m)
        return real(x, weight, bias, m)
    monkeypatch.setattr(winograd, "conv2d", spy)
    return calls


def conv(rng, c=3, k=4, hw=6, **cfg):
    return F.conv2d(make(rng, 2, c, hw, hw), make(rng, k, c // cfg.get("groups", 1), 3, 3), **cfg)


def test_setting_and_environment_choose_the_algorithm(rng, monkeypatch, winograd_calls):
    conv(rng, padding=1)                                        # default: auto, not in its table
    monkeypatch.setenv(winograd.ENV_VAR, "winograd4")
    conv(rng, padding=1)
    winograd.set_conv_algorithm("winograd2")                    # the setting beats the environment
    conv(rng, padding=1)
    winograd.set_conv_algorithm("im2col")
    conv(rng, padding=1)
    assert winograd_calls == [4, 2]


def test_auto_uses_the_per_layer_table(rng, monkeypatch, winograd_calls):
    monkeypatch.setattr(winograd, "AUTO_WINOGRAD", {(3, 4, 6, 6): "winograd4"})
    winograd.set_conv_algorithm("auto")
    conv(rng, padding=1)                                        # in the table
    conv(rng, hw=7, padding=1)                                  # not in it: im2col
    assert winograd_calls == [4]


def test_auto_table_maps_layer_shapes_to_winograd_algorithms():
    """(C_in, C_out, H, W) -> winograd2 | winograd4 | direct: a typo would silently mean im2col."""
    for shape, algorithm in winograd.AUTO_WINOGRAD.items():
        assert len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape), shape
        assert algorithm in (*winograd.TILE_SIZES, "direct"), algorithm


@pytest.mark.parametrize("cfg", [dict(stride=2, padding=1), dict(padding=0), dict(padding=2, dilation=2),
                                 dict(c=4, padding=1, groups=2)])
def test_other_layers_stay_on_im2col(cfg, rng, winograd_calls):
    winograd.set_conv_algorithm("winograd2")
    conv(rng, **cfg)
    F.conv2d(make(rng, 2, 3, 6, 6), make(rng, 4, 3, 1, 1))     # a 1x1 kernel
    assert winograd_calls == []


@pytest.mark.gpu
def test_gpu_arrays_stay_on_im2col(rng, winograd_calls):
    winograd.set_conv_algorithm("winograd2")
    F.conv2d(make(rng, 2, 3, 6, 6, device="cuda"), make(rng, 4, 3, 3, 3, device="cuda"), padding=1)
    assert winograd_calls == []


def test_unknown_algorithm_is_a_clear_error(rng, monkeypatch):
    with pytest.raises(ValueError, match="set_conv_algorithm: unknown algorithm 'fft'"):
        winograd.set_conv_algorithm("fft")
    monkeypatch.setenv(winograd.ENV_VAR, "fft")
    with pytest.raises(ValueError, match="conv2d: MINIRES_CONV_ALGO='fft' is not an algorithm"):
        conv(rng, padding=1)


@pytest.mark.parametrize("n,most", [(32, 27), (32, 64), (128, 56), (128, 16), (5, 64), (3, 1), (1, 10)])
def test_batch_chunks_cover_the_batch_in_even_shares(n, most, monkeypatch):
    """conv2d's chunks (im2col and Winograd): at most ``most`` images each, near-equal, as
    many as a multiple of the threads where the batch allows -- 32 images in chunks of
    at most 27 used to be 27 + 5, one core idle."""
    from minires import backend
    monkeypatch.setattr(backend, "_threads", 2)
    for threads in (None, 1, 3):
        chunks = backend.batch_chunks(np, n, most, threads)
        assert chunks[0][0] == 0 and chunks[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        sizes = [b - a for a, b in chunks]
        assert max(sizes) <= most and max(sizes) - min(sizes) <= 1
        if threads == 1:                 # one thread: as few chunks as the bound allows
            assert len(chunks) == -(-n // most)
        else:                            # None: minires's threads (2 here)
            assert len(chunks) % (threads or 2) == 0 or len(chunks) == n


def test_transforms_benchmark_runs():
    """benchmarks/winograd_transforms.py runs its fifteen rows (one block of one call each:
    a run, not a timing) and prints every kernel with a finite ratio to its bound."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "winograd_transforms.py"),
                           "--blocks", "1", "--reps", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if not line.startswith("#")][1:]
    assert [row[-5] for row in rows] == ["input", "output", "output_bn", "output_grad", "input_grad"] * 3, done.stdout
    assert all(np.isfinite(float(row[-2])) and float(row[-2]) > 0 for row in rows), done.stdout


# ------------------------------------------------------------------ the direct convolution
# (N, C_in, C_out, H, W): the stem's shape, odd sizes, one pixel, more outputs than inputs
DIRECT_SHAPES = [(2, 3, 16, 8, 8), (2, 5, 3, 7, 9), (1, 1, 1, 1, 1), (3, 2, 4, 1, 6), (1, 4, 2, 3, 3)]


@pytest.mark.parametrize("shape", DIRECT_SHAPES)
def test_direct_float64_equals_im2col(shape):
    layer = random_layer(shape)
    expected = forward_backward("im2col", *layer, np.float64)
    for what, got, ref in zip(("output", "dx", "dW", "db"), forward_backward("direct", *layer, np.float64),
                              expected):
        assert_close(got, ref, 1e-12, f"direct {shape} {what}")


@pytest.mark.parametrize("shape", [(4, 3, 16, 32, 32), (2, 16, 16, 16, 16), (3, 5, 2, 9, 4)])
def test_direct_float32_error_bound(shape):
    layer = random_layer(shape, seed=1)
    expected = forward_backward("im2col", *layer, np.float64)
    for what, got, ref in zip(("output", "dx", "dW"), forward_backward("direct", *layer, np.float32), expected):
        assert_close(got, ref, FLOAT32_BOUND["direct"], f"direct float32 {shape} {what}")


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("hw", IMAGE_SIZES)
def test_direct_gradcheck(bias, hw, rng):
    winograd.set_conv_algorithm("direct")
    x, w = make(rng, 2, 3, *hw), make(rng, 4, 3, 3, 3)
    inputs = (x, w, make(rng, 4)) if bias else (x, w)
    assert mr.gradcheck(lambda x, w, b=None: F.conv2d(x, w, b, padding=1), inputs)


def test_direct_gradient_of_one_input_only(rng):
    """dx without dW (a frozen filter) and dW without dx (the stem's input)."""
    winograd.set_conv_algorithm("direct")
    x, w = make(rng, 2, 3, 5, 6), make(rng, 4, 3, 3, 3, requires_grad=False)
    assert mr.gradcheck(lambda x: F.conv2d(x, w, padding=1), (x,))
    x, w = make(rng, 2, 3, 5, 6, requires_grad=False), make(rng, 4, 3, 3, 3)
    assert mr.gradcheck(lambda w: F.conv2d(x, w, padding=1), (w,))


@pytest.mark.parametrize("threads", [1, 3])
def test_direct_reads_any_layout_and_splits_the_images(threads, rng, monkeypatch):
    """Channels-last input and gradient (what a ResNet hands a conv) give what contiguous
    NCHW ones give, on one thread and with the images shared across three."""
    from minires import backend
    from minires.kernels.cpu import rows
    monkeypatch.setattr(backend, "num_threads", lambda: threads)
    monkeypatch.setattr(rows, "SPLIT_BYTES", 0)                 # split even these small images
    x, w, b, g = random_layer((5, 3, 4, 6, 7))
    reference = forward_backward("im2col", x, w, b, g, np.float64)
    cl = lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    for got, ref in zip(forward_backward("direct", cl(x), w, b, cl(g), np.float64), reference):
        assert_close(got, ref, 1e-12, f"direct, channels-last, {threads} threads")


def test_direct_kernels_refuse_shapes_they_would_index_past():
    """The kernels index without bounds checks, so their wrappers check the shapes."""
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"^direct_conv3x3: expected x \(N, C, H, W\) and a \(K, C, 3, 3\)"):
        cpu.direct_conv3x3(x, np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"^direct_conv3x3: .*got x \(3, 5, 5\)"):
        cpu.direct_conv3x3(x[0], w)
    with pytest.raises(ValueError, match=r"^direct_conv3x3_filter_grad: expected the gradient as "
                                         r"\(N, H, W, K\) = \(2, 5, 5, 4\), got \(2, 4, 5, 5\)"):
        cpu.direct_conv3x3_filter_grad(x, np.zeros((2, 4, 5, 5)), 4)
    assert cpu.direct_conv3x3(x, w).shape == (2, 5, 5, 4)
    assert cpu.direct_conv3x3_filter_grad(x, np.zeros((2, 5, 5, 4)), 4).shape == (4, 3, 3, 3)


@pytest.fixture
def direct_calls(monkeypatch):
    """The input shapes conv2d ran the direct path with, in order."""
    from minires.ops import direct
    calls, real = [], direct.conv2d

    def spy(x, weight, bias):
        calls.append(tuple(x.shape))
        return real(x, weight, bias)
    monkeypatch.setattr(direct, "conv2d", spy)
    return calls


def test_direct_runs_where_chosen(rng, direct_calls, winograd_calls):
    conv(rng, padding=1)                                        # auto, not in its table: im2col
    winograd.set_conv_algorithm("direct")
    conv(rng, padding=1)
    conv(rng, stride=2, padding=1)                              # not a layer it applies to
    assert direct_calls == [(2, 3, 6, 6)] and winograd_calls == []


def test_the_cifar_stem_runs_direct_by_default(direct_calls):
    model = mr.models.resnet_cifar(8)
    model(mr.tensor(np.zeros((2, 3, 32, 32), np.float32)))
    assert direct_calls == [(2, 3, 32, 32)]
