"""Property tests of canonical JSON: round trip, one encoding per value, floats refused."""

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.canonical import CanonicalError, dumpb, dumps
from tests.proof_strategies import PROPS, json_values


def _depth(v: Any) -> int:
    """How many containers enclose the most deeply nested value."""
    kids = list(v) if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else []
    return 1 + max(_depth(x) for x in kids) if kids else 0


@PROPS
@given(json_values())
def test_round_trip_through_json_loads(value):
    if _depth(value) > 16:
        with pytest.raises(CanonicalError):
            dumps(value)
        return
    text = dumps(value)
    assert json.loads(text) == value
    assert all(0x20 <= ord(c) <= 0x7E for c in text), "canonical JSON is printable ASCII"
    assert dumpb(value) == text.encode("ascii")


@PROPS
@given(json_values())
def test_one_encoding_per_value(value):
    if _depth(value) > 16:
        return
    text = dumps(value)
    # Re-encoding what was decoded gives the same bytes; so does any key insertion order.
    assert dumps(json.loads(text)) == text
    if isinstance(value, dict):
        assert dumps(dict(reversed(list(value.items())))) == text
        assert list(json.loads(text)) == sorted(value)


ASCII = st.text(alphabet=[chr(c) for c in range(0x20, 0x7F)], max_size=12)


@PROPS
@given(st.recursive(st.none() | st.booleans() | st.integers() | ASCII,
                    lambda k: st.lists(k, max_size=3) | st.dictionaries(ASCII, k, max_size=3),
                    max_leaves=15))
def test_matches_stdlib_sorted_compact_form_for_printable_ascii(value):
    # Where no escaping beyond quote and backslash is needed, canonical JSON is exactly
    # the standard library's sorted, compact encoding.
    if _depth(value) > 16:
        return
    assert dumps(value) == json.dumps(value, sort_keys=True, separators=(",", ":"))


@PROPS
@given(json_values(max_leaves=10), st.floats(allow_nan=True), st.data())
def test_floats_refused_anywhere(value, f, data):
    # Put the float somewhere inside the value: at the top, in a list, or in an object.
    where = data.draw(st.sampled_from(["top", "list", "dict"]))
    holder: Any = f if where == "top" else [value, f] if where == "list" else {"k": value, "f": f}
    with pytest.raises(CanonicalError):
        dumps(holder)


@PROPS
@given(st.dictionaries(st.integers() | st.none() | st.booleans(), st.integers(), min_size=1))
def test_non_string_keys_refused(value):
    with pytest.raises(CanonicalError):
        dumps(value)


@PROPS
@given(st.sampled_from([b"x", bytearray(b"x"), {1, 2}, object(), 1.5, complex(1, 1)]))
def test_other_types_refused(value):
    with pytest.raises(CanonicalError):
        dumps({"a": [value]})


def test_nesting_limit():
    v: Any = 0
    for _ in range(17):
        v = [v]
    with pytest.raises(CanonicalError):
        dumps(v)
    assert dumps(v[0]) == "[" * 16 + "0" + "]" * 16
