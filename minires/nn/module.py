"""Module: parameters, buffers and submodules, registered by attribute assignment.

Names follow PyTorch (``layer1.0.conv1.weight``), in construction order, so
state dicts line up with PyTorch reference implementations key for key.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import autograd, backend
from ..autograd import HookHandle
from ..tensor import Tensor
from .parameter import Parameter


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_forward_hooks", [])

    # ------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 f"assigning attributes (assigning {name!r})")
        params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, Parameter):
            buffers.pop(name, None)
            modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in buffers:              # reassigning a buffer keeps it a buffer
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"buffer {name!r} must be a Tensor, got {type(value).__name__}")
            buffers[name] = value
        else:
            params.pop(name, None)
            modules.pop(name, None)
        object.__setattr__(self, name, value)

    def register_buffer(self, name, tensor):
        """State that is saved and moved with the module but not trained (running stats)."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor, got {type(tensor).__name__}")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers[name] = tensor
        object.__setattr__(self, name, tensor)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter")
        setattr(self, name, param)
        if param is None:
            self._parameters[name] = None

    def add_module(self, name, module):
        setattr(self, name, module)

    # ------------------------------------------------------------ traversal
    def named_modules(self, prefix="", remove_duplicate=True):
        """(name, module) for self and every submodule, depth first (iterative).

        A module reachable under several names is listed once, unless
        remove_duplicate=False (state dicts list it under every name, like PyTorch)."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if remove_duplicate and id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{k}" if name else k, m)
                        for k, m in module._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return ((k, m) for k, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def _named_members(self, registry):
        seen = set()
        for prefix, module in self.named_modules():
            for k, t in getattr(module, registry).items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{prefix}.{k}" if prefix else k), t

    def named_parameters(self):
        return self._named_members("_parameters")

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        return self._named_members("_buffers")

    def buffers(self):
        return (b for _, b in self.named_buffers())

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------ modes, grads
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def apply(self, fn):
        for m in self.modules():
            fn(m)
        return self

    # ------------------------------------------------------------ device, dtype
    def to(self, device=None, dtype=None):
        """Move (in place) every parameter and buffer to ``device`` and/or cast
        the floating ones to ``dtype``.  Gradients are dropped if the move happens."""
        for t in list(self.parameters()) + list(self.buffers()):
            data = t.data
            if device is not None:
                data = backend.to_device(data, device)
            if dtype is not None and data.dtype.kind == "f":
                data = data.astype(dtype)
            if data is not t.data:
                t.data = data
                t.grad = None
        return self

    def double(self):
        return self.to(dtype=np.float64)

    def float(self):
        return self.to(dtype=np.float32)

    @property
    def device(self):
        for t in self.parameters():
            return t.device
        return backend.CPU

    # ------------------------------------------------------------ state
    def state_dict(self):
        """name -> NumPy array (a copy), parameters then buffers, module by module."""
        state = OrderedDict()
        for prefix, module in self.named_modules(remove_duplicate=False):
            for registry in (module._parameters, module._buffers):
                for k, t in registry.items():
                    if t is not None:
                        state[f"{prefix}.{k}" if prefix else k] = backend.to_numpy(t.data).copy()
        return state

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the existing parameters and buffers (keeping their device and dtype).

        Returns (missing_keys, unexpected_keys); with strict=True any of either,
        or any shape mismatch, raises and nothing is changed.
        """
        targets = OrderedDict()
        for prefix, module in self.named_modules(remove_duplicate=False):
            for registry in (module._parameters, module._buffers):
                for k, t in registry.items():
                    if t is not None:
                        targets[f"{prefix}.{k}" if prefix else k] = t
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        problems = []
        if strict and (missing or unexpected):
            problems.append(f"missing keys {missing}, unexpected keys {unexpected}")
        arrays = {}
        for k, t in targets.items():
            if k not in state:
                continue
            value = state[k]
            value = value.data if isinstance(value, Tensor) else value
            value = backend.to_numpy(value)
            if tuple(value.shape) != tuple(t.shape):
                problems.append(f"{k}: shape {tuple(value.shape)} in the state dict, "
                                f"{tuple(t.shape)} in the model")
            arrays[k] = value
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for k, value in arrays.items():
            t = targets[k]
            t.data[...] = backend.to_device(np.asarray(value, dtype=t.dtype), t.device)
        return missing, unexpected

    # ------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        if self._forward_hooks and autograd.capturing is not None:
            autograd.refuse_hooks_in_capture(f"a forward hook on {type(self).__name__}")
        for hook in self._forward_hooks:
            replaced = hook(self, args, out)
            if replaced is not None:
                out = replaced
        return out

    def register_forward_hook(self, fn):
        """Call ``fn(module, inputs, output)`` after every forward (summary, demos);
        a non-None return value replaces the output.  Returns a handle with remove()."""
        self._forward_hooks.append(fn)
        return HookHandle(self._forward_hooks, fn)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        children = list(self.named_children())
        if not children:
            return lines[0] + ")"
        for k, m in children:
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({k}): {body}")
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order; indexable (model[0]) and iterable."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for k, m in modules[0].items():
                self.add_module(k, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        if isinstance(i, slice):                # keep the names, like PyTorch
            return Sequential(OrderedDict(list(self._modules.items())[i]))
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
