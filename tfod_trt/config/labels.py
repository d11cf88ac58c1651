"""Class names for detections, from a TFOD label map (``.pbtxt``) or a plain text file.

Detections carry 0-based class indices; a label map's ``id`` is 1-based (0 is TFOD's
background), so index = id - 1. A text file names one class per line: line i is index i, and a
blank line leaves that index unnamed.
"""

from __future__ import annotations

import re
from pathlib import Path

from tfod_trt.config.text_proto import ConfigError, parse_text_proto

LABEL_MAP_SUFFIXES = (".pbtxt", ".pbtext")
# A label map, whatever its file name: comments, then `item {`.
LABEL_MAP_START = re.compile(r"\A\s*(?:#[^\n]*\n\s*)*item\s*\{")


class LabelError(ValueError):
    """A label file that is missing or cannot be used."""


def load_labels(path: str | Path) -> dict[int, str]:
    """0-based class index -> name, from a ``.pbtxt`` label map or a text file (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise LabelError(f"{path}: cannot read the label file ({err})") from err
    if path.suffix.lower() in LABEL_MAP_SUFFIXES or LABEL_MAP_START.match(text):
        labels = _parse_label_map(text, path)
    else:
        labels = {i: line.strip() for i, line in enumerate(text.splitlines()) if line.strip()}
    if not labels:
        raise LabelError(f"{path}: no class names in the label file")
    return labels


def label_for(labels: dict[int, str], index: int) -> str:
    """The name of class ``index``, or ``class {index}`` when it has none."""
    return labels.get(index) or f"class {index}"


def _parse_label_map(text: str, path: Path) -> dict[int, str]:
    try:
        items = parse_text_proto(text, str(path)).all("item")
    except ConfigError as err:  # the parser's messages speak of pipeline configs
        raise LabelError(str(err).replace("pipeline config", "label map")) from err
    if not items:
        raise LabelError(f"{path}: no 'item {{ id: ... display_name: ... }}' in the label map")
    labels: dict[int, str] = {}
    for number, item in enumerate(items, 1):
        where = f"{path}: item {number}"
        if not hasattr(item, "get1"):
            raise LabelError(f"{where} is not a message ('item {{ ... }}')")
        class_id = item.get1("id")
        if isinstance(class_id, bool) or not isinstance(class_id, int) or class_id < 1:
            raise LabelError(f"{where}: id must be an integer >= 1, got {class_id!r}")
        name = item.get1("display_name") or item.get1("name")
        if not isinstance(name, str) or not name:
            raise LabelError(f"{where} (id {class_id}) has no display_name or name")
        if class_id - 1 in labels:
            raise LabelError(f"{where}: duplicate id {class_id}")
        labels[class_id - 1] = _utf8(name)
    return labels


def _utf8(name: str) -> str:
    """parse_text_proto decodes string bytes as Latin-1; protobuf strings are UTF-8 bytes."""
    try:
        return name.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name
