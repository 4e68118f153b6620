"""The uplink: the site's journal and signed checkpoints to NATS JetStream, in order.

Runs as a thread of the supervisor (when the site file has a [bureau] table) or alone as
`custody uplink`. It reads the journal's rows and the checkpoint file (never the supervisor's
objects), publishes each entry on the site's subject with message id site:index, waits for
JetStream's acks, and only then moves its position, which it keeps in its own table in the
site database. While NATS is unreachable the site journals as usual; the uplink retries and
catches up from its position, in order. Every filed checkpoint (the append-only store, read
with journal.read_checkpoints) is sent once every entry it counts has been acknowledged, so
the bureau sees each checkpoint after the entries it covers.
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.site import BureauConf
from protocol.uplink import checkpoint_headers, ensure_stream, entry_headers, site_subject

from .journal import read_checkpoints

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS uplink (
    stream TEXT PRIMARY KEY,
    sent_idx INTEGER NOT NULL,
    sent_checkpoint TEXT NOT NULL
);
"""
BATCH = 500  # entries in flight at once
ACK_TIMEOUT_S = 5.0


@dataclass
class UplinkStatus:
    """What the uplink has done; read by health and tests."""

    sent_idx: int = 0
    journal_count: int = 0
    connected: bool = False
    checkpoints_sent: int = 0
    failures: int = 0
    last_error: str = ""


class Uplink:
    """Ships one site's journal to JetStream; `run()` blocks until `stop_event` is set."""

    def __init__(self, site_id: str, db_path: str | Path, checkpoint_file: str | Path,
                 conf: BureauConf, poll_s: float = 0.1, batch: int = BATCH) -> None:
        self.site_id, self.conf, self.poll_s, self.batch = site_id, conf, poll_s, batch
        self.db_path, self.checkpoint_file = Path(db_path), Path(checkpoint_file)
        self.subject = site_subject(site_id)
        self.stop_event = threading.Event()
        self.status = UplinkStatus()
        self._sent_cp = ""
        self._thread: threading.Thread | None = None
        self._drain_until = 0.0

    # ---- position (its own table in the site database) ----------------------------------

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.db_path), timeout=30, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        row = db.execute("SELECT sent_idx, sent_checkpoint FROM uplink WHERE stream = ?",
                         (self.conf.stream,)).fetchone()
        if row is not None:
            self.status.sent_idx, self._sent_cp = int(row[0]), str(row[1])
        return db

    def _save(self, db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO uplink (stream, sent_idx, sent_checkpoint) VALUES (?, ?, ?) "
                   "ON CONFLICT (stream) DO UPDATE SET sent_idx = excluded.sent_idx, "
                   "sent_checkpoint = excluded.sent_checkpoint",
                   (self.conf.stream, self.status.sent_idx, self._sent_cp))

    # ---- thread --------------------------------------------------------------------------

    def start(self) -> None:
        """Run in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name=f"uplink-{self.site_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0, drain_s: float = 2.0) -> None:
        """Ask the loop to stop (after up to drain_s shipping what is left) and wait for it."""
        self._drain_until = time.monotonic() + drain_s
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """The uplink loop (its own asyncio loop)."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        import nats
        db = self._open()
        nc: Any = None
        stream_ok = False
        try:
            while not self.stop_event.is_set() or (
                    nc is not None and nc.is_connected and time.monotonic() < self._drain_until):
                if nc is None or nc.is_closed:
                    try:
                        nc = await nats.connect(
                            servers=list(self.conf.urls), name=f"custody-uplink-{self.site_id}",
                            connect_timeout=2, allow_reconnect=True, max_reconnect_attempts=-1,
                            reconnect_time_wait=0.5, error_cb=self._on_error,
                            disconnected_cb=self._on_disconnect,
                            reconnected_cb=self._on_reconnect)
                        self.status.connected = True
                    except Exception as e:
                        self._failed(f"cannot connect to {', '.join(self.conf.urls)}: {e!r}")
                        nc = None
                        await self._sleep(1.0)
                        continue
                try:
                    js = nc.jetstream(timeout=ACK_TIMEOUT_S)
                    if not stream_ok:
                        await ensure_stream(js, self.conf.stream, self.conf.replicas)
                        stream_ok = True
                    moved = await self._pump(db, js)
                except Exception as e:  # NATS down or a leader moving: retry from position
                    self._failed(f"publish failed at entry #{self.status.sent_idx + 1}: {e!r}")
                    await self._sleep(0.5)
                    continue
                if self.stop_event.is_set():
                    if not moved or time.monotonic() > self._drain_until:
                        break
                elif not moved:
                    await self._sleep(self.poll_s)
        finally:
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
            db.close()

    async def _sleep(self, s: float) -> None:
        end = time.monotonic() + s
        while not self.stop_event.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(0.05, s))

    def _failed(self, what: str) -> None:
        self.status.failures += 1
        if what != self.status.last_error:
            log.warning("uplink %s: %s", self.site_id, what)
        self.status.last_error = what

    async def _on_error(self, e: Exception) -> None:
        self.status.last_error = f"nats: {e!r}"

    async def _on_disconnect(self) -> None:
        self.status.connected = False
        log.warning("uplink %s: disconnected from NATS; journaling continues", self.site_id)

    async def _on_reconnect(self) -> None:
        self.status.connected = True
        log.info("uplink %s: reconnected", self.site_id)

    # ---- one step ------------------------------------------------------------------------

    async def _pump(self, db: sqlite3.Connection, js: Any) -> bool:
        """Publish the next batch of entries, else a new checkpoint; True if anything moved."""
        cp = self._read_checkpoint()
        rows = db.execute("SELECT idx, node, epoch, seq, kind, payload, hash FROM journal "
                          "WHERE idx > ? ORDER BY idx LIMIT ?",
                          (self.status.sent_idx, self.batch)).fetchall()
        if rows:
            futures = []
            for r in rows:
                hdr = entry_headers(self.site_id, r[0], r[1], r[2], r[3], r[4], r[6])
                futures.append((int(r[0]), await js.publish_async(self.subject, bytes(r[5]),
                                                                   headers=hdr)))
            first_error: BaseException | None = None
            for idx, fut in futures:
                if first_error is not None:
                    fut.cancel()
                    continue
                try:
                    await asyncio.wait_for(fut, ACK_TIMEOUT_S)
                except BaseException as e:
                    first_error = e
                    continue
                # Acks arrive for a prefix: the position moves only over contiguous acks, so
                # a retry re-sends (same ids) from the first one missing, in order.
                self.status.sent_idx = idx
            self._save(db)
            self.status.journal_count = max(self.status.journal_count, self.status.sent_idx)
            if first_error is not None:
                raise first_error
            return True
        if cp is None or hashlib.sha256(cp).hexdigest() == self._sent_cp:
            return False
        # A new latest checkpoint: ship every one filed since the last shipped (the
        # append-only store keeps them all), in order, each once its entries are acked.
        filed = read_checkpoints(self.checkpoint_file) or [cp]
        digests = [hashlib.sha256(c).hexdigest() for c in filed]
        start = digests.index(self._sent_cp) + 1 if self._sent_cp in digests else len(filed) - 1
        moved = False
        for c, d in zip(filed[start:], digests[start:], strict=True):
            if _count(c) > self.status.sent_idx:
                break
            await js.publish(self.subject, c, headers=checkpoint_headers(self.site_id, c))
            self._sent_cp = d
            self._save(db)
            self.status.checkpoints_sent += 1
            moved = True
        return moved

    def _read_checkpoint(self) -> bytes | None:
        try:
            return self.checkpoint_file.read_bytes()
        except FileNotFoundError:
            return None

    def caught_up(self) -> bool:
        """Every journal entry so far is acknowledged by JetStream."""
        db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT MAX(idx) FROM journal").fetchone()
        finally:
            db.close()
        return int(row[0] or 0) <= self.status.sent_idx


def _count(cp: bytes) -> int:
    try:
        return int(json.loads(cp)["count"])
    except (ValueError, KeyError, TypeError):
        return -1  # malformed: still shipped (count -1 never waits), the bureau flags it


# ---- `custody uplink` ------------------------------------------------------------------------

def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody uplink`."""
    p = sub.add_parser("uplink", help="ship a site's journal and checkpoints to NATS JetStream")
    p.add_argument("--site", required=True, help="site file (needs a [bureau] table unless "
                   "--nats is given)")
    p.add_argument("--db", help="journal database (default: the site file's supervisor.db)")
    p.add_argument("--checkpoint-file", help="default: the site file's supervisor.checkpoint_file")
    p.add_argument("--nats", action="append", help="NATS URL (repeatable); overrides the site")
    p.set_defaults(func=_main_cmd)


def _main_cmd(args: argparse.Namespace) -> int:
    from protocol.config import ConfigError
    from protocol.site import load_site
    site = load_site(args.site)
    conf = site.bureau
    if args.nats:
        conf = BureauConf(tuple(args.nats), conf.stream if conf else "CUSTODY",
                          conf.replicas if conf else 1)
    if conf is None:
        raise ConfigError(args.site, "bureau", "a [bureau] table with urls (or --nats)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    up = Uplink(site.id, args.db or site.supervisor.db,
                args.checkpoint_file or site.supervisor.checkpoint_file, conf)
    signal.signal(signal.SIGTERM, lambda *_: up.stop_event.set())
    with contextlib.suppress(KeyboardInterrupt):
        up.run()
    return 0
