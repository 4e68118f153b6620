"""The durable outbox: every event is sealed and committed to SQLite before it is published.

WAL journal with synchronous=FULL, so a committed event survives power loss. The node's
epoch is chosen once, when the database is created (real Unix seconds, so a replaced
database always gets a higher epoch); sequences start at 1 in each epoch. Rows are deleted
only when a verified supervisor ack names them. When full, new events are rejected and
counted (never drop-oldest); a small reserve lets the agent still store its own alerts.
When the disk cannot take a commit (full, I/O error) `append` raises OutboxUnwritable and
claims no sequence number: a number is only ever handed out with its event committed.
"""

import contextlib
import errno
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.clock import Clock
from protocol.envelope import seal
from protocol.private import restrict_db

# 72 h of peak traffic at an assumed sustained peak of 1 event/s per room node.
PEAK_EVENTS_PER_S = 1
DEFAULT_CAPACITY = 72 * 3600 * PEAK_EVENTS_PER_S
RESERVE = 64
HIGH_WATER, LOW_WATER = 0.5, 0.4

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL,
                                   type TEXT NOT NULL, payload BLOB NOT NULL);
"""


class OutboxFull(Exception):
    """The outbox is at capacity; the event was rejected (and counted)."""


class OutboxUnwritable(Exception):
    """The outbox's storage refused the commit (disk full, I/O error); nothing was stored."""


def storage_error(e: BaseException) -> bool:
    """Whether an exception is the storage failing rather than a bug."""
    if isinstance(e, sqlite3.OperationalError):
        text = str(e).lower()
        return any(w in text for w in ("disk", "full", "i/o", "readonly", "read-only"))
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EIO, errno.EROFS,
                                                  errno.EDQUOT)


@dataclass(frozen=True)
class Stored:
    """One committed event."""

    seq: int
    payload: bytes


class Outbox:
    """One node's outbox database (use from one thread)."""

    def __init__(self, path: str | Path, node: str, key: bytes, clock: Clock,
                 capacity: int = 0, reserve: int = RESERVE) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.node, self.key, self.clock = node, key, clock
        self.capacity = capacity or DEFAULT_CAPACITY
        self.reserve = reserve
        self.rejected = 0
        self.commit_failures = 0
        self.unwritable: str | None = None  # the last commit's error, until one succeeds
        self.high_water = False
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        restrict_db(self.path)  # names, cases: owner only (its -wal/-shm follow)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        with self._tx():
            if self.get("epoch") is None:
                # A new database: a new epoch, higher than any earlier one of this node.
                self.db.execute("INSERT INTO meta VALUES ('epoch', ?), ('next_seq', '1')",
                                (str(max(1, int(time.time()))),))
        self.epoch = int(self.get("epoch") or 1)
        self.next_seq = int(self.get("next_seq") or 1)
        self.depth = int(self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        self._update_high_water()

    @contextlib.contextmanager
    def _tx(self) -> Any:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # SQLite may have rolled back itself (disk full)
                self.db.execute("ROLLBACK")
            raise

    def get(self, k: str) -> str | None:
        """A value of the meta table."""
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, k: str, v: str) -> None:
        """Set a value of the meta table (committed)."""
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, v))

    def put_json(self, k: str, value: Any) -> None:
        """Store a JSON value in the meta table."""
        self.put(k, json.dumps(value))

    def get_json(self, k: str, default: Any = None) -> Any:
        """A JSON value of the meta table."""
        v = self.get(k)
        return default if v is None else json.loads(v)

    def append(self, event_type: str, body: dict[str, Any], *, reserved: bool = False,
               meta: dict[str, str] | None = None, ts_ms: int | None = None) -> Stored:
        """Seal and commit one event (with `meta` values in the same transaction); raise
        OutboxFull (counted) when at capacity, OutboxUnwritable when the disk refuses.
        `ts_ms`: when it happened, for an event held in memory while the disk was full."""
        limit = self.capacity + (self.reserve if reserved else 0)
        if self.depth >= limit:
            self.rejected += 1
            raise OutboxFull(f"outbox holds {self.depth} events (capacity {self.capacity})")
        seq = self.next_seq
        ts = self.clock.now_ms() if ts_ms is None else ts_ms
        payload = seal(self.key, self.node, self.epoch, seq, ts, event_type, body)
        try:
            with self._tx():
                self.db.execute("INSERT INTO events VALUES (?, ?, ?, ?)",
                                (seq, ts, event_type, payload))
                self.db.execute("UPDATE meta SET v = ? WHERE k = 'next_seq'", (str(seq + 1),))
                for k, v in (meta or {}).items():
                    self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, v))
        except (sqlite3.Error, OSError) as e:
            if not storage_error(e):
                raise
            self.commit_failures += 1
            self.unwritable = str(e)
            raise OutboxUnwritable(f"outbox {self.path} cannot commit: {e}") from e
        self.unwritable = None
        self.next_seq = seq + 1
        self.depth += 1
        self._update_high_water()
        return Stored(seq, payload)

    def after(self, seq: int, limit: int) -> list[Stored]:
        """Unacked events with a sequence above `seq`, oldest first."""
        rows = self.db.execute("SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq "
                               "LIMIT ?", (seq, limit)).fetchall()
        return [Stored(int(s), bytes(p)) for s, p in rows]

    def oldest(self) -> int | None:
        """The lowest unacked sequence, if any."""
        row = self.db.execute("SELECT MIN(seq) FROM events").fetchone()
        return None if row[0] is None else int(row[0])

    def ack(self, epoch: int, seqs: list[int]) -> list[int]:
        """Delete exactly the acked (epoch, seq) events; return the sequences deleted."""
        if epoch != self.epoch or not seqs:
            return []
        deleted: list[int] = []
        try:
            with self._tx():
                for s in seqs:
                    cur = self.db.execute("DELETE FROM events WHERE seq = ?", (s,))
                    if cur.rowcount:
                        deleted.append(s)
        except (sqlite3.Error, OSError) as e:
            if not storage_error(e):
                raise
            # Kept, so sent again and acked again (the supervisor dedupes): nothing lost.
            self.commit_failures += 1
            self.unwritable = str(e)
            return []
        self.depth -= len(deleted)
        self._update_high_water()
        return deleted

    def _update_high_water(self) -> None:
        fill = self.depth / self.capacity
        if fill >= HIGH_WATER:
            self.high_water = True
        elif fill < LOW_WATER:
            self.high_water = False

    def close(self) -> None:
        """Close the database."""
        self.db.close()
