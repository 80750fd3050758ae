"""log_softmax and the fused, numerically stable cross-entropy."""
from __future__ import annotations

from ..tensor import Tensor
from ._util import check_rank, check_tensor, shape_str


def _log_softmax(xp, z, axis):
    shifted = z - z.max(axis=axis, keepdims=True)      # exp never overflows
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    out = _log_softmax(x.xp, x.data, axis)

    def backward(g):
        return (g - x.xp.exp(out) * g.sum(axis=axis, keepdims=True),)
    return Tensor.from_op(out, (x,), backward, "log_softmax")


def cross_entropy(logits, target, reduction="mean"):
    """-log softmax(logits)[target]; logits (N, C), target (N,) class indices.

    Fused: the gradient is (softmax - onehot(target)) / N, computed once.
    """
    op = "cross_entropy"
    check_tensor(op, "input", logits)
    check_rank(op, "input", logits, 2, "(N, C)")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    xp = logits.xp
    t = target.data if isinstance(target, Tensor) else xp.asarray(target)
    n, c = logits.shape
    if t.shape != (n,):
        raise ValueError(f"{op}: target shape {shape_str(t.shape)} does not match input "
                         f"{shape_str(logits.shape)}; expected ({n},) class indices")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {t.dtype}")
    if xp.__name__ == "numpy" and n and (t.min() < 0 or t.max() >= c):
        # (On the GPU this check would cost a device sync every step; there the
        # kernel marks out-of-range targets with a NaN loss instead.)
        raise ValueError(f"{op}: target values must be in [0, {c}), got min {t.min()} max {t.max()}")
    rows = xp.arange(n)
    logp = _log_softmax(xp, logits.data, 1)
    losses = -logp[rows, t]
    if reduction == "mean":
        out, scale = losses.mean(), 1.0 / max(n, 1)
    elif reduction == "sum":
        out, scale = losses.sum(), 1.0
    else:
        out, scale = losses, None

    def backward(g):
        grad = xp.exp(logp)
        grad[rows, t] -= 1
        grad *= (g * scale) if scale is not None else g[:, None]
        return (grad,)
    return Tensor.from_op(out, (logits,), backward, "cross_entropy")
