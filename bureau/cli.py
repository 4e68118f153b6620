"""`custody bureau` (workers consuming every site's stream) and `custody bulletin`."""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from protocol.config import ConfigError
from protocol.keys import load_keys


def load_site_keys(path: str | Path) -> dict[str, bytes]:
    """The bureau's keys file: `[sites]` of `site-id = "hex checkpoint key"`."""
    return load_keys(path, "sites", "site id")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody bureau` and `custody bulletin`."""
    p = sub.add_parser("bureau", help="consume every site's journal from NATS JetStream, "
                       "witness the chains, mirror into PostgreSQL")
    p.add_argument("--nats", action="append", required=True, help="NATS URL (repeatable)")
    p.add_argument("--pg", required=True, help="PostgreSQL connection string (libpq)")
    p.add_argument("--keys", help="TOML [sites] site = hex checkpoint key")
    p.add_argument("--workers", type=int, default=2,
                   help="workers, each in a process of its own (default 2)")
    p.add_argument("--in-process", action="store_true",
                   help="run the workers on one event loop in this process")
    p.add_argument("--stream", default="CUSTODY")
    p.add_argument("--replicas", type=int, default=1, help="replicas if the stream is created")
    p.set_defaults(func=_bureau)
    b = sub.add_parser("bulletin", help="the inspection bulletin from the bureau's PostgreSQL")
    b.add_argument("--pg", required=True, help="PostgreSQL connection string (libpq)")
    b.add_argument("--from", dest="start", required=True, help="ISO date/time or Unix ms")
    b.add_argument("--to", dest="end", required=True, help="ISO date/time or Unix ms")
    b.add_argument("--out", required=True, help="output directory (HTML + CSV)")
    b.add_argument("--lang", choices=("en", "zh", "both"), default="both")
    b.set_defaults(func=_bulletin)


def _bureau(args: argparse.Namespace) -> int:
    from .worker import BureauConf
    if args.workers < 1:
        raise ConfigError("(command line)", "--workers", "at least 1", args.workers)
    conf = BureauConf(tuple(args.nats), args.pg, load_site_keys(args.keys) if args.keys else {},
                      args.stream, args.replicas)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.in_process or args.workers == 1:
        _serve(conf, args.workers, None)
        return 0
    # A process per worker: each has its own interpreter (and core); they share the sites
    # through the leases in PostgreSQL exactly as workers on different machines do.
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_serve, args=(conf, 1, None), daemon=False)
             for i in range(args.workers)]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    return max((p.exitcode or 0) for p in procs)


def _serve(conf: Any, n: int, suffix: str | None) -> None:
    """Run n workers on one event loop until SIGTERM/SIGINT."""
    import socket

    from .worker import run_workers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    prefix = f"{socket.gethostname()}-{os.getpid()}" + (f"-{suffix}" if suffix else "")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_workers(conf, n, stop, prefix)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def _bulletin(args: argparse.Namespace) -> int:
    from protocol.timearg import parse_time

    from .bulletin import write_bulletin
    langs = ("en", "zh") if args.lang == "both" else (args.lang,)
    for path in write_bulletin(args.pg, parse_time(args.start), parse_time(args.end),
                               Path(args.out), langs):
        print(path)
    return 0
