"""Cross-entropy, forward and backward, row by row (the GPU module has it as one kernel).

Out-of-range targets give a NaN loss here as on the GPU; the cross_entropy op
raises a clear error for them first on the CPU, where the check costs nothing.
"""
import numpy as np


def cross_entropy_forward(logits, target):
    """logits (N, C), target (N,) -> losses (N,) = -log softmax(logits)[target], lse (N,)."""
    n, c = logits.shape
    shifted_max = logits.max(axis=1)
    lse = shifted_max + np.log(np.exp(logits - shifted_max[:, None]).sum(axis=1))
    valid = (target >= 0) & (target < c)
    picked = logits[np.arange(n), np.where(valid, target, 0)]
    losses = np.where(valid, lse - picked, np.nan).astype(logits.dtype)
    return losses, lse.astype(logits.dtype)


def cross_entropy_backward(logits, target, lse, g, scale=1.0):
    """(softmax(logits) - onehot(target)) * g * scale; g: one element or (N,)."""
    n, c = logits.shape
    grad = np.exp(logits - lse[:, None])
    valid = (target >= 0) & (target < c)
    rows = np.arange(n)[valid]
    grad[rows, target[valid]] -= 1
    grad[~valid] = np.nan
    g = np.asarray(g, dtype=logits.dtype)
    grad *= (g.reshape(-1, 1) if g.size == n and g.size != 1 else g.reshape(())) * logits.dtype.type(scale)
    return grad
