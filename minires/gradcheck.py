"""Numerical gradient checks: the proof that every backward is right.

For y = fn(*inputs) we draw a random upstream gradient u (one per output) and
compare, for every input x that requires grad,

    analytic   backward(u) -> ∂(u·y)/∂x
    numerical  (u·fn(x + eps e_k) - u·fn(x - eps e_k)) / (2 eps)   for every element k

plus a few random directions v (∂(u·y)/∂x · v against a central difference
along v).  A random u matters: checking sum(fn(x)) (u = 1) cannot see, for
instance, a wrong batch-norm dx -- Σ of a normalised output does not depend on
x at all, so a gradient that is wrong by any constant shift would pass.

Each comparison's *relative error* is |analytic - numerical| / (|numerical| + atol/rtol):
the error over the numerical value, floored where that value is near zero.  A check
passes when every relative error is at most rtol -- the same as
|analytic - numerical| <= atol + rtol |numerical|.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import backend
from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Raised by gradcheck with a message that says which input and where."""


@dataclass(frozen=True)
class InputCheck:
    """What gradcheck found for one input."""
    index: int                 # position in gradcheck's inputs
    shape: tuple
    elements: int              # elements compared one by one (all, or max_elements of them)
    directions: int            # random directions compared
    max_rel_error: float       # over the elements and the directions
    failure: str = ""          # "" when it passed, else the line that says where


@dataclass(frozen=True)
class GradcheckResult:
    """gradcheck's findings: true when every checked input passed; str() is a summary."""
    inputs: tuple              # of InputCheck, one per input with requires_grad
    atol: float
    rtol: float

    def __bool__(self):
        return not any(c.failure for c in self.inputs)

    @property
    def max_rel_error(self):
        return max(c.max_rel_error for c in self.inputs)

    def __str__(self):
        verdict = "passed" if self else "FAILED"
        rows = [f"  input {c.index} {tuple(c.shape)}: {c.elements} elements and {c.directions} "
                f"directions, max relative error {c.max_rel_error:.2e}"
                + (" FAIL" if c.failure else "") for c in self.inputs]
        return (f"gradcheck {verdict} (tolerance: relative error <= rtol={self.rtol:g}, "
                f"atol={self.atol:g})\n" + "\n".join(rows))


def _as_tuple(outputs):
    if isinstance(outputs, Tensor):
        return (outputs,)
    outputs = tuple(outputs)
    if not all(isinstance(o, Tensor) for o in outputs):
        raise TypeError("gradcheck: fn must return a Tensor or a sequence of Tensors")
    return outputs


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, *, seed=0, n_directions=3,
              max_elements=None, raise_exception=True):
    """Check fn's backward against central differences; a GradcheckResult (true on success).

    inputs: a Tensor or a sequence of Tensors; those with requires_grad=True are
    checked and must be float64.  max_elements: check at most this many
    (randomly chosen) elements per input, all by default.  On a mismatch,
    raises GradcheckError, or with raise_exception=False returns a false result.
    """
    if not rtol > 0 or not atol >= 0:
        raise ValueError(f"gradcheck: need rtol > 0 and atol >= 0, got rtol={rtol}, atol={atol}")
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True; nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; central differences "
                            f"need float64 inputs (make them with dtype=minires.float64)")
    rng = np.random.default_rng(seed)

    outputs = _as_tuple(fn(*inputs))
    upstream = [backend.to_device(rng.standard_normal(o.shape), o.device).astype(o.dtype)
                for o in outputs]

    def objective():
        """u·fn(inputs) as a Python float, without building a graph."""
        with no_grad():
            outs = _as_tuple(fn(*inputs))
        return float(sum(float((o.data.astype(np.float64) * u).sum()) for o, u in zip(outs, upstream)))

    saved = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    live = [(o, u) for o, u in zip(outputs, upstream) if o.requires_grad]
    for k, (o, u) in enumerate(live):
        o.backward(u, retain_graph=k < len(live) - 1)
    analytic = {i: (inputs[i].grad.data if inputs[i].grad is not None
                    else inputs[i].xp.zeros_like(inputs[i].data)) for i in checked}
    for i, g in zip(checked, saved):
        inputs[i].grad = g

    result = GradcheckResult(tuple(_check_input(i, inputs[i], analytic[i], objective, eps, atol, rtol,
                                                rng, n_directions, max_elements) for i in checked),
                             atol, rtol)
    if not result and raise_exception:
        raise GradcheckError("gradcheck failed\n" + "\n".join(c.failure for c in result.inputs if c.failure))
    return result


def _check_input(i, t, analytic, objective, eps, atol, rtol, rng, n_directions, max_elements):
    x = t.data                                   # perturbed in place, then restored
    described = f"input {i} (shape {tuple(t.shape)})"
    ana = backend.to_numpy(analytic).astype(np.float64)
    flat_count = x.size
    picks = np.arange(flat_count)
    if max_elements is not None and flat_count > max_elements:
        picks = np.sort(rng.choice(flat_count, size=max_elements, replace=False))

    numeric = np.empty(len(picks))
    for slot, k in enumerate(picks):
        idx = np.unravel_index(k, x.shape)
        orig = x[idx].item()
        x[idx] = orig + eps
        plus = objective()
        x[idx] = orig - eps
        minus = objective()
        x[idx] = orig
        numeric[slot] = (plus - minus) / (2 * eps)
    chosen = ana.reshape(-1)[picks]
    err = np.abs(numeric - chosen)
    rel = err / (np.abs(numeric) + atol / rtol)
    bad = rel > rtol
    failure = ""
    if bad.any():
        worst = int(np.argmax(np.where(bad, err, -1)))
        where = tuple(int(v) for v in np.unravel_index(picks[worst], x.shape))
        failure = (f"  {described}: {int(bad.sum())} of {len(picks)} elements differ beyond "
                   f"atol={atol:g} + rtol={rtol:g}*|numerical|; worst at index {where}: "
                   f"numerical {numeric[worst]:.8g}, analytic {chosen[worst]:.8g} "
                   f"(abs err {err[worst]:.3g})")
    max_rel = float(rel.max(initial=0.0))

    original = x.copy()
    for d in range(n_directions):
        v = rng.standard_normal(x.shape)
        v_dev = backend.to_device(v, t.device)
        x[...] = original + eps * v_dev
        plus = objective()
        x[...] = original - eps * v_dev
        minus = objective()
        x[...] = original
        num = (plus - minus) / (2 * eps)
        an = float((ana * v).sum())
        # the analytic side sums x.size products: its floor grows like sqrt(size)
        rel_d = abs(num - an) / (abs(num) + atol * np.sqrt(x.size) / rtol)
        max_rel = max(max_rel, rel_d)
        if rel_d > rtol and not failure:
            failure = (f"  {described}: directional derivative along random direction {d} "
                       f"differs: numerical {num:.8g}, analytic {an:.8g}")
    return InputCheck(i, tuple(t.shape), len(picks), n_directions, max_rel, failure)
