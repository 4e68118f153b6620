"""Canonical JSON: the one byte encoding that CPython and MicroPython both produce.

Rules (kept small so the firmware can implement them in a few lines):
objects with keys sorted by code point, no whitespace, integers only (no floats),
strings with `"` and `\\` escaped and every character outside 0x20-0x7e written as a
lower-case `\\uXXXX` escape (surrogate pairs above the BMP). The output is pure ASCII.
"""

from typing import Any


class CanonicalError(ValueError):
    """A value that canonical JSON cannot carry (float, bytes, non-string key...)."""


def _string(s: str, out: list[str]) -> None:
    out.append('"')
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif 0x20 <= c <= 0x7E:
            out.append(ch)
        elif c > 0xFFFF:
            c -= 0x10000
            out.append(f"\\u{0xD800 + (c >> 10):04x}\\u{0xDC00 + (c & 0x3FF):04x}")
        else:
            out.append(f"\\u{c:04x}")
    out.append('"')


def _value(v: Any, out: list[str], depth: int) -> None:
    if depth > 16:
        raise CanonicalError("nesting deeper than 16")
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, str):
        _string(v, out)
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _value(item, out, depth + 1)
        out.append("]")
    elif isinstance(v, dict):
        out.append("{")
        for key in v:  # before sorting: mixed key types would make sorted() raise TypeError
            if not isinstance(key, str):
                raise CanonicalError(f"object key {key!r} is not a string")
        for i, key in enumerate(sorted(v)):
            if i:
                out.append(",")
            _string(key, out)
            out.append(":")
            _value(v[key], out, depth + 1)
        out.append("}")
    else:
        raise CanonicalError(f"{type(v).__name__} is not allowed in canonical JSON")


def dumps(value: Any) -> str:
    """Encode `value` as canonical JSON text (ASCII only)."""
    out: list[str] = []
    _value(value, out, 0)
    return "".join(out)


def dumpb(value: Any) -> bytes:
    """Encode `value` as canonical JSON bytes."""
    return dumps(value).encode("ascii")
