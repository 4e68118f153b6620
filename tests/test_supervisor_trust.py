"""Alerts staff can trust (issue 12): absence judged in the node's time, state in event time,
durations from evidence, welfare from live evidence, node health, the node replay window.

Unit level: signed messages through a real journal, ingest and state fold; time is whatever
the test sets. Nodes "beat" (health with through_ts) only where the test says so.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.envelope import seal
from supervisor import rules as R
from supervisor.ingest import Ingest
from supervisor.journal import Journal
from supervisor.state import State
from tests.supervisor_support import BANDS, KEYS
from tests.test_supervisor_units import T0, World


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.journal.close()


def event_at(w: World, node: str, ts_s: float, etype: str, body: dict[str, Any]) -> bytes:
    """The next signed event of `node`, stamped `ts_s` (custody s) whatever w.now is."""
    w.seq[node] = w.seq.get(node, 0) + 1
    return seal(KEYS[node], node, 1, w.seq[node], T0 + int(ts_s * 1000), etype, body)


def send(w: World, node: str, *payloads: bytes) -> None:
    w.ingest.process([(w.topics.node(node, "event"), p) for p in payloads])


def rules_at(w: World, fn: Any) -> list[tuple[str, str | None, str | None]]:
    return [(d.rule, d.detainee, d.room) for d in fn(w.state, w.now, w.site.rules)]


# ---- absence in the node's time --------------------------------------------------------------

def test_lagging_camera_node_is_not_a_dead_camera_but_a_silent_one_is(w):
    w.people()
    w.at(0).enter("d1", "holding-1")
    w.camera_node = "node-holding"
    for t in range(0, 30, 5):  # the camera's heartbeats, stamped on the node
        w.at(t, beat=False).event("node-holding", "camera",
                                  {"camera": "cam-holding-1", "room": "holding-1", "live": True,
                                   "recording": True})
    # The node's traffic is 8 s behind (below device_offline_s = 10): at supervisor time 33
    # the newest thing heard is its beat through 25. The camera's last heartbeat (25) is fine.
    w.at(33, beat=False).beat("node-holding", through=T0 + 25_000)
    assert rules_at(w, R.recording_gap) == []
    assert rules_at(w, R.holding_watch) == []
    # The camera dies at 25; the node still speaks (beats) in its own time: by node time 46
    # the recording gap (20 s) has passed, whatever the supervisor's clock says.
    w.at(47, beat=False).beat("node-holding", through=T0 + 45_000)
    assert rules_at(w, R.recording_gap) == []
    w.at(47, beat=False).beat("node-holding", through=T0 + 45_001)
    assert rules_at(w, R.recording_gap) == [("recording-gap", None, "holding-1")]


def test_node_lagging_past_its_grace_but_still_talking_is_judged_in_its_own_time(w):
    """A backlog or a slow link puts a node's stamps far behind (here 40 s, four times
    device_offline_s) while its messages keep arriving: its camera is not dead for that."""
    w.people()
    w.at(0).enter("d1", "holding-1")
    w.camera_node = "node-holding"
    for t in range(0, 60, 5):  # stamped t on the node, arriving 40 s later
        send(w.at(t + 40, beat=False),
             "node-holding", event_at(w, "node-holding", t, "camera",
                                      {"camera": "cam-holding-1", "room": "holding-1",
                                       "live": True, "recording": True}))
        assert rules_at(w, R.recording_gap) == []
        assert rules_at(w, R.holding_watch) == []
    # The camera dies at node time 55; the node goes on beating, 40 s late: the gap is
    # judged when its own time has passed it, not before.
    w.at(110, beat=False).beat("node-holding", through=T0 + 70_000)
    assert rules_at(w, R.recording_gap) == []
    w.at(116, beat=False).beat("node-holding", through=T0 + 76_000)
    assert rules_at(w, R.recording_gap) == [("recording-gap", None, "holding-1")]
    # And once nothing at all arrives for the grace, the node is silent on our clock.
    assert rules_at(w.at(127, beat=False), R.holding_watch) == [
        ("holding-watch", "d1", "holding-1")]


def test_a_silent_node_is_judged_on_the_supervisor_clock_after_its_grace(w):
    w.people()
    w.at(0).enter("d1", "holding-1")
    w.at(0).event("node-holding", "camera", {"camera": "cam-holding-1", "room": "holding-1",
                                             "live": True, "recording": True})
    # Nothing more from the node: its watermark stays at 0 until device_offline_s (10 s)
    # of supervisor time; past that the room counts as unobserved.
    assert rules_at(w.at(25, beat=False), R.recording_gap) == []
    assert rules_at(w.at(31, beat=False), R.recording_gap) == [
        ("recording-gap", None, "holding-1")]


def test_a_silent_node_that_speaks_again_with_old_stamps_does_not_make_alerts_flap(w):
    w.people()
    w.at(0).enter("d1", "holding-1")
    w.at(0).event("node-holding", "camera", {"camera": "cam-holding-1", "room": "holding-1",
                                             "live": True, "recording": True})
    w.at(35, beat=False)  # nothing arrived for 35 s (grace 10): judged up to 25, gap 20
    w.state.advance_marks(w.now)  # what the supervisor's tick does before the rules
    assert rules_at(w, R.recording_gap) == [("recording-gap", None, "holding-1")]
    # A beat arrives, but only through node time 12: the watermark does not go back to 12
    # (which would resolve the alert now and raise it again in a moment).
    w.at(36, beat=False).beat("node-holding", through=T0 + 12_000)
    w.state.advance_marks(w.now)
    assert rules_at(w, R.recording_gap) == [("recording-gap", None, "holding-1")]


def test_detainee_alone_behind_an_offline_node_is_caught(w):
    w.people()
    w.at(0).enter("d1", "holding-1")
    w.at(0).event("node-holding", "camera", {"camera": "cam-holding-1", "room": "holding-1",
                                             "live": True, "recording": True})
    w.at(1).ingest.process([(w.topics.node("node-holding", "availability"), b"offline")])
    # The camera's last heartbeat is fresh in node time, but the node is gone: not live.
    assert rules_at(w.at(10, beat=False), R.holding_watch) == []  # grace 10 s from 1
    assert rules_at(w.at(11, beat=False), R.holding_watch) == [
        ("holding-watch", "d1", "holding-1")]
    assert ("device-offline", None, "holding-1") in rules_at(w.at(11, beat=False), R.devices)


def test_officer_return_that_arrives_late_raises_no_never_alone(w):
    w.people()
    w.at(0).enter("o1", "medical")
    w.enter("d1", "medical")
    leave = event_at(w, "node-medical", 6, "presence.leave",
                     {"band": BANDS["o1"], "room": "medical", "reader": "medical-uhf",
                      "seen_ts": T0 + 1000})
    back = event_at(w, "node-medical", 9, "presence.enter",
                    {"band": BANDS["o1"], "room": "medical", "reader": "medical-uhf"})
    send(w.at(6, beat=False), "node-medical", leave)
    # At supervisor time 14 the officer's return (node time 9) has not arrived: the node lags
    # 4 s, and its watermark (beat through 9.9) is the time absence is judged against.
    w.at(14, beat=False).beat("node-medical", through=T0 + 9_900)
    assert rules_at(w, R.never_alone) == []
    send(w, "node-medical", back)
    assert rules_at(w.at(20), R.never_alone) == []


# ---- durations from evidence -----------------------------------------------------------------

def test_never_alone_counts_from_the_officers_last_read_grace_plus_2_raises(w):
    w.people()  # never_alone_grace_s = 10
    w.at(0).enter("o1", "medical")
    w.enter("d1", "medical")
    # Officer last read at 1.0; the node's TTL (5 s) runs out at 6.0 and says so.
    send(w.at(6), "node-medical", event_at(w, "node-medical", 6, "presence.leave", {
        "band": BANDS["o1"], "room": "medical", "reader": "medical-uhf", "seen_ts": T0 + 1000}))
    assert rules_at(w.at(10.9), R.never_alone) == []
    [d] = R.never_alone(w.state, w.at(11).now, w.site.rules)
    assert d.since == T0 + 1000  # from the last read, not from the TTL expiry
    assert rules_at(w.at(13), R.never_alone) == [("never-alone", "d1", "medical")]


def officer_out(w: World, last_read_s: float, back_s: float) -> list[tuple[str, Any, Any]]:
    """o1 leaves d1 in medical (last read at last_read_s) and is read back at back_s; both
    events arrive together, so no rule evaluation falls inside the spell."""
    w.people()
    w.at(0).enter("o1", "medical")
    w.enter("d1", "medical")
    ttl = w.site.rules.presence_ttl_s
    send(w.at(back_s), "node-medical",
         event_at(w, "node-medical", last_read_s + ttl, "presence.leave",
                  {"band": BANDS["o1"], "room": "medical", "reader": "medical-uhf",
                   "seen_ts": T0 + int(last_read_s * 1000)}),
         event_at(w, "node-medical", back_s, "presence.enter",
                  {"band": BANDS["o1"], "room": "medical", "reader": "medical-uhf"}))
    assert rules_at(w, R.never_alone) == []  # the spell is over: the live rule cannot see it
    return [(d.rule, d.detainee, d.room) for d in R.evaluate(w.state, w.now).values()]


def test_an_absence_past_the_grace_seen_only_once_over_is_still_raised(w):
    # Last read at 1.0, back at 13.0: 12 s alone (grace 10 s), never seen while it lasted.
    assert ("never-alone", "d1", "medical") in officer_out(w, 1.0, 13.0)


def test_an_absence_within_the_grace_seen_only_once_over_raises_nothing(w):
    assert [a for a in officer_out(w, 1.0, 9.0) if a[0] == "never-alone"] == []


def test_a_never_alone_the_rule_raised_is_not_raised_again_when_the_officer_returns(w):
    w.people()
    w.at(0).enter("o1", "medical")
    w.enter("d1", "medical")
    send(w.at(6), "node-medical", event_at(w, "node-medical", 6, "presence.leave", {
        "band": BANDS["o1"], "room": "medical", "reader": "medical-uhf", "seen_ts": T0 + 1000}))
    w.at(13).alerts.reconcile(w.now)
    raised = [a["id"] for a in w.state.alerts.values() if a["rule"] == "never-alone"]
    assert len(raised) == 1
    w.at(14).enter("o1", "medical")
    w.alerts.reconcile(w.now)
    assert [a["id"] for a in w.state.alerts.values() if a["rule"] == "never-alone"] == raised
    assert [i.rule for i in w.state.incidents.values() if i.rule == "never-alone"] == []


@pytest.mark.parametrize(("back_s", "raised"), [(18.0, False), (22.0, True)])
def test_an_interview_short_of_officers_past_the_grace_seen_only_once_over(w, back_s, raised):
    # d1 with one officer in interview-1 from 0; the second arrives at back_s (grace 20 s).
    # No rule pass falls inside the spell: only the fold can see it.
    w.people()
    w.at(0).enter("o1", "interview-1")
    w.enter("d1", "interview-1")
    w.at(back_s).enter("o2", "interview-1")
    got = [(d.rule, d.detainee, d.room) for d in R.evaluate(w.state, w.now).values()
           if d.rule == "interview"]
    assert got == ([("interview", "d1", "interview-1")] if raised else [])


@pytest.mark.parametrize(("apart_s", "raised"), [(2.0, False), (40.0, True)])
def test_co_suspects_together_past_the_grace_seen_only_once_parted(w, apart_s, raised):
    w.people()
    w.at(0).staff("register-detainee", {"detainee": "d2", "band": BANDS["d2"], "case": "c1",
                                        "sex": "f", "custody_type": "short",
                                        "observation": "level1"})
    w.enter("d1", "holding-1")
    w.enter("d2", "holding-1")
    w.at(apart_s).leave("d2", "holding-1")
    got = [d.rule for d in R.evaluate(w.state, w.now).values() if d.rule == "co-suspects"]
    assert got == (["co-suspects"] if raised else [])


def search(w: World, first_read_s: float, last_read_s: float) -> list[Any]:
    """A search by o1 and o2 of d1 whose band reads run from first to last read."""
    w.people()
    w.at(0).enter("o1", "search")
    w.enter("o2", "search")
    send(w.at(first_read_s), "node-search", event_at(w, "node-search", first_read_s,
                                                     "presence.enter",
                                                     {"band": BANDS["d1"], "room": "search",
                                                      "reader": "search-uhf"}))
    ttl = w.site.rules.presence_ttl_s
    send(w.at(last_read_s + ttl), "node-search", event_at(
        w, "node-search", last_read_s + ttl, "presence.leave",
        {"band": BANDS["d1"], "room": "search", "reader": "search-uhf",
         "seen_ts": T0 + int(last_read_s * 1000)}))
    w.staff("record-search", {"detainee": "d1", "officers": ["o1", "o2"],
                              "result": "completed"})
    return R.real_search(w.state, w.now, w.site.rules)


def test_search_of_exactly_the_minimum_raises_nothing(w):
    # A 30 s search (the test site's minimum) from 10.0 to 40.0: the first read lags the entry
    # by 0.9 s and the last read is 0.6 s before leaving, so the reads span 28.5 s.
    assert search(w, 10.9, 39.4) == []


def test_search_a_few_seconds_short_raises_real_search(w):
    [d] = search(w, 10.9, 36.4)  # a 27 s search: reads span 25.5 s
    assert "search lasted 25.5 s < 30 s" in d.message


# ---- state in event time ---------------------------------------------------------------------

def test_worst_order_replay_keeps_the_detainee_in_holding_and_welfare_is_raised_on_time(w):
    w.people()
    # The walk, as each node stamped it: search -> corridor -> holding-1 within a few seconds.
    walk = {
        "node-search": [event_at(w, "node-search", 0, "presence.enter",
                                 {"band": BANDS["d1"], "room": "search", "reader": "search-uhf"}),
                        event_at(w, "node-search", 6, "presence.leave",
                                 {"band": BANDS["d1"], "room": "search", "reader": "search-uhf",
                                  "seen_ts": T0 + 1000})],
        "node-corridor": [event_at(w, "node-corridor", 2, "presence.enter",
                                   {"band": BANDS["d1"], "room": "corridor",
                                    "reader": "corridor-uhf"}),
                          event_at(w, "node-corridor", 9, "presence.leave",
                                   {"band": BANDS["d1"], "room": "corridor",
                                    "reader": "corridor-uhf", "seen_ts": T0 + 4000})],
        "node-holding": [event_at(w, "node-holding", 5, "presence.enter",
                                  {"band": BANDS["d1"], "room": "holding-1",
                                   "reader": "holding-1-uhf"})],
    }
    # The broker comes back; the holding node reconnects first, then the corridor, then the
    # search room: every older move arrives after the newer one.
    w.at(30)
    for node in ("node-holding", "node-corridor", "node-search"):
        send(w, node, *walk[node])
    room = w.state.rooms["holding-1"]
    assert BANDS["d1"] in room.bands and w.state.detainees["d1"].visit.room == "holding-1"
    assert all(BANDS["d1"] not in r.bands for r in w.state.rooms.values() if r.id != "holding-1")
    assert w.state.late_events == 4
    assert any("late presence.enter in corridor" in t
               for _, t in w.state.detainees["d1"].timeline)
    # level1: 120 s from entering holding at 5; warned 20 s before, raised (warning) at 125.
    assert rules_at(w.at(104), R.welfare_check) == []
    [d] = R.welfare_check(w.state, w.at(125).now, w.site.rules)
    assert (d.severity, d.room, d.since) == ("warning", "holding-1", T0 + 125_000)


# ---- welfare from live evidence --------------------------------------------------------------

def camera(w: World, live: bool = True) -> None:
    w.event("node-holding", "camera", {"camera": "cam-holding-1", "room": "holding-1", "live": live,
                                       "recording": live})


def test_welfare_visit_with_a_dead_camera_is_not_verified(w):
    w.people()
    w.at(0).enter("d1", "holding-1")
    camera(w)
    w.event("node-holding", "person_count", {"camera": "cam-holding-1", "room": "holding-1",
                                             "count": 2})
    # The camera dies (no more heartbeats); the count of 2 is stale. An officer visits.
    w.at(50).enter("o1", "holding-1")
    w.at(60).leave("o1", "holding-1")
    assert w.state.detainees["d1"].last_verified_ms == 0
    # The same visit with the camera live during it is verified.
    w.at(70).enter("o1", "holding-1")
    camera(w.at(72))
    w.at(80).leave("o1", "holding-1")
    assert w.state.detainees["d1"].last_verified_ms == T0 + 80_000


# ---- node health -----------------------------------------------------------------------------

def health(w: World, node: str, **obj: Any) -> None:
    body = {"uptime_s": 1, "queue": 0, "obj": {"through_ts": w.now, **obj}}
    w.ingest.process([(w.topics.node(node, "health"),
                       seal(KEYS[node], node, 1, 0, w.now, "health", body))])


def test_refused_roster_raises_a_device_alert_until_the_node_takes_one(w):
    w.people()
    health(w.at(1, beat=False), "node-entry", roster_refused=1, roster_error="payload too large")
    got = [d for d in R.devices(w.state, w.now, w.site.rules) if d.rule == "roster-refused"]
    assert [(d.room, d.severity) for d in got] == [("entry", "warning")]
    assert "payload too large" in got[0].message
    count = w.journal.count
    # The same flags again (every beat carries them): nothing new journaled.
    health(w.at(3, beat=False), "node-entry", roster_refused=1, roster_error="payload too large")
    assert w.journal.count == count
    # Replay rebuilds it from the journal.
    replayed = State(w.site)
    for e in w.journal.entries():
        replayed.apply(e)
    assert replayed.nodes["node-entry"].health["roster_refused"] is True
    health(w.at(4, beat=False), "node-entry", roster_refused=0)
    assert [d for d in R.devices(w.state, w.now, w.site.rules) if d.rule == "roster-refused"] \
        == []


# ---- a resolved fault that recurs ------------------------------------------------------------

def test_resolved_fault_that_recurs_raises_a_new_alert(w):
    w.people()
    fault = {"id": "uhf-frames", "device": "uhf", "kind": "checksum"}
    w.at(1).event("node-entry", "fault", {**fault, "phase": "new"})
    w.alerts.reconcile(w.now)
    [first] = [a for a in w.state.open_alerts() if a["rule"] == "reader-fault"]
    assert w.staff("resolve-alert", {"alert": first["id"]})["ok"]
    w.at(2).event("node-entry", "fault", {**fault, "phase": "end"})  # the reader recovers
    w.alerts.reconcile(w.now)
    w.at(50).event("node-entry", "fault", {**fault, "phase": "new"})  # and fails again
    w.alerts.reconcile(w.now)
    [again] = [a for a in w.state.open_alerts() if a["rule"] == "reader-fault"]
    assert again["id"] != first["id"] and again["state"] == "raised"


# ---- the replay window and the outbox --------------------------------------------------------

def test_backlog_older_than_the_replay_window_is_journaled_once_in_order(tmp_path):
    w = World(tmp_path)
    node, n = "node-entry", 10_000
    w.at(20, beat=False)  # every stamp below is in the last 20 s
    payloads = [seal(KEYS[node], node, 1, s, T0 + s, "camera",
                     {"camera": "cam-entry", "room": "entry", "live": True})
                for s in range(1, n + 101)]
    topic = w.topics.node(node, "event")
    # The broker kept only the newest 100 (its queue limit) while the supervisor was away:
    # they arrive first, 10,000 sequences ahead of the node's oldest unacked event.
    w.ingest.process([(topic, p) for p in payloads[n:]])
    for i in range(0, n, 500):  # then the node replays its outbox, oldest first
        w.ingest.process([(topic, p) for p in payloads[i:i + 500]])
    w.ingest.process([(topic, p) for p in payloads[:300]])  # and some of it again
    seqs = [e.seq for e in w.journal.entries() if e.kind == "event"]
    assert sorted(seqs) == list(range(1, n + 101))  # none lost, none doubled
    assert seqs[100:] == list(range(1, n + 1))  # the backlog in order
    assert w.state.security_count == 0 and w.state.nodes[node].gaps == []
    # A restarted supervisor rebuilds the same window from its journal.
    again = Ingest(Journal(tmp_path / "j.db"), State(w.site), w.topics, KEYS, w.publish,
                   lambda: w.now)
    assert again.window.nodes[node].highest == n + 100
    assert again.window.nodes[node].recent == set()
    again.journal.close()
    w.journal.close()


def test_search_with_a_moment_unread_is_one_stay(w):
    """The band goes unread for a few seconds mid-search (the node's TTL runs out and it
    comes back): still one 30 s search, not a short one."""
    w.people()
    w.at(0).enter("o1", "search")
    w.enter("o2", "search")
    ttl = w.site.rules.presence_ttl_s
    moves = [(10.9, "presence.enter", None), (14 + ttl, "presence.leave", 14.0),
             (26.0, "presence.enter", None), (39.4 + ttl, "presence.leave", 39.4)]
    for at, etype, seen in moves:
        body: dict[str, Any] = {"band": BANDS["d1"], "room": "search", "reader": "search-uhf"}
        if seen is not None:
            body["seen_ts"] = T0 + int(seen * 1000)
        send(w.at(at), "node-search", event_at(w, "node-search", at, etype, body))
    w.staff("record-search", {"detainee": "d1", "officers": ["o1", "o2"],
                              "result": "completed"})
    assert R.real_search(w.state, w.now, w.site.rules) == []
    assert w.state.detainees["d1"].search["duration_ms"] == 28_500


def test_a_node_that_lost_its_outbox_ends_what_it_had_open(w):
    w.people()
    w.at(1).event("node-holding", "tamper", {"id": "t1", "phase": "new", "camera": "cam-holding-1",
                                             "room": "holding-1", "kind": "covered"})
    w.event("node-holding", "fault", {"id": "f1", "phase": "new", "device": "uhf",
                                      "kind": "checksum"})
    assert {d.rule for d in R.devices(w.state, w.now, w.site.rules)} >= {"camera-tamper",
                                                                         "reader-fault"}
    # A new epoch (the node's outbox database was replaced): its old ids mean nothing now.
    w.ingest.process([(w.topics.node("node-holding", "event"),
                       seal(KEYS["node-holding"], "node-holding", 2, 1, w.now, "camera",
                            {"camera": "cam-holding-1", "room": "holding-1", "live": True}))])
    assert {d.rule for d in R.devices(w.state, w.now, w.site.rules)} & {
        "camera-tamper", "reader-fault"} == set()
    assert w.state.rooms["holding-1"].tamper == {}


def test_forgotten_admissions_below_the_floor_may_come_again():
    """A journal write rolled back undoes its admissions, even those folded into the floor."""
    from protocol.envelope import VerifyError
    from protocol.replay import ReplayWindow

    win = ReplayWindow(100)
    for s in range(1, 6):
        win.admit("n", 1, s)
    win.forget("n", 1, 5)
    win.forget("n", 1, 4)
    win.admit("n", 1, 4)
    win.admit("n", 1, 5)
    with pytest.raises(VerifyError):
        win.admit("n", 1, 3)
    assert win.nodes["n"].floor == 5 and win.nodes["n"].recent == set()


def test_a_fall_that_began_and_ended_in_one_batch_is_still_raised_once(w):
    """A behaviour's `new` and `end` folded together (a backlog): the live rule never sees
    it open, the fold latches it, and a fall the rule did raise is not raised again."""
    w.people()
    w.at(0).enter("d1", "medical")
    body = {"camera": "cam-medical", "room": "medical", "cls": "fall", "score_pct": 90}
    send(w.at(3), "node-medical",
         event_at(w, "node-medical", 1, "behaviour", {"id": "b1", "phase": "new", **body}),
         event_at(w, "node-medical", 2, "behaviour", {"id": "b1", "phase": "end", **body}))
    assert rules_at(w, R.behaviour) == []  # over: the live rule cannot see it
    got = [(d.rule, d.detainee, d.room) for d in R.evaluate(w.state, w.now).values()]
    assert got.count(("fall", "d1", "medical")) == 1
    # One the rule saw open and raised: its end latches nothing more.
    send(w.at(5), "node-medical",
         event_at(w, "node-medical", 4, "behaviour", {"id": "b2", "phase": "new", **body}))
    w.alerts.reconcile(w.now)
    send(w.at(7), "node-medical",
         event_at(w, "node-medical", 6, "behaviour", {"id": "b2", "phase": "end", **body}))
    assert [i for i in w.state.incidents.values() if i.key.endswith("/b2")] == []
