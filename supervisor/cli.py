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

from .accounts import AccountError
from .journal import read_checkpoints, read_entries, verify_journal
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
    # The checkpoint key lives with the keys, never beside the journal (journal.supervisor_key).
    key_file = (args.checkpoint_key or site.supervisor.checkpoint_key_file
                or Path(keys_file).parent / "checkpoint.key")
    try:
        sup = Supervisor(site, keys, args.db or site.supervisor.db,
                         args.checkpoint or site.supervisor.checkpoint_file, link, from_env(),
                         accounts=args.accounts, broker_log=args.broker_log,
                         checkpoint_key=key_file)
    except AccountError as e:
        raise ConfigError(args.accounts, "--accounts", f"a staff directory ({e})") from None
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
    if sup.refusal is not None:
        print(f"supervisor: REFUSED to continue over {sup.journal.path}: {sup.refusal}",
              file=sys.stderr)
        return 2
    return 0


def _key_for_audit(args: argparse.Namespace) -> bytes | None:
    # Named by the auditor, never guessed from beside the journal: a key found there could
    # be the forger's own.
    if args.keys:
        keys = load_keys(args.keys)
        if "supervisor" in keys:
            return keys["supervisor"]
    if args.checkpoint_key:
        return bytes.fromhex(Path(args.checkpoint_key).read_text().strip())
    return None


def _verify(args: argparse.Namespace) -> int:
    cps: list[bytes] = []
    if args.checkpoint:
        try:
            cps = read_checkpoints(args.checkpoint)
            if not cps:
                raise FileNotFoundError(2, "no such checkpoint")
        except OSError as e:
            print(f"audit: cannot read checkpoint {args.checkpoint}: {e.strerror}",
                  file=sys.stderr)
            return 1
    try:
        key = _key_for_audit(args)
    except (OSError, ValueError) as e:
        print(f"audit: cannot read the checkpoint key: {e}", file=sys.stderr)
        return 1
    if cps and key is None:
        print("audit: checking checkpoints needs the checkpoint key: --checkpoint-key FILE "
              "(or --keys FILE with a `supervisor` entry)", file=sys.stderr)
        return 1
    result = verify_journal(args.db, key, checkpoints=cps)
    if result.ok:
        note = (f" and matches all {len(cps)} signed checkpoint(s)" if cps else "")
        print(f"{args.db}: {result.checked} entries, hash chain intact{note}: OK")
        return 0
    print(f"{args.db}: TAMPERED: {result.problem}", file=sys.stderr)
    return 1


def replay(site_path: str, db: str) -> State:
    """Rebuild the whole state from a journal (archive mode: every alert and record kept)."""
    state = State(load_site(site_path), archive=True)
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
    try:  # the journal may hold any integer a node signed: print it, never crash on it
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError, TypeError):
        return f"<invalid time {ms!r}>"


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
    p.add_argument("--checkpoint-key", help="checkpoint key file (default: the site's "
                   "supervisor.checkpoint_key_file, else checkpoint.key beside the keys file)")
    p.add_argument("--accounts", help="staff account directory (provisioned "
                   "supervisor/accounts.json); without it every staff request is refused")
    p.add_argument("--broker-log", help="Mosquitto's log file (provision --log-file): refused "
                   "broker logins, 5 in a row from one address, raise login-locked")
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
    v.add_argument("--checkpoint", help="checkpoint file: every checkpoint in its "
                   "append-only store (FILE.log) is checked, not only the latest")
    v.add_argument("--checkpoint-key", help="the supervisor's checkpoint key file")
    v.add_argument("--keys", help="keys file holding a `supervisor` key")
    v.set_defaults(func=_verify)

    r = sub.add_parser("record", help="print one detainee's custody timeline")
    r.add_argument("detainee")
    r.add_argument("--db", help="journal (default: the site's supervisor.db)")
    _add_site(r)
    r.set_defaults(func=_record)
