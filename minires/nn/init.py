"""Weight initialisation (in place, from minires's seeded generator)."""
from __future__ import annotations

import math

from .. import random


def fans(t):
    """(fan_in, fan_out) of a weight: Linear (out, in), Conv (out, in/groups, kh, kw)."""
    if t.ndim < 2:
        raise ValueError(f"fans: need a weight of rank >= 2, got shape {tuple(t.shape)}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def gain(nonlinearity="relu"):
    return {"relu": math.sqrt(2.0), "linear": 1.0, "identity": 1.0}[nonlinearity]


def kaiming_normal_(t, mode="fan_in", nonlinearity="relu"):
    """N(0, std²) with std = gain/sqrt(fan): He et al. 2015 ("Delving deep into
    rectifiers"), the initialisation the ResNet paper uses."""
    fan_in, fan_out = fans(t)
    fan = {"fan_in": fan_in, "fan_out": fan_out}[mode]
    t.data[...] = random.normal(t.xp, t.shape, t.dtype, std=gain(nonlinearity) / math.sqrt(fan))
    return t


def kaiming_uniform_(t, mode="fan_in", nonlinearity="relu"):
    fan_in, fan_out = fans(t)
    bound = gain(nonlinearity) * math.sqrt(3.0 / {"fan_in": fan_in, "fan_out": fan_out}[mode])
    return uniform_(t, -bound, bound)


def normal_(t, mean=0.0, std=1.0):
    t.data[...] = mean + random.normal(t.xp, t.shape, t.dtype, std=std)
    return t


def uniform_(t, low=0.0, high=1.0):
    t.data[...] = random.uniform(t.xp, t.shape, t.dtype, low, high)
    return t


def constant_(t, value):
    t.data[...] = value
    return t


def zeros_(t):
    return constant_(t, 0)


def ones_(t):
    return constant_(t, 1)
