"""The real firmware main loop in MicroPython against a real Mosquitto, acked with protocol/."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.broker import Mosquitto
from protocol.envelope import seal
from tests.fw_harness import KEY, Acker, Board, board_config

NODE = "sensor-property"


def rdm6300_frame(band_hex: str) -> bytes:
    """An RDM6300 frame for a 5-byte id: STX, 10 hex, XOR checksum, ETX."""
    raw = bytes.fromhex(band_hex)
    x = 0
    for b in raw:
        x ^= b
    return b"\x02" + band_hex.upper().encode() + f"{x:02X}".encode() + b"\x03"


@pytest.fixture
def acker(broker: Mosquitto) -> Iterator[Acker]:
    a = Acker(broker.host, broker.port, {NODE: KEY})
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def board(tmp_path: Path, broker: Mosquitto) -> Iterator[Board]:
    b = Board(tmp_path / "flash", board_config(NODE, broker.port), with_reader=True)
    try:
        yield b
    finally:
        b.close()


def _types(acker: Acker) -> list[tuple[str, dict]]:
    return [(e.type, e.body) for e in acker.events]


def _health_obj(payload: bytes) -> dict:
    return json.loads(json.loads(payload)["env"])["body"]["obj"]


def test_door_button_and_tap_become_signed_events_the_supervisor_accepts(board, acker):
    roster = seal(KEY, NODE, 1, 3, 0, "roster", {"version": 3, "bands": {
        "0a1b2c3d4e": {"role": "detainee", "sex": "m", "person": "p-1", "case": "c-1"}}})
    forged = seal(b"\x02" * 32, NODE, 1, 4, 0, "roster", {"version": 4, "bands": {}})
    acker.client.publish(acker.topics.node(NODE, "roster"), roster, qos=1,
                         retain=True).wait_for_publish(5)
    board.start()
    assert acker.wait(lambda: acker.availability.get(NODE) == "online"), board.log_text()
    board.set_pin(4, 1)  # door opens
    assert acker.wait(lambda: len(acker.events) >= 1), board.log_text()
    board.set_pin(4, 0)  # and closes
    assert acker.wait(lambda: len(acker.events) >= 2), board.log_text()
    board.press(5)
    assert acker.wait(lambda: len(acker.events) >= 3), board.log_text()
    frame = rdm6300_frame("0a1b2c3d4e")
    for _ in range(4):  # the module repeats while the card is held: one tap
        board.uart_write(frame)
        time.sleep(0.05)
    assert acker.wait(lambda: len(acker.events) >= 4), board.log_text()
    time.sleep(0.5)
    assert _types(acker) == [
        ("door", {"door": "d-property", "state": "open"}),
        ("door", {"door": "d-property", "state": "closed"}),
        ("button", {"button": "panic-property", "kind": "panic", "room": "property"}),
        ("tap", {"band": "0a1b2c3d4e", "reader": "property-desk", "room": "property"}),
    ]
    seqs = [e.seq for e in acker.events]
    assert seqs == list(range(seqs[0], seqs[0] + 4))
    assert all(abs(e.ts_ms - time.time() * 1000) < 60_000 for e in acker.events)
    assert acker.rejected == []
    # Every event was acked with a signed ack the firmware verified: the flash is empty.
    assert acker.wait(lambda: board.outbox_files() == []), board.outbox_files()
    # Health is a signed envelope (seq 0) that the firmware publishes retained.
    assert acker.wait(lambda: len(acker.health) >= 1)
    from protocol.envelope import verify
    health = verify(acker.health[-1], {NODE: KEY}, topic_node=NODE)
    assert health.type == "health" and health.seq == 0
    assert health.body["obj"]["nodelay"] is True
    # The retained roster was verified and taken; a forged newer one is refused.
    assert acker.wait(lambda: _health_obj(acker.health[-1])["roster_version"] == 3)
    assert _health_obj(acker.health[-1])["roster_bands"] == 1
    acker.client.publish(acker.topics.node(NODE, "roster"), forged, qos=1)
    assert acker.wait(lambda: _health_obj(acker.health[-1])["bad_roster"] == 1)
    assert _health_obj(acker.health[-1])["roster_version"] == 3


def test_corrupt_reader_frame_is_counted_and_reported_not_published_as_a_tap(board, acker):
    board.start()
    assert acker.wait(lambda: acker.availability.get(NODE) == "online"), board.log_text()
    bad = bytearray(rdm6300_frame("0a1b2c3d4e"))
    bad[12] ^= 0x01  # checksum digit wrong
    board.uart_write(bytes(bad))
    assert acker.wait(lambda: any(e.type == "fault" for e in acker.events)), board.log_text()
    fault = next(e for e in acker.events if e.type == "fault")
    assert fault.body["kind"] == "checksum" and fault.body["count"] >= 1
    assert not any(e.type == "tap" for e in acker.events)


def test_forged_ack_does_not_clear_the_outbox(tmp_path, broker):
    # The acker keeps silent; a forger acks with the wrong key: nothing may be deleted.
    acker = Acker(broker.host, broker.port, {NODE: KEY}, ack=False)
    board = Board(tmp_path / "flash", board_config(NODE, broker.port))
    try:
        board.start()
        assert acker.wait(lambda: acker.availability.get(NODE) == "online"), board.log_text()
        board.set_pin(4, 1)
        assert acker.wait(lambda: len(acker.events) == 1), board.log_text()
        from protocol.verifier import ack_payload
        ev = acker.events[0]
        forged = ack_payload(b"\x01" * 32, NODE, 1, 0, ev.epoch, [ev.seq])
        acker.client.publish(acker.topics.node(NODE, "ack"), forged, qos=1)
        assert acker.wait(lambda: "ack refused: bad_mac" in board.log_text(), 10), \
            board.log_text()
        assert board.outbox_files() == [f"{ev.epoch}-{ev.seq}.ev"]
        # A genuine ack does clear it.
        genuine = ack_payload(KEY, NODE, 2, 0, ev.epoch, [ev.seq])
        acker.client.publish(acker.topics.node(NODE, "ack"), genuine, qos=1)
        assert acker.wait(lambda: board.outbox_files() == [], 10), board.log_text()
    finally:
        board.close()
        acker.close()


def test_broker_outage_and_board_reset_lose_nothing(board, acker, broker):
    board.start()
    assert acker.wait(lambda: acker.availability.get(NODE) == "online"), board.log_text()
    board.press(5)
    assert acker.wait(lambda: len(acker.events) == 1), board.log_text()

    broker.stop()
    # While the broker is down: doors, a panic press, a tap all go to flash.
    board.set_pin(4, 1)
    time.sleep(0.3)
    board.set_pin(4, 0)
    time.sleep(0.3)
    board.press(5)
    board.uart_write(rdm6300_frame("00000000aa"))
    deadline = time.monotonic() + 10
    while len(board.outbox_files()) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(board.outbox_files()) == 4, board.log_text()

    # Pull the power as well, then bring it back: the outbox and the sequence survive.
    board.kill()
    time.sleep(1.0)
    board.start()
    time.sleep(1.0)
    board.set_pin(4, 1)  # one more event after the reset, before the broker returns
    deadline = time.monotonic() + 10
    while len(board.outbox_files()) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(board.outbox_files()) == 5, board.log_text()

    broker.start()
    assert acker.wait(lambda: len(acker.events) == 6, 40), (board.log_text(), acker.events)
    assert acker.wait(lambda: board.outbox_files() == [], 20), board.outbox_files()
    seqs = [e.seq for e in acker.events]
    assert sorted(seqs) == list(range(seqs[0], seqs[0] + 6)), seqs
    assert len({e.epoch for e in acker.events}) == 1
    kinds = sorted(e.type for e in acker.events)
    assert kinds == ["button", "button", "door", "door", "door", "tap"]
    assert acker.rejected == []
    state = json.loads((board.flash / "outbox" / "state.json").read_text())
    assert state["seq"] == max(seqs)


def test_custody_board_command_runs_the_firmware(tmp_path, broker, acker):
    # What the simulator uses: `custody board` with a config.json and a pin directory.
    cfg = tmp_path / "cfg" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps(board_config(NODE, broker.port)))
    pins = tmp_path / "pins"
    pins.mkdir()
    (pins / "4").write_text("0")
    (pins / "5").write_text("1")
    exe = Path(sys.executable).with_name("custody")
    log = (tmp_path / "board.log").open("wb")
    proc = subprocess.Popen([str(exe), "board", "--config", str(cfg), "--flash",
                             str(tmp_path / "flash"), "--pins", str(pins)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        assert acker.wait(lambda: acker.availability.get(NODE) == "online"), \
            (tmp_path / "board.log").read_text()
        (pins / "4").write_text("1")
        assert acker.wait(lambda: len(acker.events) == 1)
        assert acker.events[0].body == {"door": "d-property", "state": "open"}
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_firmware_pings_so_an_idle_board_keeps_its_connection(tmp_path, broker, acker):
    # umqtt.simple never pings: with a 1 s keepalive and nothing to send, only the
    # firmware's own pings keep Mosquitto (which cuts at 1.5 x keepalive) from dropping it.
    cfg = board_config(NODE, broker.port, health_interval_s=600)
    cfg["mqtt"]["keepalive_s"] = 1
    board = Board(tmp_path / "flash", cfg)
    try:
        board.start()
        assert acker.wait(lambda: acker.availability.get(NODE) == "online"), board.log_text()
        time.sleep(6)
        assert "link: lost" not in board.log_text(), board.log_text()
        assert board.log_text().count("link: connected") == 1
        assert "exceeded timeout" not in broker.log_tail(200)
        assert acker.availability.get(NODE) == "online"
    finally:
        board.close()
