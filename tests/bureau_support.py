"""Helpers for bureau tests: the bureau's workers in a thread, a site journal writer, checks."""

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from bureau.worker import BureauConf, Worker
from protocol.canonical import dumpb
from supervisor.journal import Journal, checkpoint, write_checkpoint


class BureauThread:
    """`n` bureau workers on their own event loop in a thread (as `custody bureau` runs them)."""

    def __init__(self, conf: BureauConf, n: int = 2, prefix: str = "w") -> None:
        self.conf = conf
        self.loop = asyncio.new_event_loop()
        self.workers: list[Worker] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        for i in range(n):
            self.add(f"{prefix}{i + 1}")

    def add(self, name: str) -> Worker:
        """Start one more worker (the others rebalance)."""
        async def make() -> Worker:
            w = Worker(self.conf, name)
            w.task = asyncio.create_task(w.run())  # type: ignore[attr-defined]
            return w
        w = asyncio.run_coroutine_threadsafe(make(), self.loop).result(10)
        self.workers.append(w)
        return w

    def stop(self) -> None:
        """Stop every worker and the loop."""
        async def stop_all() -> None:
            for w in self.workers:
                w.stop.set()
            await asyncio.gather(*(w.task for w in self.workers),  # type: ignore[attr-defined]
                                 return_exceptions=True)
        asyncio.run_coroutine_threadsafe(stop_all(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class SiteWriter:
    """A site's journal written at a steady rate (short simulated custody), with checkpoints."""

    def __init__(self, tmp: Path, site: str, key: bytes, rate: float = 50.0,
                 checkpoint_every_s: float = 0.5) -> None:
        self.site, self.key, self.rate = site, key, rate
        self.db, self.cp = tmp / f"{site}.db", tmp / f"{site}.checkpoint.json"
        self.journal = Journal(self.db)
        self.every = checkpoint_every_s
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def write(self, n: int) -> None:
        """Append n entries now and file a checkpoint."""
        for _ in range(n):
            self._one()
        self.checkpoint()

    def _one(self) -> None:
        i = self.journal.count + 1
        self.journal.append_own("staff", {"command": "note", "user": f"o{i % 3 + 1}",
                                          "txn": f"{self.site}-{i}", "ts": int(time.time() * 1000),
                                          "args": {"detainee": f"d{i % 4}", "n": i}})

    def checkpoint(self) -> bytes:
        """Sign and file a checkpoint of the current head."""
        data = checkpoint(self.key, self.journal.count, self.journal.head,
                          int(time.time() * 1000))
        write_checkpoint(self.cp, data)
        return data

    def start(self) -> None:
        """Write `rate` entries per second until stop()."""
        def run() -> None:
            next_cp = time.monotonic() + self.every
            period = 1.0 / self.rate
            t = time.monotonic()
            while not self.stop_event.is_set():
                self._one()
                if time.monotonic() >= next_cp:
                    self.checkpoint()
                    next_cp += self.every
                t += period
                self.stop_event.wait(max(0.0, t - time.monotonic()))
            self.checkpoint()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop writing (a final checkpoint is filed)."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(10)


def journal_rows(db: Path) -> list[tuple[Any, ...]]:
    """(idx, node, epoch, seq, kind, payload, hash) of a site journal."""
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in
                c.execute("SELECT idx, node, epoch, seq, kind, payload, hash FROM journal "
                          "ORDER BY idx")]
    finally:
        c.close()


def mirror_rows(dsn: str, site: str) -> list[tuple[Any, ...]]:
    """The bureau's mirror of a site, in index order."""
    with psycopg.connect(dsn) as c:
        return [(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in c.execute(
            "SELECT idx, node, epoch, seq, kind, payload, hash FROM mirror WHERE site = %s "
            "ORDER BY idx", (site,))]


def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query."""
    with psycopg.connect(dsn) as c:
        return list(c.execute(sql, params))


def wait_until(pred: Any, timeout: float, what: str, step: float = 0.2) -> None:
    """Poll pred() until true, else fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except psycopg.errors.UndefinedTable:  # the bureau has not made its tables yet
            pass
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def mirrored(dsn: str, site: str) -> int:
    """How many entries of a site the bureau has mirrored."""
    try:
        r = query(dsn, "SELECT last_idx FROM bureau_site WHERE site = %s", site)
    except psycopg.errors.UndefinedTable:
        return 0
    return int(r[0][0]) if r else 0


def note(i: int) -> bytes:
    """A small payload."""
    return dumpb({"i": i})


def publish_journal(urls: tuple[str, ...], site: str, db: Path, checkpoint_data: bytes,
                    skip: frozenset[int] = frozenset()) -> None:
    """Publish a site's journal and one checkpoint straight to JetStream, leaving out the
    entries in `skip` (what the uplink never does: an entry lost after its ack)."""
    import nats

    from protocol.uplink import checkpoint_headers, ensure_stream, entry_headers, site_subject

    async def go() -> None:
        nc = await nats.connect(servers=list(urls))
        try:
            js = nc.jetstream(timeout=5)
            await ensure_stream(js)
            for idx, node, epoch, seq, kind, payload, h in journal_rows(db):
                if idx not in skip:
                    await js.publish(site_subject(site), payload, headers=entry_headers(
                        site, idx, node, epoch, seq, kind, h))
            await js.publish(site_subject(site), checkpoint_data,
                             headers=checkpoint_headers(site, checkpoint_data))
        finally:
            await nc.close()
    asyncio.run(go())


@contextlib.contextmanager
def one_site_witnessed(tmp: Path, dsn: str, urls: tuple[str, ...], site_id: str, key: bytes,
                       n: int = 30) -> Iterator[tuple["SiteWriter", Any]]:
    """A site with n journal entries, its uplink and one bureau worker, once the bureau has
    witnessed checkpoint n; the worker and the uplink stop on exit."""
    from protocol.site import BureauConf as SiteBureau
    from supervisor.uplink import Uplink
    site = SiteWriter(tmp, site_id, key)
    site.write(n)
    up = Uplink(site_id, site.db, site.cp, SiteBureau(urls), poll_s=0.05)
    up.start()
    bureau = BureauThread(BureauConf(urls, dsn, {site_id: key}), 1)
    try:
        wait_until(lambda: query(dsn, "SELECT cp_count FROM bureau_site WHERE site = %s",
                                 site_id) == [(n,)], 30, f"checkpoint {n} witnessed")
        yield site, up
    finally:
        bureau.stop()
        up.stop()
