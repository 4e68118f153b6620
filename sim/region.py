"""`custody region`: a simulated region, a few small simulated sites uplinking to one bureau.

Each site is a shipped scenario run with the real programs (Mosquitto, room nodes, the
supervisor) under its own site id, its site file carrying a [bureau] table so the
supervisor's uplink ships its journal to NATS JetStream. The bureau's workers consume every
site into PostgreSQL; at the end the bulletin is written from what the bureau witnessed.
Without --nats/--pg it starts its own nats-server and PostgreSQL (the test harnesses).
"""

import argparse
import asyncio
import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protocol.config import ConfigError
from protocol.ids import IdError, check_id
from protocol.site import parse_site

DEFAULT_SITES = ("station-north=search-first", "station-east=real-search",
                 "centre-main=never-alone")


def parse_pairs(items: list[str]) -> list[tuple[str, str]]:
    """`site-id=scenario` pairs, each id checked."""
    out = []
    for i, item in enumerate(items):
        site, sep, scenario = item.partition("=")
        try:
            check_id(site, "site id")
        except IdError as e:
            raise ConfigError("(command line)", f"--site[{i}]", f"site-id=scenario ({e})",
                              item) from None
        if not sep or not scenario:
            raise ConfigError("(command line)", f"--site[{i}]", "site-id=scenario", item)
        out.append((site, scenario))
    if len({s for s, _ in out}) != len(out):
        raise ConfigError("(command line)", "--site", "distinct site ids", items)
    return out


@contextlib.contextmanager
def _servers(args: argparse.Namespace) -> Iterator[tuple[tuple[str, ...], str]]:
    with contextlib.ExitStack() as stack:
        urls: tuple[str, ...] = tuple(args.nats or ())
        dsn: str = args.pg or ""
        if not urls:
            from custody.natsd import NatsCluster
            urls = tuple(stack.enter_context(NatsCluster(1)).urls)
        if not dsn:
            from custody.pgsql import PgServer
            dsn = stack.enter_context(PgServer()).dsn
        yield urls, dsn


def run_region(pairs: list[tuple[str, str]], urls: tuple[str, ...], dsn: str, out: Path,
               workers: int = 2, workdir: Path | None = None, parallel: bool = False
               ) -> dict[str, Any]:
    """Run every site's scenario concurrently into one bureau; write the bulletin to `out`."""
    import psycopg

    from bureau.bulletin import write_bulletin
    from bureau.worker import BureauConf, Worker

    from .runner import RunOptions, run_scenario
    from .scenario import find_scenario, load_scenario

    scenarios = []
    for site_id, name in pairs:
        sc = load_scenario(find_scenario(name))
        data = json.loads(json.dumps(sc.site_data))
        data["site"] = {**data["site"], "id": site_id, "name": site_id}
        data["bureau"] = {"urls": list(urls)}
        site = parse_site(data, f"{site_id} ({name})")
        scenarios.append(dataclasses.replace(
            sc, site_data=data, centre=dataclasses.replace(sc.centre, site=site)))
    loop = asyncio.new_event_loop()
    bureau = threading.Thread(target=loop.run_forever, daemon=True)
    bureau.start()
    # Each simulated supervisor makes its checkpoint key beside its database when it starts;
    # the bureau learns it from there (a real bureau gets each site's key at enrolment).
    import tempfile
    workdir = workdir or Path(tempfile.mkdtemp(prefix="custody-region-"))
    conf = BureauConf(urls, dsn, {})
    stop_keys = threading.Event()

    def learn_keys() -> None:
        while not stop_keys.is_set() and len(conf.keys) < len(pairs):
            for site_id, _ in pairs:
                # Beside the checkpoint file, or (older supervisors) beside the database.
                for kp in (workdir / site_id / "checkpoint.key",
                           workdir / site_id / "supervisor.db.key"):
                    if site_id not in conf.keys and kp.exists() and kp.read_text().strip():
                        conf.keys[site_id] = bytes.fromhex(kp.read_text().strip())
            stop_keys.wait(0.05)

    threading.Thread(target=learn_keys, daemon=True).start()
    ws = [Worker(conf, f"region-w{i + 1}") for i in range(workers)]
    tasks = [asyncio.run_coroutine_threadsafe(w.run(), loop) for w in ws]
    scores: dict[str, Any] = {}
    t0 = time.time() * 1000

    def one(site_id: str, sc: Any) -> None:
        s = run_scenario(sc, RunOptions(workdir=workdir / site_id, keep=True))
        scores[site_id] = s

    threads = [threading.Thread(target=one, args=(s, sc)) for (s, _), sc in zip(pairs, scenarios,
                                                                               strict=True)]
    for t in threads:  # sequential by default: three simulated sites at once overload 2 cores
        t.start()
        if not parallel:
            t.join()
    for t in threads:
        t.join()
    # Let the bureau drain what the last uplinks shipped.
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn) as c:
        while time.monotonic() < deadline:
            rows = list(c.execute("SELECT count(*) FROM bureau_site WHERE site = ANY(%s) AND "
                                  "cp_count > 0 AND cp_count = last_idx", ([s for s, _ in pairs],)))
            if rows[0][0] == len(pairs):
                break
            time.sleep(0.5)
    stop_keys.set()
    for w in ws:
        loop.call_soon_threadsafe(w.stop.set)
    for f in tasks:
        f.result(30)
    loop.call_soon_threadsafe(loop.stop)
    bureau.join(10)
    paths = write_bulletin(dsn, int(t0) - 86_400_000, int(time.time() * 1000) + 86_400_000 * 2,
                           out)
    return {"scores": scores, "paths": paths}


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody region`."""
    p = sub.add_parser("region", help="simulated sites uplinking to one bureau, then the "
                       "bulletin (starts its own NATS and PostgreSQL unless given)")
    p.add_argument("--site", action="append", help="site-id=scenario (repeatable; default: "
                   + ", ".join(DEFAULT_SITES) + ")")
    p.add_argument("--nats", action="append", help="NATS URL of a running server")
    p.add_argument("--pg", help="PostgreSQL connection string of a running server")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="region-bulletin", help="bulletin directory")
    p.add_argument("--workdir", help="keep each site's files here")
    p.add_argument("--parallel", action="store_true",
                   help="run the sites at the same time (needs spare cores)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    pairs = parse_pairs(args.site or list(DEFAULT_SITES))
    with _servers(args) as (urls, dsn):
        r = run_region(pairs, urls, dsn, Path(args.out), args.workers,
                       Path(args.workdir) if args.workdir else None, args.parallel)
        import psycopg
        with psycopg.connect(dsn) as c:
            for site, last, cp, tampered in c.execute(
                    "SELECT site, last_idx, cp_count, tampered FROM bureau_site ORDER BY site"):
                print(f"bureau: {site}: {last} entries mirrored, checkpoint {cp}, "
                      f"{'TAMPERED' if tampered else 'chain verified'}")
    for site, s in r["scores"].items():
        print(f"site {site}: scenario {s.scenario}: {'PASS' if s.passed else 'FAIL'} "
              f"(matched {len(s.matched)}, missed {len(s.missed)}, false {len(s.false)})")
    for p in r["paths"]:
        print(p)
    return 0
