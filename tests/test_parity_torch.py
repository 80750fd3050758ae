"""Parity with PyTorch (CPU): every op's forward and input gradients, a small
option-A ResNet end to end (loss, logits, every parameter gradient, BN running
statistics), SGD updates and learning-rate schedules.

The reference is always PyTorch on the CPU; minires runs on the ``device``
fixture's device (CPU, and the GPU where there is one).  Tolerances: relative
error (max |a - e| / max |e|) <= 1e-10 in float64 and <= 1e-4 in float32.
Every backward pass uses a random upstream gradient (not all ones), so a
gradient that is right only up to a per-element weighting fails.
"""
import bisect
import math
import zlib

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as MF
from helpers import assert_close

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

pytestmark = pytest.mark.parity

DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]
RTOL = {np.float64: 1e-10, np.float32: 1e-4}


@pytest.fixture(autouse=True, scope="module")
def _torch_threads():
    """Keep torch on as few threads as minires's test run (quiet and deterministic)."""
    old = torch.get_num_threads()
    torch.set_num_threads(min(old, 2))
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------- helpers
def _np(t):
    return t.detach().cpu().numpy()


def _seed(*key):
    """A stable seed from a test's parameters (hash() of strings is salted per run)."""
    return zlib.crc32(repr(key).encode())


def check_op(mr_fn, torch_fn, inputs, dtype, device, seed=0, what="op"):
    """Run both frameworks on the same inputs; compare the output and every float
    input's gradient under one random upstream gradient.

    ``inputs``: NumPy arrays; floating ones are cast to ``dtype`` and require a
    gradient, integer ones (class indices) are passed as they are.
    """
    rng = np.random.default_rng(seed)
    tol = RTOL[dtype]
    mr_in, th_in = [], []
    for a in inputs:
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(dtype)
            mr_in.append(mr.tensor(a, requires_grad=True, device=device))
            th_in.append(torch.tensor(a, requires_grad=True))
        else:
            mr_in.append(mr.tensor(a, device=device))
            th_in.append(torch.tensor(a))
    out_m = mr_fn(*mr_in)
    out_t = torch_fn(*th_in)
    assert out_m.dtype == dtype, f"{what}: output dtype {out_m.dtype}, expected {np.dtype(dtype)}"
    assert_close(out_m, _np(out_t), tol, f"{what} forward")

    g = rng.standard_normal(tuple(out_t.shape)).astype(dtype)
    out_m.backward(mr.tensor(g, device=device))
    out_t.backward(torch.from_numpy(g))
    for i, (m, t) in enumerate(zip(mr_in, th_in)):
        if not t.requires_grad:
            continue
        assert m.grad is not None, f"{what}: input {i} got no gradient"
        assert_close(m.grad, _np(t.grad), tol, f"{what} grad of input {i}")
    return out_m, out_t


def randn(rng, *shape):
    return rng.standard_normal(shape)


# ---------------------------------------------------------------- conv2d
# (N, C, H, W, C_out, (kh, kw), stride, padding, dilation, groups, bias)
CONV_CONFIGS = {
    "3x3_s1_p1": (2, 3, 6, 6, 4, (3, 3), 1, 1, 1, 1, False),
    "3x3_s2_p1": (2, 3, 8, 8, 4, (3, 3), 2, 1, 1, 1, False),
    "3x3_s2_p1_odd": (2, 3, 7, 7, 4, (3, 3), 2, 1, 1, 1, False),
    "1x1_s2_p0": (2, 4, 6, 6, 6, (1, 1), 2, 0, 1, 1, False),
    "1x1_s2_p0_odd": (2, 4, 7, 5, 6, (1, 1), 2, 0, 1, 1, False),
    "odd_7x5": (2, 3, 7, 5, 4, (3, 3), 1, 1, 1, 1, False),
    "bias": (2, 3, 6, 5, 4, (3, 3), 1, 1, 1, 1, True),
    "dilation2": (2, 3, 8, 7, 4, (3, 3), 1, 2, 2, 1, True),
    "dilation2_s2_nopad": (2, 3, 9, 8, 4, (3, 3), 2, 0, 2, 1, False),
    "groups2": (2, 4, 6, 5, 6, (3, 3), 1, 1, 1, 2, True),
    "groups2_s2": (2, 4, 7, 7, 4, (3, 3), 2, 1, 1, 2, False),
    "kernel_5x3": (2, 3, 9, 7, 4, (5, 3), 1, (2, 1), 1, 1, True),
    "kernel_5x3_asym_stride": (2, 3, 9, 7, 4, (5, 3), (2, 1), (1, 0), 1, 1, True),
    # several images per chunk, several chunks (and worker threads) per batch
    "multi_chunk": (8, 16, 32, 32, 4, (3, 3), 1, 1, 1, 1, True),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CONV_CONFIGS))
def test_conv2d(name, dtype, device):
    n, c, h, w, c_out, (kh, kw), stride, padding, dilation, groups, bias = CONV_CONFIGS[name]
    rng = np.random.default_rng(_seed("conv", name))
    inputs = [randn(rng, n, c, h, w), randn(rng, c_out, c // groups, kh, kw)]
    if bias:
        inputs.append(randn(rng, c_out))

    def run(F):
        return lambda x, wt, b=None: F.conv2d(x, wt, b, stride, padding, dilation, groups)
    check_op(run(MF), run(TF), inputs, dtype, device, seed=_seed("conv-g", name), what=f"conv2d[{name}]")


# ---------------------------------------------------------------- batch norm
BN_SHAPES = {"2d": (6, 3), "3d": (4, 3, 5), "4d": (3, 4, 5, 3)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("shape", list(BN_SHAPES))
def test_batch_norm_training_updates_running_stats(shape, affine, dtype, device):
    rng = np.random.default_rng(_seed("bn-train", shape, affine))
    x_shape = BN_SHAPES[shape]
    c = x_shape[1]
    x = randn(rng, *x_shape) * 2.0 + 0.7
    rm0, rv0 = randn(rng, c).astype(dtype), (np.abs(randn(rng, c)) + 0.5).astype(dtype)
    momentum, eps = 0.3, 1e-3
    rm_m, rv_m = mr.tensor(rm0, device=device), mr.tensor(rv0, device=device)
    rm_t, rv_t = torch.tensor(rm0), torch.tensor(rv0)
    inputs = [x] + ([randn(rng, c), randn(rng, c)] if affine else [])

    def run_m(x, w=None, b=None):
        return MF.batch_norm(x, rm_m, rv_m, w, b, True, momentum, eps)

    def run_t(x, w=None, b=None):
        return TF.batch_norm(x, rm_t, rv_t, w, b, True, momentum, eps)
    check_op(run_m, run_t, inputs, dtype, device, seed=_seed("bn-g", shape), what=f"batch_norm train {shape}")
    tol = RTOL[dtype]
    assert_close(rm_m, _np(rm_t), tol, "running_mean after the step")
    assert_close(rv_m, _np(rv_t), tol, "running_var after the step")
    assert not np.allclose(_np(rm_t), rm0), "the running mean should have moved"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(BN_SHAPES))
def test_batch_norm_eval(shape, dtype, device):
    rng = np.random.default_rng(_seed("bn-eval", shape))
    x_shape = BN_SHAPES[shape]
    c = x_shape[1]
    rm0, rv0 = randn(rng, c).astype(dtype), (np.abs(randn(rng, c)) + 0.5).astype(dtype)
    rm_m, rv_m = mr.tensor(rm0, device=device), mr.tensor(rv0, device=device)
    rm_t, rv_t = torch.tensor(rm0), torch.tensor(rv0)
    inputs = [randn(rng, *x_shape), randn(rng, c), randn(rng, c)]
    check_op(lambda x, w, b: MF.batch_norm(x, rm_m, rv_m, w, b, False, 0.1, 1e-5),
             lambda x, w, b: TF.batch_norm(x, rm_t, rv_t, w, b, False, 0.1, 1e-5),
             inputs, dtype, device, seed=_seed("bn-eval-g", shape), what=f"batch_norm eval {shape}")
    tol = RTOL[dtype]
    assert_close(rm_m, rm0, tol, "running_mean unchanged in eval")
    assert_close(rv_m, rv0, tol, "running_var unchanged in eval")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum0.1", "cumulative"])
def test_batchnorm2d_module_several_steps(momentum, dtype, device):
    rng = np.random.default_rng(_seed("bn-module", momentum))
    c = 3
    m_bn = mr.nn.BatchNorm2d(c, momentum=momentum).to(device=device, dtype=dtype)
    t_bn = torch.nn.BatchNorm2d(c, momentum=momentum).to(torch.float64 if dtype == np.float64 else torch.float32)
    state = {"weight": randn(rng, c), "bias": randn(rng, c), "running_mean": randn(rng, c),
             "running_var": np.abs(randn(rng, c)) + 0.5, "num_batches_tracked": np.array(2, np.int64)}
    state = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in state.items()}
    m_bn.load_state_dict(state)
    t_bn.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    tol = RTOL[dtype]
    for step in range(4):
        training = step < 3
        m_bn.train(training)
        t_bn.train(training)
        x = (randn(rng, 4, c, 5, 3) * (1 + step) + step).astype(dtype)
        g = randn(rng, 4, c, 5, 3).astype(dtype)
        xm = mr.tensor(x, requires_grad=True, device=device)
        xt = torch.tensor(x, requires_grad=True)
        ym, yt = m_bn(xm), t_bn(xt)
        assert_close(ym, _np(yt), tol, f"step {step} output")
        ym.backward(mr.tensor(g, device=device))
        yt.backward(torch.from_numpy(g))
        assert_close(xm.grad, _np(xt.grad), tol, f"step {step} input grad")
        for name in ("weight", "bias"):
            assert_close(getattr(m_bn, name).grad, _np(getattr(t_bn, name).grad), tol, f"step {step} {name}.grad")
        m_bn.zero_grad()
        t_bn.zero_grad()
        m_state, t_state = m_bn.state_dict(), t_bn.state_dict()
        assert list(m_state) == list(t_state)
        for k in ("running_mean", "running_var"):
            assert_close(m_state[k], _np(t_state[k]), tol, f"step {step} {k}")
        assert int(m_state["num_batches_tracked"]) == int(t_state["num_batches_tracked"]), \
            f"step {step} num_batches_tracked {int(m_state['num_batches_tracked'])} " \
            f"!= {int(t_state['num_batches_tracked'])}"
    assert int(m_bn.state_dict()["num_batches_tracked"]) == 5


# ---------------------------------------------------------------- elementwise, linear
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu(dtype, device):
    rng = np.random.default_rng(_seed("relu"))
    check_op(MF.relu, TF.relu, [randn(rng, 3, 4, 5)], dtype, device, seed=1, what="relu")


LINEAR_CONFIGS = {
    "bias": ((5, 4), 3, True),
    "no_bias": ((5, 4), 3, False),
    "3d_input_bias": ((2, 3, 4), 6, True),
    "3d_input_no_bias": ((2, 3, 4), 6, False),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LINEAR_CONFIGS))
def test_linear(name, dtype, device):
    x_shape, out_f, bias = LINEAR_CONFIGS[name]
    rng = np.random.default_rng(_seed("linear", name))
    inputs = [randn(rng, *x_shape), randn(rng, out_f, x_shape[-1])] + ([randn(rng, out_f)] if bias else [])
    check_op(lambda x, w, b=None: MF.linear(x, w, b), lambda x, w, b=None: TF.linear(x, w, b),
             inputs, dtype, device, seed=_seed("linear-g", name), what=f"linear[{name}]")


# ---------------------------------------------------------------- pooling
# (input shape, kernel, stride, padding)
MAX_POOL_CONFIGS = {
    "k3_s2_p1": ((2, 3, 8, 8), 3, 2, 1),
    "k3_s2_p1_odd": ((2, 3, 7, 5), 3, 2, 1),
    "k2_s2": ((2, 3, 8, 8), 2, 2, 0),
    "k2_s2_odd": ((2, 3, 7, 5), 2, 2, 0),
    "k3_s1_p1": ((1, 2, 5, 6), 3, 1, 1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(MAX_POOL_CONFIGS))
def test_max_pool2d(name, dtype, device):
    shape, k, s, p = MAX_POOL_CONFIGS[name]
    rng = np.random.default_rng(_seed("maxpool", name))
    check_op(lambda x: MF.max_pool2d(x, k, s, p), lambda x: TF.max_pool2d(x, k, s, p),
             [randn(rng, *shape)], dtype, device, seed=_seed("maxpool-g", name), what=f"max_pool2d[{name}]")


AVG_POOL_CONFIGS = {
    "k2_s2": ((2, 3, 8, 8), 2, 2, 0),
    "k2_s2_odd": ((2, 3, 7, 5), 2, 2, 0),
    "k3_s2_p1": ((2, 3, 8, 8), 3, 2, 1),
    "k3_s2_p1_odd": ((2, 3, 7, 5), 3, 2, 1),
    "k3_s1_p1": ((1, 2, 5, 6), 3, 1, 1),
    "k32_s21_p10": ((2, 2, 7, 6), (3, 2), (2, 1), (1, 0)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False], ids=["incl_pad", "excl_pad"])
@pytest.mark.parametrize("name", list(AVG_POOL_CONFIGS))
def test_avg_pool2d(name, count_include_pad, dtype, device):
    shape, k, s, p = AVG_POOL_CONFIGS[name]
    rng = np.random.default_rng(_seed("avgpool", name))
    check_op(lambda x: MF.avg_pool2d(x, k, s, p, count_include_pad=count_include_pad),
             lambda x: TF.avg_pool2d(x, k, s, p, count_include_pad=count_include_pad),
             [randn(rng, *shape)], dtype, device, seed=_seed("avgpool-g", name, count_include_pad),
             what=f"avg_pool2d[{name}, count_include_pad={count_include_pad}]")


ADAPTIVE_CONFIGS = {
    "7x5_to_1": ((2, 3, 7, 5), 1),
    "8x8_to_1": ((2, 3, 8, 8), 1),
    "7x5_to_3x2": ((2, 3, 7, 5), (3, 2)),
    "7x5_to_4x3": ((2, 3, 7, 5), (4, 3)),
    "8x6_to_4x3": ((2, 3, 8, 6), (4, 3)),
    "7x5_to_7x5": ((1, 2, 7, 5), (7, 5)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ADAPTIVE_CONFIGS))
def test_adaptive_avg_pool2d(name, dtype, device):
    shape, out = ADAPTIVE_CONFIGS[name]
    rng = np.random.default_rng(_seed("adaptive", name))
    check_op(lambda x: MF.adaptive_avg_pool2d(x, out), lambda x: TF.adaptive_avg_pool2d(x, out),
             [randn(rng, *shape)], dtype, device, seed=_seed("adaptive-g", name),
             what=f"adaptive_avg_pool2d[{name}]")


# ---------------------------------------------------------------- softmax, loss
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, dim", [((4, 7), -1), ((4, 7), 0), ((2, 5, 3), 1)],
                         ids=["2d_last", "2d_dim0", "3d_dim1"])
def test_log_softmax(shape, dim, dtype, device):
    rng = np.random.default_rng(_seed("logsoftmax", shape, dim))
    x = randn(rng, *shape) * 3.0
    check_op(lambda x: MF.log_softmax(x, dim=dim), lambda x: TF.log_softmax(x, dim=dim),
             [x], dtype, device, seed=_seed("logsoftmax-g", shape, dim), what=f"log_softmax dim={dim}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction, dtype, device):
    rng = np.random.default_rng(_seed("ce", reduction))
    logits = randn(rng, 6, 5) * 2.0
    target = rng.integers(0, 5, size=6).astype(np.int64)
    target[:2] = [4, 0]                                # both ends of the class range
    check_op(lambda z, t: MF.cross_entropy(z, t, reduction=reduction),
             lambda z, t: TF.cross_entropy(z, t, reduction=reduction),
             [logits, target], dtype, device, seed=_seed("ce-g", reduction),
             what=f"cross_entropy[{reduction}]")


# ---------------------------------------------------------------- shape ops
PAD_CONFIGS = {
    "channels_4_4": ((2, 3, 4, 4), (0, 0, 0, 0, 4, 4), 0.0),
    "channels_2_1": ((2, 3, 3, 2), (0, 0, 0, 0, 2, 1), 0.0),
    "spatial_1_2_0_3": ((2, 3, 4, 5), (1, 2, 0, 3), 0.0),
    "last_dim_3d": ((2, 3, 5), (2, 1), 0.0),
    "value_1.5": ((2, 2, 3, 3), (1, 1, 1, 1), 1.5),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(PAD_CONFIGS))
def test_pad(name, dtype, device):
    shape, pad, value = PAD_CONFIGS[name]
    rng = np.random.default_rng(_seed("pad", name))
    check_op(lambda x: MF.pad(x, pad, value=value), lambda x: TF.pad(x, pad, value=value),
             [randn(rng, *shape)], dtype, device, seed=_seed("pad-g", name), what=f"pad[{name}]")


SLICES = {
    "stride2_even": ((2, 3, 8, 8), (slice(None), slice(None), slice(None, None, 2), slice(None, None, 2))),
    "stride2_odd": ((2, 3, 7, 5), (slice(None), slice(None), slice(None, None, 2), slice(None, None, 2))),
    "mixed": ((2, 4, 7, 6), (slice(None), slice(1, 3), slice(1, None, 3), slice(None, -1))),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(SLICES))
def test_strided_slicing(name, dtype, device):
    shape, index = SLICES[name]
    rng = np.random.default_rng(_seed("slice", name))
    check_op(lambda x: x[index], lambda x: x[index], [randn(rng, *shape)], dtype, device,
             seed=_seed("slice-g", name), what=f"getitem[{name}]")


MATMUL_CONFIGS = {
    "2d_2d": ((3, 4), (4, 5)),
    "batch_broadcast": ((2, 1, 3, 4), (5, 4, 2)),
    "3d_2d": ((2, 3, 4), (4, 5)),
    "2d_3d": ((3, 4), (2, 4, 5)),
    "matrix_vector": ((2, 3, 4), (4,)),
    "vector_matrix": ((4,), (2, 4, 3)),
    "vector_vector": ((4,), (4,)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(MATMUL_CONFIGS))
def test_matmul(name, dtype, device):
    a_shape, b_shape = MATMUL_CONFIGS[name]
    rng = np.random.default_rng(_seed("matmul", name))
    check_op(lambda a, b: a @ b, lambda a, b: a @ b, [randn(rng, *a_shape), randn(rng, *b_shape)],
             dtype, device, seed=_seed("matmul-g", name), what=f"matmul[{name}]")


# ---------------------------------------------------------------- a small ResNet
class MrBlock(mr.nn.Module):
    """A basic block; option-A shortcut (subsample, zero-pad channels) when the shape changes."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = mr.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = mr.nn.BatchNorm2d(c_out)
        self.conv2 = mr.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = mr.nn.BatchNorm2d(c_out)
        self.relu = mr.nn.ReLU()
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.extra:
            short = x[:, :, ::self.stride, ::self.stride]
            short = MF.pad(short, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return self.relu(out + short)


class MrNet(mr.nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.conv1 = mr.nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.bn1 = mr.nn.BatchNorm2d(4)
        self.relu = mr.nn.ReLU()
        self.layer1 = mr.nn.Sequential(MrBlock(4, 4), MrBlock(4, 4))
        self.layer2 = mr.nn.Sequential(MrBlock(4, 8, stride=2))
        self.fc = mr.nn.Linear(8, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = MF.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class TorchBlock(torch.nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c_out)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c_out)
        self.relu = torch.nn.ReLU()
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.extra:
            short = x[:, :, ::self.stride, ::self.stride]
            short = TF.pad(short, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return self.relu(out + short)


class TorchNet(torch.nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(4)
        self.relu = torch.nn.ReLU()
        self.layer1 = torch.nn.Sequential(TorchBlock(4, 4), TorchBlock(4, 4))
        self.layer2 = torch.nn.Sequential(TorchBlock(4, 8, stride=2))
        self.fc = torch.nn.Linear(8, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = TF.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def _twin_nets(dtype, device, seed):
    """The minires net with randomised state (BN affine and running stats too), and
    the torch net loaded from its state dict, key for key."""
    rng = np.random.default_rng(seed)
    m_net = MrNet().to(device=device, dtype=dtype)
    state = m_net.state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            state[k] = (np.abs(rng.standard_normal(v.shape)) + 0.5).astype(dtype)
        elif k.endswith("num_batches_tracked"):
            state[k] = np.array(3, np.int64)
        elif k.endswith("weight") and v.ndim > 1:
            fan_in = int(np.prod(v.shape[1:]))
            state[k] = (rng.standard_normal(v.shape) * math.sqrt(2.0 / fan_in)).astype(dtype)
        else:                                          # BN weight/bias/running_mean, fc bias
            state[k] = (rng.standard_normal(v.shape) * 0.5 + (1.0 if k.endswith("bn1.weight")
                                                               or k.endswith("bn2.weight") else 0.0)).astype(dtype)
    m_net.load_state_dict(state)
    t_net = TorchNet().to(torch.float64 if dtype == np.float64 else torch.float32)
    t_keys = list(t_net.state_dict())
    assert t_keys == list(state), f"state dict keys differ:\n{t_keys}\n{list(state)}"
    t_net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return m_net, t_net


@pytest.mark.parametrize("dtype", DTYPES)
def test_resnet_step(dtype, device):
    tol = RTOL[dtype]
    m_net, t_net = _twin_nets(dtype, device, seed=_seed("resnet", np.dtype(dtype).name))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 3, 8, 8)).astype(dtype)
    y = np.array([0, 3, 4, 1], np.int64)

    xm = mr.tensor(x, requires_grad=True, device=device)
    xt = torch.tensor(x, requires_grad=True)
    logits_m = m_net(xm)
    logits_t = t_net(xt)
    loss_m = MF.cross_entropy(logits_m, mr.tensor(y, device=device))
    loss_t = TF.cross_entropy(logits_t, torch.from_numpy(y))
    assert_close(logits_m, _np(logits_t), tol, "logits")
    assert_close(loss_m, _np(loss_t), tol, "loss")
    loss_m.backward()
    loss_t.backward()
    assert_close(xm.grad, _np(xt.grad), tol, "input grad")

    m_params = dict(m_net.named_parameters())
    t_params = dict(t_net.named_parameters())
    assert list(m_params) == list(t_params)
    for name, tp in t_params.items():
        assert m_params[name].grad is not None, f"{name}: no gradient"
        assert_close(m_params[name].grad, _np(tp.grad), tol, f"{name}.grad")

    m_state, t_state = m_net.state_dict(), t_net.state_dict()
    for name, tv in t_state.items():
        if name.endswith("num_batches_tracked"):
            assert int(m_state[name]) == int(tv) == 4, f"{name}: {int(m_state[name])} vs {int(tv)}"
        else:                                          # running stats moved; parameters untouched
            assert_close(m_state[name], _np(tv), tol, f"{name} after the step")

    # eval mode on the updated running statistics
    m_net.eval()
    t_net.eval()
    x2 = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
    with torch.no_grad():
        ref = t_net(torch.from_numpy(x2))
    with mr.no_grad():
        out = m_net(mr.tensor(x2, device=device))
    assert_close(out, _np(ref), tol, "eval-mode logits")


# ---------------------------------------------------------------- SGD
SGD_CONFIGS = {
    "plain": dict(momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0),
    "weight_decay": dict(momentum=0.0, weight_decay=1e-4, nesterov=False, dampening=0.0),
    "momentum": dict(momentum=0.9, weight_decay=0.0, nesterov=False, dampening=0.0),
    "momentum_wd": dict(momentum=0.9, weight_decay=1e-4, nesterov=False, dampening=0.0),
    "nesterov_wd": dict(momentum=0.9, weight_decay=1e-4, nesterov=True, dampening=0.0),
    "nesterov": dict(momentum=0.9, weight_decay=0.0, nesterov=True, dampening=0.0),
    "dampening": dict(momentum=0.9, weight_decay=1e-4, nesterov=False, dampening=0.3),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(SGD_CONFIGS))
def test_sgd(name, dtype, device):
    cfg = SGD_CONFIGS[name]
    tol = RTOL[dtype]
    rng = np.random.default_rng(_seed("sgd", name))
    shapes = [(4, 3), (5,), (2, 3, 2, 2)]
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    m_params = [mr.tensor(a, requires_grad=True, device=device) for a in init]
    t_params = [torch.tensor(a, requires_grad=True) for a in init]
    m_opt = mr.optim.SGD(m_params, lr=0.1, **cfg)
    t_opt = torch.optim.SGD(t_params, lr=0.1, **cfg)
    for step in range(5):
        for i, (mp, tp) in enumerate(zip(m_params, t_params)):
            if step == 2 and i == 1:                   # a parameter without a gradient is skipped
                mp.grad, tp.grad = None, None
                continue
            g = rng.standard_normal(shapes[i]).astype(dtype)
            mp.grad = mr.tensor(g, device=device)
            tp.grad = torch.from_numpy(g.copy())
        m_opt.step()
        t_opt.step()
        for i, (mp, tp) in enumerate(zip(m_params, t_params)):
            assert_close(mp, _np(tp), tol, f"param {i} after step {step}")
            # the accumulated update itself, relative to its own scale
            assert_close(mp.numpy() - init[i], _np(tp) - init[i], tol, f"param {i} displacement, step {step}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_param_groups(dtype, device):
    tol = RTOL[dtype]
    rng = np.random.default_rng(11)
    a0, b0 = (rng.standard_normal((3, 4)).astype(dtype) * 10 for _ in range(2))
    ma, mb = (mr.tensor(v, requires_grad=True, device=device) for v in (a0, b0))
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a0, b0))
    groups = lambda a, b: [{"params": [a], "weight_decay": 1e-2}, {"params": [b], "lr": 0.05, "nesterov": True}]
    m_opt = mr.optim.SGD(groups(ma, mb), lr=0.2, momentum=0.9)
    t_opt = torch.optim.SGD(groups(ta, tb), lr=0.2, momentum=0.9)
    for step in range(4):
        for mp, tp in ((ma, ta), (mb, tb)):
            g = rng.standard_normal((3, 4)).astype(dtype)
            mp.grad, tp.grad = mr.tensor(g, device=device), torch.from_numpy(g.copy())
        m_opt.step()
        t_opt.step()
        assert_close(ma, _np(ta), tol, f"group 0 after step {step}")
        assert_close(mb, _np(tb), tol, f"group 1 after step {step}")


# ---------------------------------------------------------------- LR schedules
def _lr_sequences(make_mr, make_torch, steps, base_lrs=(0.1, 0.02)):
    """lr of every group at steps 0..steps of both schedulers (same optimizer setup)."""
    m_opt = mr.optim.SGD([{"params": [mr.tensor(np.zeros(2), requires_grad=True)], "lr": lr}
                          for lr in base_lrs], lr=base_lrs[0], momentum=0.9)
    t_opt = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr}
                             for lr in base_lrs], lr=base_lrs[0], momentum=0.9)
    m_sched, t_sched = make_mr(m_opt), make_torch(t_opt)
    m_seq, t_seq = [], []
    for step in range(steps + 1):
        m_seq.append([g["lr"] for g in m_opt.param_groups])
        t_seq.append([g["lr"] for g in t_opt.param_groups])
        t_opt.step()                                   # (torch warns if the schedule steps first)
        m_sched.step()
        t_sched.step()
    return np.array(m_seq), np.array(t_seq)


@pytest.mark.parametrize("milestones, gamma", [([5, 12], 0.1), ([3, 8, 15], 0.5), ([0, 10], 0.2)],
                         ids=["5_12", "3_8_15", "0_10"])
def test_multistep_lr(milestones, gamma):
    m_seq, t_seq = _lr_sequences(lambda o: mr.optim.MultiStepLR(o, milestones, gamma),
                                 lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma), 20)
    assert_close(m_seq, t_seq, 1e-10, "MultiStepLR learning rates")
    expected = [[lr * gamma ** bisect.bisect_right(sorted(milestones), s) for lr in (0.1, 0.02)]
                for s in range(21)]
    assert_close(m_seq, np.array(expected), 1e-12, "MultiStepLR closed form")


@pytest.mark.parametrize("t_max, eta_min", [(20, 0.0), (20, 1e-3), (12, 0.0)],
                         ids=["T20", "T20_eta_min", "T12"])
def test_cosine_annealing_lr(t_max, eta_min):
    # up to T_max: torch's recursive form and minires's closed form agree; beyond
    # T_max torch's schedule rises again (a period of 2*T_max) while minires holds
    # eta_min by design, so the comparison stops at T_max.
    m_seq, t_seq = _lr_sequences(lambda o: mr.optim.CosineAnnealingLR(o, t_max, eta_min),
                                 lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, t_max, eta_min), t_max)
    assert_close(m_seq, t_seq, 1e-10, "CosineAnnealingLR learning rates")
    assert_close(m_seq[-1], np.array([eta_min, eta_min]), 1e-12, "CosineAnnealingLR at T_max")


def test_linear_warmup_matches_chained_linear_lr_and_multistep():
    """LinearWarmup(MultiStepLR) == torch's ChainedScheduler(LinearLR, MultiStepLR)."""
    def make_mr(o):
        return mr.optim.LinearWarmup(mr.optim.MultiStepLR(o, [8, 15], 0.1), warmup_steps=5, start_factor=0.1)

    def make_torch(o):
        sched = torch.optim.lr_scheduler
        return sched.ChainedScheduler([sched.LinearLR(o, start_factor=0.1, total_iters=5),
                                       sched.MultiStepLR(o, [8, 15], 0.1)])
    m_seq, t_seq = _lr_sequences(make_mr, make_torch, 20)
    assert_close(m_seq, t_seq, 1e-10, "LinearWarmup learning rates")
