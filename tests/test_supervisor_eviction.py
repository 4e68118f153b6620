"""Live mode: closed alerts and released custody records leave the supervisor's memory.

The same fold in archive mode keeps everything (the offline tools); live mode must raise
exactly the same alerts, refuse staff actions with the same words, and stay bounded.
"""

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.compare_rule_eval import replay as rule_replay
from supervisor import history
from supervisor import snapshot as S
from supervisor import state as state_module
from supervisor.alerts import AlertManager
from supervisor.journal import Entry, read_entries
from supervisor.record import record_lines
from supervisor.state import RECENT_CLOSED, State
from tests.snapshot_support import KEY, assert_snapshots_agree
from tests.supervisor_support import BANDS, ROOM_NODE, make_site
from tests.test_rule_eval import JOURNALS, load
from tests.test_supervisor_units import World

CYCLES = RECENT_CLOSED + 50


def stranger(i: int) -> str:
    return f"00000{i:05x}"


def unknown_band_cycles(w: World, n: int) -> list[str]:
    """`n` strangers each walk into the search room (unknown-band), each alert is marked a
    false alarm while its band is still there: the rule keeps wanting that same id."""
    ids = []
    for i in range(n):
        w.at(i, beat=False)  # the search node's own events move its clock
        w.event(ROOM_NODE["search"], "presence.enter",
                {"band": stranger(i), "room": "search", "reader": "search-uhf"})
        w.alerts.reconcile(w.now)
        [aid] = [a["id"] for a in w.state.open_alerts() if a["rule"] == "unknown-band"]
        assert w.staff("false-alarm", {"alert": aid, "note": "a visitor's old band"},
                       user="sup")["ok"]
        w.alerts.reconcile(w.now)
        ids.append(aid)
        if not w.state.archive:
            assert len(w.state.alerts) <= 2 and len(w.state.incidents) <= 2
    return ids


def journaled(s: State) -> dict[str, Any]:
    """The state's summary without the nodes (the test's health beats are not journaled)."""
    return {k: v for k, v in s.snapshot().items() if k != "nodes"}


def raised(w: World) -> list[str]:
    return [m["id"] for _t, m in w.published if m.get("state") == "raised"]


def test_raise_and_close_cycles_stay_bounded_and_no_id_is_raised_twice(tmp_path):
    w = World(tmp_path)
    ids = unknown_band_cycles(w, CYCLES)
    assert len(set(ids)) == CYCLES and raised(w) == ids
    assert set(w.state.closed_alerts) == set(ids)  # tombstones
    assert list(w.state.recent_closed) == ids[-RECENT_CLOSED:]
    assert all(a not in w.state.alerts for a in ids)
    for t in (CYCLES, CYCLES + 60):  # every band still there: wanted, never raised again
        w.at(t)
        w.alerts.reconcile(w.now)
    assert raised(w) == ids

    # After a restart: from a full replay of the journal, and from a snapshot of it.
    db = Path(w.journal.path)
    full = State(w.site)
    for e in read_entries(db):
        full.apply(e)
    assert journaled(full) == journaled(w.state)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        S.make(w.site, db, tmp_path / "snaps", KEY, w.journal.count)
        rebuilt = S.rebuild(w.site, conn, KEY, tmp_path / "snaps")
    finally:
        conn.close()
    assert rebuilt.snapshot == w.journal.count
    assert journaled(rebuilt.state) == journaled(w.state)
    for again in (full, rebuilt.state):
        before = len(w.published)
        am = AlertManager(again, w.journal, w.topics, w.publish)
        again.grace_all(w.now)
        am.reconcile(w.now + 1000)
        assert [m for _t, m in w.published[before:] if m.get("state") == "raised"] == []


def test_a_snapshot_of_one_mode_is_never_loaded_into_the_other(tmp_path):
    w = World(tmp_path)
    unknown_band_cycles(w, 3)
    assert S.fold_fingerprint(w.site) != S.fold_fingerprint(w.site, archive=True)
    S.make(w.site, w.journal.path, tmp_path / "snaps", KEY, w.journal.count)
    conn = sqlite3.connect(f"file:{w.journal.path}?mode=ro", uri=True)
    try:
        r = S.rebuild(w.site, conn, KEY, tmp_path / "snaps", archive=True)
    finally:
        conn.close()
    assert r.snapshot is None and len(r.stale) == 1  # replayed from #1 instead
    assert r.state.archive and len(r.state.alerts) == 3 and not r.state.closed_alerts


@pytest.mark.parametrize("command", ["ack-alert", "resolve-alert", "false-alarm"])
def test_staff_action_on_a_closed_alert_that_left_memory_says_what_it_said(tmp_path, command):
    said = []
    for archive in (True, False):
        w = World(tmp_path / str(archive), archive=archive)
        [aid] = unknown_band_cycles(w, 1)
        assert (aid in w.state.alerts) == archive
        args = {"action": "again"} if command == "ack-alert" else {"note": "again"}
        r = w.staff(command, {"alert": aid, **args}, user="sup")
        assert not r["ok"]
        said.append(r["error"])
        w.journal.close()
    assert said[0] == said[1] and "is already false_alarm" in said[0]


def test_evidence_of_a_closed_alert_that_left_memory_is_still_found(tmp_path):
    from supervisor.evidence import resolve

    w = World(tmp_path)
    w.people()
    w.at(0).event("node-holding", "behaviour", {
        "id": "b1", "phase": "new", "camera": "cam-holding-1", "room": "holding-1",
        "cls": "fall", "score_pct": 90, "evidence": "ev-1"})
    w.alerts.reconcile(w.now)
    [aid] = [a["id"] for a in w.state.open_alerts() if a["rule"] == "fall"]
    assert w.state.alerts[aid]["evidence"] == "ev-1" and w.state.alerts[aid]["detainee"] is None
    w.at(5).event("node-holding", "behaviour", {
        "id": "b1", "phase": "end", "camera": "cam-holding-1", "room": "holding-1",
        "cls": "fall", "score_pct": 90})
    w.alerts.reconcile(w.now)
    for i in range(RECENT_CLOSED + 1):  # push it out of the recently closed ones too
        w.state.apply(_alert_entry(w, f"x-{i}", "raised", w.now))
        w.state.apply(_alert_entry(w, f"x-{i}", "resolved", w.now))
    assert aid not in w.state.alerts and aid not in w.state.recent_closed
    assert w.state.closed_alerts[aid] == ("resolved", w.now, "ev-1")
    with pytest.raises(Exception, match="no evidence 'ev-1' is journaled"):
        resolve(w.state, {"alert": aid})  # found the clip's id; the node never sent the clip
    with pytest.raises(Exception, match="alert 'nope' does not exist"):
        resolve(w.state, {"alert": "nope"})


def _alert_entry(w: World, aid: str, st: str, ts: int) -> Entry:
    return w.journal.append_own("alert", {
        "id": aid, "rule": "panic", "state": st, "severity": "critical", "detainee": None,
        "room": None, "raised_ts": ts, "ts": ts, "message": "m", "by": None, "action": None})


def release(w: World, t: float) -> None:
    """d1's disposition approved, then d1 read at the exit; the rules see it."""
    assert w.staff("approve-disposition", {"detainee": "d1", "disposition": "release"})["ok"]
    w.at(t).enter("d1", "exit")
    w.alerts.reconcile(w.now)


def later(w: World, t: float) -> None:
    """Something journaled at `t` (an officer walks by): the journal's time moves on."""
    w.at(t).enter("o3", "corridor" if w.state.officers["o3"].band not in
                  w.state.rooms["corridor"].bands else "medical")
    w.alerts.reconcile(w.now)


def test_a_released_record_leaves_memory_with_its_alerts_after_the_keep_time(tmp_path):
    w = World(tmp_path)
    w.people()
    w.at(0).enter("d1", "holding-1")
    w.at(1).event("node-holding", "button", {"button": "p1", "kind": "panic"})
    w.alerts.reconcile(w.now)
    [aid] = [a["id"] for a in w.state.open_alerts() if a["rule"] == "panic"]
    assert w.staff("resolve-alert", {"alert": aid, "note": "checked"}, user="sup")["ok"]
    # In custody: the closed alert stays for their record (it lists all their alerts).
    assert aid in w.state.alerts and aid in w.state.closed_alerts
    assert any("ALERT panic" in text for _ts, text in record_lines(w.state, "d1"))
    release(w, 10)
    assert w.state.detainees["d1"].exit_ms is not None and "d1" in w.state.released
    later(w, 10 + state_module.RELEASED_KEEP_MS / 1000 - 1)
    assert "d1" in w.state.detainees  # the desk lists who just left
    later(w, 10 + state_module.RELEASED_KEEP_MS / 1000)
    assert "d1" not in w.state.detainees and "d1" in w.state.left_custody
    assert aid not in w.state.alerts and aid not in w.state.incidents
    # Staff see the same answers as before: left custody, not "not registered".
    r = w.staff("set-observation", {"detainee": "d1", "observation": "level2"})
    assert not r["ok"] and "has already left custody" in r["error"]
    assert w.staff("record-finding", {"detainee": "d1", "finding": "cell 3 clean"},
                   user="insp")["ok"]
    # The whole record is still in the journal (archive replay, as `custody record` does).
    head, lines = history.run(w.site, w.journal.path, "record", detainee="d1")
    assert head is not None and "case c1" in head
    texts = [text for _ts, text in lines]
    assert any("ALERT panic" in x and "[resolved]" in x for x in texts)
    assert "exit (release) at exit" in texts and "inspection finding by insp: cell 3 clean" in texts
    assert w.staff("register-detainee", {
        "detainee": "d1", "band": BANDS["d1"], "case": "c2", "sex": "m",
        "custody_type": "short", "observation": "level1"})["ok"]
    assert w.state.detainees["d1"].case == "c2" and w.state.detainees["d1"].in_custody


def test_a_released_record_an_open_alert_names_waits_for_it(tmp_path):
    w = World(tmp_path)
    w.people()
    w.at(0).enter("d1", "holding-1")
    w.event("node-holding", "button", {"button": "p1", "kind": "panic"})
    w.alerts.reconcile(w.now)
    [aid] = [a["id"] for a in w.state.open_alerts() if a["rule"] == "panic"]
    release(w, 10)
    later(w, 20 + state_module.RELEASED_KEEP_MS / 1000)
    assert "d1" in w.state.detainees and "d1" in w.state.release_waits
    assert w.staff("resolve-alert", {"alert": aid, "note": "checked"}, user="sup")["ok"]
    assert "d1" not in w.state.detainees and aid not in w.state.alerts


def test_live_mode_and_archive_mode_agree_on_the_same_steps(tmp_path):
    """The same commands in both modes: same alert messages, same staff answers."""
    out = []
    for archive in (True, False):
        w = World(tmp_path / str(archive), archive=archive)
        unknown_band_cycles(w, 5)
        w.people()
        w.at(10).enter("d1", "holding-1")
        w.event("node-holding", "button", {"button": "p1", "kind": "panic"})
        w.alerts.reconcile(w.now)
        answers = [w.staff("resolve-alert", {"alert": a["id"], "note": "x"}, user="sup")
                   for a in w.state.open_alerts()]
        release(w, 20)
        later(w, 30 + state_module.RELEASED_KEEP_MS / 1000)
        answers.append(w.staff("set-observation", {"detainee": "d1", "observation": "level2"}))
        answers.append(w.staff("log-case-property", {"item": "i1", "case": "c1",
                                                     "description": "phone",
                                                     "detainee": "d1"}))
        out.append(([(m["id"], m["state"], m["message"]) for _t, m in w.published
                     if "id" in m and m.get("state")],
                    [(a["ok"], a["error"]) for a in answers]))
        assert ("d1" in w.state.detainees) == archive
        w.journal.close()
    assert out[0] == out[1]


@pytest.mark.parametrize("name", JOURNALS)
def test_live_mode_raises_exactly_what_archive_mode_raises(name):
    """The recorded journals (tests/data/rule_eval) through the alert manager in both modes."""
    site, entries = load(name)
    live = rule_replay(site, entries, incremental=True, tick_ms=1000, tail_s=300)
    arch = rule_replay(site, entries, incremental=True, tick_ms=1000, tail_s=300, archive=True)
    assert live.messages == arch.messages and live.messages
    assert arch.held[1] == 0 and arch.held[0] == len({m[1] for m in arch.messages})
    closed = {m[1] for m in live.messages if m[2] in ("resolved", "false_alarm")}
    assert live.held[1] == len(closed)  # every closed one left a tombstone


def test_released_records_leave_in_snapshot_and_replay_alike(tmp_path, monkeypatch):
    """A centre journal long enough for released records to leave memory: a snapshot plus
    the tail still gives exactly what replay from #1 gives."""
    import tomllib

    from protocol.site import parse_site
    from supervisor.journal import Journal
    from tests.journal_builder import build, centre_toml

    monkeypatch.setattr(state_module, "RELEASED_KEEP_MS", 60_000)
    site = parse_site(tomllib.loads(centre_toml("evict-centre", 4, 2)))
    j = Journal(tmp_path / "journal.db")
    build(j, 4, 2, 3000, seed=11, lanes=8, pace=0.03, trouble=0.03)
    j.close()
    conn = sqlite3.connect(f"file:{tmp_path / 'journal.db'}?mode=ro", uri=True)
    try:
        r = S.rebuild(site, conn, KEY, tmp_path / "none")
    finally:
        conn.close()
    assert r.state.left_custody and r.state.closed_alerts and r.state.fold_errors == 0
    assert_snapshots_agree(site, tmp_path / "journal.db", tmp_path / "work")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["r1", "r2"]), st.integers(0, 100),
                          st.one_of(st.none(), st.integers(0, 100))), max_size=8),
       st.integers(0, 120), st.integers(0, 120))
def test_the_recording_gap_index_answers_as_the_scan_did(alerts, raised_by, open_at):
    """State.gap_told (what _segment asks) equals the scan over every alert it replaced, in
    both modes (archive keeps every alert for the scan; live lets the closed ones go)."""
    site = make_site()
    arch, live = State(site, archive=True), State(site)
    for s in (arch, live):
        for i, (room, raised_ts, closed) in enumerate(alerts):
            _fold_alert(s, f"g{i}", room, raised_ts, "raised", raised_ts)
            if closed is not None:
                _fold_alert(s, f"g{i}", room, raised_ts, "resolved", raised_ts + closed)
    for room in ("r1", "r2"):
        scan = any(a["rule"] == "recording-gap" and a["room"] == room
                   and a["raised_ts"] <= raised_by
                   and (a.get("closed_ts") is None or a["closed_ts"] >= open_at)
                   for a in arch.alerts.values())
        assert arch.gap_told(room, raised_by, open_at) == scan
        assert live.gap_told(room, raised_by, open_at) == scan
    assert all(a["state"] == "raised" for a in live.alerts.values())


def _fold_alert(s: State, aid: str, room: str, raised_ts: int, st_: str, ts: int) -> None:
    s._alert({"id": aid, "rule": "recording-gap", "state": st_, "severity": "warning",
              "detainee": None, "room": room, "raised_ts": raised_ts, "ts": ts,
              "message": "m", "by": None, "action": None})


def test_desk_shows_closed_alerts_report_and_records_that_left_memory(tmp_path):
    """The desk's recently closed list, its report and its record view still show what the
    live state let go: the first from the state's recent ones, the others from the journal."""
    from types import SimpleNamespace

    from supervisor.desk.server import Desk
    from supervisor.desk.snapshot import build

    w = World(tmp_path)
    ids = unknown_band_cycles(w, 3)
    w.people()
    w.at(10).enter("d1", "holding-1")
    release(w, 20)
    later(w, 20 + state_module.RELEASED_KEEP_MS / 1000)
    assert "d1" in w.state.left_custody and not set(ids) & set(w.state.alerts)
    snap = build(w.state, w.now, w.state.count, {})
    assert [a["id"] for a in snap["closed"]][:3] == ids[::-1]
    assert snap["closed"][0]["state"] == "false_alarm"
    assert "d1" not in [d["id"] for d in snap["detainees"]]

    figures = history.run(w.site, w.journal.path, "report", start=0, end=w.now + 1)
    assert set(ids) <= {a["id"] for a in figures["alerts"]}
    assert {r["rule"]: r["false_alarms"] for r in figures["rules"]}["unknown-band"] == 3
    assert "d1" in [c["detainee"] for c in figures["custody"]]

    desk = Desk.__new__(Desk)
    desk.site = w.site
    desk.sup = SimpleNamespace(state=w.state, journal=w.journal, submit=lambda fn: fn())
    head, lines = desk.record_data("d1")
    assert head is not None and head.startswith("d1: case c1")
    assert "exit (release) at exit" in [text for _ts, text in lines]
    assert desk.record_data("nobody") == (None, [])  # never registered: as before
    desk.sup.journal = SimpleNamespace(path=tmp_path / "gone.db")
    head, lines = desk.record_data("d1")
    assert head is not None and "custody record d1" in head and lines == []


def test_the_report_refuses_a_live_state(tmp_path):
    """A report from a live state would silently leave closed alerts out: refused."""
    from supervisor.report import collect

    w = World(tmp_path)
    with pytest.raises(ValueError, match="archive=True"):
        collect(w.state, 0, w.now)


def test_history_replays_queue_at_most_two_and_refuse_the_rest(tmp_path):
    """A report page reloaded over and over must not queue replay after replay: with one
    running and one waiting, a third is refused at once, saying why; those two still run."""
    import threading

    w = World(tmp_path)
    unknown_band_cycles(w, 3)
    results: list = []
    with history._one_at_a_time:  # (as if a long replay were running)
        runs = [threading.Thread(target=lambda: results.append(history.run(
            w.site, w.journal.path, "report", start=0, end=w.now + 1)))
            for _ in range(history.MAX_WAITING)]
        for t in runs:
            t.start()
        deadline = time.monotonic() + 10
        while history._waiting < history.MAX_WAITING and time.monotonic() < deadline:
            time.sleep(0.01)
        third: list = []

        def ask() -> None:
            try:
                history.run(w.site, w.journal.path, "report", start=0, end=w.now + 1)
            except history.HistoryError as e:
                third.append(str(e))
        t3 = threading.Thread(target=ask, daemon=True)  # (queued instead: it would hang)
        t3.start()
        t3.join(5)
        assert not t3.is_alive() and third and "already running or waiting" in third[0]
    for t in runs:
        t.join(60)
    assert len(results) == history.MAX_WAITING and results[0] == results[1]
    assert history._waiting == 0
    history.run(w.site, w.journal.path, "report", start=0, end=w.now + 1)  # free again
    w.journal.close()


def test_live_mode_forgets_day_old_txns_and_keeps_the_newest_refusals(tmp_path):
    """Live mode: a staff txn is remembered for TXN_KEEP_MS of journal time (a retry within
    it is a duplicate), then forgotten; refusals keep the newest REFUSED_KEEP. Archive mode
    keeps all of both."""
    import json

    from protocol.staff import request_payload

    for archive in (True, False):
        w = World(tmp_path / str(archive), archive=archive)
        w.people()
        first = request_payload("old-1", None, {"detainee": "d1"})
        assert json.loads(w.staff_h.handle("o1", "record-welfare-check", first))["ok"]
        again = json.loads(w.staff_h.handle("o1", "record-welfare-check", first))
        assert again["result"].get("duplicate") is True  # a retry within the day
        w.at(state_module.TXN_KEEP_MS / 1000 + 10)
        assert w.staff("record-welfare-check", {"detainee": "d1"})["ok"]  # a day later
        assert ("old-1" in w.state.txns) == archive
        assert ("old-1" in w.state.txn_commands) == archive
        if not archive:
            assert len(w.state.txns) == len(w.state.txn_ts) == 1
        for i in range(state_module.REFUSED_KEEP + 30):
            w.staff("record-welfare-check", {"detainee": f"nobody-{i}"})
        kept = [r["reason"] for r in w.state.refused]
        assert len(kept) == (state_module.REFUSED_KEEP + 30 if archive
                             else state_module.REFUSED_KEEP)
        assert kept[-1].endswith(f"'nobody-{state_module.REFUSED_KEEP + 29}' is not registered")
        w.journal.close()
