"""Reverse-mode automatic differentiation: the graph walk.

Every op records, on the tensor it returns, its inputs (``_parents``) and a
``_backward(g)`` closure that maps the gradient of its output to one gradient
per input.  ``backward`` below walks that graph from the output to the leaves
and *adds* each incoming gradient to what the tensor has already received.
That ``+=`` is the whole story of the identity shortcut: in y = x + F(x), x
feeds both the add and F, so it receives g (the "+1") plus g·dF/dx.

The walk is iterative -- an explicit stack, no recursion -- so a 1202-layer
ResNet backpropagates without going near Python's recursion limit.
"""
from __future__ import annotations

import contextlib
import threading

from . import backend

_state = threading.local()

# The active minires.trace() recorder, else None.  Tensor.from_op and the walk below
# test it once per op -- the whole cost of the tracer when it is off.
tracer = None

# Set (to a description) while minires.cuda_graph captures a step: Python hooks would
# run once, at capture, and never in a replay, so they are refused then.
capturing = None


def refuse_hooks_in_capture(what):
    if capturing is not None:
        from .cuda_graph import CaptureError
        raise CaptureError(f"cannot capture the step as a CUDA graph: {what} is registered, and a "
                           f"Python hook would run once at capture, never at the replays; remove "
                           f"it (handle.remove()) or run the step eagerly")


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def set_grad_enabled(mode: bool):
    previous = is_grad_enabled()
    _state.enabled = bool(mode)
    try:
        yield
    finally:
        _state.enabled = previous


def no_grad():
    """Context manager: ops inside it record no graph (evaluation, optimizer steps)."""
    return set_grad_enabled(False)


def topological_order(root, only_requiring_grad=True):
    """Tensors that ``root`` depends on (those that require grad, or all), outputs first.

    Depth-first post-order with an explicit stack, reversed: every tensor comes
    before the tensors it was computed from.
    """
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent in reversed(node._parents):
            if (parent.requires_grad or not only_requiring_grad) and id(parent) not in seen:
                stack.append((parent, False))
    order.reverse()
    return order


class HookHandle:
    """Returned by register_hook / register_forward_hook: ``remove()`` unregisters."""

    def __init__(self, hooks, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)


def _graph_freed(_g):
    raise RuntimeError(
        "backward through a graph that was already freed: the first backward() "
        "released its saved arrays; call backward(retain_graph=True) the first time "
        "if you need to backpropagate twice")


def run_backward(root, grad, retain_graph=False):
    """Backpropagate ``grad`` (an array shaped like root) through root's graph.

    Gradients of intermediate tensors live only in ``pending`` while the walk
    needs them; leaves accumulate theirs into ``.grad`` across calls.
    """
    from .tensor import Tensor

    recorder = tracer              # read once: a trace opened mid-walk starts at the next
    pending = {id(root): grad}     # id(tensor) -> gradient received so far
    owned = set()                  # ids whose pending array we allocated (safe to += into)
    for node in topological_order(root):
        g = pending.pop(id(node), None)
        if g is None:              # nothing flowed here (e.g. only via a constant)
            continue
        owned.discard(id(node))
        if node._hooks and capturing is not None:
            refuse_hooks_in_capture(f"a tensor hook (register_hook) on a {node._op} tensor of shape "
                                    f"{tuple(node.shape)}")
        for hook in node._hooks:
            replaced = hook(Tensor(g))
            if replaced is not None:
                g = replaced.data if isinstance(replaced, Tensor) else replaced
        if node._backward is None:  # a leaf: accumulate into .grad
            if node.grad is None:
                node.grad = Tensor(g.copy())
            else:
                node.grad.data += g
            continue
        parent_grads = node._backward(g) if recorder is None else recorder.backward(node, g)
        for parent, pg in zip(node._parents, parent_grads):
            if pg is None or not parent.requires_grad:
                continue
            if pg.shape != parent.shape:
                raise RuntimeError(
                    f"{node._op}.backward returned a gradient of shape {pg.shape} for an "
                    f"input of shape {parent.shape}: the op's backward is wrong")
            key = id(parent)
            if key not in pending:
                pending[key] = pg             # borrowed: may alias another gradient
            elif key in owned:
                pending[key] += pg            # the "+=" of micrograd: fan-out sums
            else:
                pending[key] = backend.add(pending[key], pg)
                owned.add(key)
        if not retain_graph:
            node._backward = _graph_freed
            node._parents = ()
    if recorder is not None:
        recorder.walk_done()
