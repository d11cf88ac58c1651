"""A small schema-less reader of protobuf text format (pipeline.config, label maps): no TFOD
install needed to convert."""

from __future__ import annotations

import re
from typing import Any

TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<sym>[{}\[\]:,;<>])"""
    r"""|(?P<word>[^\s{}\[\]:,;<>"'#]+)"""
)


class ConfigError(ValueError):
    """A pipeline.config that cannot be read or is not supported."""


class Message(dict):
    """A text-format message: field name -> list of values (messages or scalars)."""

    def get1(self, path: str, default: Any = None) -> Any:
        """The first value at a dotted path (`ssd.image_resizer.fixed_shape_resizer.height`)."""
        node: Any = self
        for key in path.split("."):
            if not isinstance(node, Message) or key not in node:
                return default
            node = node[key][0]
        return node

    def all(self, key: str) -> list:
        return list(self.get(key, []))


def parse_text_proto(text: str, source: str = "<text>") -> Message:
    """Parses protobuf text format without a schema (scalars stay strings, bools, or numbers)."""
    parser = _Parser(_tokens(text), source)
    try:
        return parser.parse_message(None)
    except IndexError as exc:
        raise parser.fail("unexpected end of file") from exc


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) of each string, symbol or word; spaces and comments left out."""
    tokens = []
    for match in TOKEN.finditer(text):
        if match.lastgroup:
            tokens.append((match.lastgroup, match.group(match.lastgroup)))
    return tokens


def _scalar(kind: str, value: str) -> Any:
    """A scalar token's value: a string unquoted, a bool, an int, a float, or an enum name."""
    if kind == "str":
        return bytes(value[1:-1], "utf-8").decode("unicode_escape")
    if value in ("true", "True"):
        return True
    if value in ("false", "False"):
        return False
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value.rstrip("fF")) if value[-1:] in "fF" and value[:-1] else float(value)
    except ValueError:
        return value  # an enum name


class _Parser:
    """A recursive-descent parser over the tokens; ``position`` is the next token's index
    (an IndexError past the end means the text ended too early)."""

    def __init__(self, tokens: list[tuple[str, str]], source: str) -> None:
        self.tokens, self.source = tokens, source
        self.position = 0

    def fail(self, reason: str) -> ConfigError:
        return ConfigError(f"{self.source}: cannot parse the pipeline config: {reason}")

    def parse_message(self, closing: str | None) -> Message:
        """The fields up to ``closing`` (``}`` or ``>``; None: the end of the text)."""
        tokens = self.tokens
        message = Message()
        while self.position < len(tokens):
            kind, value = tokens[self.position]
            if kind == "sym" and value == closing:
                self.position += 1
                return message
            if kind == "sym" and value in ",;":
                self.position += 1
                continue
            name = self._field_name(kind, value)
            kind, value = tokens[self.position]
            values = message.setdefault(name, [])
            if kind == "sym" and value in "{<":
                self.position += 1
                values.append(self.parse_message("}" if value == "{" else ">"))
            elif kind == "sym" and value == "[":
                self.position += 1
                self._parse_list(values)
            else:
                values.append(_scalar(kind, value))
                self.position += 1
        if closing is not None:
            raise self.fail(f"missing '{closing}'")
        return message

    def _field_name(self, kind: str, value: str) -> str:
        """The field name at the current token, moved past it and its optional ``:``."""
        if kind != "word":
            raise self.fail(f"expected a field name, found '{value}'")
        name = value
        self.position += 1
        if self.position < len(self.tokens) and self.tokens[self.position] == ("sym", ":"):
            self.position += 1
        if self.position >= len(self.tokens):
            raise self.fail(f"field '{name}' has no value")
        return name

    def _parse_list(self, values: list) -> None:
        """A list's scalars, after its ``[``, appended to ``values``; moves past its ``]``."""
        tokens = self.tokens
        while tokens[self.position] != ("sym", "]"):
            kind, value = tokens[self.position]
            if kind == "sym" and value == ",":
                self.position += 1
                continue
            values.append(_scalar(kind, value))
            self.position += 1
        self.position += 1
