"""What the checks of an input file share: value tests, and the entries they leave out, counted
by reason and told as one warning line per reason (or, with --strict, as one error)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tfod_trt.errors import UsageError

SHOWN = 10  # values listed in a message before "... and N more"
PLURALS = {"category": "categories", "unusable entry": "unusable entries"}
NO_VALUE = object()  # add(): the reason names no offending value
# A check of one entry: None where it is usable, else (reason,) or (reason, offending value).
Problem = tuple | None


def listing(items: Iterable[object]) -> str:
    """``a, b, c`` with at most SHOWN items, then ``... and N more``."""
    items = list(items)
    more = f" ... and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(str(item) for item in items[:SHOWN]) + more


def counted(count: int, noun: str) -> str:
    """``1 image``, ``2 images``, ``3 categories``."""
    return f"{count} {noun if count == 1 else PLURALS.get(noun, noun + 's')}"


def shown(value: object) -> str:
    """A value as the JSON file spells it (strings quoted, null, NaN)."""
    return json.dumps(value, default=str)


def is_number(value: object) -> bool:
    """A finite JSON number (true and false are no numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_id(value: object) -> bool:
    """A JSON integer, as COCO ids are."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_box(value: object) -> bool:
    """``[x, y, width, height]`` of finite numbers."""
    return isinstance(value, list) and len(value) == 4 and all(map(is_number, value))


def is_rle(value: object) -> bool:
    """COCO's run-length encoding: ``{"size": [height, width], "counts": ...}`` (a string, or
    a list of integers uncompressed)."""
    if not isinstance(value, dict) or not isinstance(value.get("counts"), str | list):
        return False
    size = value.get("size")
    return isinstance(size, list) and len(size) == 2 and all(is_id(v) and v > 0 for v in size)


def is_segmentation(value: object) -> bool:
    """A COCO annotation's segmentation: an RLE, or polygons (lists of x, y pairs, at least
    three points each)."""
    if is_rle(value):
        return True
    return isinstance(value, list) and bool(value) and all(
        isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
        and all(map(is_number, polygon)) for polygon in value)


@dataclass
class _Reason:
    first: str  # the first entry left out for this reason, with its offending value
    count: int = 0
    values: list[str] = field(default_factory=list)  # the distinct offending values


class Dropped:
    """The entries that a check of one file (or one model's output) left out, per kind of entry
    and reason: how many, the distinct offending values, and the first such entry."""

    def __init__(self, source: Path | str) -> None:
        self.source = source
        self._reasons: dict[tuple[str, str], _Reason] = {}

    def add(self, kind: str, reason: str, where: str, value: object = NO_VALUE) -> None:
        """Counts one ``kind`` entry (``where``: which one) dropped for ``reason``."""
        text = "" if value is NO_VALUE else shown(value)
        entry = self._reasons.setdefault(
            (kind, reason), _Reason(f"{where}: {reason}" + (f": {text}" if text else "")))
        entry.count += 1
        if text and text not in entry.values:
            entry.values.append(text)

    def __len__(self) -> int:
        return sum(entry.count for entry in self._reasons.values())

    def lines(self) -> list[str]:
        """One line per reason: ``FILE: 2 annotations dropped: REASON: 91, 92``."""
        return [f"{self.source}: {counted(entry.count, kind)} dropped: {reason}"
                + (f": {listing(entry.values)}" if entry.values else "")
                for (kind, reason), entry in self._reasons.items()]

    def first_entry(self) -> str:
        """``annotation 3 (id 17): REASON: VALUE``, the first entry dropped."""
        return next(iter(self._reasons.values())).first

    def first_problem(self) -> str:
        """``FILE: annotation 3 (id 17): REASON: VALUE``."""
        return f"{self.source}: {self.first_entry()}"


def settle(dropped: Dropped, strict: bool, prog: str) -> None:
    """Prints a warning line per reason on stderr, or with ``strict`` raises the first problem
    as a UsageError."""
    if strict and dropped:
        raise UsageError(f"{dropped.first_problem()} (--strict; "
                         f"{counted(len(dropped), 'unusable entry')} in all)")
    for line in dropped.lines():
        print(f"{prog}: warning: {line}", file=sys.stderr)


def entry_name(kind: str, number: int, entry: object) -> str:
    """``annotation 3 (id 17)``: the entry's place in its list (from 1), and its id if any."""
    has_id = isinstance(entry, dict) and "id" in entry
    return f"{kind} {number}" + (f" (id {shown(entry['id'])})" if has_id else "")


def keep_usable(entries: list, kind: str, problem_of: Callable[[object], Problem],
                dropped: Dropped) -> list:
    """The entries without a problem; the others are counted in ``dropped`` (a box problem
    names the box)."""
    kept = []
    for number, entry in enumerate(entries, 1):
        problem = problem_of(entry)
        if problem is None:
            kept.append(entry)
            continue
        reason, *value = problem
        where = entry_name(kind, number, entry)
        if reason.startswith("bbox") and isinstance(entry, dict):
            where += f", bbox {shown(entry.get('bbox'))}"
        dropped.add(kind, reason, where, *value)
    return kept
