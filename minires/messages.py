"""Error messages that name their parameters late: the library says root=, the CLI --data-dir.

    raise DatasetNotFoundError(Message("nothing in {path}; pass its folder as {root}", path=p))
    str(e)                               # 'nothing in /x; pass its folder as root='
    reword(e, {"root": "--data-dir"})    # 'nothing in /x; pass its folder as --data-dir'

A template names words ({root}) and fields (path=...).  LIBRARY_WORDS are what
``str`` uses; a front end passes its own spelling of any of them to ``reword``.
Field values are inserted as they are, never read as templates, so a path with
braces in it is safe; a word may itself use fields ({missing}).
"""
from __future__ import annotations

# Every word a Message may use, as a Python caller of minires reads it.
LIBRARY_WORDS = {
    "root": "root=",                                           # the folder a dataset is read from
    "or_download": ", or pass download=True to fetch it",      # how to have it downloaded
    "model_arg": "get_model: ",                                # who was given a model name
    "family_fix": ": pass {missing}=... as a keyword, or choose",
    "device_arg": "",                                          # who was given a device name
    "devices": "'cpu' or 'cuda' (also 'cuda:0', alias 'gpu')",
}


class _KeepUnknown(dict):
    def __missing__(self, key):     # a word's {field} that this message does not have
        return "{" + key + "}"


class Message:
    """A template plus fields; ``str()`` renders it in LIBRARY_WORDS."""

    def __init__(self, template: str, **fields):
        self.template, self.fields = template, fields

    def render(self, words=None) -> str:
        fields = {k: v.render(words) if isinstance(v, Message) else v for k, v in self.fields.items()}
        chosen = {**LIBRARY_WORDS, **(words or {})}
        chosen = {k: w.format_map(_KeepUnknown(fields)) for k, w in chosen.items()}
        return self.template.format_map({**chosen, **fields})

    __str__ = render

    def __repr__(self):
        return f"Message({self.render()!r})"


def reword(error: BaseException, words) -> str:
    """The error's message in a front end's words; a plain message comes back as it is."""
    message = error.args[0] if len(error.args) == 1 else None
    return message.render(words) if isinstance(message, Message) else str(error)
