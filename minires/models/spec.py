"""A model and its arguments in one string, "resnet56:shortcut=B,variant=full_preact".

TrainConfig.model (and so ``minires train --model`` and a run's config.json) is one
string; this spelling lets it name any architecture a constructor builds, such as
option C shortcuts or a He 2016 unit variant, without a registered name for each:

    parse_spec("resnet56:shortcut=C")   -> ("resnet56", {"shortcut": "C"})
    parse_spec("plain20")               -> ("plain20", {})

A value is read as a whole number, true/false, none, or else kept as text.
"""
from __future__ import annotations

from ..messages import Message


def _value(text):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return int(text)
    except ValueError:
        return text


def parse_spec(spec):
    """(name, keyword arguments) of ``"NAME[:KEY=VALUE,...]"``; a plain name gives {}."""
    if not isinstance(spec, str) or ":" not in spec:
        return spec, {}
    name, _, arguments = spec.partition(":")
    kwargs = {}
    for item in arguments.split(","):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key.isidentifier() or not value:
            raise ValueError(Message("{model_arg}{spec!r}: after the ':' come KEY=VALUE pairs "
                                     "separated by commas (e.g. resnet56:shortcut=B), got {item!r}",
                                     spec=spec, item=item))
        if key in kwargs:
            raise ValueError(Message("{model_arg}{spec!r} gives {key} twice", spec=spec, key=key))
        kwargs[key] = _value(value)
    return name.strip(), kwargs
