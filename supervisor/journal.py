"""The append-only, hash-chained journal in SQLite, and its signed checkpoint.

Each entry's hash is SHA-256(previous hash || header || payload) where header is the
canonical JSON of [node, epoch, seq, kind, len(payload)] plus a newline. The first entry
chains from 32 zero bytes. UNIQUE (node, epoch, seq) makes dedupe part of the append's own
transaction. A checkpoint (count, head hash, HMAC under the supervisor key) catches a
truncated tail, which the chain alone cannot.
"""

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.canonical import dumpb

# The chain format lives in protocol (the bureau checks it too); re-exported for the site side.
from protocol.chain import GENESIS as GENESIS
from protocol.chain import checkpoint as checkpoint
from protocol.chain import entry_hash as entry_hash
from protocol.chain import open_checkpoint as open_checkpoint
from protocol.private import restrict_db

SUPERVISOR_NODE = "supervisor"

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    idx INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (node, epoch, seq)
);
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""


ENTRY_COLUMNS = "idx, node, epoch, seq, kind, payload, hash"  # an Entry's row, in order


@dataclass(frozen=True)
class Entry:
    """One journal row."""

    idx: int
    node: str
    epoch: int
    seq: int
    kind: str
    payload: bytes
    hash: str

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)

    @classmethod
    def of(cls, r: Any) -> "Entry":
        """The entry of a row selected as ENTRY_COLUMNS."""
        return cls(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6])


class Journal:
    """The supervisor's journal: appends in transactions, dedupes, reads back in order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        restrict_db(self.path)  # names, cases: owner only (its -wal/-shm follow)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        row = self.db.execute("SELECT idx, hash FROM journal ORDER BY idx DESC LIMIT 1").fetchone()
        self.count = 0 if row is None else int(row[0])
        self.head = GENESIS if row is None else bytes.fromhex(row[1])
        row = self.db.execute("SELECT MAX(seq) FROM journal WHERE node = ?",
                              (SUPERVISOR_NODE,)).fetchone()
        self.own_seq = int(row[0] or 0)
        self._in_txn = False

    # Transactions: the caller groups a batch of appends into one commit.
    def begin(self) -> None:
        """Start a write transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        self._in_txn = True
        self._saved = (self.count, self.head, self.own_seq)

    def commit(self) -> None:
        """Commit the batch durably (synchronous=FULL)."""
        self.db.execute("COMMIT")
        self._in_txn = False

    def rollback(self) -> None:
        """Abandon the batch (SQLite may already have, e.g. after a full disk)."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self._in_txn = False
        self.count, self.head, self.own_seq = self._saved

    def contains(self, node: str, epoch: int, seq: int) -> bool:
        """Whether (node, epoch, seq) is already journaled."""
        return self.db.execute("SELECT 1 FROM journal WHERE node=? AND epoch=? AND seq=?",
                               (node, epoch, seq)).fetchone() is not None

    def payload_of(self, node: str, epoch: int, seq: int) -> bytes | None:
        """The journaled payload of (node, epoch, seq), or None."""
        row = self.db.execute("SELECT payload FROM journal WHERE node=? AND epoch=? AND seq=?",
                              (node, epoch, seq)).fetchone()
        return None if row is None else bytes(row[0])

    def append(self, node: str, epoch: int, seq: int, kind: str, payload: bytes) -> Entry | None:
        """Append one entry; None when (node, epoch, seq) is already there (a duplicate)."""
        own = not self._in_txn
        if own:
            self.begin()
        try:
            h = entry_hash(self.head, node, epoch, seq, kind, payload)
            try:
                cur = self.db.execute(
                    "INSERT INTO journal (node, epoch, seq, kind, payload, hash) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (node, epoch, seq, kind, payload, h.hex()))
            except sqlite3.IntegrityError:
                if own:
                    self.rollback()
                return None
            idx = int(cur.lastrowid or 0)
            self.count, self.head = idx, h
            if own:
                self.commit()
            return Entry(idx, node, epoch, seq, kind, payload, h.hex())
        except BaseException:
            if own and self._in_txn:
                self.rollback()
            raise

    def append_own(self, kind: str, obj: Any) -> Entry:
        """Append an entry the supervisor itself writes (staff, alert, security...)."""
        self.own_seq += 1
        entry = self.append(SUPERVISOR_NODE, 1, self.own_seq, kind, dumpb(obj))
        assert entry is not None
        return entry

    # Alert messages journaled but not yet confirmed by the broker (outside the hash chain):
    # written in the alert entry's transaction, deleted on PUBACK, re-sent after a crash.
    def add_pending(self, topic: str, payload: bytes) -> int:
        """Remember a message to publish; returns its id (call inside a transaction)."""
        cur = self.db.execute("INSERT INTO pending (topic, payload) VALUES (?, ?)",
                              (topic, payload))
        return int(cur.lastrowid or 0)

    def pending(self) -> list[tuple[int, str, bytes]]:
        """Messages journaled but not confirmed sent, oldest first."""
        return [(r[0], r[1], bytes(r[2])) for r in
                self.db.execute("SELECT id, topic, payload FROM pending ORDER BY id")]

    def sent(self, ids: list[int]) -> None:
        """Forget messages the broker has confirmed."""
        if ids:
            self.db.executemany("DELETE FROM pending WHERE id = ?", [(i,) for i in ids])

    def entries(self, after: int = 0) -> Iterator[Entry]:
        """Every entry after index `after`, in order."""
        cur = self.db.execute(f"SELECT {ENTRY_COLUMNS} FROM journal WHERE idx > ? ORDER BY idx",
                              (after,))
        for r in cur:
            yield Entry.of(r)

    def close(self) -> None:
        """Close the database."""
        self.db.close()


def read_entries(path: str | Path) -> Iterator[Entry]:
    """Every entry of a journal, opened read-only (a running supervisor may be writing)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such journal")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for r in db.execute(f"SELECT {ENTRY_COLUMNS} FROM journal ORDER BY idx"):
            yield Entry.of(r)
    finally:
        db.close()


def read_kinds(path: str | Path, kinds: tuple[str, ...], after: int = 0,
               last: int | None = None) -> list[Entry]:
    """The entries of these kinds after index `after`, in order (only the `last` ones when
    given), from a read-only connection of the caller's own: for the desk's threads, which
    must not hold up the worker with a scan of a long journal."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        marks = ", ".join("?" for _ in kinds)
        sql = (f"SELECT {ENTRY_COLUMNS} FROM journal WHERE idx > ? AND kind IN ({marks}) "
               "ORDER BY idx")
        if last is not None:
            sql += " DESC LIMIT ?"
        rows = db.execute(sql, (after, *kinds, *(() if last is None else (last,)))).fetchall()
    finally:
        db.close()
    if last is not None:
        rows.reverse()
    return [Entry.of(r) for r in rows]


# ---- checkpoint ----------------------------------------------------------------------------

def write_checkpoint(path: str | Path, data: bytes) -> None:
    """Write a checkpoint file atomically (write, fsync, rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


# Every checkpoint ever signed, one per line, appended and never rewritten: a later, shorter
# checkpoint cannot hide an earlier, longer one. (On an installed system the file gets the
# append-only attribute, `chattr +a`: see hardware/README.md.)
def checkpoint_store(checkpoint_file: str | Path) -> Path:
    """The append-only store beside the latest-checkpoint file."""
    return Path(str(checkpoint_file) + ".log")


def append_checkpoint(checkpoint_file: str | Path, data: bytes) -> None:
    """File a checkpoint: append it to the store (fsync'd), then replace the latest copy."""
    store = checkpoint_store(checkpoint_file)
    store.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(store, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"\n" + data + b"\n")  # a leading newline ends any torn earlier line
        os.fsync(fd)
    finally:
        os.close(fd)
    write_checkpoint(checkpoint_file, data)


def read_checkpoints(checkpoint_file: str | Path) -> list[bytes]:
    """Every checkpoint filed for a journal, oldest first (the bureau reads them here too).

    Lines that are not a whole JSON object (a write torn by a crash or a full disk) are
    skipped; a signature is checked by whoever holds the key (open_checkpoint). Without a
    store (a journal from before it existed) the latest-checkpoint file is the only one.
    """
    store = checkpoint_store(checkpoint_file)
    if not store.exists():
        p = Path(checkpoint_file)
        return [p.read_bytes()] if p.exists() else []
    out = []
    for line in store.read_bytes().split(b"\n"):
        line = line.strip()
        if not line:
            continue
        try:
            if isinstance(json.loads(line), dict):
                out.append(line)
        except ValueError:
            continue
    return out


def load_key_file(path: str | Path) -> bytes:
    """A 32-byte hex key file, created (mode 0600) on first use."""
    kp = Path(path)
    if kp.exists():
        return bytes.fromhex(kp.read_text().strip())
    kp.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def supervisor_key(keys: dict[str, bytes], key_file: str | Path, db_path: str | Path) -> bytes:
    """The checkpoint key: `supervisor` in the keys file, else `key_file` (made on first use).

    Never `<db>.key`: a key kept beside the journal lets whoever can rewrite the journal
    re-sign it. An installed system keeps it with the keys under /etc/custody (read-only to
    the service), the journal under /var/lib/custody (hardware/README.md).
    """
    if SUPERVISOR_NODE in keys:
        return keys[SUPERVISOR_NODE]
    if Path(key_file).resolve() == Path(str(db_path) + ".key").resolve():
        raise ValueError(f"checkpoint key {key_file} must not sit beside the journal as "
                         "<db>.key: whoever can rewrite the journal could re-sign it")
    return load_key_file(key_file)


def start_problem(journal: "Journal", key: bytes, checkpoints: list[bytes]) -> str | None:
    """Why the supervisor must not continue over this journal, or None.

    The journal must extend every checkpoint filed for it: at least as many entries as the
    longest, and the entry each checkpoint names must carry the hash it signed.
    """
    for data in checkpoints:
        try:
            count, head = open_checkpoint(key, data)
        except ValueError as e:
            return f"a filed checkpoint does not verify ({e})"
        if count > journal.count:
            return (f"journal has {journal.count} entries but a signed checkpoint says {count}:"
                    f" entries #{journal.count + 1}..#{count} are missing (truncated)")
        if count == 0:
            continue
        row = journal.db.execute("SELECT hash FROM journal WHERE idx = ?", (count,)).fetchone()
        if row is None or row[0] != head:
            return (f"entry #{count} does not carry the head hash its signed checkpoint names "
                    "(the journal was rewritten)")
    return None


# ---- verification --------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditResult:
    """Outcome of verifying a journal: ok, entries checked, and what is wrong first."""

    ok: bool
    checked: int
    problem: str = ""


def _describe(e: tuple[Any, ...]) -> str:
    return f"entry #{e[0]} (node {e[1]}, epoch {e[2]}, seq {e[3]}, kind {e[4]})"


def verify_journal(db_path: str | Path, key: bytes | None = None,
                   checkpoint_data: bytes | None = None,
                   checkpoints: list[bytes] | None = None) -> AuditResult:
    """Walk the chain from the start; compare with every checkpoint given."""
    if not Path(db_path).exists():
        return AuditResult(False, 0, f"{db_path}: no such journal")
    given = list(checkpoints or []) + ([checkpoint_data] if checkpoint_data is not None else [])
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        prev, expect_idx, n = GENESIS, 1, 0
        heads: dict[int, str] = {}  # count -> head hash, from every checkpoint
        if given and key is None:
            return AuditResult(False, 0, "a checkpoint needs the supervisor key")
        for i, data in enumerate(given, start=1):
            assert key is not None
            try:
                count, head = open_checkpoint(key, data)
            except ValueError as e:
                return AuditResult(False, 0, f"checkpoint {i} of {len(given)}: {e}")
            if heads.setdefault(count, head) != head:
                return AuditResult(False, 0, f"two signed checkpoints give entry #{count} "
                                   "different head hashes")
        top = max(heads, default=0)
        rows = db.execute("SELECT idx, node, epoch, seq, kind, payload, hash FROM journal "
                          "ORDER BY idx")
        for row in rows:
            if row[0] != expect_idx:
                what = "missing (deleted)" if row[0] > expect_idx else "out of order"
                return AuditResult(False, n, f"entry #{expect_idx} is {what}; next row is "
                                   f"{_describe(row)}")
            h = entry_hash(prev, row[1], row[2], row[3], row[4], bytes(row[5]))
            if h.hex() != row[6]:
                return AuditResult(False, n, f"{_describe(row)}: hash does not chain (edited, "
                                   "inserted, reordered, or an entry before it was removed)")
            prev, expect_idx, n = h, expect_idx + 1, n + 1
            if n in heads and h.hex() != heads[n]:
                return AuditResult(False, n, f"{_describe(row)}: head hash differs from the "
                                   "checkpoint (the chain was rewritten)")
        if n < top:
            return AuditResult(False, n, f"journal has {n} entries but the checkpoint says "
                               f"{top}: entries #{n + 1}..#{top} are missing (truncated)")
        return AuditResult(True, n)
    except sqlite3.DatabaseError as e:
        return AuditResult(False, 0, f"{db_path}: not a readable journal ({e})")
    finally:
        db.close()

