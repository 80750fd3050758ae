"""Looking at the graph behind a tensor: a text listing, Graphviz DOT, rendered pictures.

    >>> print(minires.format_graph(loss, model.named_parameters()))
    %0  = input                          (8, 3, 32, 32)  float32
    %1  = param conv1.weight             (16, 3, 3, 3)   float32
    %2  = conv2d(%0, %1)                 (8, 16, 32, 32) float32
    ...
    >>> minires.render_graph(loss, "graph.svg", trace=t)    # after backward(retain_graph=True)

Residual blocks are found in the graph itself, not in the modules: a block is an
``add`` (or a fused op around one, ``add_relu``, ``batch_norm_add_relu``) whose two inputs both descend from one tensor x (the block's input); the
shorter of the two paths from x to the add is the shortcut, the other is the
residual branch F.  That is what lets ``to_dot`` draw shortcut edges so they stand
out and collapse a ResNet-110 into one box per block.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

# how far (in ops) to look back from an add for the block input: a bottleneck
# block's branch is 8 ops long, a projection shortcut 2
_BLOCK_SEARCH_DEPTH = 24
# the addition of a block: add, or the fused ops that contain it (ops/fused.py), whose first
# two inputs are the two terms
_BLOCK_ADD_OPS = ("add", "add_relu", "batch_norm_add_relu")
# ops right after the add that still belong to the block (original and BN-after-add units)
_BLOCK_TAIL_OPS = ("relu", "batch_norm", "batch_norm_relu")
_AUTO_COLLAPSE_OPS = 150        # collapse=None: collapse graphs with more op nodes than this
FORMATS = ("svg", "png", "pdf", "dot")


def _nodes_in_forward_order(root):
    """Every tensor root was computed from (constants included), inputs first."""
    from .autograd import _graph_freed, topological_order
    if root._backward is _graph_freed:
        raise ValueError("the graph behind this tensor was freed by backward(): list it before "
                         "calling backward, or call backward(retain_graph=True)")
    return topological_order(root, only_requiring_grad=False)[::-1]


def _label(node, names):
    if node._op != "leaf":
        return node._op
    name = names.get(id(node)) or node.name
    if name:
        return f"param {name}" if node.requires_grad else f"buffer {name}"
    return "input" if node.requires_grad else "constant"


def _names(named):
    return {id(t): n for n, t in (named or ())}


def format_graph(root, names=None):
    """A readable listing of the ops behind ``root``, one line per tensor.

    names: optional (name, tensor) pairs -- e.g. ``model.named_parameters()`` --
    to label parameters.  The graph must not have been freed by backward().
    """
    names = _names(names)
    nodes = _nodes_in_forward_order(root)
    index = {id(n): k for k, n in enumerate(nodes)}
    width = len(str(len(nodes)))
    lines = []
    for k, node in enumerate(nodes):
        label = _label(node, names)
        if node._parents:
            label += "(" + ", ".join(f"%{index[id(p)]}" for p in node._parents) + ")"
        shape = "(" + ", ".join(map(str, node.shape)) + ")"
        lines.append(f"%{k:<{width}} = {label:<36} {shape:<18} {node.dtype}")
    return "\n".join(lines)




# ---------------------------------------------------------------- residual blocks
@dataclass
class ResidualBlock:
    """One y = x + F(x) found in a graph.  Edges are (consumer tensor, parent index)."""
    number: int                  # 1, 2, ... in forward order
    stage: int                   # consecutive blocks with the same output shape (C, H, W)
    input: object                # x: the tensor feeding both the shortcut and F
    add: object                  # the add: x's shortcut path + F(x)
    shortcut: list               # edges from x to the add along the shortcut
    branch: list                 # edges from x to the add along the residual branch
    nodes: list = field(default_factory=list)    # the block's op tensors, forward order

    @property
    def shortcut_ops(self):
        """The ops on the shortcut path ('identity' when x goes straight into the add)."""
        return [c._op for c, _ in self.shortcut[:-1]] or ["identity"]


def _consumers(nodes):
    users = {id(n): [] for n in nodes}
    for n in nodes:
        for i, p in enumerate(n._parents):
            users[id(p)].append((n, i))
    return users


def _reach_back(start):
    """{id: (tensor, ops from start, (child, parent index) one step toward start)}."""
    reached, frontier = {id(start): (start, 0, None)}, [start]
    for dist in range(1, _BLOCK_SEARCH_DEPTH + 1):
        nxt = []
        for node in frontier:
            for i, p in enumerate(node._parents):
                if p.requires_grad and id(p) not in reached:
                    reached[id(p)] = (p, dist, (node, i))
                    nxt.append(p)
        frontier = nxt
    return reached


def _path(reached, start, add, side):
    """Edges from ``start`` along the BFS pointers to the add's input ``side``, then into the add."""
    edges, node = [], start
    while reached[id(node)][2] is not None:
        child, i = reached[id(node)][2]
        edges.append((child, i))
        node = child
    return edges + [(add, side)]


def _find_blocks(nodes, users):
    order = {id(n): k for k, n in enumerate(nodes)}
    blocks = []
    for add in nodes:
        if add._op not in _BLOCK_ADD_OPS or len(add._parents) < 2 or add._parents[0] is add._parents[1]:
            continue
        sides = [_reach_back(p) for p in add._parents[:2]]
        common = [k for k in sides[0] if k in sides[1]]
        if not common:
            continue
        x_id = min(common, key=lambda k: (sides[0][k][1] + sides[1][k][1], -order[k]))
        x = sides[0][x_id][0]
        short = 0 if sides[0][x_id][1] < sides[1][x_id][1] else 1
        inside = set(sides[0]) | set(sides[1]) | {id(add)}
        members, frontier = {}, [x]           # x's descendants that lead to the add
        while frontier:
            node = frontier.pop()
            for child, _ in users[id(node)]:
                if id(child) in inside and id(child) not in members:
                    members[id(child)] = child
                    frontier.append(child)
        tail = add
        for _ in range(2):
            after = users[id(tail)]
            if len(after) != 1 or after[0][0]._op not in _BLOCK_TAIL_OPS:
                break
            tail = after[0][0]
            members[id(tail)] = tail
        blocks.append(ResidualBlock(
            len(blocks) + 1, 0, x, add, _path(sides[short], x, add, short),
            _path(sides[1 - short], x, add, 1 - short),
            sorted((m for m in members.values() if m._op != "leaf"), key=lambda m: order[id(m)])))
    stage, previous = 0, None
    for b in blocks:
        if tuple(b.add.shape[1:]) != previous:
            stage, previous = stage + 1, tuple(b.add.shape[1:])
        b.stage = stage
    return blocks


def residual_blocks(root):
    """The residual blocks of root's graph, in forward order (see the module docstring)."""
    nodes = _nodes_in_forward_order(root)
    return _find_blocks(nodes, _consumers(nodes))


# ---------------------------------------------------------------- DOT and pictures
_SHORTCUT_STYLE = 'color="#d62728", penwidth=2.5'


def _norm_label(value):
    return f"‖g‖ {value:.3g}"


def to_dot(root, names=None, *, trace=None, collapse=False, expand=()):
    """The graph as Graphviz DOT text (render with ``dot -Tsvg``, or ``render_graph``).

    Shortcut edges are drawn thick and red.  trace: a ``minires.trace()`` that
    recorded a backward of this graph (run it with ``retain_graph=True`` so the graph
    is still here): every edge is labelled with the norm of the gradient that flowed
    along it.  collapse: draw each residual block as one box (None: only when the
    graph has more than 150 ops); expand: stage numbers (1, 2, ...) drawn op by op.
    """
    names = _names(names)
    nodes = _nodes_in_forward_order(root)
    index = {id(n): k for k, n in enumerate(nodes)}
    users = _consumers(nodes)
    blocks = _find_blocks(nodes, users)
    shortcut = {(id(c), i) for b in blocks for c, i in b.shortcut}
    if collapse is None:
        collapse = sum(n._op != "leaf" for n in nodes) > _AUTO_COLLAPSE_OPS
    stages = sorted({b.stage for b in blocks})
    unknown = sorted(set(expand) - set(stages))
    if unknown:
        raise ValueError(f"to_dot: expand={tuple(expand)} names stage(s) {unknown} that the graph does "
                         f"not have; its stages are {stages or 'none (no residual blocks)'}")
    group = {}                                  # id(tensor) -> "bK", drawn inside block K's box
    boxes = [b for b in blocks if collapse and b.stage not in set(expand)]
    for b in boxes:
        for n in b.nodes:
            group[id(n)] = f"b{b.number}"
    for n in nodes:                              # parameters used only inside one box
        if n._op == "leaf" and users[id(n)]:
            where = {group.get(id(c)) for c, _ in users[id(n)]}
            if len(where) == 1 and None not in where:
                group[id(n)] = where.pop()

    stage_of = {}                               # collapsed drawings group each stage in a frame
    if collapse:
        for b in blocks:
            stage_of.update({id(n): b.stage for n in b.nodes})
        for n in nodes:
            where = {stage_of.get(id(c)) for c, _ in users[id(n)]}
            if n._op == "leaf" and len(where) == 1 and None not in where:
                stage_of[id(n)] = where.pop()
    declared = []                               # (stage or None, DOT line)
    for k, node in enumerate(nodes):
        if id(node) in group:
            continue
        shape = "x".join(map(str, node.shape)) or "scalar"
        style = "box" if node._op != "leaf" else "ellipse"
        fill = ', style=filled, fillcolor="#dbe9f6"' if node._op == "leaf" and node.requires_grad else ""
        label = _label(node, names).replace('"', "'")
        declared.append((stage_of.get(id(node)), f'n{k} [label="{label}\\n{shape}", shape={style}{fill}];'))
    for b in boxes:
        params = sum(1 for n in nodes if n._op == "leaf" and group.get(id(n)) == f"b{b.number}")
        lines = [f"block {b.number}: {len(b.nodes)} ops, {params} params",
                 "shortcut: " + "→".join(b.shortcut_ops)]
        if trace is not None:
            via_short, via_f = (_edge_norm(trace, *b.shortcut[0]), _edge_norm(trace, *b.branch[0]))
            if via_short is not None and via_f is not None:
                lines.append(f"‖g‖ into x: shortcut {via_short:.3g}, F {via_f:.3g}")
        text = "\\n".join(lines)
        declared.append((b.stage, f'b{b.number} [label="{text}", shape=box, style="filled,rounded", '
                                  f'fillcolor="#fde8d0"];'))
    out = ["digraph minires {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    out += [f"  {line}" for stage, line in declared if stage is None]
    for stage in sorted({s for s, _ in declared if s is not None}):
        members = [b for b in blocks if b.stage == stage]
        shape = "x".join(map(str, members[0].add.shape[1:]))
        out += [f"  subgraph cluster_stage{stage} {{",
                f'    label="stage {stage}: {len(members)} blocks, {shape}"; style=rounded; color="#999999"; fontname="Helvetica";']
        out += [f"    {line}" for s, line in declared if s == stage]
        out.append("  }")

    merged = {}                                 # (src, dst) -> [(parent, consumer, index)]
    for node in nodes:
        for i, p in enumerate(node._parents):
            src, dst = group.get(id(p), f"n{index[id(p)]}"), group.get(id(node), f"n{index[id(node)]}")
            if src != dst:
                merged.setdefault((src, dst), []).append((p, node, i))
    for (src, dst), edges in merged.items():
        attrs = []
        if all((id(c), i) in shortcut for _, c, i in edges):    # not a box's x -> (F and shortcut)
            attrs.append(_SHORTCUT_STYLE)
        if trace is not None:
            value = _merged_norm(trace, edges, users, group)
            if value is not None:
                attrs.append(f'label="{_norm_label(value)}", fontname="Helvetica", fontsize=8')
        out.append(f"  {src} -> {dst}" + (f" [{', '.join(attrs)}];" if attrs else ";"))
    out.append("}")
    return "\n".join(out)


def _edge_norm(trace, consumer, i):
    norms = trace.input_grad_norms(consumer)
    return None if norms is None else norms[i]


def _merged_norm(trace, edges, users, group):
    """The gradient norm along one drawn edge: the edge's own, or -- for several edges
    from one tensor into one box -- the total that tensor received, when all its uses
    are in that box."""
    if len(edges) == 1:
        return _edge_norm(trace, edges[0][1], edges[0][2])
    sources = {id(p) for p, _, _ in edges}
    if len(sources) != 1:
        return None
    p = edges[0][0]
    if len(users[id(p)]) != len(edges):
        return None
    return trace.grad_norm(p)


def render_graph(root, path, names=None, *, trace=None, collapse=None, expand=()):
    """Draw root's graph to ``path`` (.svg, .png, .pdf through Graphviz's ``dot``;
    .dot writes the DOT text).  Arguments as ``to_dot``; returns the path."""
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"render_graph: cannot tell the format from {str(path)!r}; "
                         f"end the path in one of .{', .'.join(FORMATS)}")
    text = to_dot(root, names, trace=trace, collapse=collapse, expand=expand)
    if fmt == "dot":
        with open(path, "w") as f:
            f.write(text + "\n")
        return path
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("render_graph: Graphviz's `dot` program is not installed; install it "
                           "(Debian/Ubuntu: apt-get install graphviz, macOS: brew install graphviz, "
                           "conda: conda install graphviz; the pip package `graphviz` is only a "
                           "wrapper) or save DOT text with a .dot path")
    done = subprocess.run([dot, f"-T{fmt}", "-o", str(path)], input=text.encode(),
                          capture_output=True)
    if done.returncode:
        raise RuntimeError(f"render_graph: dot failed on {path}: "
                           f"{done.stderr.decode(errors='replace').strip()}")
    return path
