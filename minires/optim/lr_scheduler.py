"""Learning-rate schedules, each a pure function of the step count.

``step()`` advances the count and writes the new rate into the optimizer, so
saving the count is enough to resume a schedule exactly.  Count in iterations
(the paper: ÷10 at 32k and 48k) or in epochs -- whatever you call step() on.
"""
from __future__ import annotations

import bisect
import math


class LRScheduler:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def factor(self, step):
        """The multiplier of the base rate at ``step``."""
        raise NotImplementedError

    def get_lr(self):
        return [base * self.factor(self.last_step) for base in self.base_lrs]

    def _apply(self):
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr

    def step(self):
        self.last_step += 1
        self._apply()

    def state_dict(self):
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state):
        self.last_step = int(state["last_step"])
        self.base_lrs = list(state["base_lrs"])
        self._apply()


class MultiStepLR(LRScheduler):
    """lr = base · gamma^(number of milestones passed) -- He et al.'s CIFAR schedule."""

    def __init__(self, optimizer, milestones, gamma=0.1):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer)

    def factor(self, step):
        return self.gamma ** bisect.bisect_right(self.milestones, step)


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from base to eta_min over T_max steps, then eta_min."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def get_lr(self):
        t = min(self.last_step, self.T_max) / self.T_max
        return [self.eta_min + (base - self.eta_min) * 0.5 * (1 + math.cos(math.pi * t))
                for base in self.base_lrs]


class LinearWarmup(LRScheduler):
    """Ramp linearly from start_factor·lr to the wrapped schedule over ``warmup_steps``.

    He et al. warm ResNet-110 up at lr 0.01 before going to 0.1; this is the
    smooth form of that.  After warm-up the inner schedule rules, counted from step 0.
    """

    def __init__(self, scheduler, warmup_steps, start_factor=0.1):
        if warmup_steps < 0 or not 0 < start_factor <= 1:
            raise ValueError("LinearWarmup: warmup_steps >= 0 and 0 < start_factor <= 1 required")
        self.inner, self.warmup_steps, self.start_factor = scheduler, warmup_steps, start_factor
        super().__init__(scheduler.optimizer)
        self.base_lrs = scheduler.base_lrs
        self._apply()

    def get_lr(self):
        self.inner.last_step = self.last_step
        lrs = self.inner.get_lr()
        if self.last_step >= self.warmup_steps:
            return lrs
        f = self.start_factor + (1 - self.start_factor) * self.last_step / self.warmup_steps
        return [lr * f for lr in lrs]
