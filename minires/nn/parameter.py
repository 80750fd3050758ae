"""Parameter: a leaf tensor that a Module registers and an optimizer updates."""
from ..tensor import Tensor


class Parameter(Tensor):
    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter(" + super().__repr__() + ")"
