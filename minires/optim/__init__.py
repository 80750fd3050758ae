"""Optimisers and learning-rate schedules."""
from . import lr_scheduler
from .lr_scheduler import CosineAnnealingLR, LinearWarmup, LRScheduler, MultiStepLR
from .sgd import SGD, Optimizer

__all__ = ["SGD", "Optimizer", "LRScheduler", "MultiStepLR", "CosineAnnealingLR",
           "LinearWarmup", "lr_scheduler"]
