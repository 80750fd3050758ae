"""The autograd core: graph recording, accumulation, hooks, freeing, no_grad, deep graphs."""
import sys

import numpy as np
import pytest

import minires as mr
from helpers import make


def test_tensor_defaults_and_properties():
    t = mr.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.dtype == np.float32                       # float32 by default
    assert (t.shape, t.ndim, t.size, t.device) == ((2, 2), 2, 4, "cpu")
    assert mr.tensor(np.zeros(3)).dtype == np.float64  # float64 when asked for
    assert mr.tensor([1.0], dtype=mr.float64).dtype == np.float64
    assert mr.tensor([1, 2]).dtype == np.int64
    assert mr.tensor([[5.0]]).item() == 5.0
    data = np.arange(3.0)
    t = mr.tensor(data)
    data[0] = 99                                       # tensor() copies
    assert t.numpy()[0] == 0


def test_simple_chain_rule(rng):
    x = make(rng, 3)
    y = (x * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())


def test_fan_out_sums_gradients(rng):
    """A tensor used twice receives the sum of both paths: the shortcut's "+1"."""
    x = make(rng, 4)
    w = make(rng, 4)
    y = x + x * w                                      # dy/dx = 1 + w
    g = rng.standard_normal(4)
    y.backward(g)
    np.testing.assert_allclose(x.grad.numpy(), g * (1 + w.numpy()))


def test_leaf_grad_accumulates_until_zeroed(rng):
    x = make(rng, 2)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_accumulation_does_not_alias_upstream(rng):
    """add passes one array to both inputs; summing into it must not corrupt the other."""
    a, b = make(rng, 3), make(rng, 3)
    s = a + b
    y = s + a                                          # a gets g twice, b once
    g = np.array([1.0, 2.0, 3.0])
    y.backward(g)
    np.testing.assert_allclose(a.grad.numpy(), 2 * g)
    np.testing.assert_allclose(b.grad.numpy(), g)


def test_graph_is_freed_unless_retained(rng):
    x = make(rng, 3)
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    y.backward()                                       # still there the second time
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.exp(x.numpy()))
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_no_grad_records_nothing(rng):
    x = make(rng, 3)
    with mr.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf
    assert mr.is_grad_enabled()


def test_detach_cuts_the_graph(rng):
    x = make(rng, 3)
    y = (x.detach() * x).sum()                         # d/dx = x (detached factor is constant)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), x.numpy())


def test_hook_sees_and_can_replace_gradient(rng):
    x = make(rng, 3)
    h = x * 2
    seen = []
    handle = h.register_hook(lambda g: seen.append(g.numpy().copy()))
    h.register_hook(lambda g: g * 0.5)
    (h * 3).sum().backward()
    np.testing.assert_allclose(seen[0], [3.0, 3.0, 3.0])
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0, 3.0])   # 3 * 0.5 * 2
    handle.remove()
    x.grad = None
    h2 = x * 2
    (h2 * 3).sum().backward()
    assert len(seen) == 1


def test_retain_grad_keeps_intermediate_gradient(rng):
    x = make(rng, 3)
    h = x * 2
    h.retain_grad()
    (h ** 2).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy())


def test_constants_do_not_get_gradients(rng):
    x = make(rng, 3)
    c = make(rng, 3, requires_grad=False)
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad.numpy(), c.numpy())


def test_deep_chain_without_recursion(rng):
    """ResNet-1202 has thousands of ops in a row: the walk must be iterative."""
    x = make(rng, 4)
    y = x
    depth = 20_000
    for _ in range(depth):
        y = y * 1.0 + 0.0
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)                          # far below the graph depth
    try:
        y.sum().backward()
    finally:
        sys.setrecursionlimit(old)
    np.testing.assert_allclose(x.grad.numpy(), np.ones(4))


def test_deep_residual_stack_backprop_and_graph_dump(rng):
    """Many residual units x + relu(x*w): gradient and graph listing without recursion."""
    x = make(rng, 8)
    w = make(rng, 8)
    y = x
    for _ in range(3000):
        y = y + (y * w * 1e-3).relu()
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        listing = mr.format_graph(y)
        y.sum().backward()
    finally:
        sys.setrecursionlimit(old)
    assert listing.count("\n") > 9000
    assert np.all(np.isfinite(x.grad.numpy()))


def test_backward_order_is_topological(rng):
    """A diamond: x feeds two paths that meet again; every path's gradient arrives before use."""
    x = make(rng, 5)
    a = x.exp()
    b = x * 3
    c = a * b
    d = c + a                                          # a used twice, at different depths
    d.sum().backward()
    ex = np.exp(x.numpy())
    expected = ex * 3 * x.numpy() + ex * 3 + ex        # d/dx [3x e^x + e^x]
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_graph_listing_after_backward_says_the_graph_is_gone(rng):
    x = make(rng, 3)
    y = (x * 2).sum()
    assert "mul" in mr.format_graph(y) and "sum" in mr.format_graph(y)
    y.backward()
    with pytest.raises(ValueError, match="freed by backward"):
        mr.format_graph(y)
