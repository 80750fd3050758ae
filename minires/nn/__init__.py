"""Neural-network building blocks: Module, Parameter, layers, init, functional."""
from . import functional, init
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout,
                     Flatten, Identity, Linear, MaxPool2d, ReLU)
from .module import Module, ModuleList, Sequential
from .parameter import Parameter

__all__ = ["Module", "ModuleList", "Sequential", "Parameter", "Conv2d", "BatchNorm1d",
           "BatchNorm2d", "Linear", "ReLU", "Identity", "Flatten", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "Dropout", "functional", "init"]
