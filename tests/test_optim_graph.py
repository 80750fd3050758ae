"""SGD's update rule by hand, optimizer and schedule state dicts, LR schedules, graph dump and DOT export."""
import math
import re

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires import nn
from minires.optim import SGD, CosineAnnealingLR, LinearWarmup, MultiStepLR

P0 = [1.0, -2.0]
G1 = [0.5, 1.0]
G2 = [-1.0, 0.5]


def param(values):
    return nn.Parameter(np.array(values, dtype=np.float64))


def set_grad(p, values):
    p.grad = mr.tensor(np.array(values, dtype=np.float64))


def run_two_steps(**kwargs):
    """p0 = [1, -2], grads [0.5, 1] then [-1, 0.5]; the parameter after each step."""
    p = param(P0)
    opt = SGD([p], **kwargs)
    seen = []
    for g in (G1, G2):
        set_grad(p, g)
        opt.step()
        seen.append(p.numpy().copy())
    return seen


# ---------------------------------------------------------------- SGD, by hand
def test_sgd_plain():
    after1, after2 = run_two_steps(lr=0.1)
    np.testing.assert_allclose(after1, [0.95, -2.1], rtol=1e-14)      # p - 0.1 g1
    np.testing.assert_allclose(after2, [1.05, -2.15], rtol=1e-14)     # - 0.1 g2


def test_sgd_weight_decay():
    after1, _ = run_two_steps(lr=0.1, weight_decay=0.01)
    # g = [0.5 + 0.01, 1 - 0.02] = [0.51, 0.98]
    np.testing.assert_allclose(after1, [0.949, -2.098], rtol=1e-14)


def test_sgd_momentum():
    after1, after2 = run_two_steps(lr=0.1, momentum=0.9)
    # step 1: b = g1 = [0.5, 1]                      p = [0.95, -2.1]
    # step 2: b = 0.9 b + g2 = [-0.55, 1.4]          p = [1.005, -2.24]
    np.testing.assert_allclose(after1, [0.95, -2.1], rtol=1e-14)
    np.testing.assert_allclose(after2, [1.005, -2.24], rtol=1e-14)


def test_sgd_momentum_with_dampening():
    after1, after2 = run_two_steps(lr=0.1, momentum=0.9, dampening=0.5)
    # step 1: b = g1 (no dampening on the first step, as PyTorch)   p = [0.95, -2.1]
    # step 2: b = 0.9 b + 0.5 g2 = [-0.05, 1.15]                      p = [0.955, -2.215]
    np.testing.assert_allclose(after1, [0.95, -2.1], rtol=1e-14)
    np.testing.assert_allclose(after2, [0.955, -2.215], rtol=1e-14)


def test_sgd_nesterov():
    after1, after2 = run_two_steps(lr=0.1, momentum=0.9, nesterov=True)
    # step 1: b = g1 = [0.5, 1];     g = g1 + 0.9 b = [0.95, 1.9]     p = [0.905, -2.19]
    # step 2: b = [-0.55, 1.4];      g = g2 + 0.9 b = [-1.495, 1.76]  p = [1.0545, -2.366]
    np.testing.assert_allclose(after1, [0.905, -2.19], rtol=1e-14)
    np.testing.assert_allclose(after2, [1.0545, -2.366], rtol=1e-14)


def test_sgd_momentum_and_weight_decay():
    after1, after2 = run_two_steps(lr=0.1, momentum=0.9, weight_decay=0.1)
    # step 1: g = [0.6, 0.8] = b                                       p = [0.94, -2.08]
    # step 2: g = [-1 + 0.094, 0.5 - 0.208] = [-0.906, 0.292]
    #         b = 0.9 [0.6, 0.8] + g = [-0.366, 1.012]                 p = [0.9766, -2.1812]
    np.testing.assert_allclose(after1, [0.94, -2.08], rtol=1e-14)
    np.testing.assert_allclose(after2, [0.9766, -2.1812], rtol=1e-13)


def test_sgd_skips_params_without_grad():
    a, b = param(P0), param([3.0, 4.0])
    opt = SGD([a, b], lr=0.1, momentum=0.9, weight_decay=0.5)
    set_grad(a, G1)
    opt.step()
    np.testing.assert_array_equal(b.numpy(), [3.0, 4.0])             # no decay, no momentum
    assert b.grad is None
    assert "momentum_buffer" not in opt.state.get(id(b), {})
    set_grad(b, [1.0, 1.0])                                          # its first real step:
    opt.step()                                                       # b = g, fresh buffer
    g = np.array([1.0, 1.0]) + 0.5 * np.array([3.0, 4.0])
    np.testing.assert_allclose(b.numpy(), np.array([3.0, 4.0]) - 0.1 * g, rtol=1e-14)


def test_sgd_param_groups_have_their_own_hyperparameters():
    a, b = param(P0), param(P0)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1)
    set_grad(a, G1), set_grad(b, G1)
    opt.step()
    np.testing.assert_allclose(a.numpy(), [0.95, -2.1], rtol=1e-14)
    np.testing.assert_allclose(b.numpy(), [0.995, -2.01], rtol=1e-14)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]


def test_sgd_zero_grad_and_no_graph_recorded():
    p = param(P0)
    opt = SGD([p], lr=0.1)
    set_grad(p, G1)
    opt.step()
    assert p.is_leaf and p.requires_grad                             # the update is not an op
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize("kwargs", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                    dict(momentum=0.8, dampening=0.3, weight_decay=1e-2),
                                    dict(weight_decay=5e-4)])
def test_sgd_matches_pytorch(rng, kwargs):
    torch = pytest.importorskip("torch")
    start = rng.standard_normal((3, 4))
    ours = param(start)
    theirs = torch.nn.Parameter(torch.from_numpy(start.copy()))
    opt_o = SGD([ours], lr=0.05, **kwargs)
    opt_t = torch.optim.SGD([theirs], lr=0.05, **kwargs)
    for _ in range(5):
        g = rng.standard_normal((3, 4))
        set_grad(ours, g)
        theirs.grad = torch.from_numpy(g.copy())
        opt_o.step()
        opt_t.step()
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- optimizer state dicts
def _grads(rng, n, shape):
    return [rng.standard_normal(shape) for _ in range(n)]


def test_sgd_state_dict_round_trip_continues_identically(rng):
    kwargs = dict(momentum=0.9, nesterov=True, weight_decay=1e-3)
    shapes = [(3, 2), (4,)]
    grads = [_grads(rng, 6, s) for s in shapes]
    params_a = [param(rng.standard_normal(s)) for s in shapes]
    opt_a = SGD(params_a, lr=0.1, **kwargs)

    def step(opt, params, k):
        for p, gs in zip(params, grads):
            set_grad(p, gs[k])
        opt.step()

    for k in range(3):
        step(opt_a, params_a, k)
    saved = opt_a.state_dict()
    assert set(saved) == {"groups", "state"}
    assert saved["groups"][0]["lr"] == 0.1 and saved["groups"][0]["momentum"] == 0.9
    assert all(isinstance(v, np.ndarray) for entry in saved["state"].values() for v in entry.values())
    saved_buf = {i: e["momentum_buffer"].copy() for i, e in saved["state"].items()}

    params_b = [param(p.numpy().copy()) for p in params_a]
    for k in range(3, 6):
        step(opt_a, params_a, k)
    for i in saved_buf:                              # A went on; what it saved did not change
        np.testing.assert_array_equal(saved["state"][i]["momentum_buffer"], saved_buf[i])

    opt_b = SGD(params_b, lr=123.0, momentum=0.9, nesterov=True, weight_decay=1e-3)
    opt_b.load_state_dict(saved)
    assert opt_b.param_groups[0]["lr"] == 0.1                        # hyper-parameters restored
    for k in range(3, 6):
        step(opt_b, params_b, k)
    for pa, pb in zip(params_a, params_b):
        np.testing.assert_array_equal(pb.numpy(), pa.numpy())


def test_sgd_load_state_dict_does_not_alias_saved_state(rng):
    """state_dict() hands out copies; load_state_dict must take copies too, so the saved
    dict (a checkpoint in memory) can be loaded again, or into a second optimizer."""
    p = param(P0)
    opt = SGD([p], lr=0.1, momentum=0.9)
    set_grad(p, G1)
    opt.step()
    saved = opt.state_dict()
    buf = saved["state"][0]["momentum_buffer"].copy()
    q = param(p.numpy().copy())
    opt_b = SGD([q], lr=0.1, momentum=0.9)
    opt_b.load_state_dict(saved)
    set_grad(q, G2)
    opt_b.step()
    np.testing.assert_array_equal(saved["state"][0]["momentum_buffer"], buf)


def test_sgd_load_state_dict_checks_groups_and_shapes():
    p = param(P0)
    opt = SGD([p], lr=0.1, momentum=0.9)
    set_grad(p, G1)
    opt.step()
    saved = opt.state_dict()
    other = SGD([{"params": [param(P0)]}, {"params": [param(P0)]}], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="1 parameter groups saved, 2"):
        other.load_state_dict(saved)
    wrong = SGD([param([1.0, 2.0, 3.0])], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"momentum_buffer.*\(2,\).*\(3,\)"):
        wrong.load_state_dict(saved)
    assert wrong.state == {}                                        # nothing half-loaded


# ---------------------------------------------------------------- LR schedules
def make_opt(lr=0.1):
    return SGD([param(P0)], lr=lr, momentum=0.9)


def lrs(sched, steps):
    """The rate before any step, then after each of ``steps`` calls of step()."""
    out = [sched.optimizer.param_groups[0]["lr"]]
    for _ in range(steps):
        sched.step()
        out.append(sched.optimizer.param_groups[0]["lr"])
    return out


def test_multistep_lr():
    sched = MultiStepLR(make_opt(0.1), milestones=[3, 5], gamma=0.1)
    expected = [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.001]
    np.testing.assert_allclose(lrs(sched, 7), expected, rtol=1e-12)


def test_multistep_lr_unsorted_milestones_and_gamma():
    sched = MultiStepLR(make_opt(1.0), milestones=[4, 2], gamma=0.5)
    np.testing.assert_allclose(lrs(sched, 5), [1, 1, 0.5, 0.5, 0.25, 0.25], rtol=1e-12)


def test_cosine_annealing_lr():
    base, eta_min, T = 0.1, 0.001, 10
    sched = CosineAnnealingLR(make_opt(base), T_max=T, eta_min=eta_min)
    got = lrs(sched, 12)
    expected = [eta_min + (base - eta_min) * 0.5 * (1 + math.cos(math.pi * t / T)) for t in range(T + 1)]
    np.testing.assert_allclose(got[:T + 1], expected, rtol=1e-12)
    assert got[0] == pytest.approx(base)
    assert got[5] == pytest.approx((base + eta_min) / 2)            # half way: the mean
    assert got[T] == pytest.approx(eta_min)
    assert got[T + 1:] == pytest.approx([eta_min, eta_min])         # then stays at eta_min


def test_schedules_match_pytorch():
    torch = pytest.importorskip("torch")

    def torch_lrs(make, steps):
        p = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([p], lr=0.1)
        sched = make(opt)
        out = [opt.param_groups[0]["lr"]]
        for _ in range(steps):
            opt.step()
            sched.step()
            out.append(opt.param_groups[0]["lr"])
        return out

    ours = lrs(MultiStepLR(make_opt(0.1), [3, 6], 0.2), 8)
    theirs = torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [3, 6], 0.2), 8)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    ours = lrs(CosineAnnealingLR(make_opt(0.1), 8, 0.002), 8)
    theirs = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 8, 0.002), 8)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_linear_warmup_then_multistep():
    opt = make_opt(0.1)
    sched = LinearWarmup(MultiStepLR(opt, milestones=[6], gamma=0.1), warmup_steps=4,
                         start_factor=0.1)
    got = lrs(sched, 7)
    # step k < 4: 0.1 * (0.1 + 0.9 k / 4);  then the inner schedule (÷10 from step 6)
    expected = [0.01, 0.0325, 0.055, 0.0775, 0.1, 0.1, 0.01, 0.01]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_linear_warmup_then_cosine():
    opt = make_opt(0.2)
    sched = LinearWarmup(CosineAnnealingLR(opt, T_max=10), warmup_steps=2, start_factor=0.5)
    got = lrs(sched, 4)
    cos = [0.2 * 0.5 * (1 + math.cos(math.pi * t / 10)) for t in range(5)]
    expected = [cos[0] * 0.5, cos[1] * 0.75, cos[2], cos[3], cos[4]]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_scheduler_sets_the_rate_sgd_uses():
    p = param([0.0])
    opt = SGD([p], lr=1.0)
    sched = MultiStepLR(opt, milestones=[1], gamma=0.1)
    set_grad(p, [1.0])
    opt.step()                                                       # lr 1.0
    sched.step()
    opt.step()                                                       # lr 0.1
    np.testing.assert_allclose(p.numpy(), [-1.1], rtol=1e-14)


@pytest.mark.parametrize("make", [
    lambda opt: MultiStepLR(opt, milestones=[3, 5], gamma=0.1),
    lambda opt: CosineAnnealingLR(opt, T_max=8, eta_min=0.001),
    lambda opt: LinearWarmup(MultiStepLR(opt, milestones=[5]), warmup_steps=3),
    lambda opt: LinearWarmup(CosineAnnealingLR(opt, T_max=8), warmup_steps=3, start_factor=0.2),
], ids=["multistep", "cosine", "warmup-multistep", "warmup-cosine"])
def test_scheduler_resume_via_state_dict(make):
    opt_a = make_opt(0.1)
    sched_a = make(opt_a)
    for _ in range(4):
        sched_a.step()
    saved_sched, saved_opt = sched_a.state_dict(), opt_a.state_dict()
    assert saved_sched["last_step"] == 4

    opt_b = make_opt(0.1)                            # a fresh run: optimizer, then schedule
    sched_b = make(opt_b)
    opt_b.load_state_dict(saved_opt)
    sched_b.load_state_dict(saved_sched)
    assert opt_b.param_groups[0]["lr"] == pytest.approx(opt_a.param_groups[0]["lr"], rel=1e-12)
    rest_a, rest_b = lrs(sched_a, 6), lrs(sched_b, 6)
    np.testing.assert_allclose(rest_b, rest_a, rtol=1e-12)


def test_scheduler_resume_when_optimizer_state_holds_a_decayed_rate():
    """The optimizer's saved lr is the *decayed* one; base rates come from the schedule's state."""
    opt_a = make_opt(0.1)
    sched_a = MultiStepLR(opt_a, milestones=[2], gamma=0.1)
    for _ in range(3):
        sched_a.step()
    opt_b = make_opt(0.1)
    opt_b.load_state_dict(opt_a.state_dict())        # lr 0.01 now
    sched_b = MultiStepLR(opt_b, milestones=[2], gamma=0.1)   # built after: base_lrs = [0.01]
    sched_b.load_state_dict(sched_a.state_dict())    # ... restored to [0.1]
    assert sched_b.base_lrs == [0.1]
    np.testing.assert_allclose(lrs(sched_b, 2), lrs(sched_a, 2), rtol=1e-12)


# ---------------------------------------------------------------- format_graph
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 5 * 5, 6)

    def forward(self, x):
        return self.fc(self.flatten(self.relu(self.bn(self.conv(x)))))


def tiny_graph(rng):
    mr.manual_seed(0)
    model = Tiny()
    x = mr.tensor(rng.standard_normal((2, 3, 5, 5)).astype(np.float32))
    loss = F.cross_entropy(model(x), mr.tensor([1, 4]))
    return model, x, loss


LINE = re.compile(r"^%(\d+)\s+= (\S.*?)\s+(\([0-9, ]*\))\s+(\w+)$")


def parse_listing(text):
    rows = []
    for line in text.splitlines():
        m = LINE.match(line)
        assert m, f"unexpected line: {line!r}"
        rows.append((int(m.group(1)), m.group(2), m.group(3), m.group(4)))
    return rows


def test_format_graph_lists_ops_in_forward_order_with_shapes_and_names(rng):
    model, x, loss = tiny_graph(rng)
    text = mr.format_graph(loss, model.named_parameters())
    rows = parse_listing(text)
    assert [r[0] for r in rows] == list(range(len(rows)))           # %0, %1, ... in order
    by_label = {}
    for k, label, shape, dtype in rows:
        by_label[label.split("(")[0].strip()] = (k, label, shape, dtype)
    ops = ["conv2d", "batch_norm", "relu", "reshape", "linear", "cross_entropy"]
    positions = [by_label[op][0] for op in ops]
    assert positions == sorted(positions), text                     # forward order
    assert rows[-1][1].startswith("cross_entropy")                  # the root comes last
    assert by_label["conv2d"][2] == "(2, 4, 5, 5)"
    assert by_label["batch_norm"][2] == "(2, 4, 5, 5)"
    assert by_label["relu"][2] == "(2, 4, 5, 5)"
    assert by_label["reshape"][2] == "(2, 100)"
    assert by_label["linear"][2] == "(2, 6)"
    assert by_label["cross_entropy"][2] == "()"
    assert all(r[3] == "float32" for r in rows)
    for name, p in model.named_parameters():                         # every parameter, by name
        k, label, shape, _ = by_label[f"param {name}"]
        assert shape == "(" + ", ".join(map(str, p.shape)) + ")"
    # an op's arguments refer to the lines of its inputs
    conv_k, conv_label = by_label["conv2d"][:2]
    refs = [int(r) for r in re.findall(r"%(\d+)", conv_label)]
    assert refs == [by_label["input" if "input" in by_label else "constant"][0],
                    by_label["param conv.weight"][0], by_label["param conv.bias"][0]]
    assert all(r < conv_k for r in refs)
    lin_refs = [int(r) for r in re.findall(r"%(\d+)", by_label["linear"][1])]
    assert lin_refs == [by_label["reshape"][0], by_label["param fc.weight"][0],
                        by_label["param fc.bias"][0]]
    assert len(rows) == 1 + 2 + 1 + 2 + 1 + 1 + 1 + 2 + 1 + 1      # x, conv params, ... loss


def test_format_graph_without_names_and_shared_inputs(rng):
    a = mr.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    b = a * a + a                                                   # a used three times
    text = mr.format_graph(b.sum())
    rows = parse_listing(text)
    labels = [r[1] for r in rows]
    assert labels[0] == "input"                                     # listed once
    assert labels[1:] == ["mul(%0, %0)", "add(%1, %0)", "sum(%2)"]
    assert "param" not in text


# ---------------------------------------------------------------- DOT export
NODE = re.compile(r'^\s*n(\d+) \[label="([^"]*)", shape=(box|ellipse)[^\]]*\];$')
EDGE = re.compile(r"^\s*n(\d+) -> n(\d+);$")


def parse_dot(text):
    """Check the DOT text's structure; (nodes {index: label}, edges [(src, dst)])."""
    lines = text.splitlines()
    assert lines[0].startswith("digraph") and lines[0].rstrip().endswith("{")
    assert lines[-1].strip() == "}"
    assert text.count("{") == text.count("}") == 1
    nodes, edges = {}, []
    for line in lines[1:-1]:
        if m := NODE.match(line):
            k = int(m.group(1))
            assert k not in nodes, f"node n{k} declared twice"
            nodes[k] = m.group(2)
        elif m := EDGE.match(line):
            edges.append((int(m.group(1)), int(m.group(2))))
        else:
            assert re.match(r"^\s*(rankdir=\w+|node \[.*\]);$", line), f"unexpected DOT line: {line!r}"
        assert line.count('"') % 2 == 0, line
    for src, dst in edges:
        assert src in nodes and dst in nodes
    return nodes, edges


def test_to_dot_small_graph():
    a = mr.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    w = mr.tensor(np.ones(3, np.float32))
    c = a * w
    d = c.sum()
    nodes, edges = parse_dot(mr.to_dot(d))
    assert len(nodes) == 4                                          # one node per tensor
    by_label = {v.split("\\n")[0]: k for k, v in nodes.items()}
    assert set(by_label) == {"input", "constant", "mul", "sum"}
    assert sorted(edges) == sorted([(by_label["input"], by_label["mul"]),
                                    (by_label["constant"], by_label["mul"]),
                                    (by_label["mul"], by_label["sum"])])
    assert nodes[by_label["mul"]].endswith("\\n2x3")
    assert nodes[by_label["sum"]].endswith("\\nscalar")


def test_to_dot_model_graph_names_parameters(rng):
    model, x, loss = tiny_graph(rng)
    text = mr.to_dot(loss, model.named_parameters())
    nodes, edges = parse_dot(text)
    listing = parse_listing(mr.format_graph(loss, model.named_parameters()))
    assert len(nodes) == len(listing)
    labels = [nodes[k].split("\\n")[0] for k in sorted(nodes)]
    for name, _ in model.named_parameters():
        assert f"param {name}" in labels
    expected_edges = sum(len(re.findall(r"%\d+", r[1])) for r in listing)
    assert len(edges) == expected_edges
    assert all(src < dst for src, dst in edges)                    # parent -> child, forward order
    assert labels[-1] == "cross_entropy"


def test_graph_tools_on_a_deep_chain():
    depth = 5000
    x = mr.tensor(np.ones(3, np.float32), requires_grad=True)
    y = x
    for i in range(depth):
        y = y.exp() if i % 2 else y.log()                           # log(1) = 0, exp(0) = 1, ...
    loss = y.sum()
    nodes, edges = parse_dot(mr.to_dot(loss))
    assert len(nodes) == depth + 2                                  # x, 5000 ops, sum
    assert len(edges) == depth + 1
    assert sorted(edges) == [(k, k + 1) for k in range(depth + 1)]  # a chain, in order
    listing = mr.format_graph(loss).splitlines()
    assert len(listing) == depth + 2
    assert listing[0].split("=")[1].split()[0] == "input"
    assert listing[-1].split("=")[1].split()[0].startswith("sum")
    loss.backward()                                                 # and the walk back is iterative too
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3))
