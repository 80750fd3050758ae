"""Numerical gradient checks: the proof that every backward is right.

For y = fn(*inputs) we draw a random upstream gradient u (one per output) and
compare, for every input x that requires grad,

    analytic   backward(u) -> ∂(u·y)/∂x
    numerical  (u·fn(x + eps e_k) - u·fn(x - eps e_k)) / (2 eps)   for every element k

plus a few random directions v (∂(u·y)/∂x · v against a central difference
along v).  A random u matters: checking sum(fn(x)) (u = 1) cannot see, for
instance, a wrong batch-norm dx -- Σ of a normalised output does not depend on
x at all, so a gradient that is wrong by any constant shift would pass.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """Raised by gradcheck with a message that says which input and where."""


def _as_tuple(outputs):
    if isinstance(outputs, Tensor):
        return (outputs,)
    outputs = tuple(outputs)
    if not all(isinstance(o, Tensor) for o in outputs):
        raise TypeError("gradcheck: fn must return a Tensor or a sequence of Tensors")
    return outputs


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, *, seed=0, n_directions=3,
              max_elements=None, raise_exception=True):
    """Check fn's backward against central differences; True on success.

    inputs: a Tensor or a sequence of Tensors; those with requires_grad=True are
    checked and must be float64.  max_elements: check at most this many
    (randomly chosen) elements per input, all by default.
    """
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

    failures = []
    for i in checked:
        message = _check_input(i, inputs[i], analytic[i], objective, eps, atol, rtol,
                               rng, n_directions, max_elements)
        if message:
            failures.append(message)
    if failures:
        if raise_exception:
            raise GradcheckError("gradcheck failed\n" + "\n".join(failures))
        return False
    return True


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
    bad = err > atol + rtol * np.abs(numeric)
    if bad.any():
        worst = int(np.argmax(np.where(bad, err, -1)))
        where = tuple(int(v) for v in np.unravel_index(picks[worst], x.shape))
        return (f"  {described}: {int(bad.sum())} of {len(picks)} elements differ beyond "
                f"atol={atol:g} + rtol={rtol:g}*|numerical|; worst at index {where}: "
                f"numerical {numeric[worst]:.8g}, analytic {chosen[worst]:.8g} "
                f"(abs err {err[worst]:.3g})")

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
        if abs(num - an) > atol * np.sqrt(x.size) + rtol * abs(num):
            return (f"  {described}: directional derivative along random direction {d} "
                    f"differs: numerical {num:.8g}, analytic {an:.8g}")
    return ""
