"""Protocol buffers text format (Triton's config.pbtxt) from nested dicts: a dict is a message,
a list a repeated field, an :class:`Enum` an enum value (unquoted)."""

from __future__ import annotations


class Enum(str):
    """An enum value, written as its bare name (TYPE_FP32, KIND_GPU)."""


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(text: str) -> str:
    """A string literal; non-ASCII characters stay as they are (the file is UTF-8)."""
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def scalar(value: object) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    raise TypeError(f"no text format for {type(value).__name__} {value!r}")


def to_text(message: dict, indent: int = 0) -> str:
    """The message's fields, one per line (repeated scalars as ``[a, b]``)."""
    pad = "  " * indent
    lines = []
    for name, value in message.items():
        if isinstance(value, dict):
            lines.append(_message(pad, name, value, indent))
        elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
            lines.extend(_message(pad, name, item, indent) for item in value)
        elif isinstance(value, list):
            lines.append(f"{pad}{name}: [{', '.join(map(scalar, value))}]")
        else:
            lines.append(f"{pad}{name}: {scalar(value)}")
    return "".join(line + "\n" for line in lines)


def _message(pad: str, name: str, value: dict, indent: int) -> str:
    if not value:
        return f"{pad}{name} {{ }}"
    return f"{pad}{name} {{\n{to_text(value, indent + 1)}{pad}}}"
