"""SGD with momentum, weight decay and Nesterov, with PyTorch's update rule:

    g = grad + weight_decay * p
    b = g (first step)  or  momentum * b + (1 - dampening) * g
    g = g + momentum * b  (nesterov)  or  b
    p = p - lr * g
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import no_grad


class Optimizer:
    """Parameter groups (dicts with 'params' and hyper-parameters) and per-parameter state."""

    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        for group in groups:
            group = {**defaults, **group, "params": list(group["params"])}
            for p in group["params"]:
                if not p.requires_grad:
                    raise ValueError(f"{type(self).__name__}: a parameter of shape {p.shape} "
                                     f"does not require grad")
            self.param_groups.append(group)
        self.state = {}             # id(param) -> dict of arrays

    def zero_grad(self, set_to_none=True):
        """Forget the gradients (set_to_none=False: zero them in place, so that the next
        backward accumulates into the same buffers -- what a captured CUDA graph needs)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad.data.fill(0)

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self):
        """Hyper-parameters per group and per-parameter state as NumPy arrays (by position)."""
        params = self._params()
        return {
            "groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups],
            "state": {i: {k: backend.to_numpy(v).copy() for k, v in self.state[id(p)].items()}
                      for i, p in enumerate(params) if id(p) in self.state},
        }

    def load_state_dict(self, state):
        if len(state["groups"]) != len(self.param_groups):
            raise ValueError(f"load_state_dict: {len(state['groups'])} parameter groups saved, "
                             f"{len(self.param_groups)} in this optimizer")
        params = self._params()
        for i, entry in state["state"].items():
            p = params[int(i)]
            for k, v in entry.items():
                if tuple(v.shape) != tuple(p.shape):
                    raise ValueError(f"load_state_dict: state {k!r} of parameter {i} has shape "
                                     f"{tuple(v.shape)}, the parameter {tuple(p.shape)}")
        for group, saved in zip(self.param_groups, state["groups"]):
            group.update(saved)
        # copies: stepping must not write into the caller's saved state
        self.state = {id(params[int(i)]): {k: backend.to_device(np.array(v, dtype=params[int(i)].dtype),
                                                                 params[int(i)].device)
                                           for k, v in entry.items()}
                      for i, entry in state["state"].items()}


class SGD(Optimizer):
    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, "
                             f"got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov, dampening=dampening))

    def step(self, lr=None):
        """One update of every parameter that has a gradient: one kernel call per group
        (on the GPU a single launch covers the group's parameters).

        lr: None (each group's ``lr``), or one rate per group -- on the GPU a float64
        device array of one element, which the kernel reads on the device (CUDA-graph
        mode: the replayed kernel must not carry the rate as an argument)."""
        if lr is not None and len(lr) != len(self.param_groups):
            raise ValueError(f"SGD.step: {len(lr)} learning rates for {len(self.param_groups)} "
                             f"parameter groups")
        with no_grad():
            for index, group in enumerate(self.param_groups):
                live = [p for p in group["params"] if p.grad is not None]
                if not live:
                    continue
                xp = backend.get_array_module(live[0].data)
                K = backend.kernels_for(xp)
                hyper = (group["lr"] if lr is None else lr[index], group["momentum"], group["weight_decay"],
                         group["dampening"], group["nesterov"])

                def update(params, first_step):
                    bufs = ([self.state[id(p)]["momentum_buffer"] for p in params]
                            if group["momentum"] else None)
                    K.sgd_step([p.data for p in params],
                               [backend.contiguous(xp, p.grad.data) for p in params],
                               bufs, *hyper, first_step=first_step)
                if not group["momentum"]:
                    update(live, False)
                    continue
                # PyTorch starts a momentum buffer at the parameter's first gradient
                fresh = [p for p in live if id(p) not in self.state]
                for p in fresh:
                    self.state[id(p)] = {"momentum_buffer": xp.empty_like(p.data)}
                seen = [p for p in live if p not in fresh]
                for params, first in ((seen, False), (fresh, True)):
                    if params:
                        update(params, first)
