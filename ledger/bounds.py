"""Bounds on what a request body may hold, and on what an audit record keeps.

Rules IL-1 to IL-6 of docs/limits.md. A request body is checked before it is
parsed (`nesting_exceeds`, so Python's recursive JSON parser never meets a
deeper document) and while it is parsed (`parse_integer`, `parse_float`: a
number must fit a signed 64-bit integer or a finite double, as the service
model's ``integer`` and ``long`` members and the event transcoder need).
Whatever an audit record keeps of a request passes through `bounded`, so that
no input (over HTTP, or a Python caller's) can make the record unencodable or
unboundedly large.
"""

from __future__ import annotations

import array
import itertools
import math
import re
from collections.abc import Mapping
from typing import Any, Final

NESTING_DEPTH_MAX: Final = 16  # JSON objects and arrays, the request object included
INTEGER_MIN: Final = -(2**63)
INTEGER_MAX: Final = 2**63 - 1
AUDIT_DEPTH_MAX: Final = 8
AUDIT_ITEMS_MAX: Final = 64
AUDIT_STRING_LENGTH_MAX: Final = 4096
TRUNCATED_KEY: Final = "[not kept]"

# A JSON string, escapes included (the unrolled form scans in linear time).
JSON_STRING_PATTERN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
BRACKETS: Final = b"[]{}"
NOT_BRACKETS: Final = bytes(byte for byte in range(256) if byte not in BRACKETS)
BRACKET_STEPS: Final = bytes.maketrans(BRACKETS, b"\x01\xff\x01\xff")  # +1, -1 as signed bytes


class NumberOutOfRange(ValueError):
    """A JSON number that no member of the service model can hold."""


def nesting_exceeds(document: bytes, depth_max: int = NESTING_DEPTH_MAX) -> bool:
    """Whether the JSON text nests objects and arrays deeper than ``depth_max`` (an
    unclosed bracket counts as open to the end: such a text is not JSON either).
    Linear in the size, in C loops: strings removed, each opening bracket a step up
    and each closing one a step down, the depth the highest running sum."""
    assert depth_max > 0, "a request is at least one object deep"
    if document.count(b"[") + document.count(b"{") <= depth_max:
        return False  # the common case: too few brackets to nest deeper
    brackets = JSON_STRING_PATTERN.sub(b"", document).translate(None, NOT_BRACKETS)
    steps = array.array("b", brackets.translate(BRACKET_STEPS))
    return max(itertools.accumulate(steps), default=0) > depth_max


def parse_integer(text: str) -> int:
    """``json.loads``'s ``parse_int``: a signed 64-bit integer, else NumberOutOfRange
    (Python's own limit of 4,300 digits raises ValueError first)."""
    value = int(text)
    if not INTEGER_MIN <= value <= INTEGER_MAX:
        raise NumberOutOfRange("an integer out of the signed 64-bit range")
    return value


def parse_float(text: str) -> float:
    """``json.loads``'s ``parse_float``: a finite double (``1e400`` is not)."""
    value = float(text)
    if not math.isfinite(value):
        raise NumberOutOfRange("a number out of the double range")
    return value


def bounded(value: Any, depth: int = 1) -> Any:
    """``value`` as an audit record may keep it: unchanged when it is within the
    bounds (every request the service model accepts is); otherwise strings cut to
    `AUDIT_STRING_LENGTH_MAX` characters, lists and objects to `AUDIT_ITEMS_MAX`
    items, integers out of range and other types replaced by short text, and
    containers below `AUDIT_DEPTH_MAX` replaced by a note. Each cut says what it cut."""
    if value is None or isinstance(value, bool):
        return None if value is None else bool(value)
    if isinstance(value, float):
        return float(value)  # a subclass would not encode
    if isinstance(value, int):
        if INTEGER_MIN <= value <= INTEGER_MAX:
            return int(value)
        return f"[not kept: an integer of {value.bit_length()} bits, out of the 64-bit range]"
    if isinstance(value, str):
        return bounded_text(value)
    if isinstance(value, Mapping | list | tuple) and depth > AUDIT_DEPTH_MAX:
        return f"[not kept: nested deeper than {AUDIT_DEPTH_MAX}]"
    if isinstance(value, Mapping):
        return bounded_mapping(value, depth)
    if isinstance(value, list | tuple):
        items = [bounded(item, depth + 1) for item in value[:AUDIT_ITEMS_MAX]]
        if len(value) > AUDIT_ITEMS_MAX:
            items.append(f"[not kept: {len(value) - AUDIT_ITEMS_MAX} more items]")
        return items
    return f"[not kept: a value of type {type(value).__name__}]"


def bounded_mapping(value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for index, (key, item) in enumerate(value.items()):
        if index == AUDIT_ITEMS_MAX:
            kept[TRUNCATED_KEY] = f"[not kept: {len(value) - AUDIT_ITEMS_MAX} more members]"
            break
        name = bounded_text(key) if isinstance(key, str) else f"[key of type {type(key).__name__}]"
        kept[name] = bounded(item, depth + 1)
    return kept


def bounded_text(text: str) -> str:
    """At most `AUDIT_STRING_LENGTH_MAX` characters of ``text`` (a plain ``str``, lone
    surrogates replaced, so that it encodes as UTF-8), plus a note of any cut."""
    kept = str.__str__(text[:AUDIT_STRING_LENGTH_MAX])
    if not kept.isascii():
        kept = kept.encode("utf-8", "replace").decode("utf-8")
    if len(text) <= AUDIT_STRING_LENGTH_MAX:
        return kept
    return f"{kept}[not kept: {len(text) - AUDIT_STRING_LENGTH_MAX} more characters]"
