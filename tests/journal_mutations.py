"""Tampering with a supervisor journal (SQLite table `journal`), one way at a time.

Each mutation takes a path to a copy of the journal database and changes it the way an
insider with file access might: edit a field or a byte of a payload, delete a row, swap two
rows, insert a forged row, cut the tail, and the same again with every later hash recomputed
("re-chained") so that only the signed checkpoint can tell.
"""

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

from protocol.canonical import dumpb

COLUMNS = "node, epoch, seq, kind, payload, hash"
Mutation = Callable[[Path], str]


def _rows(db: sqlite3.Connection) -> list[tuple]:
    return db.execute(f"SELECT idx, {COLUMNS} FROM journal ORDER BY idx").fetchall()


def _chain(prev: bytes, row: tuple) -> bytes:
    node, epoch, seq, kind, payload = row[1], row[2], row[3], row[4], bytes(row[5])
    header = dumpb([node, epoch, seq, kind, len(payload)]) + b"\n"
    return hashlib.sha256(prev + header + payload).digest()


def rechain(db: sqlite3.Connection) -> None:
    """Recompute every hash from the start, as a forger without the supervisor key would."""
    prev = bytes(32)
    for row in _rows(db):
        prev = _chain(prev, row)
        db.execute("UPDATE journal SET hash = ? WHERE idx = ?", (prev.hex(), row[0]))


def _edit(db: sqlite3.Connection, where: str, change: str) -> str:
    rows = _rows(db)
    i = {"first": 0, "middle": len(rows) // 2, "last": len(rows) - 1}[where]
    idx = rows[i][0]
    if change == "payload byte":
        p = bytearray(rows[i][5])
        p[len(p) // 2] ^= 0x01
        db.execute("UPDATE journal SET payload = ? WHERE idx = ?", (bytes(p), idx))
    elif change == "seq":
        db.execute("UPDATE journal SET seq = seq + 100000 WHERE idx = ?", (idx,))
    elif change == "node":
        db.execute("UPDATE journal SET node = 'node-forged' WHERE idx = ?", (idx,))
    elif change == "kind":
        db.execute("UPDATE journal SET kind = 'forged' WHERE idx = ?", (idx,))
    elif change == "hash":
        db.execute("UPDATE journal SET hash = ? WHERE idx = ?", ("0" * 64, idx))
    return f"edit {change} of the {where} entry (#{idx})"


def _delete(db: sqlite3.Connection, where: str) -> str:
    rows = _rows(db)
    i = {"first": 0, "middle": len(rows) // 2, "last": len(rows) - 1}[where]
    db.execute("DELETE FROM journal WHERE idx = ?", (rows[i][0],))
    return f"delete the {where} entry (#{rows[i][0]})"


def _delete_and_renumber(db: sqlite3.Connection) -> str:
    rows = _rows(db)
    k = len(rows) // 2
    db.execute("DELETE FROM journal WHERE idx = ?", (rows[k][0],))
    for r in rows[k + 1:]:
        db.execute("UPDATE journal SET idx = idx - 1 WHERE idx = ?", (r[0],))
    return f"delete entry #{rows[k][0]} and renumber the rest"


def _swap(db: sqlite3.Connection, a: int, b: int) -> str:
    rows = _rows(db)
    ra, rb = rows[a], rows[b]
    # Move the contents of two rows (hashes travel with their rows, as a copy would).
    for dst in (ra[0], rb[0]):
        db.execute("UPDATE journal SET node=?, epoch=?, seq=? WHERE idx=?",
                   (f"tmp-{dst}", -dst, -dst, dst))
    for dst, src in ((ra[0], rb), (rb[0], ra)):
        db.execute("UPDATE journal SET node=?, epoch=?, seq=?, kind=?, payload=?, hash=? "
                   "WHERE idx=?", (*src[1:], dst))
    return f"reorder: swap entries #{ra[0]} and #{rb[0]}"


def _insert(db: sqlite3.Connection, at: str) -> str:
    rows = _rows(db)
    k = {"start": 0, "middle": len(rows) // 2}[at]
    model = rows[k]
    for r in reversed(rows[k:]):
        db.execute("UPDATE journal SET idx = idx + 1 WHERE idx = ?", (r[0],))
    db.execute(f"INSERT INTO journal (idx, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
               (model[0], "node-forged", 1, 999999, model[4], model[5], model[6]))
    return f"insert a forged entry at #{model[0]} ({at})"


def _truncate(db: sqlite3.Connection, n: int) -> str:
    top = _rows(db)[-1][0]
    db.execute("DELETE FROM journal WHERE idx > ?", (top - n,))
    return f"truncate the last {n} entr{'y' if n == 1 else 'ies'}"


def _apply(fn: Callable[[sqlite3.Connection], str], then_rechain: bool = False) -> Mutation:
    def run(path: Path) -> str:
        db = sqlite3.connect(str(path), isolation_level=None)
        try:
            db.execute("BEGIN")
            what = fn(db)
            if then_rechain:
                rechain(db)
                what += ", all hashes recomputed"
            db.execute("COMMIT")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()
        return what

    return run


def mutations() -> dict[str, tuple[Mutation, bool]]:
    """Every mutation by name, and whether only the checkpoint can catch it."""
    out: dict[str, tuple[Mutation, bool]] = {}
    for where in ("first", "middle", "last"):
        for change in ("payload byte", "seq", "node", "kind", "hash"):
            out[f"edit-{change.replace(' ', '-')}-{where}"] = (
                _apply(lambda db, w=where, c=change: _edit(db, w, c)), False)
        out[f"delete-{where}"] = (_apply(lambda db, w=where: _delete(db, w)), where == "last")
    out["delete-renumbered"] = (_apply(_delete_and_renumber), False)
    out["reorder-adjacent"] = (_apply(lambda db: _swap(db, 2, 3)), False)
    out["reorder-far"] = (_apply(lambda db: _swap(db, 1, -2)), False)
    out["insert-start"] = (_apply(lambda db: _insert(db, "start")), False)
    out["insert-middle"] = (_apply(lambda db: _insert(db, "middle")), False)
    out["truncate-1"] = (_apply(lambda db: _truncate(db, 1)), True)
    out["truncate-5"] = (_apply(lambda db: _truncate(db, 5)), True)
    # A forger who recomputes the chain: only the signed checkpoint catches these.
    out["edit-payload-rechained"] = (
        _apply(lambda db: _edit(db, "middle", "payload byte"), then_rechain=True), True)
    out["delete-rechained"] = (_apply(_delete_and_renumber, then_rechain=True), True)
    out["reorder-rechained"] = (_apply(lambda db: _swap(db, 2, 3), then_rechain=True), True)
    out["insert-rechained"] = (_apply(lambda db: _insert(db, "middle"), then_rechain=True), True)
    return out
