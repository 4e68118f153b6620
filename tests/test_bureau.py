"""The bureau tier against real servers: nats-server (JetStream) and PostgreSQL 15."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

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
    with NatsCluster(1) as nats:
        site = SiteWriter(tmp_path, "site-t", KEY_A)
        site.write(30)
        up = Uplink("site-t", site.db, site.cp, SiteBureau(tuple(nats.urls)), poll_s=0.05)
        up.start()
        bureau = BureauThread(BureauConf(tuple(nats.urls), fresh_db, {"site-t": KEY_A}), 1)
        try:
            wait_until(lambda: query(fresh_db, "SELECT cp_count FROM bureau_site WHERE site = "
                                     "'site-t'") == [(30,)], 30, "checkpoint 30 witnessed")
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
        finally:
            bureau.stop()
            up.stop()
