"""``Tensor``: an n-d array (NumPy or CuPy) plus what autograd needs.

A tensor made by the user is a *leaf*; a tensor made by an op remembers its
inputs (``_parents``), the op's name (``_op``) and the op's ``_backward``
closure.  The methods here are thin: the math of every op, forward and
backward side by side, lives in ``minires/ops/``.
"""
from __future__ import annotations

import numpy as np

from . import autograd, backend
from .autograd import HookHandle, is_grad_enabled, run_backward

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)

DEFAULT_DTYPE = float32


class Tensor:
    __slots__ = ("data", "requires_grad", "grad", "name",
                 "_parents", "_backward", "_op", "_hooks", "__weakref__")

    def __init__(self, data, requires_grad=False, name=None):
        if isinstance(data, Tensor):
            data = data.data
        if not (isinstance(data, np.ndarray) or backend.is_cupy_array(data)):
            data = np.asarray(data)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {data.dtype}")
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.name = name
        self._parents = ()
        self._backward = None
        self._op = "leaf"
        self._hooks = []

    @classmethod
    def from_op(cls, data, parents, backward, op):
        """The output of an op: records the graph when some input needs a gradient."""
        out = cls(data)
        if is_grad_enabled() and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = tuple(parents)
            out._backward = backward
            out._op = op
            if autograd.tracer is not None:     # minires.trace() is recording
                autograd.tracer.forward(out)
        return out

    # ------------------------------------------------------------ properties
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def xp(self):
        return backend.get_array_module(self.data)

    @property
    def is_leaf(self):
        return self._backward is None

    @property
    def T(self):
        return self.transpose()

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        extra = ""
        if self._op != "leaf":
            extra = f", op={self._op}"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        if self.device != backend.CPU:
            extra += f", device={self.device}"
        body = np.array2string(backend.to_numpy(self.data), precision=4,
                               separator=", ", threshold=20, edgeitems=2)
        return f"tensor({body}, dtype={self.dtype}{extra})"

    # ------------------------------------------------------------ autograd
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) · grad into every leaf's ``.grad``.

        ``grad`` defaults to 1 for a one-element tensor (a loss); any other
        tensor needs an explicit upstream gradient of its own shape.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad and has no graph "
                "(were its inputs created with requires_grad=True, outside no_grad()?)")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward: grad can be omitted only for a one-element output "
                    f"(a loss); this tensor has shape {self.shape}, pass grad= of that shape")
            g = self.xp.ones_like(self.data)
        else:
            g = grad.data if isinstance(grad, Tensor) else self.xp.asarray(grad)
            if g.shape != self.shape:
                raise ValueError(
                    f"backward: grad has shape {g.shape}, expected the output's shape {self.shape}")
            if backend.device_of(g) != self.device:
                raise RuntimeError(
                    f"backward: grad is on {backend.device_of(g)} but the output is on {self.device}")
            g = g.astype(self.dtype, copy=False)
        run_backward(self, g, retain_graph=retain_graph)

    def register_hook(self, fn):
        """Call ``fn(grad)`` with the gradient flowing into this tensor.

        If fn returns a tensor, that replaces the gradient passed on.  Returns a
        handle whose ``remove()`` unregisters the hook.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook: the tensor does not require grad")
        self._hooks.append(fn)
        return HookHandle(self._hooks, fn)

    def retain_grad(self):
        """Keep this (non-leaf) tensor's gradient in ``.grad`` after backward."""
        if self.is_leaf:
            return

        def keep(g):
            self.grad = Tensor(g.data.copy()) if self.grad is None else Tensor(self.grad.data + g.data)
        self.register_hook(keep)

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, mode=True):
        if mode and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        self.requires_grad = bool(mode)
        return self

    # ------------------------------------------------------------ conversion
    def numpy(self):
        """A NumPy array of the data (shares memory with a CPU tensor)."""
        return backend.to_numpy(self.data)

    def item(self):
        if self.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a Python number, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device):
        """This tensor on ``device`` ('cpu' or 'cuda'); differentiable."""
        return ops.to_device(self, device)

    def cpu(self):
        return self.to(backend.CPU)

    def cuda(self):
        return self.to(backend.CUDA)

    def astype(self, dtype):
        return ops.astype(self, dtype)

    def float(self):
        return self.astype(float32)

    def double(self):
        return self.astype(float64)

    # ------------------------------------------------------------ arithmetic
    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.sub(self, other)
    def __rsub__(self, other): return ops.sub(other, self)
    def __mul__(self, other): return ops.mul(self, other)
    def __rmul__(self, other): return ops.mul(other, self)
    def __truediv__(self, other): return ops.div(self, other)
    def __rtruediv__(self, other): return ops.div(other, self)
    def __pow__(self, exponent): return ops.pow(self, exponent)
    def __rpow__(self, base): return ops.pow(base, self)
    def __neg__(self): return ops.neg(self)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __getitem__(self, index): return ops.getitem(self, index)

    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def sqrt(self): return ops.sqrt(self)
    def relu(self): return ops.relu(self)
    def matmul(self, other): return ops.matmul(self, other)

    # ------------------------------------------------------------ reductions
    def sum(self, axis=None, keepdims=False): return ops.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return ops.max(self, axis, keepdims)

    def argmax(self, axis=None):
        """Indices of the maxima (not differentiable)."""
        return Tensor(self.xp.argmax(self.data, axis=axis))

    # ------------------------------------------------------------ shape
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return ops.flatten(self, start_dim, end_dim)

    def transpose(self, dim0=None, dim1=None):
        """Swap two dims; with no arguments, reverse all dims (like NumPy's .T)."""
        if dim0 is None and dim1 is None:
            return ops.permute(self, tuple(reversed(range(self.ndim))))
        return ops.transpose(self, dim0, dim1)

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return ops.permute(self, dims)


# ---------------------------------------------------------------- factories
def _resolve_dtype(dtype):
    return None if dtype is None else np.dtype(dtype)


def tensor(data, requires_grad=False, dtype=None, device=None):
    """A new leaf tensor (the data is copied).

    Python numbers and lists become float32 (int64 for integers); arrays keep
    their dtype, so a float64 NumPy array gives a float64 tensor -- the way to
    ask for double precision (gradient checks).  ``dtype=`` overrides both.
    """
    if isinstance(data, Tensor):
        data = data.data
    dtype = _resolve_dtype(dtype)
    if isinstance(data, (np.ndarray, np.generic)) or backend.is_cupy_array(data):
        xp = backend.get_array_module(data)
        array = xp.array(data, dtype=dtype, copy=True)
    else:
        array = np.array(data, dtype=dtype)
        if dtype is None and array.dtype == np.float64:
            array = array.astype(DEFAULT_DTYPE)
    if device is not None:
        array = backend.to_device(array, device)
    return Tensor(array, requires_grad=requires_grad)


def _factory(fill, shape, dtype, requires_grad, device):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    xp = backend.xp_for_device(device or backend.CPU)
    return Tensor(fill(xp, shape, _resolve_dtype(dtype) or DEFAULT_DTYPE), requires_grad=requires_grad)


def zeros(*shape, dtype=None, requires_grad=False, device=None):
    return _factory(lambda xp, s, d: xp.zeros(s, dtype=d), shape, dtype, requires_grad, device)


def ones(*shape, dtype=None, requires_grad=False, device=None):
    return _factory(lambda xp, s, d: xp.ones(s, dtype=d), shape, dtype, requires_grad, device)


def randn(*shape, dtype=None, requires_grad=False, device=None):
    """Standard-normal samples from minires's seeded generator (``manual_seed``)."""
    from .random import normal
    return _factory(lambda xp, s, d: normal(xp, s, d), shape, dtype, requires_grad, device)


def zeros_like(t, requires_grad=False):
    return Tensor(t.xp.zeros_like(t.data), requires_grad=requires_grad)


def ones_like(t, requires_grad=False):
    return Tensor(t.xp.ones_like(t.data), requires_grad=requires_grad)


from . import ops  # noqa: E402  (ops import Tensor; Tensor's methods call ops)
