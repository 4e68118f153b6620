"""The incremental rule evaluator raises exactly what every rule over the whole site raises.

Recorded scenario journals (tests/data/rule_eval/, written by
`benchmarks.compare_rule_eval --fixtures` from `custody sim run` journals) are replayed with
each evaluator and the alerts compared message by message, with the incremental one also
checked against `evaluate` at every step; a deliberately broken evaluator must be caught. The
timer queue's conversion of a room clock into supervisor time is checked against the
watermark itself.
"""

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.compare_rule_eval import compare, load_entries
from protocol.site import load_site
from supervisor.rules import deadlines
from supervisor.state import NodeState, State
from tests.supervisor_support import make_site

DATA = Path(__file__).parent / "data" / "rule_eval"
JOURNALS = sorted(p.name.removesuffix(".jsonl.gz") for p in DATA.glob("*.jsonl.gz"))


def load(name: str):  # type: ignore[no-untyped-def]
    return load_site(DATA / f"{name}.site.toml"), list(load_entries(DATA / f"{name}.jsonl.gz"))


def test_the_recorded_journals_are_there():
    assert len(JOURNALS) >= 4, JOURNALS


@pytest.mark.parametrize("name", JOURNALS)
def test_incremental_raises_exactly_what_full_evaluation_raises(name):
    site, entries = load(name)
    c = compare(name, site, entries, tick_ms=1000, tail_s=300)
    assert c.same, c.difference()
    assert c.incr.mismatches == 0
    assert c.alerts() >= 1  # the journal exercises the rules, not just the plumbing
    assert c.incr.steps == c.full.steps


def test_a_missing_deadline_is_caught(monkeypatch):
    """The comparison can fail: an evaluator that forgets rooms' timers raises less."""
    name = next(n for n in JOURNALS if "holding" in n or "lifecycle" in n)
    site, entries = load(name)
    monkeypatch.setattr(deadlines, "room_deadline", lambda *a: None)
    c = compare(name, site, entries, tick_ms=1000, tail_s=300)
    assert not c.same
    assert c.incr.mismatches > 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 6000), st.integers(0, 6000),
                          st.booleans()), min_size=0, max_size=3),
       st.integers(0, 6000), st.integers(1, 9000))
def test_clock_reaches_is_when_the_watermark_gets_there(nodes, now, target):
    """clock_reaches(t) is the first supervisor time at which the watermark reaches `target`,
    with marks advanced at every step as the supervisor does, and nothing heard meanwhile."""
    state = State(make_site())
    state.rules = dataclasses.replace(state.rules, device_offline_s=2)
    names = []
    for i, (heard, arrived, mark, offline) in enumerate(nodes):
        ns = NodeState(None, heard=heard, arrived=arrived, mark=min(mark, now))
        ns.availability = "offline" if offline and i == 0 else "online"
        state.nodes[f"n{i}"] = ns
        names.append(f"n{i}")
    names.append("never-heard")  # a node of the room we know nothing from
    state.advance_marks(now)
    if state._watermark(names, now) >= target:
        return  # reached already: the timer queue never asks
    want = state.clock_reaches(names, target, now)
    assert want > now
    for t in [*range(now, want - 1, 37), want - 1]:  # before it, never (marks advancing)
        state.advance_marks(t)
        assert state._watermark(names, t) < target, (t, want)
    state.advance_marks(want)
    assert state._watermark(names, want) >= target
