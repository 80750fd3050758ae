"""The identity shortcut's "+1", proved numerically.

He et al. 2016 ("Identity Mappings"): with x_{l+1} = x_l + F(x_l),
    x_L = x_l + Σ_{i=l}^{L-1} F(x_i)   and   ∂E/∂x_l = ∂E/∂x_L (1 + ∂/∂x_l Σ F(x_i)).
The tests check the Jacobian of one unit, the exact pass-through when the branch
is switched off, and the sum over a stack measured with hooks -- for the identity
unit and for the original post-activation unit (ReLU after the add).
"""
import numpy as np
import pytest

import minires as mr
from minires import nn
from minires.nn import functional as F


class Branch(nn.Module):
    """F(x) = BN(conv(ReLU(BN(conv(x))))) -- the residual branch of a basic block."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class Unit(nn.Module):
    """identity: x + F(x);  post_activation: ReLU(x + F(x));  plain: F(x)."""

    def __init__(self, channels, kind):
        super().__init__()
        self.kind = kind
        self.branch = Branch(channels)

    def forward(self, x):
        if self.kind == "plain":
            return self.branch(x)
        y = x + self.branch(x)
        return F.relu(y) if self.kind == "post_activation" else y


def make_unit(kind, channels=2, seed=0):
    mr.manual_seed(seed)
    unit = Unit(channels, kind).double()
    rng = np.random.default_rng(seed)
    for bn in (unit.branch.bn1, unit.branch.bn2):       # non-trivial affine parameters
        bn.weight.data[...] = rng.uniform(0.5, 1.5, channels)
        bn.bias.data[...] = rng.uniform(-0.5, 0.5, channels)
    return unit


def jacobian(fn, x):
    """Full Jacobian d fn(x) / dx by reverse mode, one upstream unit vector per output."""
    rows = []
    for k in range(x.size):
        xi = mr.tensor(x.numpy(), requires_grad=True)
        y = fn(xi)
        e = np.zeros(y.size)
        e[k] = 1.0
        y.backward(e.reshape(y.shape))
        rows.append(xi.grad.numpy().reshape(-1))
    return np.array(rows)


def numerical_jacobian(fn, x, eps=1e-6):
    x0 = x.numpy().reshape(-1)
    cols = []
    with mr.no_grad():
        for k in range(x0.size):
            plus, minus = x0.copy(), x0.copy()
            plus[k] += eps
            minus[k] -= eps
            fp = fn(mr.tensor(plus.reshape(x.shape))).numpy().reshape(-1)
            fm = fn(mr.tensor(minus.reshape(x.shape))).numpy().reshape(-1)
            cols.append((fp - fm) / (2 * eps))
    return np.array(cols).T


@pytest.fixture
def x():
    return mr.tensor(np.random.default_rng(5).standard_normal((2, 2, 4, 4)))


# ------------------------------------------------------------------ (a) Jacobian = I + dF/dx
def test_identity_unit_jacobian_is_identity_plus_branch_jacobian(x):
    unit = make_unit("identity")
    J_unit = jacobian(unit, x)                                  # backward, analytic
    J_branch = numerical_jacobian(unit.branch, x)               # central differences, F alone
    np.testing.assert_allclose(J_unit, np.eye(x.size) + J_branch, atol=1e-6)
    assert np.abs(J_branch).max() > 0.1                          # the branch is not trivial


def test_post_activation_unit_jacobian_is_masked(x):
    unit = make_unit("post_activation")
    with mr.no_grad():
        mask = ((x + unit.branch(x)).numpy() > 0).reshape(-1).astype(float)
    J_unit = jacobian(unit, x)
    J_branch = numerical_jacobian(unit.branch, x)
    np.testing.assert_allclose(J_unit, mask[:, None] * (np.eye(x.size) + J_branch), atol=1e-6)


# ------------------------------------------------------------------ (b) branch switched off
@pytest.mark.parametrize("kind", ["identity", "post_activation"])
def test_zero_bn_scale_passes_upstream_gradient_exactly(kind, x):
    unit = make_unit(kind)
    unit.branch.bn2.weight.data[...] = 0.0                      # F(x) = beta, dF/dx = 0
    xi = mr.tensor(x.numpy(), requires_grad=True)
    y = unit(xi)
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(g)
    expected = g if kind == "identity" else g * (y.numpy() > 0)
    np.testing.assert_array_equal(xi.grad.numpy(), expected)    # exactly, bit for bit
    assert np.abs(expected).max() > 0

    plain = make_unit("plain")
    plain.branch.bn2.weight.data[...] = 0.0
    xp_ = mr.tensor(x.numpy(), requires_grad=True)
    plain(xp_).backward(g)
    np.testing.assert_array_equal(xp_.grad.numpy(), np.zeros(x.shape))   # nothing gets through


# ------------------------------------------------------------------ (c) a stack of units
def vjp(fn, x, g):
    xi = mr.tensor(x, requires_grad=True)
    fn(xi).backward(g)
    return xi.grad.numpy()


@pytest.mark.parametrize("kind", ["identity", "post_activation"])
def test_stack_gradient_is_top_gradient_plus_branch_contributions(kind, x):
    units = [make_unit(kind, seed=s) for s in range(5)]
    xs, grads = [], {}
    h = mr.tensor(x.numpy(), requires_grad=True)
    for i, unit in enumerate(units):
        xs.append(h)
        h.register_hook(lambda g, i=i: grads.__setitem__(i, g.numpy().copy()))
        h = unit(h)
    xs.append(h)
    h.register_hook(lambda g: grads.__setitem__(len(units), g.numpy().copy()))
    upstream = np.random.default_rng(2).standard_normal(h.shape)
    h.backward(upstream)                                        # E = <upstream, x_L>
    L = len(units)
    np.testing.assert_array_equal(grads[L], upstream)

    # One unit at a time: g_i = m_i ⊙ g_{i+1} + b_i, where b_i = (m_i ⊙ g_{i+1}) dF_i/dx_i
    # is what flows back through the branch and m_i = 1 for the identity unit.
    contributions = []
    for i, unit in reversed(list(enumerate(units))):
        x_i = xs[i].numpy()
        if kind == "identity":
            through = grads[i + 1]
        else:
            with mr.no_grad():
                through = grads[i + 1] * ((xs[i] + unit.branch(xs[i])).numpy() > 0)
        b_i = vjp(unit.branch, x_i, through)
        contributions.append(b_i)
        np.testing.assert_allclose(grads[i], through + b_i, rtol=1e-12, atol=1e-12)

    if kind == "identity":
        # ∂E/∂x_l = ∂E/∂x_L + Σ_i (branch contributions): the "1 +" of He et al. 2016.
        np.testing.assert_allclose(grads[0], grads[L] + sum(contributions), rtol=1e-12, atol=1e-12)

    # And the whole thing agrees with central differences of E(x_0).
    def energy(x0):
        out = x0
        for unit in units:
            out = unit(out)
        return (out * mr.tensor(upstream)).sum()
    numeric = numerical_jacobian(energy, xs[0]).reshape(x.shape)
    np.testing.assert_allclose(grads[0], numeric, atol=1e-6)
