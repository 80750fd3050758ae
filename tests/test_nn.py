"""Module behaviour: names, buffers, state dicts, modes, casting, containers, hooks, dropout, init, repr."""
import math
from collections import OrderedDict

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires import nn


def x_of(rng, *shape, dtype=np.float32):
    return mr.tensor(rng.standard_normal(shape).astype(dtype))


# ---------------------------------------------------------------- a small ResNet-like model
class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Net(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(Block(4, 4, 1), Block(4, 8, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return self.fc(self.flatten(self.pool(self.layer1(x))))


EXPECTED_PARAMS = [
    "conv1.weight", "bn1.weight", "bn1.bias",
    "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias",
    "layer1.0.conv2.weight", "layer1.0.bn2.weight", "layer1.0.bn2.bias",
    "layer1.1.conv1.weight", "layer1.1.bn1.weight", "layer1.1.bn1.bias",
    "layer1.1.conv2.weight", "layer1.1.bn2.weight", "layer1.1.bn2.bias",
    "layer1.1.shortcut.0.weight", "layer1.1.shortcut.1.weight", "layer1.1.shortcut.1.bias",
    "fc.weight", "fc.bias",
]
BN_NAMES = ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer1.1.bn1", "layer1.1.bn2",
            "layer1.1.shortcut.1"]
EXPECTED_BUFFERS = [f"{bn}.{b}" for bn in BN_NAMES
                    for b in ("running_mean", "running_var", "num_batches_tracked")]


def _expected_state_keys():
    """Per module (pre-order): its parameters, then its buffers -- PyTorch's order."""
    keys = ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
            "bn1.num_batches_tracked"]
    for b in ("layer1.0", "layer1.1"):
        for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
            keys += [f"{b}.{conv}.weight", f"{b}.{bn}.weight", f"{b}.{bn}.bias",
                     f"{b}.{bn}.running_mean", f"{b}.{bn}.running_var",
                     f"{b}.{bn}.num_batches_tracked"]
    s = "layer1.1.shortcut"
    keys += [f"{s}.0.weight", f"{s}.1.weight", f"{s}.1.bias", f"{s}.1.running_mean",
             f"{s}.1.running_var", f"{s}.1.num_batches_tracked", "fc.weight", "fc.bias"]
    return keys


def test_named_parameters_names_and_order():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == EXPECTED_PARAMS
    assert [p for p in net.parameters()] == [p for _, p in net.named_parameters()]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    shapes = dict((n, p.shape) for n, p in net.named_parameters())
    assert shapes["layer1.1.shortcut.0.weight"] == (8, 4, 1, 1)
    assert shapes["fc.weight"] == (3, 8)


def test_named_buffers_names_and_order():
    net = Net()
    names = [n for n, _ in net.named_buffers()]
    assert names == EXPECTED_BUFFERS
    buffers = dict(net.named_buffers())
    assert buffers["bn1.num_batches_tracked"].dtype == np.int64
    assert buffers["bn1.num_batches_tracked"].shape == ()
    assert not any(b.requires_grad for b in net.buffers())


def test_state_dict_keys_and_order():
    state = Net().state_dict()
    assert list(state) == _expected_state_keys()
    assert all(isinstance(v, np.ndarray) for v in state.values())


def test_names_match_pytorch():
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class TBlock(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.shortcut = tnn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                               tnn.BatchNorm2d(cout))

    class TNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(4)
            self.layer1 = tnn.Sequential(TBlock(4, 4, 1), TBlock(4, 8, 2))
            self.pool = tnn.AdaptiveAvgPool2d(1)
            self.flatten = tnn.Flatten()
            self.fc = tnn.Linear(8, 3)

    ours, theirs = Net(), TNet()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        assert ours.state_dict()[k].shape == tuple(v.shape), k


def test_shared_parameters_listed_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(4, 4)
            self.decoder = self.encoder                       # the same module twice
            self.extra = nn.Linear(4, 2)
            self.extra.weight = nn.Parameter(np.zeros((2, 4), np.float32))
            self.alias = self.extra.weight                    # the same parameter twice

    m = Tied()
    names = [n for n, _ in m.named_parameters()]
    # PyTorch's order: the root's own parameters first (alias), then its children in
    # construction order; decoder.* and extra.weight are the same tensors seen again.
    assert names == ["alias", "encoder.weight", "encoder.bias", "extra.bias"]
    assert len(list(m.parameters())) == 4
    assert len({id(p) for p in m.parameters()}) == 4
    assert dict(m.named_parameters())["alias"] is m.extra.weight


def test_state_dict_lists_shared_modules_under_every_name_like_pytorch():
    """PyTorch's state_dict keeps tied weights under each name (encoder.* and decoder.*),
    so a PyTorch checkpoint of a tied model loads key for key."""
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(4, 4)
            self.decoder = self.encoder

    assert list(Tied().state_dict()) == ["encoder.weight", "encoder.bias",
                                         "decoder.weight", "decoder.bias"]


def test_parameter_reassignment_replaces_registration():
    lin = nn.Linear(3, 2)
    new = nn.Parameter(np.ones((2, 3), np.float32))
    lin.weight = new
    assert dict(lin.named_parameters())["weight"] is new
    lin.bias = None                                          # no longer a parameter
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert list(lin.state_dict()) == ["weight"]


def test_conv_without_bias_and_bn_without_running_stats():
    conv = nn.Conv2d(2, 3, 3, bias=False)
    assert [n for n, _ in conv.named_parameters()] == ["weight"]
    bn = nn.BatchNorm2d(3, track_running_stats=False)
    assert list(bn.named_buffers()) == []
    assert list(bn.state_dict()) == ["weight", "bias"]
    bn.eval()                                                # uses batch statistics even in eval
    out = bn(mr.tensor(np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)))
    np.testing.assert_allclose(out.numpy().mean(axis=(0, 2, 3)), 0, atol=1e-5)


# ---------------------------------------------------------------- state dicts
def test_state_dict_returns_copies():
    net = Net()
    state = net.state_dict()
    w0 = net.conv1.weight.numpy().copy()
    state["conv1.weight"][...] = 123.0
    state["bn1.running_mean"][...] = 7.0
    state["bn1.num_batches_tracked"][...] = 99
    np.testing.assert_array_equal(net.conv1.weight.numpy(), w0)
    np.testing.assert_array_equal(net.bn1.running_mean.numpy(), np.zeros(4))
    assert int(net.bn1.num_batches_tracked.item()) == 0


def test_load_state_dict_copies_in():
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    state = src.state_dict()
    dst.load_state_dict(state)
    state["weight"][...] = 5.0                               # mutating the dict afterwards ...
    np.testing.assert_array_equal(dst.weight.numpy(), src.weight.numpy())   # ... changes nothing
    assert dst.weight.dtype == np.float32


def _train_a_little(net, rng, steps=2):
    opt = mr.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        x = x_of(rng, 4, 3, 8, 8)
        y = mr.tensor(rng.integers(0, 3, size=4))
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_load_state_dict_round_trip(rng):
    mr.manual_seed(10)
    net = Net()
    _train_a_little(net, rng)                                # moves weights and running stats
    assert int(net.bn1.num_batches_tracked.item()) == 2
    mr.manual_seed(11)
    fresh = Net()
    x = x_of(rng, 2, 3, 8, 8)
    net.eval(), fresh.eval()
    assert not np.allclose(net(x).numpy(), fresh(x).numpy())
    missing, unexpected = fresh.load_state_dict(net.state_dict())
    assert missing == [] and unexpected == []
    np.testing.assert_array_equal(fresh(x).numpy(), net(x).numpy())        # eval: running stats
    net.train(), fresh.train()
    np.testing.assert_array_equal(fresh(x).numpy(), net(x).numpy())        # train: batch stats
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v, err_msg=k)


def test_load_state_dict_accepts_tensors_and_keeps_parameter_objects():
    src, dst = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    src(mr.tensor(np.arange(6, dtype=np.float32).reshape(2, 3)))
    weight = dst.weight
    dst.load_state_dict({k: mr.tensor(v) for k, v in src.state_dict().items()})
    assert dst.weight is weight                              # optimizers keep working
    np.testing.assert_array_equal(dst.running_mean.numpy(), src.running_mean.numpy())
    assert int(dst.num_batches_tracked.item()) == 1


def test_load_state_dict_non_strict_reports_keys():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    bias = np.array([0.5], np.float32)
    missing, unexpected = model.load_state_dict({"1.bias": bias, "junk": np.zeros(1)},
                                                strict=False)
    assert missing == ["0.weight", "0.bias", "1.weight"]
    assert unexpected == ["junk"]
    np.testing.assert_array_equal(model[1].bias.numpy(), bias)


# ---------------------------------------------------------------- train / eval
def test_train_eval_propagate_to_children():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert not net.layer1[1].shortcut[1].training
    net.train()
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not any(m.training for m in net.modules())


def test_batchnorm2d_train_uses_batch_stats_eval_uses_running_stats(rng, device):
    bn = nn.BatchNorm2d(3)
    bn.weight.data[...] = [1.0, 2.0, 0.5]
    bn.bias.data[...] = [0.0, 1.0, -1.0]
    bn.to(device)
    data = (rng.standard_normal((4, 3, 5, 5)) * 3 + 2).astype(np.float32)
    x = mr.tensor(data, device=device)
    mean, var = data.mean(axis=(0, 2, 3)), data.var(axis=(0, 2, 3))
    unbiased = var * data[:, 0].size / (data[:, 0].size - 1)
    w, b = bn.weight.numpy()[None, :, None, None], bn.bias.numpy()[None, :, None, None]

    out = bn(x).numpy()                                           # training: batch statistics
    ref = (data - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5) * w + b
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * unbiased, rtol=1e-5)
    assert int(bn.num_batches_tracked.item()) == 1

    data2 = (rng.standard_normal((2, 3, 4, 4)) - 1).astype(np.float32)   # a second batch:
    rm, rv = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()   # the update
    bn(mr.tensor(data2, device=device))                                       # reads the old
    unbiased2 = data2.var(axis=(0, 2, 3)) * 32 / 31                           # running values
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.9 * rm + 0.1 * data2.mean(axis=(0, 2, 3)),
                               rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 * rv + 0.1 * unbiased2, rtol=1e-5)

    bn.eval()
    rm, rv = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
    out = bn(x).numpy()                                           # eval: running statistics
    ref = (data - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5) * w + b
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bn.running_mean.numpy(), rm)    # eval updates nothing
    np.testing.assert_array_equal(bn.running_var.numpy(), rv)
    assert int(bn.num_batches_tracked.item()) == 2


def test_batchnorm2d_matches_pytorch_in_both_modes(rng):
    torch = pytest.importorskip("torch")
    ours, theirs = nn.BatchNorm2d(3).double(), torch.nn.BatchNorm2d(3).double()
    for _ in range(3):
        data = rng.standard_normal((4, 3, 3, 3)) * 2 + 1
        np.testing.assert_allclose(ours(mr.tensor(data)).numpy(),
                                   theirs(torch.from_numpy(data)).detach().numpy(), rtol=1e-10, atol=1e-12)
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-12, err_msg=k)
    ours.eval(), theirs.eval()
    data = rng.standard_normal((2, 3, 3, 3))
    np.testing.assert_allclose(ours(mr.tensor(data)).numpy(),
                               theirs(torch.from_numpy(data)).detach().numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- zero_grad
def test_zero_grad(rng):
    net = Net()
    loss = F.cross_entropy(net(x_of(rng, 2, 3, 8, 8)), mr.tensor([0, 2]))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


# ---------------------------------------------------------------- dtype casts
def test_module_to_float64_casts_floating_state_only(rng):
    net = Net()
    net(x_of(rng, 2, 3, 8, 8))                                 # count one batch
    params_before = {n: p for n, p in net.named_parameters()}
    values_before = net.state_dict()
    assert net.to(dtype=mr.float64) is net
    for n, p in net.named_parameters():
        assert p.dtype == np.float64, n
        assert p is params_before[n], n                        # same objects: optimizers still hold them
    for n, b in net.named_buffers():
        expected = np.int64 if n.endswith("num_batches_tracked") else np.float64
        assert b.dtype == expected, n
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, values_before[k].astype(v.dtype), err_msg=k)
    out = net(x_of(rng, 2, 3, 8, 8, dtype=np.float64))
    assert out.dtype == np.float64
    assert int(net.bn1.num_batches_tracked.item()) == 2


def test_module_double_and_float():
    bn = nn.BatchNorm1d(2)
    assert bn.double() is bn
    assert bn.weight.dtype == bn.running_var.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64
    bn.float()
    assert bn.weight.dtype == bn.running_mean.dtype == np.float32
    assert bn.num_batches_tracked.dtype == np.int64


def test_module_to_drops_stale_grads(rng):
    lin = nn.Linear(3, 2)
    lin(x_of(rng, 4, 3)).sum().backward()
    assert lin.weight.grad is not None
    lin.double()
    assert lin.weight.grad is None                             # a float32 grad would not fit


# ---------------------------------------------------------------- containers
def test_sequential_indexing_len_iteration(rng):
    a, b, c = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3
    assert seq[0] is a and seq[1] is b and seq[2] is c and seq[-1] is c
    assert list(seq) == [a, b, c]
    with pytest.raises(IndexError):
        seq[3]
    x = x_of(rng, 5, 3)
    np.testing.assert_array_equal(seq(x).numpy(), c(b(a(x))).numpy())


def test_sequential_slicing(rng):
    a, b, c = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    seq = nn.Sequential(a, b, c)
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential)
    assert len(tail) == 2 and tail[0] is b and tail[1] is c
    head = seq[:1]
    assert len(head) == 1 and head[0] is a
    x = x_of(rng, 5, 3)
    np.testing.assert_array_equal(tail(head(x)).numpy(), seq(x).numpy())
    assert len(seq) == 3                                        # slicing does not alter the original


def test_sequential_slice_keeps_names_like_pytorch():
    """PyTorch's Sequential[1:] keeps the original keys: its parameters are '2.weight', ...,
    so a slice's state dict lines up with the full model's."""
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert [n for n, _ in seq[1:].named_parameters()] == ["2.weight", "2.bias"]


def test_sequential_from_ordered_dict():
    seq = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("act", nn.ReLU()),
                                     ("fc", nn.Flatten())]))
    assert [n for n, _ in seq.named_children()] == ["conv", "act", "fc"]
    assert [n for n, _ in seq.named_parameters()] == ["conv.weight", "conv.bias"]
    assert isinstance(seq[1], nn.ReLU)


def test_empty_sequential_is_identity(rng):
    x = x_of(rng, 2, 3)
    assert nn.Sequential()(x) is x


def test_module_list():
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
            self.blocks.append(nn.Linear(2, 1))

        def forward(self, x):
            for blk in self.blocks:
                x = blk(x)
            return x

    m = Stack()
    assert len(m.blocks) == 3
    assert isinstance(m.blocks[-1], nn.Linear) and m.blocks[-1].out_features == 1
    assert [n for n, _ in m.named_parameters()] == [
        "blocks.0.weight", "blocks.0.bias", "blocks.1.weight", "blocks.1.bias",
        "blocks.2.weight", "blocks.2.bias"]
    assert list(m.blocks) == [m.blocks[0], m.blocks[1], m.blocks[2]]
    assert m(mr.ones(4, 2)).shape == (4, 1)


# ---------------------------------------------------------------- forward hooks
def test_forward_hook_called_with_module_inputs_output(rng):
    lin = nn.Linear(3, 2)
    calls = []

    def hook(module, inputs, output):
        calls.append((module, inputs, output))

    handle = lin.register_forward_hook(hook)
    x = x_of(rng, 4, 3)
    out = lin(x)
    assert len(calls) == 1
    module, inputs, output = calls[0]
    assert module is lin
    assert isinstance(inputs, tuple) and len(inputs) == 1 and inputs[0] is x
    assert output is out
    handle.remove()
    lin(x)
    assert len(calls) == 1
    handle.remove()                                            # removing twice is harmless


def test_forward_hook_can_replace_output(rng):
    lin = nn.Linear(3, 2)
    handle = lin.register_forward_hook(lambda m, i, o: o * 0)
    x = x_of(rng, 4, 3)
    np.testing.assert_array_equal(lin(x).numpy(), np.zeros((4, 2)))
    handle.remove()
    assert np.any(lin(x).numpy() != 0)


def test_forward_hooks_on_children_fire_in_forward_order(rng):
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    order = []
    handles = [m.register_forward_hook(lambda m, i, o, k=k: order.append((k, o.shape)))
               for k, m in enumerate(seq)]
    handles.append(seq.register_forward_hook(lambda m, i, o: order.append(("seq", o.shape))))
    seq(x_of(rng, 5, 3))
    assert order == [(0, (5, 4)), (1, (5, 4)), (2, (5, 2)), ("seq", (5, 2))]
    for h in handles:
        h.remove()
    seq(x_of(rng, 5, 3))
    assert len(order) == 4


def test_hook_replacing_output_keeps_gradient_flow(rng):
    lin = nn.Linear(3, 2)
    lin.register_forward_hook(lambda m, i, o: o * 2)
    lin(x_of(rng, 4, 3)).sum().backward()
    np.testing.assert_allclose(lin.bias.grad.numpy(), [8.0, 8.0])


# ---------------------------------------------------------------- dropout
def test_dropout_eval_is_identity(rng):
    drop = nn.Dropout(0.5).eval()
    x = x_of(rng, 10, 10)
    np.testing.assert_array_equal(drop(x).numpy(), x.numpy())
    np.testing.assert_array_equal(F.dropout(x, 0.5, training=False).numpy(), x.numpy())


def test_dropout_train_zeroes_about_p_and_scales():
    mr.manual_seed(0)
    p = 0.3
    drop = nn.Dropout(p)
    x = mr.ones(200, 100)
    out = drop(x).numpy()
    zero = out == 0
    assert abs(zero.mean() - p) < 0.02                          # ~6 sigma for 20000 draws
    np.testing.assert_allclose(out[~zero], 1 / (1 - p), rtol=1e-6)
    assert abs(out.mean() - 1.0) < 0.03                         # inverted dropout keeps the mean


def test_dropout_gradient_uses_the_same_mask(rng):
    x = mr.tensor(rng.standard_normal((50, 40)).astype(np.float32), requires_grad=True)
    out = F.dropout(x, 0.5, training=True)
    out.sum().backward()
    kept = out.numpy() != 0
    np.testing.assert_allclose(x.grad.numpy(), kept * 2.0)


def test_dropout_reproducible_under_manual_seed():
    x = mr.ones(30, 30)
    mr.manual_seed(123)
    a = nn.Dropout(0.5)(x).numpy()
    b = nn.Dropout(0.5)(x).numpy()
    mr.manual_seed(123)
    a2 = nn.Dropout(0.5)(x).numpy()
    b2 = nn.Dropout(0.5)(x).numpy()
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    assert not np.array_equal(a, b)                              # successive masks differ


def test_dropout_p_zero_and_bad_p():
    x = mr.ones(3, 3)
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, -0.1)


# ---------------------------------------------------------------- init
@pytest.mark.parametrize("make_layer, fan_in", [
    (lambda: nn.Conv2d(64, 128, 3), 64 * 9),
    (lambda: nn.Linear(1024, 256), 1024),
    (lambda: nn.Conv2d(64, 128, 3, groups=4), 16 * 9),
])
def test_kaiming_normal_statistics(make_layer, fan_in):
    mr.manual_seed(0)
    w = make_layer().weight.numpy().astype(np.float64)
    std = math.sqrt(2.0 / fan_in)
    n = w.size
    assert abs(w.std() / std - 1) < 0.03
    assert abs(w.mean()) < 4 * std / math.sqrt(n)
    kurt = ((w - w.mean()) ** 4).mean() / w.var() ** 2           # normal, not uniform (1.8)
    assert abs(kurt - 3) < 0.2


def test_init_is_seeded():
    mr.manual_seed(5)
    a = nn.Conv2d(3, 8, 3).weight.numpy().copy()
    mr.manual_seed(5)
    b = nn.Conv2d(3, 8, 3).weight.numpy().copy()
    np.testing.assert_array_equal(a, b)
    c = nn.Conv2d(3, 8, 3).weight.numpy()
    assert not np.array_equal(a, c)


def test_init_helpers():
    mr.manual_seed(0)
    w = nn.Parameter(np.zeros((256, 128), np.float32))
    nn.init.kaiming_normal_(w, mode="fan_out")
    assert abs(w.numpy().std() / math.sqrt(2 / 256) - 1) < 0.03
    nn.init.kaiming_uniform_(w)
    bound = math.sqrt(2) * math.sqrt(3 / 128)
    assert np.abs(w.numpy()).max() <= bound * (1 + 1e-6)
    assert abs(w.numpy().std() / math.sqrt(2 / 128) - 1) < 0.03
    nn.init.constant_(w, 0.25)
    assert np.all(w.numpy() == 0.25)
    assert w.dtype == np.float32


# ---------------------------------------------------------------- repr
def test_repr_shows_the_tree():
    net = Net()
    text = repr(net)
    lines = text.splitlines()
    assert lines[0] == "Net("
    assert lines[-1] == ")"
    assert "  (conv1): Conv2d(3, 4, kernel_size=(3, 3)" in text
    assert "  (bn1): BatchNorm2d(4, eps=1e-05, momentum=0.1)" in text
    assert "  (layer1): Sequential(" in lines
    assert "    (0): Block(" in lines                               # nested: 4 spaces
    assert "      (conv1): Conv2d(4, 4, kernel_size=(3, 3)" in text  # 6 spaces
    assert "        (0): Conv2d(4, 8, kernel_size=(1, 1)" in text    # shortcut, 8 spaces
    assert "  (fc): Linear(in_features=8, out_features=3)" in lines
    assert "  (pool): AdaptiveAvgPool2d(output_size=1)" in lines
    assert text.count("(") == text.count(")")
    assert repr(nn.ReLU()) == "ReLU()"
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25)"
