"""`custody supervisor`, `custody audit verify` and `custody record`."""

import argparse
import logging
import signal
import sqlite3
import sys
from pathlib import Path

from protocol.clock import from_env
from protocol.config import ConfigError
from protocol.keys import load_keys
from protocol.private import owner_only
from protocol.site import DEMO_SITE, load_site
from protocol.transport import LinkConf, add_login_args, login_password

from .journal import read_entries, supervisor_key, verify_journal
from .record import header, record_lines
from .state import State


def _run(args: argparse.Namespace) -> int:
    from .service import Supervisor

    owner_only()  # journal (+ -wal/-shm), keys, checkpoints: readable by this user only
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s supervisor %(levelname)s %(message)s")
    site = load_site(args.config)
    keys_file = args.keys or site.supervisor.keys_file
    if not keys_file:
        raise ConfigError(args.config, "supervisor.keys_file", "a keys file (or --keys FILE)")
    keys = load_keys(keys_file)
    link = LinkConf(host=args.host or site.broker.host, port=args.port or site.broker.port,
                    username=args.username, password=login_password(args),
                    ca_file=args.ca_file or None, keepalive_s=site.broker.keepalive_s)
    sup = Supervisor(site, keys, args.db or site.supervisor.db,
                     args.checkpoint or site.supervisor.checkpoint_file, link, from_env(),
                     accounts=args.accounts)
    signal.signal(signal.SIGTERM, lambda *_: sup.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stop_event.set())
    print(f"supervisor: site {site.id}, journal {sup.journal.path} ({sup.journal.count} entries"
          f"), broker {link.host}:{link.port}", flush=True)
    desk = None
    if args.desk_port is not None:
        from .desk import Desk

        if bool(args.desk_cert) != bool(args.desk_key):
            raise ConfigError("--desk-cert/--desk-key", "desk", "both files, or neither")
        desk = Desk(sup, args.desk_host, args.desk_port, args.desk_cert or None,
                    args.desk_key or None)
        desk.start()
        print(f"desk: {desk.url}", flush=True)
    try:
        sup.run()
    finally:
        if desk is not None:
            desk.stop()
    return 0


def _key_for_audit(args: argparse.Namespace) -> bytes | None:
    if args.keys:
        keys = load_keys(args.keys)
        if "supervisor" in keys:
            return keys["supervisor"]
    kp = Path(str(args.db) + ".key")
    if kp.exists():
        return supervisor_key({}, args.db)
    return None


def _verify(args: argparse.Namespace) -> int:
    cp = None
    if args.checkpoint:
        try:
            cp = Path(args.checkpoint).read_bytes()
        except OSError as e:
            print(f"audit: cannot read checkpoint {args.checkpoint}: {e.strerror}",
                  file=sys.stderr)
            return 1
    result = verify_journal(args.db, _key_for_audit(args), cp)
    if result.ok:
        note = " and matches the checkpoint" if cp is not None else ""
        print(f"{args.db}: {result.checked} entries, hash chain intact{note}: OK")
        return 0
    print(f"{args.db}: TAMPERED: {result.problem}", file=sys.stderr)
    return 1


def replay(site_path: str, db: str) -> State:
    """Rebuild the state from a journal."""
    state = State(load_site(site_path))
    try:
        for e in read_entries(db):
            state.apply(e)
    except (FileNotFoundError, sqlite3.DatabaseError) as e:
        raise ConfigError(db, "(journal)", f"a readable supervisor journal ({e})") from None
    return state


def fmt_ts(ms: int | None) -> str:
    """Custody ms as UTC text."""
    import datetime as dt

    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _record(args: argparse.Namespace) -> int:
    db = args.db or load_site(args.config).supervisor.db
    state = replay(args.config, db)
    c = state.detainees.get(args.detainee)
    if c is None:
        print(f"record: no detainee {args.detainee!r} in {db}", file=sys.stderr)
        return 1
    print(header(state, c.id))
    for ts, text in record_lines(state, c.id):
        print(f"{fmt_ts(ts)}  {text}")
    return 0


def _add_site(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "--site", dest="config", default=str(DEMO_SITE),
                   help="site file (default: the demo)")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody supervisor`, `custody audit` and `custody record`."""
    p = sub.add_parser("supervisor", help="run the central supervisor for a site")
    _add_site(p)
    p.add_argument("--keys", help="node keys file ([nodes] node = \"hex\")")
    p.add_argument("--db", help="journal database (default: the site's supervisor.db)")
    p.add_argument("--checkpoint", help="checkpoint file (default: the site's)")
    p.add_argument("--accounts", help="staff account directory (provisioned "
                   "supervisor/accounts.json); without it every staff request is refused")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    add_login_args(p)
    p.add_argument("--ca-file", default="")
    p.add_argument("--desk-port", type=int, help="serve the web desk on this port (0: any)")
    p.add_argument("--desk-host", default="127.0.0.1",
                   help="desk address (plain HTTP only on 127.0.0.1; elsewhere give a cert)")
    p.add_argument("--desk-cert", default="", help="PEM certificate (site CA) for HTTPS")
    p.add_argument("--desk-key", default="", help="its PEM private key")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_run)

    a = sub.add_parser("audit", help="verify the journal's hash chain and checkpoint")
    s = a.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = s.add_parser("verify", help="exit 0 when intact, else name the first bad entry, exit 1")
    v.add_argument("--db", required=True)
    v.add_argument("--checkpoint")
    v.add_argument("--keys", help="keys file holding the supervisor key (else DB.key)")
    v.set_defaults(func=_verify)

    r = sub.add_parser("record", help="print one detainee's custody timeline")
    r.add_argument("detainee")
    r.add_argument("--db", help="journal (default: the site's supervisor.db)")
    _add_site(r)
    r.set_defaults(func=_record)
