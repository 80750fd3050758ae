"""Residual stacks as forward Euler steps of an ODE (E 2017, "A Proposal on Machine
Learning via Dynamical Systems"): dz/dt = F(z), discretised on [0, T] in L steps,

    z_{l+1} = z_l + Δt · F_l(z_l),   Δt = T / L,

on vectors z of shape (N, dim).  ``tied=True`` uses one field F for every step, so
the same weights can be discretised again with more or fewer steps
(``discretised``) and the stack tends to the ODE's flow as L grows; ``tied=False``
gives each step its own F_l, a residual MLP whose branches are scaled by Δt.
"""
from __future__ import annotations

import math

from .. import nn
from ..nn import functional as F


class VectorField(nn.Module):
    """F(z) = W2 relu(W1 z + b1) + b2: (N, dim) -> (N, dim)."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, z):
        return self.fc2(F.relu(self.fc1(z)))


class EulerNet(nn.Module):
    """L forward-Euler steps of dz/dt = F(z) on [0, horizon], then an optional linear
    head: (N, dim) -> (N, dim), or (N, num_classes) with ``num_classes``."""

    def __init__(self, dim=2, hidden=16, blocks=8, horizon=1.0, tied=True, num_classes=None,
                 field=None):
        """field: an existing VectorField to integrate (shared, not copied; implies tied)."""
        super().__init__()
        for what, value in (("dim", dim), ("hidden", hidden), ("blocks", blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EulerNet: {what} must be an integer >= 1, got {value!r}")
        if isinstance(horizon, bool) or not isinstance(horizon, (int, float)) \
                or not math.isfinite(horizon) or horizon <= 0:
            raise ValueError(f"EulerNet: horizon T must be a finite number > 0, got {horizon!r}")
        if field is not None and not isinstance(field, VectorField):
            raise ValueError(f"EulerNet: field must be a VectorField, got {type(field).__name__}")
        tied = tied or field is not None
        self.dim, self.blocks, self.horizon, self.tied = dim, blocks, float(horizon), tied
        self.fields = nn.ModuleList([field] if field is not None else
                                    [VectorField(dim, hidden) for _ in range(1 if tied else blocks)])
        self.head = nn.Linear(dim, num_classes) if num_classes else None

    @property
    def dt(self):
        return self.horizon / self.blocks

    def field_at(self, step):
        return self.fields[0 if self.tied else step]

    def trajectory(self, z):
        """[z_0, z_1, ..., z_L]: the state after every step, each (N, dim)."""
        states = [z]
        for step in range(self.blocks):
            states.append(states[-1] + self.field_at(step)(states[-1]) * self.dt)
        return states

    def forward(self, z):
        z = self.trajectory(z)[-1]
        return z if self.head is None else self.head(z)

    def discretised(self, blocks, horizon=None):
        """The same field (shared parameters, not copies) integrated in ``blocks`` steps
        over ``horizon`` (default: this net's T); only a weight-tied net has one field to share."""
        if not self.tied:
            raise ValueError("EulerNet.discretised: this net has one field per step "
                             f"(tied=False, {self.blocks} steps); build it with tied=True to "
                             "change its number of steps")
        other = EulerNet(self.dim, self.fields[0].fc1.out_features, blocks,
                         self.horizon if horizon is None else horizon, field=self.fields[0])
        other.head = self.head
        other.train(self.training)
        return other

    def extra_repr(self):
        return f"blocks={self.blocks}, horizon={self.horizon:g}, dt={self.dt:g}, tied={self.tied}"
