"""Identifier rules shared by topics, events and the site file."""

import re

ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")  # \Z: `$` would let "x\n" through
BAND_RE = re.compile(r"^[0-9a-f]{2,64}\Z")


class IdError(ValueError):
    """An identifier breaks the `[a-z0-9-]` rule."""


def check_id(value: object, what: str = "id") -> str:
    """Return `value` if it is a valid lower-case id, else raise IdError naming `what`."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise IdError(f"{what} {value!r} must be 1-64 characters of [a-z0-9-], "
                      "starting alphanumeric")
    return value


def is_id(value: object) -> bool:
    """True if `value` is a valid id."""
    return isinstance(value, str) and bool(ID_RE.match(value))


def check_band(value: object) -> str:
    """Return a band (RFID tag) id: lower-case hex, 2-64 digits."""
    if not isinstance(value, str) or not BAND_RE.match(value):
        raise IdError(f"band {value!r} must be 2-64 lower-case hex digits")
    return value
