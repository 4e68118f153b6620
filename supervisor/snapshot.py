"""State snapshots: a signed cache of the fold at one journal position, so start-up replays
only the tail that follows it.

The journal stays the one source of truth. A snapshot is the state (and the ingest replay
window) that folding entries #1..#N gives, serialised deterministically, signed with the
checkpoint key together with N, the hash of entry #N and a fingerprint of the fold (its code
and the parts of the site it reads). Start-up takes the newest snapshot whose signature holds,
whose entry #N still carries that hash and whose fingerprint is the running fold's; anything
else is reported and the next older one (or the whole journal) is replayed instead.

Snapshots are made by folding, never by copying the live state: a child process loads the
newest good snapshot, folds the journal up to the latest checkpoint's position with the same
code as start-up, and files the result beside the checkpoints (`<checkpoint>.snapshots/`).
So a snapshot holds nothing the journal does not say (no arrival times, no judged marks).

Format: one line of canonical JSON (the header, with `mac`), then the body: JSON of the
object graph, dicts in insertion order (the fold depends on it), sets sorted, objects as
their class and sorted attributes, an object met twice as a reference to its first encoding.
"""

import contextlib
import dataclasses
import hashlib
import hmac
import importlib
import json
import logging
import os
import pickle
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.canonical import dumpb
from protocol.chain import GENESIS
from protocol.replay import NODE_EVENT_WINDOW, ReplayWindow
from protocol.site import Site

from .ingest import admit_journaled
from .journal import ENTRY_COLUMNS, Entry, Journal
from .state import State

log = logging.getLogger(__name__)

FORMAT = 1
DOMAIN = b"custody-state-snapshot\n"  # a snapshot MAC can never pass for a checkpoint's
KEEP = 2  # snapshots kept: the newest and one to fall back on
MAX_HEADER = 4096
# State attributes rebuilt from the site, not from the journal: never stored.
SITE_DERIVED = frozenset({"site", "rules", "node_room", "room_nodes", "door_rooms",
                          "room_doors"})
# Not the fold: what folding touched since the rule evaluator last looked (rules/incremental.py
# evaluates everything after a start-up anyway), and when the marks were last judged.
NOT_FOLD = frozenset({"touched", "judged_at", "moved"})
# Modules whose code decides what the fold gives: a snapshot made by other code is stale.
FOLD_MODULES = ("supervisor.state", "supervisor.process", "supervisor.ingest",
                "supervisor.snapshot", "protocol.replay", "protocol.alerts")
ALLOWED_MODULES = ("supervisor.", "protocol.")
CHILD = "import sys; from supervisor.snapshot import child_main; sys.exit(child_main())"


class SnapshotError(ValueError):
    """A snapshot that cannot be made or used (the message says why)."""


class Refused(SnapshotError):
    """A snapshot that fails its check: forged, altered, or for a journal that is not this."""


class Stale(SnapshotError):
    """A genuine snapshot made by another fold (code or site changed): not an attack."""


# ---- codec --------------------------------------------------------------------------------

class _Encoder:
    def __init__(self) -> None:
        self.memo: dict[int, int] = {}
        self.alive: list[Any] = []  # keeps every memoised object alive: ids stay unique

    def _remember(self, v: Any) -> None:
        self.memo[id(v)] = len(self.memo)
        self.alive.append(v)

    def enc(self, v: Any, where: str) -> Any:
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            return v
        if t is float:
            if v != v or v in (float("inf"), float("-inf")):
                raise SnapshotError(f"{where}: {v} cannot be stored")
            return ["F", v]
        if t is tuple:
            return ["T", *[self.enc(x, where) for x in v]]
        if t is frozenset:
            return ["Z", *[self.enc(x, where) for x in _sorted(v)]]
        ref = self.memo.get(id(v))
        if ref is not None:
            return ["R", ref]
        if t is list:
            self._remember(v)
            return ["L", *[self.enc(x, where) for x in v]]
        if t is dict or t is Counter:
            self._remember(v)
            out: list[Any] = ["D" if t is dict else "C"]
            for k, x in v.items():  # insertion order: the fold iterates in it
                out.append(self.enc(k, where))
                out.append(self.enc(x, f"{where}[{k!r}]"))
            return out
        if t is set:
            self._remember(v)
            return ["S", *[self.enc(x, where) for x in _sorted(v)]]
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            name = f"{t.__module__}:{t.__qualname__}"
            if not t.__module__.startswith(ALLOWED_MODULES):
                raise SnapshotError(f"{where}: objects of {name} are not stored")
            self._remember(v)
            obj: list[Any] = ["O", name]
            for k in sorted(vars(v)):
                obj.append(k)
                obj.append(self.enc(getattr(v, k), f"{where}.{k}"))
            return obj
        raise SnapshotError(f"{where}: a {t.__name__} cannot be stored in a snapshot "
                            "(add it to supervisor/snapshot.py's codec)")


def _sorted(items: Any) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:  # mixed types: order by a stable text form
        return sorted(items, key=repr)


class _Decoder:
    def __init__(self) -> None:
        self.memo: list[Any] = []
        self.classes: dict[str, type] = {}

    def _class(self, name: str) -> type:
        cls = self.classes.get(name)
        if cls is not None:
            return cls
        module, _, qual = name.partition(":")
        if not module.startswith(ALLOWED_MODULES):
            raise SnapshotError(f"class {name} is not one a snapshot may hold")
        found: Any = importlib.import_module(module)
        for part in qual.split("."):
            found = getattr(found, part)
        if not (isinstance(found, type) and dataclasses.is_dataclass(found)):
            raise SnapshotError(f"{name} is not a data class")
        self.classes[name] = found
        return found

    def dec(self, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        tag = v[0]
        if tag == "R":
            return self.memo[v[1]]
        if tag == "T":
            return tuple(self.dec(x) for x in v[1:])
        if tag == "Z":
            return frozenset(self.dec(x) for x in v[1:])
        if tag == "F":
            return float(v[1])
        if tag == "L":
            out: list[Any] = []
            self.memo.append(out)
            out.extend(self.dec(x) for x in v[1:])
            return out
        if tag in ("D", "C"):
            d: dict[Any, Any] = {} if tag == "D" else Counter()
            self.memo.append(d)
            items = v[1:]
            for i in range(0, len(items), 2):
                k = self.dec(items[i])
                d[k] = self.dec(items[i + 1])
            return d
        if tag == "S":
            s: set[Any] = set()
            self.memo.append(s)
            s.update(self.dec(x) for x in v[1:])
            return s
        if tag == "O":
            cls = self._class(v[1])
            obj: Any = object.__new__(cls)
            self.memo.append(obj)
            items = v[2:]
            for i in range(0, len(items), 2):
                object.__setattr__(obj, items[i], self.dec(items[i + 1]))
            return obj
        raise SnapshotError(f"unknown tag {tag!r} in a snapshot body")


def dump_state(state: State, window: ReplayWindow) -> bytes:
    """The deterministic serialisation of a fold: the snapshot body, and the canonical dump
    tests compare (same journal prefix, same bytes)."""
    graph = {"state": {k: v for k, v in sorted(vars(state).items())
                       if k not in SITE_DERIVED and k not in NOT_FOLD},
             "window": {"size": window.size, "max_jump": window.max_jump,
                        "nodes": window.nodes}}
    tree = _Encoder().enc(graph, "snapshot")
    return json.dumps(tree, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def load_state(site: Site, body: bytes, archive: bool = False) -> tuple[State, ReplayWindow]:
    """State and replay window from a snapshot body (call only once its MAC holds; its
    fingerprint names the mode, so `archive` is the mode it was made in)."""
    graph = _Decoder().dec(json.loads(body))
    state = State(site, archive)  # the site-derived parts, from the running site
    for k, v in graph["state"].items():
        setattr(state, k, v)
    if state.archive != archive:
        raise SnapshotError(f"the body is of {'archive' if state.archive else 'live'} mode")
    w = graph["window"]
    window = ReplayWindow(w["size"], w["max_jump"])
    window.nodes = w["nodes"]
    return state, window


# ---- what the fold depends on -------------------------------------------------------------

_code_digest: str | None = None


def _fold_code() -> str:
    global _code_digest
    if _code_digest is None:
        h = hashlib.sha256()
        for name in FOLD_MODULES:
            path = Path(str(importlib.import_module(name).__file__))
            h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        _code_digest = h.hexdigest()
    return _code_digest


# Site settings the fold never reads (and that change with where it runs): not fingerprinted.
SITE_UNFOLDED = frozenset({"broker", "supervisor", "bureau", "path"})


def fold_fingerprint(site: Site, archive: bool = False) -> str:
    """Hash of the fold's code, its mode (live or archive: they keep different things) and
    the site it folds for (rooms, doors, nodes, rules...)."""
    site_part = dump_fingerprint_site(site)
    mode = "archive" if archive else "live"
    return hashlib.sha256(f"{FORMAT}\0{mode}\0{_fold_code()}\0".encode()
                          + site_part).hexdigest()


def dump_fingerprint_site(site: Site) -> bytes:
    """The site as the fold may see it: every field but where it runs."""
    part = {f.name: getattr(site, f.name) for f in dataclasses.fields(site)
            if f.name not in SITE_UNFOLDED}
    return json.dumps(_Encoder().enc(part, "site"), separators=(",", ":")).encode("ascii")


# ---- the signed file ----------------------------------------------------------------------

def _mac(key: bytes, header: dict[str, Any]) -> str:
    return hmac.new(key, DOMAIN + dumpb(header), hashlib.sha256).hexdigest()


def seal(key: bytes, count: int, head: str, fingerprint: str, body: bytes, ts_ms: int) -> bytes:
    """A snapshot file: signed header line, then the body."""
    header = {"format": FORMAT, "count": count, "head": head, "fold": fingerprint,
              "body_sha256": hashlib.sha256(body).hexdigest(), "body_bytes": len(body),
              "ts": ts_ms}
    return dumpb({**header, "mac": _mac(key, header)}) + b"\n" + body


def open_snapshot(key: bytes, data: bytes) -> tuple[dict[str, Any], bytes]:
    """Header and body of a snapshot whose signature and body digest hold; else Refused."""
    line, nl, body = data.partition(b"\n")
    if not nl or len(line) > MAX_HEADER:
        raise Refused("no header line (not a snapshot, or cut short)")
    try:
        obj = json.loads(line)
        header: dict[str, Any] = {"format": int(obj["format"]), "count": int(obj["count"]),
                  "head": str(obj["head"]), "fold": str(obj["fold"]),
                  "body_sha256": str(obj["body_sha256"]), "body_bytes": int(obj["body_bytes"]),
                  "ts": int(obj["ts"])}
        mac = str(obj["mac"])
    except (ValueError, KeyError, TypeError) as e:
        raise Refused(f"header is malformed: {e}") from None
    if not hmac.compare_digest(_mac(key, header), mac):
        raise Refused("signature does not match the checkpoint key (forged or altered)")
    if len(body) != header["body_bytes"] or not hmac.compare_digest(
            hashlib.sha256(body).hexdigest(), str(header["body_sha256"])):
        raise Refused("body does not match its signed digest (altered or cut short)")
    return header, body


def head_at(db: sqlite3.Connection, count: int) -> str | None:
    """The chain hash of entry #count (GENESIS for 0), or None when there is no such entry."""
    if count == 0:
        return GENESIS.hex()
    row = db.execute("SELECT hash FROM journal WHERE idx = ?", (count,)).fetchone()
    return None if row is None else str(row[0])


def check(key: bytes, data: bytes, db: sqlite3.Connection, fingerprint: str
          ) -> tuple[dict[str, Any], bytes]:
    """A snapshot usable over this journal: signature, body, head hash at its position in
    the journal, then the fold fingerprint. Raises Refused or Stale."""
    header, body = open_snapshot(key, data)
    head = head_at(db, header["count"])
    if head is None:
        raise Refused(f"it reflects entry #{header['count']}, which the journal does not have "
                      "(truncated, or a snapshot of another journal)")
    if not hmac.compare_digest(head, header["head"]):
        raise Refused(f"entry #{header['count']} does not carry the head hash the snapshot "
                      "signed (the journal was rewritten, or it is another journal's)")
    if header["format"] != FORMAT or header["fold"] != fingerprint:
        raise Stale("made by another version of the fold or for another site configuration")
    return header, body


# ---- the store beside the checkpoints -----------------------------------------------------

def snapshot_dir(checkpoint_file: str | Path) -> Path:
    """Where the snapshots of a journal are filed: beside its checkpoints."""
    return Path(str(checkpoint_file) + ".snapshots")


def snapshot_files(store: Path) -> list[Path]:
    """Snapshot files, newest position first."""
    if not store.is_dir():
        return []
    return sorted(store.glob("state-*.snap"), reverse=True)


def file_snapshot(store: Path, count: int, data: bytes) -> Path:
    """Write a snapshot atomically (write, fsync, rename) and drop all but the newest KEEP."""
    store.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = store / f"state-{count:012d}.snap"
    tmp = store / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(store, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    for old in snapshot_files(store)[KEEP:]:
        old.unlink(missing_ok=True)
    for stray in store.glob(".state-*.tmp"):  # left by a maker that was stopped
        if not stray.name.endswith(f".{os.getpid()}.tmp"):
            stray.unlink(missing_ok=True)
    return path


# ---- rebuilding the fold ------------------------------------------------------------------

@dataclass
class Rebuilt:
    """A fold rebuilt from the journal: from which snapshot, what it replayed, what it refused."""

    state: State
    window: ReplayWindow
    snapshot: int | None = None  # position of the snapshot used (None: replayed from #1)
    replayed: int = 0  # entries folded after it
    seconds: float = 0.0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    stale: list[tuple[str, str]] = field(default_factory=list)


def _set_aside(path: Path) -> None:
    """Keep a refused snapshot as evidence, out of the way of the next start (reported once)."""
    try:
        path.rename(path.with_name(path.name + ".refused"))
    except OSError as e:
        log.error("could not set aside the refused snapshot %s: %s", path, e)


def _entries(db: sqlite3.Connection, after: int, upto: int | None) -> Iterator[Entry]:
    q = f"SELECT {ENTRY_COLUMNS} FROM journal WHERE idx > ?"
    args: tuple[int, ...] = (after,)
    if upto is not None:
        q, args = q + " AND idx <= ?", (after, upto)
    for r in db.execute(q + " ORDER BY idx", args):
        yield Entry.of(r)


def rebuild(site: Site, db: sqlite3.Connection, key: bytes, store: Path,
            upto: int | None = None, now_s: float | None = None, archive: bool = False
            ) -> Rebuilt:
    """The fold of the journal (up to entry `upto`): the newest usable snapshot at or before
    it plus the entries after it, in one pass that feeds the state and the replay window."""
    t0 = time.perf_counter()
    fingerprint = fold_fingerprint(site, archive)
    out = Rebuilt(State(site, archive), ReplayWindow(NODE_EVENT_WINDOW))
    for path in snapshot_files(store):
        try:
            data = path.read_bytes()
            header, body = check(key, data, db, fingerprint)
            if upto is not None and header["count"] > upto:
                continue
            out.state, out.window = load_state(site, body, archive)
            out.snapshot = header["count"]
            break
        except Stale as e:
            out.stale.append((path.name, str(e)))
        except Refused as e:
            out.refused.append((path.name, str(e)))
            _set_aside(path)
        except (OSError, SnapshotError, ValueError, KeyError, TypeError, IndexError,
                AttributeError, ImportError) as e:  # signed, yet unreadable: still refused
            out.refused.append((path.name, f"cannot be read: {type(e).__name__}: {e}"))
            _set_aside(path)
    now = time.time() if now_s is None else now_s
    state, window = out.state, out.window
    for entry in _entries(db, out.snapshot or 0, upto):
        state.apply(entry)
        admit_journaled(window, entry, now)
        out.replayed += 1
    out.seconds = time.perf_counter() - t0
    return out


# ---- making snapshots (in a child process) ------------------------------------------------

def make(site: Site, db_path: str | Path, store: Path, key: bytes, upto: int,
         archive: bool = False) -> dict[str, Any]:
    """Fold the journal up to entry `upto` (from the newest good snapshot), sign and file it
    (live mode unless `archive`: the supervisor's own)."""
    t0 = time.perf_counter()
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        db.execute("BEGIN")  # one read view for the checks and the entries
        head = head_at(db, upto)
        if head is None:
            raise SnapshotError(f"the journal has no entry #{upto}")
        rebuilt = rebuild(site, db, key, store, upto=upto, archive=archive)
    finally:
        db.close()
    body = dump_state(rebuilt.state, rebuilt.window)
    data = seal(key, upto, head, fold_fingerprint(site, archive), body,
                int(time.time() * 1000))
    path = file_snapshot(store, upto, data)
    return {"count": upto, "file": path.name, "bytes": len(data), "from": rebuilt.snapshot,
            "replayed": rebuilt.replayed, "seconds": round(time.perf_counter() - t0, 3),
            "refused": rebuilt.refused, "stale": rebuilt.stale}


def child_main() -> int:
    """The snapshot maker's process (CHILD): the job comes pickled on stdin from the supervisor
    (a pipe it made; the key never appears in argv or the environment)."""
    logging.basicConfig(level=logging.WARNING, format="snapshot maker: %(message)s")
    with contextlib.suppress(OSError):
        os.nice(10)  # the live supervisor comes first
    job = pickle.load(sys.stdin.buffer)
    try:
        result = make(job["site"], job["db"], Path(job["store"]), job["key"], job["upto"])
    except Exception as e:  # reported to the supervisor, which logs and counts it
        result = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if "error" not in result else 1


# ---- the supervisor's side ----------------------------------------------------------------

@dataclass
class SnapshotHealth:
    """What supervisor/health says about snapshots."""

    loaded: int | None = None
    replayed: int = 0
    startup_ms: int = 0
    refused: int = 0
    stale: int = 0
    problems: list[str] = field(default_factory=list)  # the latest few, with the reason
    written: int | None = None
    write_ms: int | None = None
    write_failures: int = 0
    last_error: str = ""


class Snapshots:
    """Start-up from the newest good snapshot; new ones made in the background after a
    checkpoint once `every` entries have been journaled since the last."""

    def __init__(self, site: Site, db: str | Path, checkpoint_file: str | Path, key: bytes,
                 every: int) -> None:
        self.site, self.db, self.key, self.every = site, Path(db), key, every
        self.store = snapshot_dir(checkpoint_file)
        self.health = SnapshotHealth()
        self.base = 0  # position of the newest snapshot known good (loaded or made)
        self.unreported: list[dict[str, Any]] = []  # refusals still to journal
        self.child: subprocess.Popen[bytes] | None = None
        self.closed = False

    def load(self, journal: Journal) -> Rebuilt:
        """Rebuild the fold for start-up (newest good snapshot + tail, or the whole journal)."""
        r = rebuild(self.site, journal.db, self.key, self.store)
        self.health.loaded, self.health.replayed = r.snapshot, r.replayed
        self.health.startup_ms = int(r.seconds * 1000)  # health is canonical JSON: no floats
        self.base = r.snapshot or 0
        self._problems(r.refused, r.stale)
        if r.snapshot is not None:
            log.info("state from snapshot at entry #%d plus %d entries replayed (%.2f s)",
                     r.snapshot, r.replayed, r.seconds)
        else:
            log.info("state replayed from the whole journal: %d entries (%.2f s)", r.replayed,
                     r.seconds)
        return r

    def _problems(self, refused: list[Any], stale: list[Any]) -> None:
        for name, why in refused:
            log.error("state snapshot %s refused: %s; replaying the journal instead", name, why)
            self.health.refused += 1
            self.health.problems = [*self.health.problems, f"{name}: refused: {why}"][-5:]
            self.unreported.append({"file": str(name), "why": str(why)})
        for name, why in stale:
            log.warning("state snapshot %s not used: %s; replaying the journal instead", name,
                        why)
            self.health.stale += 1
            self.health.problems = [*self.health.problems, f"{name}: stale: {why}"][-5:]

    def report(self, journal: Journal, state: State, now_ms: int) -> None:
        """Journal each refused snapshot as a security entry (it raises a critical alert)."""
        while self.unreported:
            p = self.unreported[0]
            entry = journal.append_own("security", {
                "ts": now_ms, "topic": "", "reason": "snapshot_refused", "node": "supervisor",
                "payload_hex": "", "detail": f"state snapshot {p['file']} refused: {p['why']} "
                "(start-up replayed the journal instead)"})
            self.unreported.pop(0)
            state.apply(entry)

    def checkpointed(self, journal: Journal, state: State, now_ms: int) -> None:
        """After a checkpoint (on the worker): collect a finished maker, report refusals,
        start a new maker when `every` entries have been journaled since the last snapshot."""
        self._collect()
        self.report(journal, state, now_ms)
        if (self.closed or self.child is not None
                or journal.count - self.base < self.every):
            return
        job = pickle.dumps({"site": self.site, "db": str(self.db), "store": str(self.store),
                            "key": self.key, "upto": journal.count})
        try:
            self.child = subprocess.Popen([sys.executable, "-c", CHILD],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert self.child.stdin is not None
            self.child.stdin.write(job)
            self.child.stdin.close()
        except OSError as e:
            self._failed(f"could not start the snapshot maker: {e}")
            self.child = None

    def _collect(self) -> None:
        if self.child is None or self.child.poll() is None:
            return
        child, self.child = self.child, None
        out = child.stdout.read() if child.stdout is not None else b""
        if child.stdout is not None:
            child.stdout.close()
        try:
            result = json.loads(out.decode() or "{}")
        except ValueError:
            result = {}
        if "count" not in result:
            self._failed(result.get("error") or f"snapshot maker exited {child.returncode}")
            return
        self.base = int(result["count"])
        self.health.written = self.base
        self.health.write_ms = int(float(result.get("seconds", 0)) * 1000)
        self._problems(result.get("refused", []), result.get("stale", []))
        log.info("state snapshot at entry #%d filed (%d bytes, %.1f s)", self.base,
                 result.get("bytes", 0), result.get("seconds", 0.0))

    def _failed(self, why: str) -> None:
        log.error("state snapshot not made: %s", why)
        self.health.write_failures += 1
        self.health.last_error = why[:300]

    def wait(self, timeout: float) -> None:
        """Wait for a running maker and collect it (tests, benchmarks)."""
        if self.child is not None:
            self.child.wait(timeout)
            self._collect()

    def close(self) -> None:
        """Stop a running maker (its half-written file is never renamed into place)."""
        self.closed = True
        if self.child is not None:
            self.child.terminate()
            try:
                self.child.wait(5)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
            if self.child.stdout is not None:
                self.child.stdout.close()
            self.child = None

    def health_body(self) -> dict[str, Any]:
        """The `snapshots` part of supervisor/health."""
        h = dataclasses.asdict(self.health)
        h["making"] = self.child is not None
        return h
