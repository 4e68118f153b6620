"""State snapshots: snapshot-plus-tail is replay-from-zero; a forged, altered or orphaned
snapshot is refused with its reason, reported, and start-up replays the journal instead.

The journal is a centre's custody days written through the journal API (tests/
journal_builder.py: many rooms, detainees through every step, alerts, device trouble, new
epochs, gaps); supervisor-made journals are checked too (test_supervisor_restart's live flow
and every scenario of test_sim_scenarios).
"""

import dataclasses
import json
import shutil
import sqlite3
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from protocol.canonical import dumpb
from protocol.clock import simulated
from protocol.envelope import verify
from protocol.keys import dump_keys
from protocol.site import Site, parse_site
from protocol.transport import LinkConf
from supervisor import snapshot as S
from supervisor.health import health_body
from supervisor.journal import Journal, read_entries, verify_journal
from tests.journal_builder import build, centre_keys, centre_rooms, centre_toml
from tests.snapshot_support import KEY, assert_snapshots_agree, from_snapshot, full_replay

HOLDING, INTERVIEW, ENTRIES = 6, 4, 6_000


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Site, Path, bytes]:
    """A site, a journal of ENTRIES entries of its custody days, and its fold's dump."""
    d = tmp_path_factory.mktemp("centre")
    site = parse_site(tomllib.loads(centre_toml("snap-centre", HOLDING, INTERVIEW)))
    j = Journal(d / "journal.db")
    build(j, HOLDING, INTERVIEW, ENTRIES, seed=7, lanes=10, pace=0.03, trouble=0.03)
    j.close()
    return site, d / "journal.db", full_replay(site, d / "journal.db")


@pytest.fixture
def centre(made: tuple[Site, Path, bytes]) -> tuple[Site, Path]:
    """The site and journal of `made`."""
    return made[0], made[1]


def test_the_journal_is_a_realistic_one(made):
    site, db, dump = made
    assert verify_journal(db).ok  # a valid chain
    keys = centre_keys([r for r, _ in centre_rooms(HOLDING, INTERVIEW)])
    for e in read_entries(db):  # events sealed and entries written as the supervisor does
        if e.kind == "event":
            verify(e.payload, keys)
        else:
            assert dumpb(e.json()) == e.payload
    state = S.load_state(site, dump)[0]
    assert state.count >= ENTRIES and state.fold_errors == 0
    assert len(state.detainees) >= 30 and sum(c.exit_ms is not None
                                              for c in state.detainees.values()) >= 10
    closed = {t[0] for t in state.closed_alerts.values()}  # live mode: tombstones, in the dump
    assert {a["state"] for a in state.alerts.values()} | closed >= {"resolved", "false_alarm"}
    assert state.recent_closed and not state.archive
    assert state.security_count and state.incidents and state.false_alarms
    assert any(len(n.gaps) for n in state.nodes.values()), "a sequence gap"
    assert any(n.epoch > 1_764_000_000 for n in state.nodes.values()), "a new epoch"


def test_snapshot_plus_tail_gives_the_same_state_as_replay_from_zero(made, tmp_path):
    site, db, dump = made
    n = assert_snapshots_agree(site, db, tmp_path, want=dump)
    assert n >= ENTRIES


def test_the_dump_is_deterministic_and_round_trips(made):
    site, db, body = made
    assert full_replay(site, db) == body
    state, window = S.load_state(site, body)
    assert S.dump_state(state, window) == body
    # Shared objects stay shared: a detainee's open visit is the last of its visits.
    open_visits = [c for c in state.detainees.values() if c.visit is not None]
    assert open_visits and all(c.visit is c.visits[-1] for c in open_visits)


def _one_snapshot(site, db, store: Path, at: int) -> Path:
    S.make(site, db, store, KEY, at)
    (path,) = S.snapshot_files(store)
    return path


def _tamper_body(data: bytes) -> bytes:
    line, _, body = data.partition(b"\n")
    i = body.index(b'"o1"')  # an officer's id in the state, changed to another's
    return line + b"\n" + body[:i] + b'"o2"' + body[i + 4:]


def _resign_with(key: bytes):
    def forge(data: bytes) -> bytes:
        line, _, body = data.partition(b"\n")
        h = json.loads(line)
        body = _tamper_body(data).partition(b"\n")[2]
        return S.seal(key, h["count"], h["head"], h["fold"], body, h["ts"])
    return forge


def _header_field(name: str, value: object):
    def edit(data: bytes) -> bytes:
        line, _, body = data.partition(b"\n")
        h = json.loads(line)
        h[name] = value
        return json.dumps(h).encode() + b"\n" + body
    return edit


TAMPERS = {
    "body altered": (_tamper_body, "body does not match its signed digest"),
    "body altered, digest fixed": (
        lambda d: _header_field("body_sha256", __import__("hashlib").sha256(
            _tamper_body(d).partition(b"\n")[2]).hexdigest())(_tamper_body(d)),
        "signature does not match"),
    "re-signed with another key": (_resign_with(b"\x01" * 32), "signature does not match"),
    "position moved": (_header_field("count", 100), "signature does not match"),
    "cut short": (lambda d: d[: len(d) // 2], "body does not match"),
    "not a snapshot": (lambda d: b"hello", "no header line"),
    "header garbage": (lambda d: b"{not json\n" + d, "header is malformed"),
}


@pytest.mark.parametrize("how", sorted(TAMPERS))
def test_a_tampered_snapshot_is_refused_with_the_reason(how, made, tmp_path):
    site, db, dump = made
    path = _one_snapshot(site, db, tmp_path / "store", 5000)
    change, reason = TAMPERS[how]
    path.write_bytes(change(path.read_bytes()))
    r = from_snapshot(site, db, tmp_path / "store")
    assert r.snapshot is None, "a tampered snapshot was used"
    assert [name for name, _ in r.refused] == [path.name]
    assert reason in r.refused[0][1]
    assert S.dump_state(r.state, r.window) == dump  # fell back: replayed from #1
    # Set aside as evidence, out of the next start's way.
    assert not path.exists() and path.with_name(path.name + ".refused").exists()


def test_a_refused_snapshot_falls_back_to_the_older_good_one(made, tmp_path):
    site, db, dump = made
    store = tmp_path / "store"
    S.make(site, db, store, KEY, 3000)
    S.make(site, db, store, KEY, 5000)
    newest = S.snapshot_files(store)[0]
    newest.write_bytes(_tamper_body(newest.read_bytes()))
    r = from_snapshot(site, db, store)
    assert r.snapshot == 3000 and len(r.refused) == 1
    assert S.dump_state(r.state, r.window) == dump


def _copy(db: Path, to: Path) -> Path:
    to.mkdir(parents=True, exist_ok=True)
    shutil.copy(db, to / "journal.db")
    return to / "journal.db"


def test_a_snapshot_at_a_head_no_longer_in_the_journal_is_refused(centre, tmp_path):
    site, src = centre
    db = _copy(src, tmp_path / "j")
    store = tmp_path / "store"
    S.make(site, db, store, KEY, ENTRIES - 100)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM journal WHERE idx > ?", (ENTRIES - 500,))  # the tail cut off
    conn.commit()
    conn.close()
    r = from_snapshot(site, db, store)
    assert r.snapshot is None and r.replayed == ENTRIES - 500
    assert "which the journal does not have" in r.refused[0][1]


def test_a_snapshot_over_a_rewritten_journal_is_refused(centre, tmp_path):
    site, src = centre
    db = _copy(src, tmp_path / "j")
    store = tmp_path / "store"
    S.make(site, db, store, KEY, 4000)
    from tests.journal_mutations import rechain

    conn = sqlite3.connect(db)  # an insider edits an early entry and re-chains the rest
    conn.execute("UPDATE journal SET seq = seq + 1000000 WHERE idx = 10")
    rechain(conn)
    conn.commit()
    conn.close()
    r = from_snapshot(site, db, store)
    assert r.snapshot is None
    assert "does not carry the head hash the snapshot signed" in r.refused[0][1]


def test_a_snapshot_of_another_journal_is_refused(centre, tmp_path):
    site, db = centre
    other = tmp_path / "other.db"
    j = Journal(other)
    build(j, HOLDING, INTERVIEW, 3000, seed=8, lanes=10, pace=0.03)
    j.close()
    store = tmp_path / "store"
    S.make(site, other, store, KEY, 2000)  # same key, same site, another chain
    r = from_snapshot(site, db, store)
    assert r.snapshot is None and "head hash" in r.refused[0][1]


def test_a_snapshot_made_for_other_rules_is_stale_not_refused(centre, tmp_path):
    site, db = centre
    store = tmp_path / "store"
    S.make(site, db, store, KEY, 4000)
    other = dataclasses.replace(site, rules=dataclasses.replace(site.rules,
                                                                device_offline_s=99))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    r = S.rebuild(other, conn, KEY, store)
    conn.close()
    assert r.snapshot is None and r.refused == [] and len(r.stale) == 1
    assert S.snapshot_files(store), "a stale snapshot is not evidence of anything: kept"


def test_audit_verify_still_walks_the_whole_chain(centre, tmp_path):
    """A snapshot does not vouch for the entries before it: the audit finds an edit there."""
    site, src = centre
    db = _copy(src, tmp_path / "j")
    S.make(site, db, tmp_path / "store", KEY, ENTRIES - 10)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE journal SET seq = seq + 1000000 WHERE idx = 3")
    conn.commit()
    conn.close()
    res = verify_journal(db)
    assert not res.ok and "entry #3" in res.problem


# ---- the supervisor: start-up, reporting, making snapshots in the background -------------

def _supervisor(site, d: Path, db: Path):
    from supervisor.service import Supervisor

    keys = {**centre_keys([r for r, _ in centre_rooms(HOLDING, INTERVIEW)]), "supervisor": KEY}
    (d / "keys.toml").write_text(dump_keys(keys))
    return Supervisor(site, keys, db, d / "checkpoint.json", LinkConf("127.0.0.1", 1),
                      simulated(1.0, time.time()))


def _same_fold(site: Site, db: Path, sup: Any) -> None:
    """The supervisor's state and replay window are the journal's fold (its arrival clocks
    aside: grace_all starts them at start-up, they are not journaled)."""
    state, window = S.load_state(site, full_replay(site, db))
    assert sup.state.snapshot() == state.snapshot()
    assert sup.ingest.window.nodes == window.nodes


def test_the_supervisor_starts_from_a_snapshot_and_makes_the_next_one(centre, tmp_path):
    site, src = centre
    site = dataclasses.replace(site, supervisor=dataclasses.replace(site.supervisor,
                                                                    snapshot_every=1000))
    db = _copy(src, tmp_path / "j")
    store = S.snapshot_dir(tmp_path / "checkpoint.json")
    S.make(site, db, store, KEY, 4500)
    sup = _supervisor(site, tmp_path, db)
    try:
        assert sup.snapshots.health.loaded == 4500
        assert sup.snapshots.health.replayed == sup.journal.count - 4500
        _same_fold(site, db, sup)
        health = json.loads(dumpb(health_body(sup, 0)))["snapshots"]  # as published
        assert health["loaded"] == 4500 and health["refused"] == 0
        # The checkpoint starts the maker (1,000+ entries since the snapshot), in a child.
        sup.write_checkpoint()
        assert sup.snapshots.child is not None
        sup.snapshots.wait(120)
        assert sup.snapshots.health.written == sup.journal.count
        assert sup.snapshots.health.write_failures == 0
    finally:
        sup.close()
    sup2 = _supervisor(site, tmp_path, db)
    try:
        assert sup2.snapshots.health.loaded == sup2.journal.count
        assert sup2.snapshots.health.replayed == 0
    finally:
        sup2.close()


def test_the_supervisor_reports_a_forged_snapshot_and_replays(centre, tmp_path):
    site, src = centre
    db = _copy(src, tmp_path / "j")
    store = S.snapshot_dir(tmp_path / "checkpoint.json")
    path = _one_snapshot(site, db, store, 4500)
    path.write_bytes(_tamper_body(path.read_bytes()))
    sup = _supervisor(site, tmp_path, db)
    try:
        assert sup.snapshots.health.loaded is None
        assert sup.snapshots.health.replayed == sup.journal.count
        _same_fold(site, db, sup)
        health = json.loads(dumpb(health_body(sup, 0)))["snapshots"]
        assert health["refused"] == 1 and "body does not match" in health["problems"][0]
        before = sup.state.security_count
        sup.write_checkpoint()  # the refusal is journaled: a critical `security` alert
        (entry,) = sup.journal.entries(after=sup.journal.count - 1)
        rec = entry.json()
        assert (entry.kind, rec["reason"]) == ("security", "snapshot_refused")
        assert path.name in rec["detail"] and "body does not match" in rec["detail"]
        assert sup.state.security_count == before + 1
        (inc,) = [i for i in sup.state.incidents.values() if i.key.endswith("snapshot_refused")]
        assert inc.rule == "security" and inc.open  # the rules raise it as a critical alert
    finally:
        sup.close()
