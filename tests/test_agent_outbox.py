"""The SQLite outbox: durable epoch and sequence, ack deletes exactly, full rejects new."""

import sqlite3

import pytest

from edge_agent.outbox import DEFAULT_CAPACITY, Outbox, OutboxFull
from protocol.clock import REAL
from protocol.envelope import verify

KEY = bytes(range(32))


def _box(path, capacity=0, reserve=4):
    return Outbox(path, "node-a", KEY, REAL, capacity, reserve)


def test_wal_full_sync_and_sealed_rows(tmp_path):
    box = _box(tmp_path / "o.db")
    assert box.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s = box.append("door", {"door": "d-a", "state": "open"})
    ev = verify(s.payload, {"node-a": KEY}, topic_node="node-a")
    assert (ev.epoch, ev.seq, ev.type) == (box.epoch, 1, "door")
    assert box.capacity == DEFAULT_CAPACITY == 72 * 3600
    box.close()


def test_epoch_and_sequence_persist_and_epoch_changes_only_for_a_new_db(tmp_path):
    box = _box(tmp_path / "o.db")
    epoch = box.epoch
    for _ in range(3):
        box.append("door", {"door": "d-a", "state": "open"})
    box.ack(epoch, [1, 2, 3])
    box.close()
    again = _box(tmp_path / "o.db")
    assert again.epoch == epoch and again.next_seq == 4  # all acked: the sequence goes on
    assert again.append("door", {"door": "d-a", "state": "closed"}).seq == 4
    again.close()
    (tmp_path / "o.db").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"o.db{suffix}").unlink(missing_ok=True)
    fresh = _box(tmp_path / "o.db")
    assert fresh.epoch >= epoch and fresh.next_seq == 1
    fresh.close()


def test_committed_before_return_visible_to_another_connection(tmp_path):
    box = _box(tmp_path / "o.db")
    box.append("door", {"door": "d-a", "state": "open"})
    other = sqlite3.connect(str(tmp_path / "o.db"))
    assert other.execute("SELECT seq, type FROM events").fetchall() == [(1, "door")]
    other.close()
    box.close()


def test_ack_deletes_exactly_the_named_seqs_of_our_epoch(tmp_path):
    box = _box(tmp_path / "o.db")
    for _ in range(5):
        box.append("door", {"door": "d-a", "state": "open"})
    assert box.ack(box.epoch + 1, [1, 2]) == []  # another epoch: nothing
    assert box.ack(box.epoch, [2, 4, 99]) == [2, 4]
    assert [s.seq for s in box.after(0, 10)] == [1, 3, 5]
    assert box.depth == 3 and box.oldest() == 1
    box.close()


def test_full_rejects_new_keeps_oldest_and_reserve_takes_alerts(tmp_path):
    box = _box(tmp_path / "o.db", capacity=10, reserve=2)
    for i in range(10):
        box.append("door", {"door": "d-a", "state": "open" if i % 2 else "closed"})
        assert box.high_water == (i + 1 >= 5)
    with pytest.raises(OutboxFull):
        box.append("door", {"door": "d-a", "state": "open"})
    assert box.rejected == 1
    assert [s.seq for s in box.after(0, 100)] == list(range(1, 11))  # nothing dropped
    alert = {"id": "x-1", "phase": "new", "rule": "outbox-high-water", "room": "r"}
    box.append("local_alert", alert, reserved=True)
    box.append("local_alert", alert, reserved=True)
    with pytest.raises(OutboxFull):
        box.append("local_alert", alert, reserved=True)
    assert box.rejected == 2
    box.ack(box.epoch, list(range(1, 10)))  # 3 left (capacity 10): below the 40 % low water
    assert not box.high_water
    box.close()
