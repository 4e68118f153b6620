"""A bureau worker: holds leases on a fair share of the sites and consumes each one in order.

Sharing: every worker heartbeats into bureau_worker; each site has one lease row in
bureau_lease. A worker takes free (or expired) leases up to ceil(sites / live workers) and
gives back what is over its share, so a new worker gets sites within a couple of lease
rounds. Every batch of a site is written in one PostgreSQL transaction that first checks the
lease is still this worker's, so a worker that lost its lease cannot write behind the new
holder. A site's position (stream sequence) is in the same transaction as its mirror rows:
the JetStream consumer is an ephemeral pull consumer recreated from that position, never the
source of truth.

A gap (an entry missing while later ones wait) is read again from the stream once before
anything is concluded: a consumer can skip a message around a server's death, and a
checkpoint ahead of the mirror would otherwise be a false security alert. Only a gap still
there after the re-read is one. A message delivered again below the highest sequence handled
(a re-read, a recreated consumer) is news only if it is an entry not yet mirrored: checkpoints,
resends and rejects there were handled once and are not judged twice.
"""

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from protocol.uplink import (
    SUBJECT_PREFIX,
    UplinkFormatError,
    WireCheckpoint,
    WireEntry,
    decode,
    ensure_stream,
    site_subject,
    subject_site,
)

from .store import ensure_schema, report_rows
from .witness import (
    GENESIS_HEX,
    Problem,
    SiteState,
    chain_next,
    check_checkpoint,
    check_resent,
    parse_checkpoint,
)

log = logging.getLogger(__name__)

LEASE_S = 15.0  # a starved worker keeps its sites; a dead one is replaced after this
ROUND_S = 1.0
FETCH = 500
IDLE_CHECK = 6  # empty fetches (0.5 s each) before checking the consumer exists
GAP_REREAD_S = 5.0  # an entry missing this long while later ones wait: read the stream again
REORDER = 500  # entries a retried publish can land behind (the uplink's batch in flight)


@dataclass
class BureauConf:
    """What a worker needs: servers, database, per-site checkpoint keys."""

    nats_urls: tuple[str, ...]
    dsn: str
    keys: dict[str, bytes] = field(default_factory=dict)
    stream: str = "CUSTODY"
    replicas: int = 1


class Worker:
    """One worker; `run()` until `stop` is set."""

    def __init__(self, conf: BureauConf, name: str | None = None) -> None:
        self.conf = conf
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{id(self) % 10000}"
        self.stop = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.alerts = 0
        self.mirrored = 0

    async def run(self) -> None:
        """Connect, then run lease rounds; site tasks consume."""
        import nats
        import psycopg
        self.nc = await nats.connect(servers=list(self.conf.nats_urls), name=self.name,
                                     max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                     connect_timeout=2)
        self.js = self.nc.jetstream(timeout=5)
        self.pg = await psycopg.AsyncConnection.connect(self.conf.dsn, autocommit=True)
        try:
            await ensure_schema(self.pg)
            await ensure_stream(self.js, self.conf.stream, self.conf.replicas)
            while not self.stop.is_set():
                try:
                    await self._round()
                except Exception as e:
                    log.warning("worker %s: lease round failed: %r", self.name, e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), ROUND_S)
        finally:
            for t in self.tasks.values():
                t.cancel()
            for t in list(self.tasks.values()):
                with contextlib.suppress(BaseException):
                    await t
            with contextlib.suppress(Exception):
                await self.pg.execute("DELETE FROM bureau_lease WHERE worker = %s", (self.name,))
                await self.pg.execute("DELETE FROM bureau_worker WHERE worker = %s",
                                      (self.name,))
            await self.pg.close()
            with contextlib.suppress(Exception):
                await self.nc.close()

    # ---- leases --------------------------------------------------------------------------

    async def _sites(self) -> list[str]:
        info = await self.js.stream_info(self.conf.stream, subjects_filter=f"{SUBJECT_PREFIX}.>")
        sites = {subject_site(s) for s in (info.state.subjects or {})}
        async with self.pg.cursor() as cur:
            await cur.execute("SELECT site FROM bureau_site")
            sites |= {r[0] for r in await cur.fetchall()}
        return sorted(sites)

    async def _round(self) -> None:
        pg = self.pg
        await pg.execute("INSERT INTO bureau_worker (worker, seen) VALUES (%s, now()) "
                         "ON CONFLICT (worker) DO UPDATE SET seen = now()", (self.name,))
        async with pg.cursor() as cur:
            await cur.execute("SELECT count(*) FROM bureau_worker WHERE seen > now() - "
                              "make_interval(secs => %s)", (LEASE_S,))
            row = await cur.fetchone()
            live = max(1, int(row[0]) if row else 1)
            await cur.execute("UPDATE bureau_lease SET expires = now() + make_interval(secs => "
                              "%s) WHERE worker = %s RETURNING site", (LEASE_S, self.name))
            held = {r[0] for r in await cur.fetchall()}
        for site in list(self.tasks):
            if site not in held or self.tasks[site].done():
                await self._drop(site)
        sites = await self._sites()
        share = math.ceil(len(sites) / live) if sites else 0
        while len(self.tasks) > share:  # give back the surplus for a newer worker
            await self._drop(sorted(self.tasks)[-1])
        for site in sites:
            if len(self.tasks) >= share:
                break
            if site in self.tasks:
                continue
            async with pg.cursor() as cur:
                await cur.execute(
                    "INSERT INTO bureau_lease (site, worker, expires) VALUES (%s, %s, now() + "
                    "make_interval(secs => %s)) ON CONFLICT (site) DO UPDATE SET worker = "
                    "excluded.worker, expires = excluded.expires WHERE bureau_lease.expires < "
                    "now() RETURNING site", (site, self.name, LEASE_S))
                if await cur.fetchone() is not None:
                    log.info("worker %s takes site %s", self.name, site)
                    self.tasks[site] = asyncio.create_task(self._consume(site))

    async def _drop(self, site: str) -> None:
        t = self.tasks.pop(site)
        if t.done() and not t.cancelled() and t.exception() is not None:
            # It ended on its own (the database went away mid-batch, say): say so, then the
            # lease is given back and a round takes the site up again from its position.
            log.error("site %s: consumer stopped: %r", site, t.exception())
        t.cancel()
        with contextlib.suppress(BaseException):
            await t
        await self.pg.execute("DELETE FROM bureau_lease WHERE site = %s AND worker = %s",
                              (site, self.name))

    # ---- one site ------------------------------------------------------------------------

    async def _consume(self, site: str) -> None:
        import psycopg
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        pg = await psycopg.AsyncConnection.connect(self.conf.dsn)
        sub: Any = None
        try:
            st = await _load(pg, site)
            pending: dict[int, tuple[int, WireEntry, Any]] = {}
            gap = _Gap()
            idle = 0
            while True:
                if sub is None:
                    start = gap.reread_from or st.stream_seq + 1
                    cfg = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30.0,
                                         deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                         opt_start_seq=start, mem_storage=True,
                                         num_replicas=1)
                    try:
                        sub = await self.js.pull_subscribe(
                            site_subject(site), stream=self.conf.stream, config=cfg)
                    except Exception as e:
                        log.warning("site %s: cannot create consumer: %r", site, e)
                        await asyncio.sleep(0.5)
                        continue
                    gap.reread_from = 0
                    pending.clear()
                if gap.due(st, pending):
                    await _reread(pg, st, sub, gap, st.last_idx,
                                  f"entry #{st.last_idx + 1} missing for {GAP_REREAD_S:.0f} s "
                                  f"while {len(pending)} later ones wait")
                    sub = None
                    continue
                try:
                    msgs = await sub.fetch(FETCH, timeout=0.5)
                    idle = 0
                except TimeoutError:
                    # An ephemeral consumer lives on one server: if that server died, fetches
                    # only time out. After a few idle seconds, check it still exists.
                    idle += 1
                    if idle % IDLE_CHECK == 0:
                        try:
                            await sub.consumer_info()
                        except Exception as e:
                            log.warning("site %s: consumer gone (%r), re-creating", site, e)
                            with contextlib.suppress(Exception):
                                await sub.unsubscribe()
                            sub = None
                    continue
                except Exception as e:  # consumer lost (a server died): recreate from position
                    log.warning("site %s: fetch failed, re-creating the consumer: %r", site, e)
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                    sub = None
                    await asyncio.sleep(0.2)
                    continue
                try:
                    st = await self._batch(pg, st, msgs, pending, gap)
                except _LeaseLost:
                    log.info("worker %s lost the lease of %s", self.name, site)
                    return
                except _Reread as r:  # nothing of the batch was written
                    await _reread(pg, st, sub, gap, r.at_idx, str(r))
                    sub = None
                    continue
                except Exception:
                    log.exception("site %s: batch failed; retrying from position", site)
                    st = await _load(pg, site)
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                    sub = None
                    await asyncio.sleep(0.5)
                    continue
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            await pg.close()

    async def _batch(self, pg: Any, st0: SiteState, msgs: list[Any],
                     pending: dict[int, tuple[int, WireEntry, Any]], gap: "_Gap") -> SiteState:
        st = SiteState(**vars(st0))
        async with pg.transaction(), pg.cursor() as cur:
            await cur.execute("SELECT 1 FROM bureau_lease WHERE site = %s AND worker = %s "
                              "FOR SHARE", (st.site, self.name))
            if await cur.fetchone() is None:
                raise _LeaseLost
            wr = _Writes()
            top = st.handled_seq
            for m in msgs:
                seq = m.metadata.sequence.stream
                published = m.metadata.timestamp
                st.stream_seq = seq
                again = seq <= st0.handled_seq
                top = max(top, seq)
                try:
                    w = decode(m.subject, m.headers, m.data)
                except UplinkFormatError as e:
                    if not again:
                        _reject(wr, st.site, seq, str(e), m)
                    continue
                if again and (st.tampered or not isinstance(w, WireEntry)
                              or w.idx <= st.last_idx or w.idx in pending):
                    continue  # handled when it first came
                try:
                    if isinstance(w, WireCheckpoint):
                        await wr.flush(cur)
                        await self._checkpoint(cur, wr, st, w, gap)
                    elif w.idx <= st.last_idx:
                        await wr.flush(cur)
                        await self._resent(cur, st, w)
                    elif w.idx == st.last_idx + 1 and not st.tampered:
                        self._mirror(wr, st, w, seq, published)
                        while st.last_idx + 1 in pending:
                            pseq, pw, ppub = pending.pop(st.last_idx + 1)
                            self._mirror(wr, st, pw, pseq, ppub)
                    elif st.tampered:
                        _reject(wr, st.site, seq, "site is flagged: entry not mirrored", m)
                    else:  # a retried publish can land after its successor: wait for the gap
                        pending[w.idx] = (seq, w, published)
                        st.early += 1
                except Problem as p:
                    await self._alert(wr, st, p)
                    _reject(wr, st.site, seq, p.kind, m)
            st.handled_seq = top
            if pending:  # the position may not pass an entry still waiting for its predecessor
                st.stream_seq = min(s for s, _w, _p in pending.values()) - 1
            await wr.flush(cur)
            await cur.execute(
                "UPDATE bureau_site SET last_idx = %s, head = %s, stream_seq = %s, cp_count = %s, "
                "cp_head = %s, cp_ts = %s, tampered = %s, duplicates = %s, early = %s, "
                "handled_seq = %s, updated = now() WHERE site = %s",
                (st.last_idx, st.head, st.stream_seq,
                 st.cp_count, st.cp_head, st.cp_ts, st.tampered, st.duplicates, st.early,
                 st.handled_seq, st.site))
        return st

    def _mirror(self, wr: "_Writes", st: SiteState, w: WireEntry, seq: int,
                published: Any) -> None:
        st.head = chain_next(st, w)
        wr.add(
            _Writes.MIRROR,
            (w.site, w.idx, w.node, w.epoch, w.seq, w.kind, w.payload, w.hash, seq, published,
             self.name))
        for sql, params in report_rows(w.site, w.idx, w.kind, w.payload):
            wr.add(sql, params)
        st.last_idx = w.idx
        self.mirrored += 1

    async def _resent(self, cur: Any, st: SiteState, w: WireEntry) -> None:
        await cur.execute("SELECT idx, hash FROM mirror WHERE site = %s AND idx IN (%s, %s)",
                          (w.site, w.idx - 1, w.idx))
        hashes = {r[0]: r[1] for r in await cur.fetchall()}
        prev = GENESIS_HEX if w.idx == 1 else hashes.get(w.idx - 1, "")
        check_resent(w, prev, hashes.get(w.idx, ""))
        st.duplicates += 1

    async def _checkpoint(self, cur: Any, wr: "_Writes", st: SiteState,
                          w: WireCheckpoint, gap: "_Gap") -> None:
        count, head, ts = parse_checkpoint(w.site, self.conf.keys.get(w.site), w.data)
        if count > st.last_idx and gap.reread_at_idx != st.last_idx and not st.tampered:
            raise _Reread(st.last_idx, f"checkpoint counts {count} entries, #{st.last_idx + 1} "
                          "has not come in order")
        if count > st.last_idx:
            # The uplink sends a checkpoint only after its entries: more means entries lost.
            raise Problem("checkpoint-ahead", count,
                          f"site {w.site}: checkpoint counts {count} entries but only "
                          f"{st.last_idx} arrived in order before it")
        if count == st.last_idx:
            at = st.head
        elif count == 0:
            at = GENESIS_HEX
        else:
            await cur.execute("SELECT hash FROM mirror WHERE site = %s AND idx = %s",
                              (w.site, count))
            row = await cur.fetchone()
            at = row[0] if row else ""
        check_checkpoint(st, count, head, at)
        st.cp_count, st.cp_head, st.cp_ts = count, head, ts
        wr.add("INSERT INTO site_checkpoint (site, count, head, ts, data) VALUES "
               "(%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", (w.site, count, head, ts, w.data))

    async def _alert(self, wr: "_Writes", st: SiteState, p: Problem) -> None:
        if p.kind in ("entry-does-not-chain", "entry-rewritten", "checkpoint-mismatch",
                      "checkpoint-goes-back", "checkpoint-forked"):
            st.tampered = True
        self.alerts += 1
        log.error("SECURITY site %s: %s: %s", st.site, p.kind, p.detail)
        wr.add("INSERT INTO security_alert (site, kind, idx, detail) VALUES (%s, %s, %s, %s)",
               (st.site, p.kind, p.idx, p.detail))
        with contextlib.suppress(Exception):  # also tell anyone listening (not durable)
            await self.nc.publish(f"custody.bureau.alert.{st.site}",
                                  json.dumps({"site": st.site, "kind": p.kind, "idx": p.idx,
                                              "detail": p.detail}).encode())


class _LeaseLost(Exception):
    pass


class _Reread(Exception):
    """The stream is read again from before a gap; the batch that found it is undone."""

    def __init__(self, at_idx: int, detail: str) -> None:
        super().__init__(detail)
        self.at_idx = at_idx  # the last entry in order when the gap was found


@dataclass
class _Gap:
    """One site's watch on a missing entry: when it was first seen, and the re-read done."""

    since: float = 0.0  # monotonic time the current gap was first seen (0: none)
    at_idx: int = -1  # the last_idx it was seen at
    reread_at_idx: int = -1  # the last_idx the stream was last read again for
    reread_from: int = 0  # the next consumer's start, when a re-read is asked for

    def due(self, st: SiteState, pending: dict[int, Any]) -> bool:
        """Whether the gap has waited GAP_REREAD_S without a re-read at this position."""
        if not pending:
            self.since, self.at_idx = 0.0, -1
            return False
        now = time.monotonic()
        if self.at_idx != st.last_idx:
            self.since, self.at_idx = now, st.last_idx
        return self.reread_at_idx != st.last_idx and now - self.since >= GAP_REREAD_S


async def _reread(pg: Any, st: SiteState, sub: Any, gap: _Gap, at_idx: int, why: str) -> None:
    """Drop the consumer and ask the next one to start before the last REORDER mirrored
    entries (a retried publish lands after its successors, never further back)."""
    async with pg.transaction(), pg.cursor() as cur:
        await cur.execute("SELECT min(stream_seq) FROM mirror WHERE site = %s AND idx > %s",
                          (st.site, st.last_idx - REORDER))
        row = await cur.fetchone()
    gap.reread_from = int(row[0]) if row and row[0] is not None else 1
    gap.reread_at_idx = at_idx
    log.warning("site %s: %s; reading the stream again from sequence %d before concluding",
                st.site, why, gap.reread_from)
    with contextlib.suppress(Exception):
        await sub.unsubscribe()


class _Writes:
    """A batch's statements, sent with executemany per run of the same SQL (one round trip
    per run instead of one per entry); flushed before anything reads the mirror back.
    Mirror rows go first as one run; the other statements keep their relative order."""

    MIRROR = ("INSERT INTO mirror (site, idx, node, epoch, seq, kind, payload, hash, stream_seq, "
              "published, worker) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")

    def __init__(self) -> None:
        self.mirror: list[tuple[Any, ...]] = []
        self.items: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, sql: str, params: tuple[Any, ...]) -> None:
        if sql is self.MIRROR:
            self.mirror.append(params)
        else:
            self.items.append((sql, params))

    async def flush(self, cur: Any) -> None:
        if self.mirror:
            await cur.executemany(self.MIRROR, self.mirror)
        i = 0
        while i < len(self.items):
            j = i
            while j < len(self.items) and self.items[j][0] == self.items[i][0]:
                j += 1
            await cur.executemany(self.items[i][0], [p for _s, p in self.items[i:j]])
            i = j
        self.mirror, self.items = [], []


async def _load(pg: Any, site: str) -> SiteState:
    async with pg.transaction(), pg.cursor() as cur:
        await cur.execute("INSERT INTO bureau_site (site, head) VALUES (%s, %s) "
                          "ON CONFLICT DO NOTHING", (site, GENESIS_HEX))
        await cur.execute("SELECT last_idx, head, stream_seq, cp_count, cp_head, cp_ts, "
                          "tampered, duplicates, early, handled_seq FROM bureau_site "
                          "WHERE site = %s", (site,))
        r = await cur.fetchone()
    return SiteState(site, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])


def _reject(wr: "_Writes", site: str, seq: int, reason: str, m: Any) -> None:
    wr.add("INSERT INTO rejected (site, stream_seq, reason, headers, payload) "
           "VALUES (%s, %s, %s, %s, %s)",
           (site, seq, reason, json.dumps(dict(m.headers or {})), m.data))


async def run_workers(conf: BureauConf, n: int, stop: asyncio.Event | None = None,
                      prefix: str | None = None) -> list[Worker]:
    """Run n workers in this process until `stop` is set."""
    base = prefix or f"{socket.gethostname()}-{os.getpid()}"
    workers = [Worker(conf, f"{base}-w{i + 1}") for i in range(n)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    if stop is not None:
        await stop.wait()
        for w in workers:
            w.stop.set()
    await asyncio.gather(*tasks)
    return workers
