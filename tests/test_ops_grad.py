"""Every differentiable op passes a float64 gradient check (random upstream gradients,
every input, every element), on the CPU and -- mirrored -- on the GPU."""
import numpy as np
import pytest

import minires as mr
from minires import ops
from minires.nn import functional as F
from helpers import make


def check(fn, *inputs, **kw):
    assert mr.gradcheck(fn, inputs, **kw)


# ------------------------------------------------------------------ elementwise
@pytest.mark.parametrize("op", [ops.add, ops.sub, ops.mul, ops.div])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((5,), ())])
def test_binary_broadcasting(op, shapes, rng, device):
    a = make(rng, *shapes[0], device=device)
    b = make(rng, *shapes[1], device=device, positive=op is ops.div)
    check(op, a, b)


def test_scalar_operands(rng, device):
    x = make(rng, 2, 3, device=device, positive=True)
    check(lambda x: 2.0 - x * 3 + 1 / x - x / 4 + (-x), x)


def test_unary(rng, device):
    x = make(rng, 3, 4, device=device)
    p = make(rng, 3, 4, device=device, positive=True)
    check(ops.exp, x)
    check(ops.log, p)
    check(ops.sqrt, p)
    check(ops.neg, x)
    check(ops.relu, x)
    check(lambda p: p ** 2.5, p)
    check(lambda p: p ** -1, p)


def test_tensor_exponent(rng, device):
    base = make(rng, 3, 1, device=device, positive=True)
    expo = make(rng, 1, 4, device=device)
    check(ops.pow, base, expo)


def test_astype_roundtrip(rng, device):
    x = make(rng, 4, device=device)
    # float32 rounding (~1e-7) needs a wide step to stay below the tolerance
    check(lambda x: x.astype(np.float32).astype(np.float64), x, eps=1e-2, atol=1e-4)


# ------------------------------------------------------------------ matmul, linear
@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)),
                                    ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,))])
def test_matmul(shapes, rng, device):
    check(ops.matmul, make(rng, *shapes[0], device=device), make(rng, *shapes[1], device=device))


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias, rng, device):
    x, w = make(rng, 2, 3, 5, device=device), make(rng, 4, 5, device=device)
    args = (x, w, make(rng, 4, device=device)) if bias else (x, w)
    check(F.linear, *args)


# ------------------------------------------------------------------ reductions
@pytest.mark.parametrize("op", [ops.sum, ops.mean, ops.max])
@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)])
def test_reductions(op, axis, keepdims, rng, device):
    check(lambda x: op(x, axis, keepdims), make(rng, 3, 4, 5, device=device))


def test_max_ties_share_gradient(device):
    x = mr.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]), requires_grad=True, device=device)
    x.max(axis=1).backward(mr.tensor(np.array([1.0, 4.0]), device=device))
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [2, 0, 2]])


# ------------------------------------------------------------------ shape ops
def test_shape_ops(rng, device):
    x = make(rng, 2, 3, 4, device=device)
    check(lambda x: x.reshape(4, 6), x)
    check(lambda x: x.flatten(1), x)
    check(lambda x: x.transpose(0, 2), x)
    check(lambda x: x.permute(1, 2, 0), x)
    check(lambda x: x.T, x)


@pytest.mark.parametrize("index", [
    (slice(None), slice(None), slice(None, None, 2), slice(None, None, 2)),   # option A subsampling
    (0,), (Ellipsis, 1), (slice(1, None), None, slice(None, None, -1)),
    (np.array([0, 0, 1]),),                                                   # repeated: must sum
    (slice(None), np.array([2, 0, 2])),
])
def test_indexing(index, rng, device):
    check(lambda x: x[index], make(rng, 2, 3, 5, 5, device=device))


def test_boolean_mask_indexing(rng):
    x = make(rng, 4, 3)
    mask = np.array([True, False, True, True])
    check(lambda x: x[mask], x)


@pytest.mark.parametrize("pad", [(1, 2), (0, 0, 0, 0, 4, 4), (1, 1, 2, 0), (0, 0, 0, 0, 0, 0, 1, 0)])
def test_pad(pad, rng, device):
    check(lambda x: F.pad(x, pad), make(rng, 2, 3, 4, 5, device=device))


def test_cat_and_stack(rng, device):
    a, b = make(rng, 2, 3, device=device), make(rng, 2, 5, device=device)
    check(lambda a, b: mr.cat([a, b, a], axis=1), a, b)
    c = make(rng, 2, 3, device=device)
    check(lambda a, c: mr.stack([a, c], axis=1), a, c)


# ------------------------------------------------------------------ convolution
@pytest.mark.parametrize("cfg", [
    dict(x=(2, 3, 5, 5), w=(4, 3, 3, 3), stride=1, padding=1),
    dict(x=(2, 3, 7, 6), w=(4, 3, 3, 3), stride=2, padding=1),          # stride 2, odd size
    dict(x=(2, 4, 7, 7), w=(6, 4, 1, 1), stride=2, padding=0),          # 1x1 projection
    dict(x=(1, 2, 6, 5), w=(3, 2, 2, 3), stride=(1, 2), padding=(1, 0)),  # non-square everything
    dict(x=(2, 2, 7, 7), w=(3, 2, 3, 3), stride=1, padding=2, dilation=2),
    dict(x=(2, 4, 5, 5), w=(6, 2, 3, 3), stride=1, padding=1, groups=2),
    dict(x=(1, 1, 9, 9), w=(2, 1, 5, 5), stride=3, padding=2),          # kernel 5, stride 3
])
@pytest.mark.parametrize("bias", [False, True])
def test_conv2d(cfg, bias, rng, device):
    cfg = dict(cfg)
    x, w = make(rng, *cfg.pop("x"), device=device), make(rng, *cfg.pop("w"), device=device)
    inputs = (x, w, make(rng, w.shape[0], device=device)) if bias else (x, w)
    check(lambda x, w, b=None: F.conv2d(x, w, b, **cfg), *inputs)


@pytest.mark.parametrize("threads", [1, 3])
def test_conv2d_in_several_chunks_matches_one(threads, rng, monkeypatch):
    """The CPU path splits the batch into cache-sized chunks over threads; the
    result must not depend on the split (forced here: the layer is far below
    backend.CONV_SPLIT_MACS)."""
    from minires import backend
    from minires.kernels import cpu
    x, w = make(rng, 5, 3, 6, 6), make(rng, 4, 3, 3, 3)
    g = rng.standard_normal((5, 4, 3, 3))
    whole = F.conv2d(x, w, stride=2, padding=1)
    whole.backward(g)
    ref = whole.numpy(), x.grad.numpy().copy(), w.grad.numpy().copy()
    x.grad = w.grad = None
    monkeypatch.setattr(cpu, "CONV_WORKSPACE_BYTES", 1)        # one image per chunk
    monkeypatch.setattr(backend, "num_threads", lambda: threads)
    monkeypatch.setattr(backend, "CONV_SPLIT_MACS", 0)
    split = F.conv2d(x, w, stride=2, padding=1)
    split.backward(g)
    for a, b in zip((split.numpy(), x.grad.numpy(), w.grad.numpy()), ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    check(lambda x, w: F.conv2d(x, w, stride=2, padding=1), x, w)


# ------------------------------------------------------------------ batch norm
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 4, 5), (1, 2, 3, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape, training, rng, device):
    c = shape[1]
    x, gamma, beta = make(rng, *shape, device=device), make(rng, c, device=device), make(rng, c, device=device)
    rm = mr.tensor(rng.standard_normal(c), device=device)
    rv = mr.tensor(rng.random(c) + 0.5, device=device)
    check(lambda x, g, b: F.batch_norm(x, rm, rv, g, b, training=training), x, gamma, beta)


def test_batch_norm_without_affine(rng, device):
    x = make(rng, 3, 2, 4, 4, device=device)
    check(lambda x: F.batch_norm(x, None, None, training=True), x)


# ------------------------------------------------------------------ pooling
@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1))])
def test_max_pool(k, s, p, rng, device):
    check(lambda x: F.max_pool2d(x, k, s, p), make(rng, 2, 3, 7, 6, device=device))


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), ((3, 2), (2, 1), (1, 0))])
@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool(k, s, p, include_pad, rng, device):
    check(lambda x: F.avg_pool2d(x, k, s, p, count_include_pad=include_pad),
          make(rng, 2, 3, 7, 6, device=device))


@pytest.mark.parametrize("out", [1, (2, 3), (3, 2), 7])
def test_adaptive_avg_pool(out, rng, device):
    check(lambda x: F.adaptive_avg_pool2d(x, out), make(rng, 2, 3, 7, 6 if out != 7 else 7, device=device))


# ------------------------------------------------------------------ losses, dropout
def test_log_softmax(rng, device):
    check(lambda x: F.log_softmax(x, dim=1), make(rng, 3, 5, device=device))
    check(lambda x: F.log_softmax(x, dim=0), make(rng, 3, 5, device=device))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction, rng, device):
    target = mr.tensor(np.array([0, 4, 2, 4]), device=device)
    check(lambda z: F.cross_entropy(z, target, reduction=reduction), make(rng, 4, 5, device=device))


def test_cross_entropy_is_stable_for_huge_logits(device):
    z = mr.tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True, device=device)
    loss = F.cross_entropy(z, np.array([2]))
    loss.backward()
    assert np.isfinite(loss.item()) and abs(loss.item() - 2000.0) < 1e-9
    np.testing.assert_allclose(z.grad.numpy(), [[1.0, 0.0, -1.0]], atol=1e-12)


def test_dropout_gradient_uses_the_forward_mask(rng, device):
    x = make(rng, 4, 6, device=device)

    def fn(x):
        mr.manual_seed(7)                      # the same mask on every evaluation
        return F.dropout(x, p=0.3, training=True)
    check(fn, x)
