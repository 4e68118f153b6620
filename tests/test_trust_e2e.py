"""Trust boundaries against real processes: a provisioned Mosquitto, the real supervisor, and
an attacker holding one device's real credentials and key (issue 14's attacks, replayed).

Every attack is correctly signed, so only the supervisor's own checks can stop it: node
scope from the site file, clock, sequence and epoch sanity, body ranges, strict JSON, and
the per-node budget. Each is refused, journaled as a `security` entry, alerted, and leaves
the journal's events (hence the state) unchanged.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.envelope import seal
from tests.fault_support import wait_until
from tests.test_provision import BASE, Conn
from tests.test_security_e2e import Site

CAM = {"camera": "cam-a", "room": "property", "live": True}
BAND = "00000000d1"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("trust"))
    try:
        yield s
    finally:
        s.close()


def _now() -> int:
    return int(time.time() * 1000)


def _send(conn: Conn, node: str, payload: bytes) -> None:
    conn.c.publish(f"{BASE}/node/{node}/event", payload, qos=1).wait_for_publish(5)


def _refused(site: Site, reason: str, node: str, what: str) -> dict:
    """Wait for the security entry of (node, reason) whose detail mentions `what`."""
    return wait_until(lambda: next((s for s in site.security() if s["reason"] == reason
                                    and s["node"] == node and what in s["detail"]), None),
                      15, f"a {reason} security entry from {node} about {what}", site.sup)


def test_a_sensor_board_cannot_speak_for_rooms_or_devices_it_does_not_have(site):
    b = site.node("sensor-b")
    key = site.key("sensor-b")
    events_before = site.events()
    attacks = [  # a door/tap/panic board claiming presence, camera liveness, a crossing...
        ("presence.enter", {"band": BAND, "room": "property", "reader": "desk-b"},
         "'presence.enter'"),
        ("camera", CAM, "'camera'"),
        ("person_count", {"camera": "cam-a", "room": "property", "count": 2},
         "'person_count'"),
        ("crossing", {"band": BAND, "door": "d-property", "from_room": "corridor-1",
                      "to_room": "property"}, "'crossing'"),
        # ... and its own event type about a room it is not in.
        ("tap", {"band": BAND, "reader": "desk-b", "room": "corridor-1"}, "room 'corridor-1'"),
        ("tap", {"band": BAND, "reader": "desk-z", "room": "property"}, "reader 'desk-z'"),
    ]
    for seq, (etype, body, _what) in enumerate(attacks, start=1):
        _send(b, "sensor-b", seal(key, "sensor-b", 7, seq, _now(), etype, body))
    for _etype, _body, what in attacks:
        _refused(site, "out_of_scope", "sensor-b", what)
    # Its genuine door event still goes through.
    _send(b, "sensor-b", seal(key, "sensor-b", 7, 20, _now(), "door",
                              {"door": "d-property", "state": "open"}))
    wait_until(lambda: ("sensor-b", 7, 20) in site.events(), 15, "the genuine door", site.sup)
    assert [e for e in site.events() if e not in events_before] == [("sensor-b", 7, 20)]
    wait_until(lambda: [m for m in site.alerts.of("security", "raised")
                        if "sensor-b" in m["message"] and "out_of_scope" in m["message"]],
               15, "the security alert naming sensor-b", site.sup)
    b.close()


def test_absurd_values_with_a_valid_mac_are_refused_and_lock_nobody_out(site):
    a = site.node("node-a")
    key = site.key("node-a")
    before = site.events()
    _send(a, "node-a", seal(key, "node-a", 9, 1, _now(), "camera", CAM))
    wait_until(lambda: ("node-a", 9, 1) in site.events(), 15, "a genuine event", site.sup)
    attacks = [
        (seal(key, "node-a", 9, 2**53 - 1, _now(), "camera", CAM), "seq_jump", "jumps"),
        (seal(key, "node-a", 2**53 - 1, 1, _now(), "camera", CAM), "future_epoch", "future"),
        (seal(key, "node-a", 9, 3, 9_007_199_254_740_000, "camera", CAM), "clock_skew",
         "clock"),
        (seal(key, "node-a", 9, 4, _now(), "person_count",
              {"camera": "cam-a", "room": "property", "count": -5}), "out_of_range", "-5"),
        (seal(key, "node-a", 9, 5, _now(), "person_count",
              {"camera": "cam-a", "room": "property", "count": 2**60}), "out_of_range",
         str(2**60)),
    ]
    for payload, _r, _w in attacks:
        _send(a, "node-a", payload)
    for _p, reason, what in attacks:
        _refused(site, reason, "node-a", what)
    # A duplicate key inside the signed envelope: the MAC is right, the text is ambiguous.
    env = ('{"body":{"camera":"cam-a","live":false,"live":true,"room":"property"},'
           f'"epoch":9,"node":"node-a","seq":6,"ts":{_now()},"type":"camera","v":1}}')
    mac = hmac.new(key, env.encode(), hashlib.sha256).hexdigest()
    _send(a, "node-a", json.dumps({"env": env, "mac": mac}, sort_keys=True,
                                  separators=(",", ":")).encode())
    _refused(site, "malformed", "node-a", "duplicate key 'live'")
    # Nothing moved the window or the epoch: the next genuine sequence is accepted.
    _send(a, "node-a", seal(key, "node-a", 9, 7, _now(), "camera", CAM))
    wait_until(lambda: ("node-a", 9, 7) in site.events(), 15, "the next genuine event",
               site.sup)
    assert [e for e in site.events() if e not in before] == [("node-a", 9, 1), ("node-a", 9, 7)]
    wait_until(lambda: [m for m in site.alerts.of("clock-skew", "raised")
                        if "node-a" in m["message"]], 15, "the clock-skew alert", site.sup)
    a.close()


def test_a_flood_of_bad_messages_is_throttled_counted_and_summarised(site):
    a = site.node("node-a")
    rows_before = len(site.security())
    size_before = Path(site.db).stat().st_size + _wal(site.db)
    bad = [seal(bytes(32), "node-a", 9, 100 + i, _now(), "camera", CAM) for i in range(3000)]
    infos = [a.c.publish(f"{BASE}/node/node-a/event", p, qos=1) for p in bad]
    infos[-1].wait_for_publish(30)
    wait_until(lambda: [m for m in site.alerts.of("node-throttled", "raised")
                        if "node-a" in m["message"]], 20, "one throttled alert", site.sup)
    # Counts arrive in summaries (every 10 s at most per node and reason).
    wait_until(lambda: sum(s.get("repeats", 1) for s in site.security()[rows_before:]) >= 3000
               or None, 30, "every bad message counted", site.sup)
    new = site.security()[rows_before:]
    assert len(new) <= 12, [(s["reason"], s.get("repeats")) for s in new]
    assert len(site.alerts.of("node-throttled", "raised")) == 1
    grown = Path(site.db).stat().st_size + _wal(site.db) - size_before
    assert grown < 3000 * 200, grown  # far less than the 3000 payloads (~600 KB) in full
    a.close()


def _wal(db: Path) -> int:
    wal = Path(str(db) + "-wal")
    return wal.stat().st_size if wal.exists() else 0
