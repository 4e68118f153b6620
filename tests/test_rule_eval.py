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
from protocol.envelope import seal
from protocol.site import load_site
from supervisor.rules import deadlines, evaluate
from supervisor.rules.incremental import Evaluator
from supervisor.state import NodeState, State
from supervisor.views import RoomViews
from tests.supervisor_support import BANDS, KEYS, ROOM_NODE, make_site
from tests.test_supervisor_units import World

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


@pytest.mark.parametrize("timer,name", [("room_deadline", "alert-lifecycle"),
                                        ("site_deadline", "property"),
                                        ("node_deadline", "device-offline")])
def test_a_missing_deadline_is_caught(monkeypatch, timer, name):
    """The comparison can fail: an evaluator that forgets one kind of timer raises less."""
    site, entries = load(name)
    monkeypatch.setattr(deadlines, timer, lambda *a: None)
    c = compare(name, site, entries, tick_ms=2000, tail_s=120)
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


# ---- random streams: every step, the incremental answer is evaluate's ------------------------

WHO = ("o1", "o2", "d1", "d2")
ROOMS = tuple(ROOM_NODE)
NODES = tuple(sorted(set(ROOM_NODE.values())))
STEP = st.one_of(
    st.tuples(st.just("at"), st.integers(0, 25)),
    st.tuples(st.just("beat"), st.sampled_from(NODES), st.integers(0, 15)),
    st.tuples(st.sampled_from(("enter", "leave")), st.sampled_from(WHO),
              st.sampled_from(ROOMS), st.integers(0, 12)),
    st.tuples(st.just("door"), st.integers(0, 12)),
    st.tuples(st.just("camera"), st.sampled_from(ROOMS), st.booleans(), st.booleans(),
              st.integers(0, 12)),
    st.tuples(st.just("count"), st.sampled_from(ROOMS), st.integers(0, 3)),
    st.tuples(st.sampled_from(("offline", "online")), st.sampled_from(NODES)),
)


@settings(max_examples=25, deadline=None)
@given(st.lists(STEP, min_size=5, max_size=40))
def test_incremental_equals_evaluate_at_every_step_of_a_random_stream(tmp_path_factory, steps):
    """Presence, lagging and silent nodes, door events that move a room's clock without naming
    the room, cameras dying, nodes going offline: after each, `wanted` equals `evaluate`."""
    w = World(tmp_path_factory.mktemp("w"))
    try:
        w.people()
        assert w.staff("register-detainee", {
            "detainee": "d2", "band": BANDS["d2"], "case": "c1", "sex": "m",
            "custody_type": "short", "observation": "level1"})["ok"]
        ev = Evaluator(w.state)  # the only evaluator asked here (w.alerts is left alone)
        for step in steps:
            _play(w, step)
            w.state.advance_marks(w.now)
            assert ev.wanted(w.now) == evaluate(w.state, w.now), step
    finally:
        w.journal.close()


@settings(max_examples=25, deadline=None)
@given(st.lists(STEP, min_size=5, max_size=40))
def test_lazy_marks_and_changed_room_views_equal_judging_everything(tmp_path_factory, steps):
    """Marks judged only for nodes that moved equal every node's mark judged at every step,
    and the room views published only for touched rooms and camera deadlines equal every
    room's view recomputed at every step (cameras dying with silence alone included)."""
    w = World(tmp_path_factory.mktemp("w"))
    try:
        w.people()
        views = RoomViews(w.state, w.topics, w.publish)
        eager: dict[str, int] = {}
        g = w.state.rules.device_offline_s * 1000
        for step in steps:
            _play(w, step)
            w.state.advance_marks(w.now)
            for n, ns in w.state.nodes.items():
                floor = w.now - g
                current = ns.heard if ns.arrived >= floor else max(ns.heard, floor)
                eager[n] = max(eager.get(n, 0), min(w.now, max(eager.get(n, 0), current)))
                assert w.state.judged_mark(n, ns) == eager[n], (step, n)
            Evaluator(w.state).wanted(w.now)  # the rules' reader of `touched` clears it
            views.publish_changed(w.now)
            assert views.published == {r: views.view(room, w.now)
                                        for r, room in w.state.rooms.items()}, step
    finally:
        w.journal.close()


def _play(w: World, step: tuple) -> None:  # type: ignore[type-arg]
    kind = step[0]
    if kind == "at":
        w.now += step[1] * 1000
    elif kind == "beat":
        w.beat(step[1], through=w.now - step[2] * 1000)
    elif kind in ("enter", "leave"):
        _, who, room, lag = step
        _stamped(w, ROOM_NODE[room], lag, f"presence.{kind}",
                 {"band": BANDS[who], "room": room, "reader": f"{room}-uhf"})
    elif kind == "door":
        _stamped(w, "node-entry", step[1], "door", {"door": "d1", "state": "open"})
    elif kind in ("camera", "count"):
        room = step[1]
        node = w.site.node(ROOM_NODE[room])
        if not node.cameras:
            return
        cam = node.cameras[0].id
        if kind == "camera":
            _stamped(w, node.id, step[4], "camera",
                     {"camera": cam, "room": room, "live": step[2], "recording": step[3]})
        else:
            _stamped(w, node.id, 0, "person_count", {"camera": cam, "room": room,
                                                     "count": step[2]})
    else:
        w.ingest.process([(w.topics.node(step[1], "availability"), kind.encode())])


def _stamped(w: World, node: str, lag_s: int, etype: str, body: dict) -> None:  # type: ignore[type-arg]
    w.seq[node] = w.seq.get(node, 0) + 1
    payload = seal(KEYS[node], node, 1, w.seq[node], w.now - lag_s * 1000, etype, body)
    w.ingest.process([(w.topics.node(node, "event"), payload)])


def test_an_event_that_names_no_room_still_moves_the_rooms_clock(tmp_path):
    """A lagging node's door event brings its room's clock past a grace: the room's rules are
    evaluated at once, not when the silence timer would have come."""
    w = World(tmp_path)
    try:
        w.people()
        ev = Evaluator(w.state)
        w.at(0, beat=False).enter("d1", "entry")  # alone; the grace is 10 s of room clock
        w.state.advance_marks(w.now)
        assert ev.wanted(w.now) == {}
        w.at(8, beat=False).beat("node-entry", through=w.now - 8000)  # lagging: clock at 0
        w.state.advance_marks(w.now)
        assert ev.wanted(w.now) == {} == evaluate(w.state, w.now)
        w.now += 4000  # 12 s; the door event stamped 11 s: the room's clock is past 10 s
        _stamped(w, "node-entry", 1, "door", {"door": "d1", "state": "open"})
        w.state.advance_marks(w.now)
        want = evaluate(w.state, w.now)
        assert [d.rule for d in want.values()] == ["never-alone"]
        assert ev.wanted(w.now) == want
    finally:
        w.journal.close()
