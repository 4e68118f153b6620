"""Replay from #1 against snapshot-plus-tail, compared byte for byte on the state's dump."""

import sqlite3
from pathlib import Path

from protocol.site import Site
from supervisor import snapshot as S

KEY = bytes(range(32))


def full_replay(site: Site, db: Path) -> bytes:
    """The canonical dump of the fold of the whole journal (no snapshot)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        r = S.rebuild(site, conn, KEY, Path("/nonexistent-snapshot-store"))
    finally:
        conn.close()
    assert r.snapshot is None and not r.refused
    return S.dump_state(r.state, r.window)


def from_snapshot(site: Site, db: Path, store: Path) -> S.Rebuilt:
    """Start-up's rebuild over `store`."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return S.rebuild(site, conn, KEY, store)
    finally:
        conn.close()


def assert_snapshots_agree(site: Site, db: Path, work: Path, cuts: list[int] | None = None,
                           want: bytes | None = None) -> int:
    """For each cut (default: spread over the journal), a snapshot made at it plus the tail
    gives exactly the state replay from #1 gives; then a chain of snapshots, each made from
    the one before, does too. Returns the journal's length."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    n = int(conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
    conn.close()
    assert n > 0
    want = full_replay(site, db) if want is None else want
    if cuts is None:
        cuts = sorted({1, n // 3, (2 * n) // 3 + 1, n - 1, n} - {0})
    for cut in cuts:
        store = work / f"cut-{cut}"
        S.make(site, db, store, KEY, cut)
        r = from_snapshot(site, db, store)
        assert (r.snapshot, r.replayed, r.refused, r.stale) == (cut, n - cut, [], [])
        got = S.dump_state(r.state, r.window)
        assert got == want, f"snapshot at #{cut} + tail differs from replay from #1"
    chain, before = work / "chain", None
    for cut in cuts:
        made = S.make(site, db, chain, KEY, cut)
        assert (made["from"], made["refused"], made["stale"]) == (before, [], [])
        before = cut
    r = from_snapshot(site, db, chain)
    assert r.snapshot == cuts[-1]
    assert S.dump_state(r.state, r.window) == want, "a chain of snapshots drifted"
    return n
