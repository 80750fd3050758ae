"""Looking at the graph behind a tensor: a text listing and a Graphviz DOT export.

    >>> print(minires.format_graph(loss, model.named_parameters()))
    %0  = input                          (8, 3, 32, 32)  float32
    %1  = param conv1.weight             (16, 3, 3, 3)   float32
    %2  = conv2d(%0, %1)                 (8, 16, 32, 32) float32
    ...
"""
from __future__ import annotations


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


def to_dot(root, names=None):
    """The graph as Graphviz DOT text (render with ``dot -Tpng``)."""
    names = _names(names)
    nodes = _nodes_in_forward_order(root)
    index = {id(n): k for k, n in enumerate(nodes)}
    out = ["digraph minires {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    for k, node in enumerate(nodes):
        shape = "x".join(map(str, node.shape)) or "scalar"
        style = "box" if node._op != "leaf" else "ellipse"
        fill = ', style=filled, fillcolor="#dbe9f6"' if node._op == "leaf" and node.requires_grad else ""
        label = _label(node, names).replace('"', "'")
        out.append(f'  n{k} [label="{label}\\n{shape}", shape={style}{fill}];')
    for k, node in enumerate(nodes):
        for p in node._parents:
            out.append(f"  n{index[id(p)]} -> n{k};")
    out.append("}")
    return "\n".join(out)
