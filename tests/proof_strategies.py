"""Hypothesis strategies shared by the property tests: ids, bands, event bodies, requests."""

import string
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from protocol.events import _ENUMS as EVENT_ENUMS
from protocol.events import EVENT_TYPES, PHASES
from protocol.staff import _ENUMS as STAFF_ENUMS
from protocol.staff import COMMANDS

# Modest budgets: the suite shares 2 cores with everyone else. The long run is
# benchmarks/fuzz_parsers.py.
PROPS = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(max_examples=40, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ID_FIRST = string.ascii_lowercase + string.digits
ids = st.builds(lambda a, b: a + b, st.sampled_from(ID_FIRST),
                st.text(alphabet=ID_FIRST + "-", max_size=20))
bands = st.text(alphabet="0123456789abcdef", min_size=2, max_size=24)
safe_ints = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
texts = st.text(max_size=40)


def json_values(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """Any value canonical JSON may carry (no floats)."""
    leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    return st.recursive(leaves, lambda kids: st.lists(kids, max_size=4)
                        | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                        max_leaves=max_leaves)


def _value(kind: str, enum: tuple[str, ...] | None) -> st.SearchStrategy[Any]:
    if enum is not None:
        return st.sampled_from(enum)
    return {
        "id": ids, "band": bands, "str": st.text(max_size=30), "int": safe_ints,
        "bool": st.booleans(), "phase": st.sampled_from(PHASES), "ids": st.lists(ids, max_size=3),
        "bands": st.lists(bands, max_size=3), "ints": st.lists(safe_ints, max_size=4),
        "strs": st.lists(st.text(max_size=10), max_size=3),
        "obj": st.dictionaries(ids, st.integers(0, 1000) | ids, max_size=3),
        "sha256": st.text("0123456789abcdef", min_size=64, max_size=64),
    }[kind]


@st.composite
def event_bodies(draw: st.DrawFn, event_type: str | None = None) -> tuple[str, dict[str, Any]]:
    """(type, body) valid against protocol.events' schema for that type."""
    etype = event_type or draw(st.sampled_from(sorted(EVENT_TYPES)))
    body: dict[str, Any] = {}
    for key, (kind, required) in EVENT_TYPES[etype].items():
        if required or draw(st.booleans()):
            body[key] = draw(_value(kind, EVENT_ENUMS.get((etype, key))))
    return etype, body


@st.composite
def staff_requests(draw: st.DrawFn) -> tuple[str, str, str, dict[str, Any]]:
    """(command, txn, user, args) valid against protocol.staff's schema."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    args: dict[str, Any] = {}
    for key, (kind, required) in COMMANDS[command].items():
        if required or draw(st.booleans()):
            args[key] = draw(_value(kind, STAFF_ENUMS.get(key)))
    txn = draw(st.text(min_size=1, max_size=64))
    return command, txn, draw(ids), args
