"""The bureau tier against real servers: nats-server (JetStream) and PostgreSQL 15."""

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bureau.worker import BureauConf
from custody.natsd import NatsCluster
from custody.pgsql import PgServer
from protocol.site import BureauConf as SiteBureau
from supervisor.uplink import Uplink
from tests.bureau_support import (
    BureauThread,
    SiteWriter,
    journal_rows,
    mirror_rows,
    mirrored,
    one_site_witnessed,
    publish_journal,
    query,
    wait_until,
)
from tests.journal_mutations import rechain

KEY_A, KEY_B, KEY_C = b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    with PgServer() as server:
        yield server


@pytest.fixture
def fresh_db(pg: PgServer) -> Iterator[str]:
    """A database of its own for each test."""
    import psycopg
    name = f"t{time.monotonic_ns()}"
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield pg.dsn.replace(f"dbname={pg.dbname}", f"dbname={name}")


def test_tamper_rechained_and_resigned_is_caught(tmp_path: Path, fresh_db: str) -> None:
    with NatsCluster(1) as nats, one_site_witnessed(tmp_path, fresh_db, tuple(nats.urls),
                                                    "site-t", KEY_A) as (site, up):
        assert mirror_rows(fresh_db, "site-t") == journal_rows(site.db)
        assert query(fresh_db, "SELECT count(*) FROM security_alert") == [(0,)]
        # An insider edits entry 7, recomputes every later hash and re-signs the checkpoint
        # with the site's own key: the site's own audit would now pass.
        site.journal.close()
        import sqlite3
        db = sqlite3.connect(site.db)
        db.execute("UPDATE journal SET payload = CAST(replace(CAST(payload AS TEXT), "
                   "'\"n\":7', '\"n\":8') AS BLOB) WHERE idx = 7")
        rechain(db)
        db.commit()
        db.close()
        from supervisor.journal import Journal, verify_journal
        site.journal = Journal(site.db)
        sent = up.status.checkpoints_sent
        cp = site.checkpoint()
        assert verify_journal(site.db, KEY_A, cp).ok  # the site alone cannot tell
        wait_until(lambda: query(fresh_db, "SELECT kind FROM security_alert") ==
                   [("checkpoint-mismatch",)], 30, "the re-signed checkpoint flagged")
        assert up.status.checkpoints_sent == sent + 1
        site.write(3)  # the site carries on journaling on the forged head: kept aside
        wait_until(lambda: query(fresh_db, "SELECT count(*) FROM rejected WHERE reason "
                                 "LIKE 'site is flagged%%'") == [(3,)], 30,
                   "later entries of the flagged site set aside")
        assert query(fresh_db, "SELECT tampered FROM bureau_site") == [(True,)]
        # The witnessed history is kept as it was uplinked, not overwritten.
        assert mirrored(fresh_db, "site-t") == 30
        assert mirror_rows(fresh_db, "site-t")[6] != journal_rows(site.db)[6]


def test_nats_down_site_journals_and_uplink_catches_up_in_order(tmp_path: Path,
                                                                fresh_db: str) -> None:
    """The only NATS server is killed: the site keeps journaling, the uplink reports the
    failure and keeps its position; when the server is back everything arrives, in order."""
    with NatsCluster(1) as nats:
        site = SiteWriter(tmp_path, "site-d", KEY_A)
        site.write(10)
        up = Uplink("site-d", site.db, site.cp, SiteBureau(tuple(nats.urls)), poll_s=0.05)
        up.start()
        bureau = BureauThread(BureauConf(tuple(nats.urls), fresh_db, {"site-d": KEY_A}), 1)
        try:
            wait_until(lambda: mirrored(fresh_db, "site-d") == 10, 30, "first 10 mirrored")
            nats.kill(0)
            site.write(50)  # journaling goes on without NATS
            wait_until(lambda: up.status.failures > 0 or not up.status.connected, 15,
                       "the uplink noticing NATS is gone")
            assert up.status.sent_idx <= 10 < site.journal.count
            nats.restart(0)
            wait_until(lambda: query(fresh_db, "SELECT cp_count FROM bureau_site") == [(60,)],
                       60, "all 60 entries and the last checkpoint witnessed")
            assert mirror_rows(fresh_db, "site-d") == journal_rows(site.db)
            assert query(fresh_db, "SELECT count(*) FROM security_alert") == [(0,)]
        finally:
            bureau.stop()
            up.stop()


def test_an_entry_the_consumer_skips_is_read_again_not_alerted(
        tmp_path: Path, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer that skips a message (seen around a server's SIGKILL) must not stall the
    site nor raise a false checkpoint-ahead: the worker reads the stream again first, and
    what it handled before (the checkpoints) is not judged twice."""
    from nats.js.client import JetStreamContext

    from protocol.uplink import H_IDX
    real_fetch = JetStreamContext.PullSubscription.fetch
    dropped: list[int] = []

    async def skipping_fetch(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        msgs = await real_fetch(self, *args, **kwargs)
        keep = []
        for m in msgs:
            if not dropped and (m.headers or {}).get(H_IDX) == "31":
                dropped.append(m.metadata.sequence.stream)  # delivered once, never seen
                continue
            keep.append(m)
        return keep
    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", skipping_fetch)
    with NatsCluster(1) as nats, one_site_witnessed(tmp_path, fresh_db, tuple(nats.urls),
                                                    "site-s", KEY_A) as (site, _up):
        site.write(30)
        wait_until(lambda: query(fresh_db, "SELECT cp_count FROM bureau_site") == [(60,)],
                   30, "checkpoint 60 witnessed after the re-read")
        assert dropped, "the fault was not injected"
        assert mirror_rows(fresh_db, "site-s") == journal_rows(site.db)
        assert query(fresh_db, "SELECT count(*) FROM security_alert") == [(0,)]
        assert query(fresh_db, "SELECT count(*) FROM rejected") == [(0,)]


def test_an_entry_missing_from_the_stream_is_alerted_once_after_the_re_read(
        tmp_path: Path, fresh_db: str) -> None:
    """An entry that is not in the stream at all (lost after its ack) is a finding: the
    checkpoint counting it is flagged once, after the stream was read again."""
    with NatsCluster(1) as nats:
        site = SiteWriter(tmp_path, "site-m", KEY_A)
        site.write(40)
        cp = site.checkpoint()
        publish_journal(tuple(nats.urls), "site-m", site.db, cp, skip=frozenset({21}))
        bureau = BureauThread(BureauConf(tuple(nats.urls), fresh_db, {"site-m": KEY_A}), 1)
        try:
            wait_until(lambda: query(fresh_db, "SELECT kind, idx FROM security_alert") ==
                       [("checkpoint-ahead", 40)], 30, "the checkpoint ahead of the mirror")
            time.sleep(6.5)  # past GAP_REREAD_S: no second re-read, no second verdict
            assert query(fresh_db, "SELECT count(*) FROM security_alert") == [(1,)]
            assert query(fresh_db, "SELECT reason FROM rejected") == [("checkpoint-ahead",)]
            assert mirrored(fresh_db, "site-m") == 20
        finally:
            bureau.stop()


CUT_S = float(os.environ.get("CUSTODY_UPLINK_CUT_S", "8"))  # the 60 s: benchmarks


@pytest.mark.slow
def test_kill9_nats_node_and_cut_uplink_lose_nothing(tmp_path: Path, fresh_db: str) -> None:
    """3 sites uplink into a 3-node cluster (R3); one server is killed with SIGKILL, one
    site's uplink is cut for CUT_S while it keeps journaling, a third worker joins: every
    entry arrives once, in order, and every final checkpoint is witnessed."""
    keys = {"site-a": KEY_A, "site-b": KEY_B, "site-c": KEY_C}
    with NatsCluster(3) as nats:
        urls = tuple(nats.urls)
        conf = SiteBureau(urls, replicas=3)
        writers = {s: SiteWriter(tmp_path, s, k, rate=40) for s, k in keys.items()}
        ups = {s: Uplink(s, w.db, w.cp, conf, poll_s=0.05) for s, w in writers.items()}
        bureau = BureauThread(BureauConf(urls, fresh_db, keys, replicas=3), 2)
        try:
            for s in keys:
                writers[s].start()
                ups[s].start()
            wait_until(lambda: all(mirrored(fresh_db, s) > 20 for s in keys), 60,
                       "first entries mirrored")
            nats.kill(0)  # SIGKILL one of three servers mid-stream
            ups["site-c"].stop(drain_s=0)  # site-c loses its uplink; it keeps journaling
            cut_at = writers["site-c"].journal.count
            time.sleep(CUT_S)
            assert writers["site-c"].journal.count > cut_at + 10  # the site went on
            ups["site-c"] = Uplink("site-c", writers["site-c"].db, writers["site-c"].cp, conf,
                                   poll_s=0.05)
            ups["site-c"].start()  # resumes from its position in the site database
            bureau.add("w3")  # a new worker: the three sites spread one each
            wait_until(lambda: sorted(n for (n,) in query(
                fresh_db, "SELECT count(*) FROM bureau_lease GROUP BY worker")) == [1, 1, 1],
                60, "leases rebalanced over three workers")
            time.sleep(1.0)
            for w in writers.values():
                w.stop()
            final = {s: w.journal.count for s, w in writers.items()}
            wait_until(lambda: all(query(fresh_db, "SELECT cp_count FROM bureau_site WHERE "
                                         "site = %s", s) == [(final[s],)] for s in keys),
                       60, f"final checkpoints witnessed {final}")
            for s, w in writers.items():
                rows = mirror_rows(fresh_db, s)
                assert rows == journal_rows(w.db), s  # nothing missing, doubled or reordered
            assert query(fresh_db, "SELECT count(*) FROM security_alert") == [(0,)]
            assert query(fresh_db, "SELECT count(*) FROM rejected") == [(0,)]
            # Per-site order at the bureau: mirrored in index order (commit timestamps rise).
            for s in keys:
                order = [r[0] for r in query(fresh_db, "SELECT idx FROM mirror WHERE site = %s "
                                             "ORDER BY mirrored, idx", s)]
                assert order == sorted(order)
        finally:
            for w in writers.values():
                w.stop()
            for u in ups.values():
                u.stop(drain_s=0)
            bureau.stop()


def test_two_supervisors_mirrored_entry_for_entry_and_bulletin(broker, tmp_path: Path,
                                                               fresh_db: str) -> None:
    """Two real supervisors (site files with [bureau]) run short custody flows over a real
    Mosquitto; the bureau's mirror equals each journal (same hashes), the final signed
    checkpoints are witnessed, and the bulletin lists both sites."""
    import dataclasses
    import threading

    from bureau.bulletin import write_bulletin
    from protocol.transport import LinkConf
    from supervisor.service import Supervisor
    from tests.supervisor_support import KEYS, Driver, make_directory, make_site, sped_up
    from tests.test_supervisor_rules import search_first

    keys = {"site-a": KEY_A, "site-b": KEY_B}
    with NatsCluster(1) as nats:
        urls = tuple(nats.urls)
        bureau = BureauThread(BureauConf(urls, fresh_db, keys), 2)
        sups, threads, drivers = {}, [], {}
        try:
            clock = sped_up(30.0)
            for sid, key in keys.items():
                site = dataclasses.replace(make_site(), id=sid, bureau=SiteBureau(urls))
                (tmp_path / sid).mkdir()
                sup = Supervisor(site, {**KEYS, "supervisor": key}, tmp_path / sid / "j.db",
                                 tmp_path / sid / "cp.json", LinkConf(broker.host, broker.port),
                                 clock, checkpoint_interval_s=1, accounts=make_directory())
                t = threading.Thread(target=sup.run, daemon=True)
                t.start()
                assert sup.connected.wait(10) and sup.subscribed.wait(10)
                sups[sid], drivers[sid] = sup, Driver(broker.host, broker.port, site, clock)
                threads.append(t)
            for sid, d in drivers.items():
                search_first(d, True)  # a detainee taken to the medical room before a search
                a = d.wait_for("search-first", timeout=15)
                if sid == "site-a":
                    d.staff("ack-alert", {"alert": a["id"], "action": "escorted back"}, "o1")
                    d.staff("record-finding", {"finding": "searched late", "detainee": "d1",
                                               "severity": "concern"}, "insp")  # legal officer
                else:
                    d.staff("false-alarm", {"alert": a["id"], "note": "drill"}, "o2")
                    d.staff("unlock-account", {"account": "o3"}, "o1", expect_ok=False)
            for sup in sups.values():
                sup.stop_event.set()
            for t in threads:
                t.join(15)
            counts = {sid: len(journal_rows(tmp_path / sid / "j.db")) for sid in keys}
            assert all(n > 10 for n in counts.values()), counts
            wait_until(lambda: all(query(fresh_db, "SELECT cp_count FROM bureau_site WHERE "
                                         "site = %s", sid) == [(counts[sid],)] for sid in keys),
                       30, f"final checkpoints {counts} witnessed")
            from supervisor.journal import read_checkpoints
            for sid in keys:
                assert mirror_rows(fresh_db, sid) == journal_rows(tmp_path / sid / "j.db")
                # Every checkpoint the supervisor filed (append-only store) was witnessed.
                filed = read_checkpoints(tmp_path / sid / "cp.json")
                assert len(filed) >= 2
                assert query(fresh_db, "SELECT count(*) FROM site_checkpoint WHERE site = %s",
                             sid) == [(len(set(filed)),)]
            assert query(fresh_db, "SELECT count(*) FROM security_alert") == [(0,)]
            assert sorted(query(fresh_db, "SELECT site, rule, acked_by, closed_state FROM "
                                "report_alert")) == [("site-a", "search-first", "o1", None),
                                                     ("site-b", "search-first", None,
                                                      "false_alarm")]
            out = tmp_path / "bulletin"
            write_bulletin(fresh_db, 0, 4102444800000, out)  # to 2100
            for lang, word in (("en", "Inspection bulletin"), ("zh", "执法监督通报")):
                page = (out / f"bulletin-{lang}.html").read_text(encoding="utf-8")
                assert word in page and "site-a" in page and "site-b" in page and "<svg" in page
            sites_csv = (out / "sites.csv").read_text().splitlines()
            assert [r.split(",")[0] for r in sites_csv[1:]] == ["site-a", "site-b"]
            # records, problems, alerts, false alarms, refused ... inspection rate, findings, open
            a_row, b_row = sites_csv[1].split(","), sites_csv[2].split(",")
            assert a_row[1:6] + a_row[9:12] == ["1", "1", "1", "0", "0", "100%", "1", "1"]
            assert b_row[1:6] + b_row[9:12] == ["1", "1", "0", "1", "1", "0%", "0", "0"]
            assert "searched late" in (out / "findings.csv").read_text()
            assert "site-b/o1" in (out / "officers.csv").read_text()  # the refused request
            assert "search-first,2,1,0.5" in (out / "rules.csv").read_text()
        finally:
            for d in drivers.values():
                d.close()
            for sup in sups.values():
                sup.stop_event.set()
            bureau.stop()


# ---- units (no servers) --------------------------------------------------------------------

def test_witness_checks_chain_resend_and_checkpoints() -> None:
    from bureau.witness import (
        GENESIS_HEX,
        Problem,
        SiteState,
        chain_next,
        check_checkpoint,
        check_resent,
        parse_checkpoint,
    )
    from protocol.uplink import WireEntry
    from supervisor.journal import checkpoint, entry_hash

    st = SiteState("s1")
    h1 = entry_hash(bytes(32), "n1", 1, 1, "event", b"{}").hex()
    e1 = WireEntry("s1", 1, "n1", 1, 1, "event", b"{}", h1)
    assert chain_next(st, e1) == h1
    with pytest.raises(Problem) as p:  # edited payload under the original hash
        chain_next(st, WireEntry("s1", 1, "n1", 1, 1, "event", b"{ }", h1))
    assert p.value.kind == "entry-does-not-chain"
    check_resent(e1, GENESIS_HEX, h1)  # an idempotent re-send
    with pytest.raises(Problem, match="re-sent entry #1"):
        check_resent(WireEntry("s1", 1, "n1", 1, 2, "event", b"{}", h1), GENESIS_HEX, h1)
    cp = checkpoint(KEY_A, 1, bytes.fromhex(h1), 5)
    assert parse_checkpoint("s1", KEY_A, cp) == (1, h1, 5)
    for key, kind in ((KEY_B, "checkpoint-signature"), (None, "checkpoint-unverifiable")):
        with pytest.raises(Problem) as p:
            parse_checkpoint("s1", key, cp)
        assert p.value.kind == kind
    st.last_idx, st.head, st.cp_count, st.cp_head = 1, h1, 1, h1
    check_checkpoint(st, 1, h1, h1)
    with pytest.raises(Problem) as p:
        check_checkpoint(st, 0, GENESIS_HEX, GENESIS_HEX)
    assert p.value.kind == "checkpoint-goes-back"
    with pytest.raises(Problem) as p:
        check_checkpoint(st, 1, "ab" * 32, h1)
    assert p.value.kind == "checkpoint-mismatch"


def test_uplink_wire_format_round_trip_and_refusals() -> None:
    from protocol.uplink import (
        UplinkFormatError,
        WireCheckpoint,
        WireEntry,
        checkpoint_headers,
        decode,
        entry_headers,
        site_subject,
    )

    h = entry_headers("s1", 7, "n1", 2, 9, "event", "ab" * 32)
    assert h["Nats-Msg-Id"] == "s1:7"
    assert decode(site_subject("s1"), h, b"x") == WireEntry("s1", 7, "n1", 2, 9, "event", b"x",
                                                            "ab" * 32)
    assert decode("custody.site.s1", checkpoint_headers("s1", b"c"), b"c") == \
        WireCheckpoint("s1", b"c")
    for subject, hdr in (("custody.site.s2", h), ("other.s1", h),
                         ("custody.site.s1", {**h, "Custody-Idx": "8"}),
                         ("custody.site.s1", {**h, "Custody-Kind": "x"})):
        with pytest.raises(UplinkFormatError):
            decode(subject, hdr, b"x")


@pytest.mark.parametrize(("bureau", "key"), [
    ({"urls": ["http://x:1"]}, "bureau.urls[0]"),
    ({"urls": []}, "bureau.urls"),
    ({"urls": ["nats://a:4222"], "stream": "a.b"}, "bureau.stream"),
    ({"urls": ["nats://a:4222"], "replicas": 7}, "bureau.replicas"),
    ({"urls": ["nats://a:4222"], "url": "x"}, "bureau.url"),
])
def test_site_bureau_keys_validated_naming_the_key(bureau, key) -> None:
    from protocol.config import ConfigError, read_toml
    from protocol.site import DEMO_SITE, parse_site

    data = read_toml(DEMO_SITE)
    assert parse_site(data, "s.toml").bureau is None
    data["bureau"] = bureau
    with pytest.raises(ConfigError, match=rf"s\.toml: {re.escape(key)}:"):
        parse_site(data, "s.toml")
    data["bureau"] = {"urls": ["nats://a:4222", "tls://[::1]:4222"], "replicas": 3}
    assert parse_site(data, "s.toml").bureau == SiteBureau(("nats://a:4222", "tls://[::1]:4222"),
                                                           "CUSTODY", 3)


def test_a_consumer_that_stopped_on_its_own_is_reported_when_its_lease_is_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    """A site's consumer task that ended with an error (its database went away mid-batch) is
    logged when the round drops it, not swallowed with the cancellation."""
    import asyncio

    from bureau.worker import Worker

    class _Pg:
        async def execute(self, *args: Any) -> None:
            return None

    async def failing() -> None:
        raise OSError("connection to the database lost")

    async def go() -> None:
        w = Worker(BureauConf(("nats://127.0.0.1:1",), "dbname=x"), "w-test")
        w.pg = _Pg()  # type: ignore[assignment]
        w.tasks["site-x"] = asyncio.create_task(failing())
        await asyncio.sleep(0)
        await w._drop("site-x")
    with caplog.at_level("ERROR", logger="bureau.worker"):
        asyncio.run(go())
    assert "site site-x: consumer stopped: OSError('connection to the database lost')" in \
        caplog.text
