"""The journal's hash chain and checkpoint catch every kind of tampering, via the real CLI."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.journal import Journal, checkpoint, supervisor_key, write_checkpoint

KEY = bytes(range(32))


def build(tmp: Path, n: int = 12) -> tuple[Path, Path]:
    """A journal of n entries and a checkpoint covering all of them."""
    db, cp = tmp / "j.db", tmp / "cp.json"
    j = Journal(db)
    for i in range(1, n + 1):
        if i % 3:
            assert j.append("node-a", 1, i, "event", f'{{"n":{i}}}'.encode()) is not None
        else:
            j.append_own("staff", {"ts": i, "command": "x", "txn": str(i), "user": "o1",
                                   "args": {}})
    write_checkpoint(cp, checkpoint(KEY, j.count, j.head, 1000))
    j.close()
    (tmp / "checkpoint.key").write_text(KEY.hex())
    return db, cp


def audit(db: Path, cp: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "custody", "audit", "verify", "--db", str(db)]
    if cp is not None:
        cmd += ["--checkpoint", str(cp), "--checkpoint-key", str(cp.parent / "checkpoint.key")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def sql(db: Path, *statements: str) -> None:
    con = sqlite3.connect(db)
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()


def test_intact_journal_verifies(tmp_path):
    db, cp = build(tmp_path)
    r = audit(db, cp)
    assert r.returncode == 0, r.stderr
    assert "12 entries" in r.stdout


def test_duplicate_is_refused_in_the_same_transaction(tmp_path):
    j = Journal(tmp_path / "j.db")
    assert j.append("n", 1, 1, "event", b"{}") is not None
    assert j.append("n", 1, 1, "event", b"{}") is None
    assert j.count == 1
    j.close()


def test_key_file_is_created_once_and_never_beside_the_journal(tmp_path):
    kf, db = tmp_path / "keys" / "checkpoint.key", tmp_path / "x.db"
    k1 = supervisor_key({}, kf, db)
    assert supervisor_key({}, kf, db) == k1 and (kf.stat().st_mode & 0o777) == 0o600
    assert supervisor_key({"supervisor": b"k" * 16}, kf, db) == b"k" * 16
    with pytest.raises(ValueError, match="beside the journal"):
        supervisor_key({}, tmp_path / "x.db.key", db)


TAMPERING = {
    "edit payload": ["UPDATE journal SET payload = CAST('{\"n\":99}' AS BLOB) WHERE idx = 5"],
    "edit seq": ["UPDATE journal SET seq = 77 WHERE idx = 4"],
    "delete row": ["DELETE FROM journal WHERE idx = 6"],
    "reorder rows": [
        "UPDATE journal SET idx = 1000 WHERE idx = 4",
        "UPDATE journal SET idx = 4 WHERE idx = 5",
        "UPDATE journal SET idx = 5 WHERE idx = 1000",
    ],
    "insert row": [
        "UPDATE journal SET idx = idx + 100 WHERE idx >= 7",
        "UPDATE journal SET idx = idx - 99 WHERE idx >= 107",
        "INSERT INTO journal (idx, node, epoch, seq, kind, payload, hash) "
        "VALUES (7, 'node-a', 1, 500, 'event', CAST('{}' AS BLOB), '00')",
    ],
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_tampering_is_named(tmp_path, how):
    db, cp = build(tmp_path)
    sql(db, *TAMPERING[how])
    r = audit(db, cp)
    assert r.returncode == 1, r.stdout
    assert "TAMPERED" in r.stderr and "entry #" in r.stderr, r.stderr
    # without the checkpoint the chain alone still catches it
    assert audit(db).returncode == 1


def test_rewritten_chain_is_caught_by_the_checkpoint(tmp_path):
    from supervisor.journal import GENESIS, entry_hash

    db, cp = build(tmp_path)
    con = sqlite3.connect(db)
    rows = con.execute("SELECT idx, node, epoch, seq, kind, payload FROM journal ORDER BY idx"
                       ).fetchall()
    prev = GENESIS
    for idx, node, epoch, seq, kind, payload in rows:  # an attacker recomputing every hash
        payload = b'{"n":0}' if idx == 2 else bytes(payload)
        prev = entry_hash(prev, node, epoch, seq, kind, payload)
        con.execute("UPDATE journal SET payload = ?, hash = ? WHERE idx = ?",
                    (payload, prev.hex(), idx))
    con.commit()
    con.close()
    assert audit(db).returncode == 0  # the chain is self-consistent again...
    r = audit(db, cp)  # ...but not with the signed checkpoint
    assert r.returncode == 1 and "checkpoint" in r.stderr, r.stderr


def test_truncated_tail_is_caught_by_the_checkpoint(tmp_path):
    db, cp = build(tmp_path)
    sql(db, "DELETE FROM journal WHERE idx >= 11")
    assert audit(db).returncode == 0  # a shorter chain is still a valid chain
    r = audit(db, cp)
    assert r.returncode == 1
    assert "10 entries but the checkpoint says 12" in r.stderr, r.stderr


def test_forged_checkpoint_is_refused(tmp_path):
    db, cp = build(tmp_path)
    cp.write_bytes(cp.read_bytes().replace(b'"count":12', b'"count":11'))
    r = audit(db, cp)
    assert r.returncode == 1 and "signature" in r.stderr


def test_header_fast_path_matches_canonical_json():
    import hashlib

    from protocol.canonical import dumpb
    from supervisor.journal import GENESIS, entry_hash

    for node, kind in (("node-a", "event"), ("supervisor", "alert"), ("Odd Node", "k\u00e9")):
        want = hashlib.sha256(GENESIS + dumpb([node, 1, 2, kind, 3]) + b"\n" + b"abc").digest()
        assert entry_hash(GENESIS, node, 1, 2, kind, b"abc") == want
