"""Security end to end: a Mosquitto started with `custody provision`'s files, the real
supervisor logged in as provisioned, and attackers holding a node's real credentials.

Each attack is refused by the broker (unauthenticated, wrong CA, cross-node topic, revoked
credentials) or reaches the supervisor and is rejected there (forged MAC, envelope naming
another node, replay), in which case it is journaled as a `security` entry and raises the
`security` alert on the alert topic; nothing of it reaches the state.
"""

import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.cli import main as custody_main
from custody.provisioning import pki
from protocol.envelope import seal
from protocol.keys import load_keys
from tests.fault_support import AlertListener, Proc, journal_own, journal_rows, wait_until
from tests.test_provision import BASE, Conn, SiteBroker

DOOR = {"door": "d-property", "state": "open"}  # sensor-b's door
CAM = {"camera": "cam-a", "room": "property", "live": True}  # node-a's camera


class Site:
    """The provisioned broker, the supervisor on its local listener, an alert listener."""

    def __init__(self, tmp: Path) -> None:
        self.b = SiteBroker()
        try:
            self._start(tmp)
        except BaseException:  # a fixture that fails here is never closed: leave nothing
            if getattr(self, "sup", None) is not None:
                self.sup.stop()
            self.b.close()
            raise

    def _start(self, tmp: Path) -> None:
        self.ca = self.b.out / "ca" / "ca.crt"
        self.db = tmp / "journal.db"
        keys = self.b.out / "supervisor" / "keys.toml"
        self.sup = Proc([sys.executable, "-m", "custody", "supervisor",
                         "--config", str(self.b.site), "--keys", str(keys), "--db", str(self.db),
                         "--checkpoint", str(tmp / "checkpoint.json"), "--host", "127.0.0.1",
                         "--port", str(self.b.local_port), "--username", "supervisor",
                         "--password-file", str(self.b.out / "supervisor" / "mqtt.password")],
                        tmp / "supervisor.log").start()
        staff = ("admin", self.b.secret("staff/admin.password"))  # the bootstrap staff account
        self.staff = Conn(self.b.local_port, *staff, None)
        assert self.staff.ok
        self.staff.c.subscribe(f"{BASE}/supervisor/availability", qos=1)
        self.alerts = AlertListener("127.0.0.1", self.b.local_port, BASE, auth=staff)
        wait_until(lambda: (f"{BASE}/supervisor/availability", b"online") in self.staff.messages,
                   20, "the supervisor online", self.sup)
        time.sleep(0.5)

    def node(self, node: str, client_id: str | None = None) -> Conn:
        """A TLS connection with a node's provisioned password."""
        return Conn(self.b.tls_port, node, self.b.secret(f"nodes/{node}/mqtt.password"),
                    self.ca, client_id=client_id or node)

    def key(self, node: str) -> bytes:
        """A node's provisioned HMAC key."""
        return bytes.fromhex(self.b.secret(f"nodes/{node}/node.key"))

    def security(self) -> list[dict]:
        """Security entries in the journal."""
        return journal_own(self.db, "security")

    def events(self) -> list[tuple[str, int, int]]:
        """(node, epoch, seq) of journaled events."""
        return [(r[1], r[2], r[3]) for r in journal_rows(self.db, "event")]

    def close(self) -> None:
        """Stop everything."""
        self.sup.stop()
        self.alerts.close()
        self.staff.close()
        self.b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("security"))
    try:
        yield s
        # Whichever of this module's tests ran on this worker (xdist may split the module):
        # nothing they were refused reached the journal's events, so never the state.
        for event in s.events():
            assert event[0] == "node-a" or event == ("sensor-b", 5, 1), event
    finally:
        s.close()


def _publish(conn: Conn, topic: str, payload: bytes) -> None:
    conn.c.publish(topic, payload, qos=1).wait_for_publish(5)


def test_a_genuine_event_is_journaled(site):
    a = site.node("node-a")
    assert a.ok
    _publish(a, f"{BASE}/node/node-a/event", seal(site.key("node-a"), "node-a", 5, 1,
                                                   int(time.time() * 1000), "camera", CAM))
    wait_until(lambda: ("node-a", 5, 1) in site.events(), 15, "the genuine event", site.sup)
    a.close()


def test_unauthenticated_and_wrong_password_are_refused(site):
    for port, ca in ((site.b.tls_port, site.ca), (site.b.local_port, None)):
        c = Conn(port, None, None, ca)
        assert not c.ok
        c.close()
    c = Conn(site.b.tls_port, "node-a", "not-the-password", site.ca)
    assert not c.ok
    c.close()


def test_tls_with_a_wrong_ca_is_refused(site, tmp_path):
    other = pki.make_ca("not-our-site")
    (tmp_path / "other.crt").write_bytes(pki.cert_pem(other.cert))
    with pytest.raises(ssl.SSLError):
        Conn(site.b.tls_port, "node-a", site.b.secret("nodes/node-a/mqtt.password"),
             tmp_path / "other.crt")


def test_cross_node_publish_is_dropped_by_the_broker(site):
    a = site.node("node-a")
    before = (len(site.events()), len(site.security()))
    # node-a's credentials, sensor-b's topic, even sensor-b's name in the envelope.
    forged = seal(site.key("node-a"), "sensor-b", 5, 1, int(time.time() * 1000), "door", DOOR)
    _publish(a, f"{BASE}/node/sensor-b/event", forged)
    time.sleep(2.0)
    assert (len(site.events()), len(site.security())) == before  # never reached the supervisor
    a.close()


def _rejected(site: Site, reason: str, n: int = 1) -> list[dict]:
    return wait_until(lambda: [s for s in site.security() if s["reason"] == reason][:n]
                      if len([s for s in site.security() if s["reason"] == reason]) >= n
                      else None, 15, f"a security entry for {reason}", site.sup)


def test_forged_mac_is_rejected_journaled_and_alerted(site):
    a = site.node("node-a")
    bad = seal(bytes(32), "node-a", 5, 2, int(time.time() * 1000), "camera", CAM)  # wrong key
    _publish(a, f"{BASE}/node/node-a/event", bad)
    entry = _rejected(site, "bad_mac")[0]
    assert entry["node"] == "node-a" and bytes.fromhex(entry["payload_hex"]) == bad
    assert ("node-a", 5, 2) not in site.events()
    raised = wait_until(lambda: [m for m in site.alerts.of("security", "raised")
                                 if "node-a" in m["message"]], 15, "the security alert", site.sup)
    assert all(m["severity"] == "critical" for m in raised)
    a.close()


def test_envelope_naming_another_node_is_rejected(site):
    a = site.node("node-a")
    # A node that holds another node's key still cannot speak for it on its own topic.
    other = seal(site.key("sensor-b"), "sensor-b", 5, 3, int(time.time() * 1000), "door", DOOR)
    _publish(a, f"{BASE}/node/node-a/event", other)
    _rejected(site, "node_mismatch")
    assert ("sensor-b", 5, 3) not in site.events()
    a.close()


def test_replay_is_never_journaled_twice_and_a_stale_epoch_is_rejected(site):
    a = site.node("node-a")
    key = site.key("node-a")
    now = int(time.time() * 1000)
    captured = seal(key, "node-a", 6, 1, now, "camera", CAM)
    stale = seal(key, "node-a", 4, 9, now, "camera", CAM)  # signed in an earlier epoch
    _publish(a, f"{BASE}/node/node-a/event", captured)
    wait_until(lambda: ("node-a", 6, 1) in site.events(), 15, "the original", site.sup)
    for _ in range(3):  # the same bytes again: a replay (or a retransmission) changes nothing
        _publish(a, f"{BASE}/node/node-a/event", captured)
    _publish(a, f"{BASE}/node/node-a/event", stale)
    _rejected(site, "stale_epoch")
    time.sleep(1.0)
    assert site.events().count(("node-a", 6, 1)) == 1
    assert ("node-a", 4, 9) not in site.events()
    # Same sequence, other content: not a retransmission but a replayed sequence number.
    _publish(a, f"{BASE}/node/node-a/event",
             seal(key, "node-a", 6, 1, now, "camera", {**CAM, "live": False}))
    _rejected(site, "replay")
    assert site.events().count(("node-a", 6, 1)) == 1
    a.close()


def test_revoked_node_is_refused_and_its_key_withdrawn(site):
    password = site.b.secret("nodes/sensor-b/mqtt.password")
    key_b = site.key("sensor-b")  # what a thief of the revoked board would hold
    b = site.node("sensor-b")
    assert b.ok
    _publish(b, f"{BASE}/node/sensor-b/event",
             seal(key_b, "sensor-b", 5, 1, int(time.time() * 1000), "door", DOOR))
    wait_until(lambda: ("sensor-b", 5, 1) in site.events(), 15, "sensor-b's event", site.sup)
    assert custody_main(["provision", "--out", str(site.b.out), "--revoke", "sensor-b"]) == 0
    assert "sensor-b" not in load_keys(site.b.out / "supervisor" / "keys.toml")
    # The supervisor restarted on the new key table, before the broker has reloaded its
    # password file: the board's own login, its own topic, its own envelope, a correct MAC
    # under its old key -- refused only because the key is withdrawn.
    site.sup.stop()
    site.sup.start()
    assert b.ok  # paho reconnects by itself; the broker still knows the old password
    time.sleep(2.0)
    _publish(b, f"{BASE}/node/sensor-b/event",
             seal(key_b, "sensor-b", 5, 2, int(time.time() * 1000), "door", DOOR))
    entry = _rejected(site, "unknown_node")[0]
    assert entry["node"] == "sensor-b" and "no key for node 'sensor-b'" in entry["detail"]
    assert ("sensor-b", 5, 2) not in site.events()
    b.close()
    site.b.reload()
    c = Conn(site.b.tls_port, "sensor-b", password, site.ca, client_id="sensor-b")
    assert not c.ok
    c.close()

