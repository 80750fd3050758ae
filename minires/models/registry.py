"""Model names -> constructors, and the config each model records so a checkpoint can rebuild it.

Every public constructor is wrapped by ``register``: it lands in the table that
``get_model``/``available`` read, and the model it returns carries

    model.config == {"name": "resnet20", "kwargs": {"num_classes": 100}}

(the arguments the caller gave, defaults left out, ``pretrained`` too), so
``from_config(model.config)`` builds the same architecture again.
"""
from __future__ import annotations

import difflib
import functools
import inspect

from ..messages import Message
from .spec import parse_spec

_REGISTRY = {}
_NEEDS = {}   # name -> the arguments its constructor cannot do without (resnet_cifar: depth)


def register(name=None):
    """Decorator: list the constructor under ``name`` (default: its function name)."""
    def decorate(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"register: a model named {key!r} is already registered")
        signature = inspect.signature(fn)
        _NEEDS[key] = [p.name for p in signature.parameters.values() if p.default is p.empty
                       and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

        @functools.wraps(fn)
        def build(*args, **kwargs):
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{key}{signature}: {e}") from None
            model = fn(*args, **kwargs)
            given = {}
            for param, value in bound.arguments.items():   # flatten **kw into plain kwargs
                kind = signature.parameters[param].kind
                given.update(value if kind is inspect.Parameter.VAR_KEYWORD else {param: value})
            given.pop("pretrained", None)       # weights, not architecture: from_config builds it untrained
            # set last: a constructor that calls another registered one is named by the outer
            model.config = {"name": key, "kwargs": given}
            return model
        _REGISTRY[key] = build
        return build
    return decorate


def available(ready_made=False):
    """The names ``get_model`` accepts, in registration order; ``ready_made=True``
    leaves out the families that need arguments (resnet_cifar needs a depth)."""
    return [name for name in _REGISTRY if not (ready_made and _NEEDS[name])]


def check_name(spec, *given):
    """Refuse a model name ``get_model`` would refuse (a run checks its --model before it reads
    any data); ``given`` names keyword arguments the caller will add.  Builds nothing unless
    the name carries arguments ("resnet56:shortcut=B"), which only the constructor can judge."""
    name, spec_kwargs = _resolve(spec, {k: None for k in given})
    if spec_kwargs:      # arguments in the string: only the constructor knows them all (rare, cheap)
        get_model(spec)


def _resolve(spec, kwargs):
    """(registered name, the arguments the string carries), or the one-line ValueError."""
    name, spec_kwargs = parse_spec(spec)
    twice = sorted(set(spec_kwargs) & set(kwargs))
    if twice:
        raise ValueError(Message("{model_arg}{spec!r} and the keyword arguments both give {twice}",
                                 spec=spec, twice=", ".join(twice)))
    ready = ", ".join(available(ready_made=True))
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ValueError(Message("{model_arg}unknown model {name!r}{hint}; available: {ready}",
                                 name=name, hint=hint, ready=ready))
    missing = [arg for arg in _NEEDS[name] if arg not in {**spec_kwargs, **kwargs}]
    if missing:
        raise ValueError(Message("{model_arg}{name!r} is a family of models that needs {missing}"
                                 "{family_fix} a ready-made one: {ready}",
                                 name=name, missing=", ".join(missing), ready=ready))
    return name, spec_kwargs


def get_model(name, **kwargs):
    """Build the model registered as ``name`` (e.g. 'resnet20', 'plain56',
    'preact_resnet110', 'resnet50'), passing ``kwargs`` to its constructor.
    ``name`` may carry arguments too, "resnet56:shortcut=B" (see spec.py)."""
    spec = name
    name, spec_kwargs = _resolve(spec, kwargs)
    kwargs = {**spec_kwargs, **kwargs}
    if not spec_kwargs:
        return _REGISTRY[name](**kwargs)
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:            # a misspelt key in the string: the string's fault
        raise ValueError(Message("{model_arg}{spec!r}: {error}", spec=spec, error=e)) from None


def from_config(config):
    """Rebuild an architecture from a recorded ``model.config`` (weights not included)."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"from_config: expected {{'name': ..., 'kwargs': {{...}}}}, got {config!r}")
    return get_model(config["name"], **dict(config.get("kwargs") or {}))
