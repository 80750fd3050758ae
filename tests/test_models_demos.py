"""The models the demos need: scaled shortcuts, Euler (Δt-scaled) stacks, grown ResNets."""
import numpy as np
import pytest

import minires as mr
from minires import models, nn
from minires.nn import functional as F


def images(rng, n=2, size=8):
    return mr.tensor(rng.standard_normal((n, 3, size, size)).astype(np.float32))


# ------------------------------------------------------------------ scaled shortcuts
def test_scale_one_is_the_resnet_and_other_scales_multiply_the_shortcut(rng):
    mr.manual_seed(0)
    plain_resnet = models.resnet_cifar(8)
    mr.manual_seed(0)
    same = models.scaled_resnet_cifar(8, scale=1)
    x = images(rng)
    np.testing.assert_allclose(same(x).numpy(), plain_resnet(x).numpy(), rtol=1e-6)

    half = models.scaled_resnet_cifar(8, scale=0.5)
    block = half.layer2[0]                                  # a downsampling (zero-pad) block too
    z = mr.tensor(rng.standard_normal((2, 16, 8, 8)).astype(np.float32))
    np.testing.assert_allclose(block.shortcut(z).numpy(), 0.5 * block.shortcut.shortcut(z).numpy())
    assert half.shortcut_scale == 0.5 and "scaled_resnet_cifar" not in models.available()


def test_scaled_shortcuts_make_the_signal_geometric_in_depth(rng):
    # with the residual branches switched off a block is relu(λ x): n blocks scale x by λ^n
    mr.manual_seed(0)
    model = models.scaled_resnet_cifar(20, scale=2.0)
    for block in model.layer1:
        models.zero_residual_branch(block)
    x = mr.tensor(np.abs(rng.standard_normal((2, 16, 8, 8))).astype(np.float32))
    np.testing.assert_allclose(model.layer1(x).numpy(), 8 * x.numpy(), rtol=1e-6)


def test_scaling_refuses_what_it_cannot_scale():
    with pytest.raises(ValueError, match="scale_shortcuts: expected a CIFAR ResNet with shortcuts.*plain"):
        models.scale_shortcuts(models.plain_cifar(8), 0.5)
    with pytest.raises(ValueError, match="finite number >= 0.*got -1"):
        models.scaled_resnet_cifar(8, scale=-1)
    with pytest.raises(ValueError, match="scaled already"):
        models.scale_shortcuts(models.scaled_resnet_cifar(8, scale=2), 2)
    with pytest.raises(ValueError, match="plain_cifar"):
        models.scaled_resnet_cifar(8, scale=1, shortcut=None)


# ------------------------------------------------------------------ Euler stacks
def test_euler_step_is_z_plus_dt_f(rng):
    mr.manual_seed(0)
    net = models.EulerNet(dim=3, hidden=5, blocks=4, horizon=2.0, tied=False)
    z = mr.tensor(rng.standard_normal((6, 3)).astype(np.float32))
    states = net.trajectory(z)
    assert len(states) == 5 and net.dt == 0.5 and len(net.fields) == 4
    f2 = net.fields[2]
    np.testing.assert_allclose(states[3].numpy(), (states[2] + f2(states[2]) * 0.5).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(net(z).numpy(), states[-1].numpy())


def test_tied_net_converges_to_its_flow_at_first_order(rng):
    # forward Euler: the error at time T halves when the number of steps doubles
    mr.manual_seed(0)
    net = models.EulerNet(dim=2, hidden=8, blocks=8, horizon=1.0)
    z = mr.tensor(rng.standard_normal((16, 2)).astype(np.float32))
    with mr.no_grad():
        end = {L: net.discretised(L)(z).numpy() for L in (8, 16, 32, 1024)}
    errors = [np.abs(end[L] - end[1024]).max() for L in (8, 16, 32)]
    assert 1.6 < errors[0] / errors[1] < 2.5 and 1.6 < errors[1] / errors[2] < 2.5, errors


def test_discretised_shares_the_field_and_head():
    mr.manual_seed(0)
    net = models.EulerNet(blocks=4, num_classes=3)
    fine = net.discretised(64)
    assert fine.dt == net.horizon / 64 and fine.fields[0] is net.fields[0] and fine.head is net.head
    assert [id(p) for p in fine.parameters()] == [id(p) for p in net.parameters()]
    with pytest.raises(ValueError, match="tied=True"):
        models.EulerNet(blocks=4, tied=False).discretised(8)
    with pytest.raises(ValueError, match="EulerNet: blocks must be an integer >= 1, got 0"):
        models.EulerNet(blocks=0)
    with pytest.raises(ValueError, match="horizon T must be a finite number > 0"):
        models.EulerNet(horizon=float("inf"))


def test_euler_net_trains(rng):
    mr.manual_seed(0)
    net = models.EulerNet(dim=2, hidden=8, blocks=4, num_classes=2)
    x = rng.standard_normal((64, 2)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)             # XOR quadrants: not linearly separable
    opt = mr.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(net(mr.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


# ------------------------------------------------------------------ growing
@pytest.mark.parametrize("variant", ["original", "full_preact", "relu_before_add"])
def test_a_grown_resnet_computes_the_shallow_function(rng, variant):
    mr.manual_seed(0)
    shallow = models.resnet_cifar(8, variant=variant)
    for m in shallow.modules():                               # trained-looking statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.data[...] = rng.standard_normal(m.running_mean.shape) * 0.1
            m.running_var.data[...] = 1 + rng.random(m.running_var.shape)
    shallow.eval()
    deep = models.grow(shallow, 20)
    assert deep.depth == 20 and len(deep.layer2) == 3 and not deep.training
    x = images(rng, size=16)
    np.testing.assert_allclose(deep(x).numpy(), shallow(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(deep.layer2[0].conv1.weight.numpy(), shallow.layer2[0].conv1.weight.numpy())


def test_a_grown_plain_net_does_not(rng):
    mr.manual_seed(0)
    shallow = models.plain_cifar(8).eval()
    deep = models.grow(shallow, 14)
    x = images(rng, size=16)
    assert np.abs(deep(x).numpy() - shallow(x).numpy()).max() > 1e-2
    np.testing.assert_array_equal(deep.linear.weight.numpy(), shallow.linear.weight.numpy())


def test_grow_refuses_what_it_cannot_grow():
    with pytest.raises(ValueError, match="grow: depth 8 is shallower than the model's 14"):
        models.grow(models.resnet_cifar(14), 8)
    with pytest.raises(ValueError, match="bn_after_add"):
        models.grow(models.resnet_cifar(8, variant="bn_after_add"), 14)
    with pytest.raises(ValueError, match="scaled by 0.5"):
        models.grow(models.scaled_resnet_cifar(8, scale=0.5), 14)
    with pytest.raises(ValueError, match="zero_residual_branch: a .bn_after_add. unit"):
        models.zero_residual_branch(models.resnet_cifar(8, variant="bn_after_add").layer1[0])
    with pytest.raises(ValueError, match="grow: expected a CIFAR ResNet"):
        models.grow(models.EulerNet(), 14)
    with pytest.raises(ValueError, match="6n\\+2"):
        models.grow(models.resnet_cifar(8), 15)
