"""Helpers shared by the tests (import with ``from helpers import ...``)."""
import numpy as np

import minires as mr
from minires import backend


def make(rng, *shape, device="cpu", requires_grad=True, dtype=np.float64, positive=False):
    """A random tensor (float64 by default: gradient checks)."""
    data = rng.standard_normal(shape)
    if positive:
        data = np.abs(data) + 0.5
    return mr.tensor(data.astype(dtype), requires_grad=requires_grad, device=device)


def assert_close(actual, expected, rtol, what=""):
    """max |a - e| <= rtol * max |e|  (relative to the reference's scale)."""
    a = backend.to_numpy(actual.data if isinstance(actual, mr.Tensor) else actual).astype(np.float64)
    e = backend.to_numpy(expected.data if isinstance(expected, mr.Tensor) else expected).astype(np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    scale = max(np.abs(e).max(initial=0.0), 1e-30)
    err = np.abs(a - e).max(initial=0.0)
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} > {rtol:g} * {scale:.3g}"
