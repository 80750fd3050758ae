"""minires's random numbers: one seeded generator per array module.

Parameter initialisation, ``randn`` and dropout draw from here, so
``manual_seed(s)`` makes a run repeatable.  Training code that must resume
exactly derives a fresh generator from (seed, epoch) with ``derived``.
"""
from __future__ import annotations

import numpy as np

from . import backend

_DEFAULT_SEED = 0
_generators = {}


def manual_seed(seed: int):
    """Reseed the CPU generator (and the GPU one, when CuPy is in use)."""
    global _DEFAULT_SEED
    _DEFAULT_SEED = int(seed)
    _generators.clear()


def generator(xp):
    """The shared generator for ``xp`` (created lazily from the current seed)."""
    key = xp.__name__
    if key not in _generators:
        _generators[key] = derived(xp, _DEFAULT_SEED)
    return _generators[key]


def derived(xp, *keys):
    """A new generator fully determined by the integer ``keys`` (e.g. seed, epoch)."""
    seed = np.random.SeedSequence([int(k) for k in keys])
    if xp is np:
        return np.random.Generator(np.random.PCG64(seed))
    return backend.cupy_module().random.default_rng(int(seed.generate_state(1)[0]))


def normal(xp, shape, dtype, std=1.0, rng=None):
    rng = rng or generator(xp)
    return (rng.standard_normal(shape, dtype=np.float64) * std).astype(dtype)


def uniform(xp, shape, dtype, low=0.0, high=1.0, rng=None):
    rng = rng or generator(xp)
    return (low + (high - low) * rng.random(shape, dtype=np.float64)).astype(dtype)
