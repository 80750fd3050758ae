"""minires.trace(): per-op records that agree with hooks; render_graph's DOT; `minires trace`."""
import argparse
import json
import re
import shutil

import numpy as np
import pytest

import minires as mr
from minires import autograd
from minires import graph as graph_module
from minires.models.cifar import BasicBlock
from minires.nn import functional as F
from minires.trace import add_parser, main as trace_main


def block_and_input(seed=0, shape=(2, 4, 6, 6), dtype=np.float64, device="cpu"):
    mr.manual_seed(seed)
    block = BasicBlock(shape[1], shape[1])
    if dtype == np.float64:
        block.double()
    block.to(device)
    x = mr.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype),
                  requires_grad=True, device=device)
    return block, x


def norm(a):
    return float(np.linalg.norm(np.asarray(a).reshape(-1)))


# ---------------------------------------------------------------- records
def test_records_forward_and_backward_rows_per_node():
    a = mr.tensor(np.ones((2, 3)), requires_grad=True)
    w = mr.tensor(np.full(3, 2.0))
    with mr.trace() as t:
        c = a * w
        d = c.reshape(6).sum()
        d.backward()
    assert autograd.tracer is None
    assert [(r.phase, r.op) for r in t.records] == [
        ("forward", "mul"), ("forward", "reshape"), ("forward", "sum"),
        ("backward", "sum"), ("backward", "reshape"), ("backward", "mul")]
    fwd = {r.op: r for r in t.records if r.phase == "forward"}
    bwd = {r.op: r for r in t.records if r.phase == "backward"}
    assert all(fwd[op].node == bwd[op].node for op in fwd)          # one node, two rows
    assert fwd["mul"].input_shapes == ((2, 3), (3,)) and fwd["mul"].output_shape == (2, 3)
    assert bwd["sum"].grad_in == 1.0 and bwd["sum"].output_shape == ()
    assert bwd["mul"].grad_out == (pytest.approx(norm(np.full((2, 3), 2.0))), None)   # w: no grad
    assert fwd["mul"].bytes == 6 * 8 and fwd["reshape"].bytes == 0   # a view allocates nothing
    assert bwd["sum"].bytes == 0                                     # broadcast view of g
    assert bwd["mul"].bytes == 6 * 8
    assert all(r.seconds >= 0 for r in t.records) and all(r.grad_in is None for r in fwd.values())


def test_norms_agree_with_hooks_on_a_basic_block(device):
    """Every node's gradient in, and every edge's gradient out, against tensor hooks."""
    block, x = block_and_input(device=device)
    with mr.trace() as t:
        y = block(x)
    seen = {}
    tensors = graph_module._nodes_in_forward_order(y)
    for n in tensors:
        if n.requires_grad:
            n.register_hook(lambda g, n=n: seen.__setitem__(id(n), g.numpy().copy()))
    upstream = mr.tensor(np.random.default_rng(1).standard_normal(y.shape), device=device)
    with t:
        y.backward(upstream, retain_graph=True)
    ops = [n for n in tensors if n._op != "leaf"]
    assert len([r for r in t.records if r.phase == "backward"]) == len(ops)
    users = graph_module._consumers(tensors)
    for n in ops:
        assert t.grad_norm(n) == pytest.approx(norm(seen[id(n)]), rel=1e-12), n._op
    for n in tensors:
        if n.requires_grad and len(users[id(n)]) == 1:          # one consumer: its edge is the total
            consumer, i = users[id(n)][0]
            assert t.input_grad_norms(consumer)[i] == pytest.approx(norm(seen[id(n)]), rel=1e-12)
    # x feeds the add (the shortcut) and conv1 (F): the two edges are g_add and total - g_add
    (blk,) = graph_module.residual_blocks(y)
    assert blk.input is x and blk.shortcut == [(blk.add, 1)] and blk.branch[0][0]._op == "conv2d"
    g_add = seen[id(blk.add)]
    assert t.input_grad_norms(blk.add)[1] == pytest.approx(norm(g_add), rel=1e-12)
    conv1, i = blk.branch[0]
    assert t.input_grad_norms(conv1)[i] == pytest.approx(norm(seen[id(x)] - g_add), rel=1e-9)
    assert t.grad_norm(x) is None                                  # a leaf runs no backward
    conv_forward = next(r for r in t.records if r.phase == "forward" and r.op == "conv2d")
    assert conv_forward.bytes == 2 * 4 * 6 * 6 * 8                 # its fresh output
    assert all(r.bytes == 0 for r in t.records if r.op == "add" and r.phase == "backward")


def test_trace_sees_the_gradient_after_hooks_replace_it():
    a = mr.tensor(np.ones(3), requires_grad=True)
    b = a * 2.0
    b.register_hook(lambda g: g * 10.0)
    with mr.trace() as t:
        b.sum().backward()
    assert t.grad_norm(b) == pytest.approx(10 * np.sqrt(3))


def test_two_walks_with_retain_graph_give_two_rows_and_forward_time_restarts():
    a = mr.tensor(np.ones(4), requires_grad=True)
    with mr.trace() as t:
        b = (a * a).sum()
        b.backward(retain_graph=True)
        b.backward()
    assert [r.op for r in t.records if r.phase == "backward"] == ["sum", "mul", "sum", "mul"]
    assert len({r.node for r in t.records}) == 2


def test_disabled_costs_no_state_and_traces_do_not_nest():
    assert autograd.tracer is None
    with mr.trace():
        with pytest.raises(RuntimeError, match="already recording"):
            with mr.trace():
                pass
    with pytest.raises(ZeroDivisionError):
        with mr.trace():
            1 / 0
    assert autograd.tracer is None                  # closed even on an exception
    a = mr.tensor(np.ones(2), requires_grad=True)
    with mr.trace() as t, mr.no_grad():
        (a * 3.0).sum()
    assert t.records == []                           # no graph, nothing recorded


def test_table_orders_tops_and_totals(tmp_path):
    block, x = block_and_input(dtype=np.float32)
    with mr.trace() as t:
        block(x).sum().backward()
    text = t.table()
    body = text.split("\n\n")[0].splitlines()[1:]
    assert len(body) == len(t.records)
    ms = [float(line.split()[-2]) for line in t.table(by="time").split("\n\n")[0].splitlines()[1:]]
    assert ms == sorted(ms, reverse=True)
    top = t.table(by="bytes", top=3, timings=False)
    rows = top.split("\n\n")[0].splitlines()
    assert len(rows) == 1 + 3 + 1 and rows[-1].startswith(f"({len(t.records) - 3} more records")
    assert "ms" not in top
    sizes = [int(r.split()[-1]) for r in rows[1:4]]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == max(r.bytes for r in t.records)
    totals = t.totals()
    assert totals[("conv2d", "forward")]["count"] == 2 and totals[("add", "backward")]["bytes"] == 0
    backward_rows = sum(r.phase == "backward" for r in t.records)
    assert re.search(rf"^all\s+backward\s+{backward_rows}\s", text, re.M)
    with pytest.raises(ValueError, match="Trace.table: by='size'"):
        t.table(by="size")
    path = tmp_path / "trace.json"
    t.to_json(path)
    saved = json.loads(path.read_text())
    assert len(saved["records"]) == len(t.records)
    assert saved["records"][0]["op"] == t.records[0].op
    assert {(s["op"], s["phase"]) for s in saved["totals"]} == set(totals)


# ---------------------------------------------------------------- the graph: blocks and DOT
NODE = re.compile(r'^\s*(n\d+|b\d+) \[label="([^"]*)", shape=\w+[^\]]*\];$')
EDGE = re.compile(r'^\s*(n\d+|b\d+) -> (n\d+|b\d+)(?: \[(.*)\])?;$')


CLUSTER = re.compile(r'^  subgraph cluster_stage(\d+) \{$')


def parse_dot(text):
    """(nodes {name: label}, edges [(src, dst, attributes)]); clusters only hold node lines."""
    lines = text.splitlines()
    assert lines[0] == "digraph minires {" and lines[-1] == "}"
    assert text.count("{") == text.count("}")
    nodes, edges, cluster = {}, [], None
    for line in lines[1:-1]:
        if m := CLUSTER.match(line):
            assert cluster is None
            cluster = int(m.group(1))
        elif line == "  }":
            assert cluster is not None
            cluster = None
        elif cluster is not None and line.startswith("    label="):
            assert re.match(r'^    label="stage \d+: \d+ blocks, \d+x\d+x\d+"; style=rounded; color="[^"]+"; fontname="Helvetica";$', line)
        elif m := NODE.match(line):
            assert m.group(1) not in nodes
            nodes[m.group(1)] = m.group(2)
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(2), m.group(3) or ""))
        else:
            assert cluster is None and re.match(r"^\s*(rankdir=\w+|node \[.*\]);$", line), line
    assert cluster is None and all(s in nodes and d in nodes for s, d, _ in edges)
    return nodes, edges


def test_dot_draws_the_shortcut_and_labels_edges_with_gradient_norms():
    block, x = block_and_input()
    with mr.trace() as t:
        y = block(x)
        y.backward(np.ones(y.shape), retain_graph=True)
    nodes, edges = parse_dot(mr.to_dot(y, block.named_parameters(), trace=t))
    label = {k: v.split("\\n")[0] for k, v in nodes.items()}
    red = [(s, d) for s, d, a in edges if "#d62728" in a]
    assert [(label[s], label[d]) for s, d in red] == [("input", "add")]
    assert all("‖g‖" in a for _, _, a in edges)                   # every edge carried a gradient
    plain = parse_dot(mr.to_dot(y))[1]
    assert all("label" not in a for _, _, a in plain)             # no trace, no labels


def resnet20_graph(batch=2):
    mr.manual_seed(0)
    model = mr.models.resnet20()
    x = mr.tensor(np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32))
    with mr.fusion(False):                  # every op its own node, as when studying a graph
        return model, F.cross_entropy(model(x), mr.tensor(np.arange(batch)))


def test_residual_blocks_of_resnet20_and_collapsed_dot():
    model, loss = resnet20_graph()
    blocks = graph_module.residual_blocks(loss)
    assert [b.stage for b in blocks] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [b.shortcut_ops for b in blocks if b.stage > 1 and b.number in (4, 7)] == \
        [["getitem", "pad"]] * 2
    assert all(b.shortcut_ops == ["identity"] for b in blocks if b.number not in (4, 7))
    assert [n._op for n in blocks[0].nodes] == ["conv2d", "batch_norm", "relu", "conv2d",
                                                "batch_norm", "add", "relu"]
    assert all(blocks[k + 1].input is blocks[k].nodes[-1] for k in range(8))   # chained
    nodes, edges = parse_dot(mr.to_dot(loss, model.named_parameters(), collapse=True))
    boxes = sorted(k for k in nodes if k.startswith("b"))
    assert len(boxes) == 9 and nodes["b4"].startswith("block 4: 9 ops, 6 params")
    assert "getitem→pad" in nodes["b4"]
    text = mr.to_dot(loss, collapse=True)
    stage2 = text[text.index("subgraph cluster_stage2"):].split("  }")[0]
    assert re.findall(r"b\d+ \[", stage2) == ["b4 [", "b5 [", "b6 ["]
    assert 'label="stage 2: 3 blocks, 32x16x16"' in stage2
    assert ("b3", "b4", "") in edges and not any(s == d for s, d, _ in edges)
    assert not any("param layer" in v for v in nodes.values())    # block parameters are inside
    open_stage = parse_dot(mr.to_dot(loss, model.named_parameters(), collapse=True, expand=(2,)))[0]
    assert sorted(k for k in open_stage if k.startswith("b")) == ["b1", "b2", "b3", "b7", "b8", "b9"]
    assert sum("param layer2" in v for v in open_stage.values()) == 3 * 6
    with pytest.raises(ValueError, match=r"to_dot: expand=\(4,\) names stage\(s\) \[4\] .* \[1, 2, 3\]"):
        mr.to_dot(loss, collapse=True, expand=(4,))
    assert not any(k.startswith("b") for k in parse_dot(mr.to_dot(loss, collapse=None))[0])  # 74 ops


def test_collapse_none_collapses_only_big_graphs():
    block, x = block_and_input()
    assert "b1" not in parse_dot(mr.to_dot(block(x), collapse=None))[0]
    mr.manual_seed(0)
    deep = mr.models.resnet_cifar(56)
    with mr.fusion(False):                  # 2 + 27 * 7 op nodes and more: over 150
        out = deep(mr.tensor(np.zeros((2, 3, 8, 8), np.float32)))
    assert len([k for k in parse_dot(mr.to_dot(out, collapse=None))[0] if k.startswith("b")]) == 27


def test_render_graph_formats_and_the_missing_dot_hint(tmp_path, monkeypatch):
    block, x = block_and_input()
    y = block(x)
    path = mr.render_graph(y, tmp_path / "g.dot")
    assert path.read_text().startswith("digraph minires {")
    with pytest.raises(ValueError, match=r"render_graph: cannot tell the format .*\.svg"):
        mr.render_graph(y, tmp_path / "g.jpeg")
    if shutil.which("dot"):
        svg = mr.render_graph(y, tmp_path / "g.svg")
        assert "<svg" in svg.read_text()
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz") as e:
        mr.render_graph(y, tmp_path / "g.png")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- `minires trace MODEL`
def parse(argv):
    parser = argparse.ArgumentParser(prog="minires")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_traces_one_training_step(tmp_path, capsys):
    args = parse(["trace", "resnet20", "--batch", "2", "--device", "cpu", "--top", "4",
                  "--by", "bytes", "--json", str(tmp_path / "t.json")])
    assert args.func.__name__ == "run_trace"
    args.func(args)
    out = capsys.readouterr().out
    assert out.startswith("resnet20: one training step on a batch of 2 random images (cpu), loss ")
    assert re.search(r"^conv2d\s+backward\s+19\s", out, re.M)      # totals per op type
    assert "more records" in out
    records = json.loads((tmp_path / "t.json").read_text())["records"]
    assert sum(r["phase"] == "backward" for r in records) == sum(r["phase"] == "forward" for r in records)


def test_cli_errors_are_one_line(capsys):
    assert trace_main(["resnet20", "--batch", "0"]) == 1
    assert capsys.readouterr().err == "minires trace: error: --batch must be at least 1, got 0\n"
    assert trace_main(["resnet21"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minires trace: error: unknown model 'resnet21'") and err.count("\n") == 1
