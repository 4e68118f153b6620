"""The bureau tier: 27 sites' journals at 100 entries/s each into one bureau with 2 workers.

One nats-server (JetStream, file storage) and one PostgreSQL 15, both real, on loopback.
Site journals are SQLite on tmpfs (as the scenario tests keep theirs): the figure is the tier,
not the disk. Sites (writers + 27 uplinks, one thread each) run in this process; the bureau
runs as `custody bureau --workers 2` in its own process.

1. raw: 27 subjects x N messages of the same size published with async acks (this process)
   and consumed by one pull consumer per subject in a second process: N*27 / time from the
   first publish to the last message consumed; per-subject order checked.
2. pipeline drain: 27 journals pre-filled with N entries each; uplinks and bureau start
   together; rate = N*27 / (last - first entry mirrored), every entry verified and mirrored
   (the bureau process start-up and first lease round are left out).
   Ratio = pipeline / raw.
3. paced: 27 writers at 100 entries/s each for D s (checkpoints every second), uplinks and
   bureau running; afterwards mirror == journal entry for entry for every site (per-site
   order, nothing missing or doubled), every final checkpoint witnessed; bureau lag =
   mirrored - JetStream publish time and end-to-end lag = mirrored - journaled, p50/p99/max.

Usage: .venv/bin/python -m benchmarks.bench_bureau [--sites 27] [--rate 100] [--seconds 30]
       [--drain 1000] [--no-write]
"""

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.results import write_section
from custody.natsd import NatsCluster
from custody.pgsql import PgServer
from protocol.site import BureauConf
from protocol.uplink import ensure_stream
from supervisor.journal import Journal, checkpoint, write_checkpoint
from supervisor.uplink import Uplink

NOTE = """Reading: the paced phase shares the machine's cores with the sites' writer process,
27 uplinks, nats-server, PostgreSQL and whatever else runs (load average in the table). When
the bureau lag grows through the run (p50 about half the max) the bureau is CPU-starved, not
slow per entry: each worker process spends roughly 0.3 ms of CPU per entry (a quarter of it
nats-py's header parsing) and the drain rate above is its capacity. An earlier, quieter run
of the process-per-worker bureau (load 11.5, `--seconds 10 --drain 200`): 2,632 entries/s
offered, bureau lag p50 0.68 s / p99 2.0 s, drain 10,430 entries/s. Nothing is lost,
doubled or reordered either way (checked entry for entry).
"""
PAYLOAD_PAD = "x" * 120  # entries of ~250 bytes, like a presence event


def site_ids(n: int) -> list[str]:
    """Site ids s01..sNN."""
    return [f"s{i + 1:02d}" for i in range(n)]


def keys_for(sites: list[str]) -> dict[str, bytes]:
    """A checkpoint key per site."""
    return {s: bytes([i + 1]) * 32 for i, s in enumerate(sites)}


class Sites:
    """Site journals and their uplinks."""

    def __init__(self, root: Path, sites: list[str], keys: dict[str, bytes], urls: list[str],
                 stream: str) -> None:
        self.root, self.sites, self.keys = root, sites, keys
        self.conf = BureauConf(tuple(urls), stream)
        self.journals = {s: Journal(root / f"{s}.db") for s in sites}
        self.uplinks: dict[str, Uplink] = {}

    def append(self, s: str) -> None:
        j = self.journals[s]
        j.append_own("staff", {"command": "note", "user": "o1", "txn": f"{s}-{j.count + 1}",
                               "ts": int(time.time() * 1000), "args": {"pad": PAYLOAD_PAD}})

    def checkpoint(self, s: str) -> None:
        j = self.journals[s]
        write_checkpoint(self.root / f"{s}.cp.json",
                         checkpoint(self.keys[s], j.count, j.head, int(time.time() * 1000)))

    def start_uplinks(self) -> None:
        for s in self.sites:
            u = Uplink(s, self.root / f"{s}.db", self.root / f"{s}.cp.json", self.conf)
            u.start()
            self.uplinks[s] = u

    def stop_uplinks(self) -> None:
        for u in self.uplinks.values():
            u.stop_event.set()
        for u in self.uplinks.values():
            u.stop(drain_s=0)
        self.uplinks = {}

    def paced(self, rate: float, seconds: float) -> int:
        """Every site appends `rate` entries/s for `seconds` (one writer thread, round robin)."""
        period, n = 1.0 / rate, 0
        t0 = time.monotonic()
        next_cp = t0 + 1.0
        tick = t0
        while tick - t0 < seconds:
            for s in self.sites:
                self.append(s)
                n += 1
            if time.monotonic() >= next_cp:
                for s in self.sites:
                    self.checkpoint(s)
                next_cp += 1.0
            tick += period
            time.sleep(max(0.0, tick - time.monotonic()))
        for s in self.sites:
            self.checkpoint(s)
        return n


def _writer(root: Path, sites: list[str], keys: dict[str, bytes], urls: list[str],
            rate: float, seconds: float, go: Any, out: Any) -> None:
    """The paced load in a child process: wait for `go`, write, report (entries, seconds)."""
    ws = Sites(root, sites, keys, urls, "CUSTODY")
    go.wait()
    t0 = time.monotonic()
    n = ws.paced(rate, seconds)
    out.put((n, time.monotonic() - t0))


def journal_count(db: Path) -> int:
    """Entries in a site journal."""
    c = sqlite3.connect(db)
    try:
        return int(c.execute("SELECT MAX(idx) FROM journal").fetchone()[0] or 0)
    finally:
        c.close()


def _raw_consumer(urls: list[str], sites: list[str], n: int, ready: Any, out: Any) -> None:
    """Child process: one ordered pull consumer per subject; report (end time, in order)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    async def main() -> tuple[float, bool]:
        nc = await nats.connect(servers=urls)
        js = nc.jetstream(timeout=10)
        ordered = True
        subs = {s: await js.pull_subscribe(f"raw.{s}", stream="RAW",
                                           config=ConsumerConfig(ack_policy=AckPolicy.NONE))
                for s in sites}
        ready.set()

        async def consume(s: str) -> None:
            nonlocal ordered
            got = 0
            while got < n:
                try:
                    msgs = await subs[s].fetch(500, timeout=2)
                except TimeoutError:
                    continue
                for m in msgs:
                    got += 1
                    if int(m.headers["i"]) != got:
                        ordered = False

        await asyncio.gather(*(consume(s) for s in sites))
        end = time.time()
        await nc.close()
        return end, ordered

    out.put(asyncio.run(main()))


def raw_rate(urls: list[str], sites: list[str], n: int) -> tuple[float, bool]:
    """Publish n messages per subject with async acks (this process) while a second process
    consumes them all; (msgs/s from first publish to last consumed, per-subject order)."""
    import nats

    async def setup(create: bool) -> None:
        nc = await nats.connect(servers=urls)
        js = nc.jetstream(timeout=10)
        if create:
            await js.add_stream(name="RAW", subjects=["raw.>"])
        else:
            await js.delete_stream("RAW")
        await nc.close()

    async def publish_all() -> None:
        nc = await nats.connect(servers=urls)
        js = nc.jetstream(timeout=10)
        body = json.dumps({"command": "note", "user": "o1", "ts": 0,
                           "args": {"pad": PAYLOAD_PAD}}).encode()

        async def publish(s: str) -> None:
            for start in range(0, n, 500):
                futs = [await js.publish_async(f"raw.{s}", body,
                                               headers={"i": str(i + 1), "Nats-Msg-Id":
                                                        f"{s}:{i + 1}"})
                        for i in range(start, min(n, start + 500))]
                await asyncio.gather(*futs)

        await asyncio.gather(*(publish(s) for s in sites))
        await nc.close()

    asyncio.run(setup(True))
    ctx = mp.get_context("fork")
    ready, out = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_raw_consumer, args=(urls, sites, n, ready, out))
    child.start()
    ready.wait(60)
    t0 = time.time()
    asyncio.run(publish_all())
    end, ordered = out.get(timeout=600)
    child.join(30)
    asyncio.run(setup(False))
    return n * len(sites) / (end - t0), ordered


def fresh_stream(urls: list[str], stream: str) -> None:
    """Delete the sites' stream if present and create it empty (each phase starts clean)."""
    import nats

    async def main() -> None:
        nc = await nats.connect(servers=urls)
        js = nc.jetstream(timeout=10)
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await ensure_stream(js, stream, 1)
        await nc.close()
    asyncio.run(main())


def start_bureau(urls: list[str], dsn: str, keys_file: Path, stream: str,
                 log: Path) -> subprocess.Popen[bytes]:
    """`custody bureau --workers 2` as its own process."""
    argv = [sys.executable, "-m", "custody", "bureau", "--pg", dsn, "--keys", str(keys_file),
            "--workers", "2", "--stream", stream]
    for u in urls:
        argv += ["--nats", u]
    with open(log, "ab") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)


def stop(p: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait."""
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def wait_mirrored(dsn: str, want: dict[str, int], timeout: float) -> float:
    """Wait until every site's last_idx reaches want; return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as c:
        while time.monotonic() < deadline:
            try:
                rows = dict(c.execute("SELECT site, last_idx FROM bureau_site"))
            except psycopg.errors.UndefinedTable:
                rows = {}
            if all(rows.get(s, 0) >= n for s, n in want.items()):
                return time.monotonic()
            time.sleep(0.05)
    raise SystemExit(f"bureau did not mirror {want} within {timeout}s: {rows}")


def new_db(admin_dsn: str, name: str) -> str:
    """Create a database; return its DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return admin_dsn.replace("dbname=custody", f"dbname={name}")


def check_mirror(dsn: str, root: Path, sites: list[str]) -> tuple[bool, int]:
    """Mirror equals every journal (idx, node, epoch, seq, kind, payload, hash), in order."""
    total, ok = 0, True
    with psycopg.connect(dsn) as c:
        for s in sites:
            db = sqlite3.connect(root / f"{s}.db")
            j = [(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in db.execute(
                "SELECT idx, node, epoch, seq, kind, payload, hash FROM journal ORDER BY idx")]
            db.close()
            m = [(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in c.execute(
                "SELECT idx, node, epoch, seq, kind, payload, hash FROM mirror WHERE site = %s "
                "ORDER BY idx", (s,))]
            ok = ok and j == m
            total += len(m)
    return ok, total


def lags(dsn: str) -> dict[str, Any]:
    """Bureau lag (publish -> mirrored) and end-to-end lag (journaled -> mirrored), ms."""
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "WITH l AS (SELECT extract(epoch FROM mirrored - published) * 1000 AS b, "
            "extract(epoch FROM mirrored) * 1000 - (convert_from(payload, 'UTF8')::jsonb->>'ts')"
            "::bigint AS e FROM mirror) SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY b), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY b), max(b), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY e), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY e), max(e) FROM l").fetchone()
        alerts = c.execute("SELECT count(*) FROM security_alert").fetchone()
        cps = c.execute("SELECT count(*) FROM bureau_site WHERE cp_count = last_idx").fetchone()
        per_worker = c.execute("SELECT worker, count(DISTINCT site) FROM mirror GROUP BY worker "
                               "ORDER BY worker").fetchall()
    assert row is not None and alerts is not None and cps is not None
    return {"bureau_p50": row[0], "bureau_p99": row[1], "bureau_max": row[2], "e2e_p50": row[3],
            "e2e_p99": row[4], "e2e_max": row[5], "alerts": alerts[0], "cp_final": cps[0],
            "per_worker": per_worker}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=27)
    ap.add_argument("--rate", type=float, default=100.0, help="entries/s per site (paced)")
    ap.add_argument("--seconds", type=float, default=30.0, help="paced phase length")
    ap.add_argument("--drain", type=int, default=1000, help="entries per site (raw and drain)")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    ap.add_argument("--logs", help="copy the bureau's logs into this directory")
    args = ap.parse_args()
    sites = site_ids(args.sites)
    load0 = os.getloadavg()[0]
    keys = keys_for(sites)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with NatsCluster(1) as nats, PgServer() as pg, \
            tempfile.TemporaryDirectory(prefix="bench-bureau-", dir=shm) as tmp:
        root = Path(tmp)
        urls = nats.urls
        keys_file = root / "keys.toml"
        keys_file.write_text("[sites]\n" + "".join(f'{s} = "{k.hex()}"\n'
                                                    for s, k in keys.items()))
        # 1. raw JetStream publish + consume
        raw, raw_ordered = raw_rate(urls, sites, args.drain)
        print(f"raw JetStream publish+consume: {raw:,.0f} msg/s (ordered: {raw_ordered})")
        # 2. pipeline drain: pre-filled journals -> uplinks -> JetStream -> bureau -> PostgreSQL
        drain_root = root / "drain"
        drain_root.mkdir()
        ds = Sites(drain_root, sites, keys, urls, "CUSTODY")
        for s in sites:
            for _ in range(args.drain):
                ds.append(s)
            ds.checkpoint(s)
        fresh_stream(urls, "CUSTODY")
        dsn = new_db(pg.dsn, "drain")
        t0 = time.monotonic()
        bureau = start_bureau(urls, dsn, keys_file, "CUSTODY", root / "bureau-drain.log")
        ds.start_uplinks()
        try:
            t1 = wait_mirrored(dsn, dict.fromkeys(sites, args.drain), 600)
        finally:
            ds.stop_uplinks()
            stop(bureau)
        # Steady rate: first to last entry mirrored (process start and lease rounds excluded).
        with psycopg.connect(dsn) as c:
            span = c.execute("SELECT extract(epoch FROM max(mirrored) - min(mirrored)) "
                             "FROM mirror").fetchone()
        assert span is not None
        pipe = args.drain * len(sites) / float(span[0])
        print(f"pipeline drain incl. start-up: {args.drain * len(sites) / (t1 - t0):,.0f}/s")
        drain_ok, _ = check_mirror(dsn, drain_root, sites)
        print(f"pipeline drain: {pipe:,.0f} entries/s, ratio {pipe / raw:.2f}, "
              f"mirror==journals: {drain_ok}")
        # 3. paced: 27 x 100 entries/s, written by a process of its own (forked before any
        # uplink thread exists) so the load generator does not share the uplinks' GIL.
        paced_root = root / "paced"
        paced_root.mkdir()
        ps = Sites(paced_root, sites, keys, urls, "CUSTODY")
        ctx = mp.get_context("fork")
        go, out = ctx.Event(), ctx.Queue()
        writer = ctx.Process(target=_writer, args=(paced_root, sites, keys, urls, args.rate,
                                                   args.seconds, go, out))
        writer.start()
        fresh_stream(urls, "CUSTODY")
        dsn2 = new_db(pg.dsn, "paced")
        bureau = start_bureau(urls, dsn2, keys_file, "CUSTODY", root / "bureau-paced.log")
        ps.start_uplinks()
        try:
            time.sleep(3.0)  # workers start
            go.set()
            n, elapsed = out.get(timeout=args.seconds * 20 + 60)
            writer.join(30)
            offered = n / elapsed
            want = {s: journal_count(paced_root / f"{s}.db") for s in sites}
            wait_mirrored(dsn2, want, 600)
            time.sleep(2.0)  # the final checkpoints
        finally:
            if writer.is_alive():
                writer.terminate()
            ps.stop_uplinks()
            stop(bureau)
        if args.logs:
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            for log in root.glob("bureau-*.log"):
                shutil.copy(log, Path(args.logs) / log.name)
        paced_ok, total = check_mirror(dsn2, paced_root, sites)
        lg = lags(dsn2)
        print(f"paced: {n} entries at {offered:,.0f}/s offered; mirror==journals: {paced_ok}; "
              f"{lg}")
        if not args.no_write:
            workers = ", ".join(f"{w.split('-', 1)[-1]}: {k} sites" for w, k in
                                lg["per_worker"])
            ordered = "ok" if raw_ordered else "BROKEN"
            same = "yes" if paced_ok and drain_ok else "NO"
            rows = [
                (f"raw JetStream publish (async acks) + consume (2nd process), {len(sites)} x "
                 f"{args.drain} msgs", f"{raw:,.0f} msg/s (per-subject order: {ordered})"),
                ("pipeline drain: journal -> uplink -> JetStream -> bureau (chain + "
                 "checkpoints verified) -> PostgreSQL", f"{pipe:,.0f} entries/s"),
                ("**ratio pipeline / raw**", f"**{pipe / raw:.2f}**"),
                (f"paced load: target {len(sites)} x {args.rate:g} = "
                 f"{len(sites) * args.rate:,.0f} entries/s for {args.seconds:g} s; achieved by "
                 "the writer process", f"{offered:,.0f} entries/s, {n:,} entries"),
                ("mirror == every journal, entry for entry (order; nothing missing or doubled)",
                 f"{same} ({total:,} entries)"),
                ("final checkpoints witnessed",
                 f"{lg['cp_final']}/{len(sites)} sites; security alerts: {lg['alerts']}"),
                ("bureau lag (stored in JetStream -> mirrored) p50 / p99 / max",
                 f"{lg['bureau_p50']:.0f} / **{lg['bureau_p99']:.0f}** / "
                 f"{lg['bureau_max']:.0f} ms"),
                ("end-to-end lag (journaled at the site -> mirrored) p50 / p99 / max",
                 f"{lg['e2e_p50']:.0f} / {lg['e2e_p99']:.0f} / {lg['e2e_max']:.0f} ms"),
                ("sites per worker (paced run)", workers),
                ("machine load average (1 min) at start / end of the run",
                 f"{load0:.1f} / {os.getloadavg()[0]:.1f}"),
            ]
            body = (f"{len(sites)} sites, one nats-server 2.9 (JetStream, file store), "
                    "PostgreSQL 15, site journals on tmpfs; the bureau is `custody bureau "
                    "--workers 2` (a process per worker); the sites' uplinks (one thread each) "
                    "run in the benchmark process, the paced writer in a process of its own. "
                    "Entries ~250 bytes.\n\n| figure | value |\n"
                    "|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows) + "\n" + NOTE)
            write_section("bureau: 27 sites into one bureau (2 workers)",
                          " ".join([".venv/bin/python -m benchmarks.bench_bureau",
                                    *sys.argv[1:]]).strip(), body)
    return 0 if paced_ok and drain_ok else 1


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the servers and the bureau process are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
