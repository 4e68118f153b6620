"""`custody provision` output, and a Mosquitto started with it: who may do what."""

import json
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from custody.broker import free_port, wait_port
from custody.cli import main as custody_main
from custody.provisioning import Options, pki, provision, revoke
from protocol.envelope import seal
from protocol.keys import load_keys
from protocol.site import load_site
from tests.fw_harness import FIRMWARE, MICROPYTHON, Acker, Board

SITE_TOML = """
[site]
id = "prov-site"
[[rooms]]
id = "property"
kind = "property"
[[rooms]]
id = "corridor-1"
kind = "corridor"
[[doors]]
id = "d-property"
between = ["property", "corridor-1"]
[[nodes]]
id = "node-a"
room = "property"
[[nodes.cameras]]
id = "cam-a"
source = "0"
[[nodes]]
id = "sensor-b"
kind = "sensor"
room = "property"
[[nodes.readers]]
id = "desk-b"
type = "rdm6300"
role = "tap"
port = "uart"
[[nodes.doors]]
door = "d-property"
type = "mqtt"
pin = 4
[[nodes.buttons]]
id = "panic-b"
kind = "panic"
pin = 5
"""
EXTRA_NODE = """
[[nodes]]
id = "sensor-c"
kind = "sensor"
room = "corridor-1"
"""
BASE = "custody/v1/prov-site"


def _site(d: Path, extra: str = "") -> Path:
    p = d / "site.toml"
    p.write_text(SITE_TOML + extra)
    return p


def test_provision_writes_every_file_and_configs_load(tmp_path):
    site = _site(tmp_path)
    out = tmp_path / "out"
    assert custody_main(["provision", "--site", str(site), "--out", str(out),
                         "--host", "broker.example"]) == 0
    keys = load_keys(out / "supervisor" / "keys.toml")
    assert set(keys) == {"node-a", "sensor-b"}
    assert (out / "nodes" / "sensor-b" / "node.key").read_text().strip() == keys["sensor-b"].hex()
    agent = tomllib.loads((out / "nodes" / "node-a" / "agent.toml").read_text())
    assert agent["agent"]["node"] == "node-a" and agent["agent"]["vision"] is True
    assert agent["mqtt"] == {"host": "broker.example", "port": 8883, "username": "node-a",
                             "password_file": "mqtt.password", "ca_file": "ca.crt"}
    assert load_site(out / "nodes" / "node-a" / agent["agent"]["site"]).id == "prov-site"
    for secret in ("ca/ca.key", "broker/server.key", "broker/passwords",
                   "supervisor/keys.toml", "nodes/sensor-b/config.json"):
        assert (out / secret).stat().st_mode & 0o077 == 0, secret
    pw = (out / "broker" / "passwords").read_text()
    assert (out / "nodes" / "node-a" / "mqtt.password").read_text().strip() not in pw
    conf = (out / "broker" / "mosquitto.conf").read_text()
    for line in ("per_listener_settings true", "set_tcp_nodelay true", "allow_anonymous false",
                 "autosave_interval 5", "max_queued_messages 10000", "listener 8883"):
        assert line in conf
    acl = (out / "broker" / "acl").read_text()
    assert f"user node-a\ntopic write {BASE}/node/node-a/event\n" in acl
    assert "pattern" not in acl  # a %u pattern would apply to staff logins too
    assert "user admin\n" in acl and f"topic write {BASE}/request/admin/#" in acl
    for secret in ("provision.json", "supervisor/accounts.json", "staff/admin.password"):
        assert (out / secret).stat().st_mode & 0o077 == 0, secret
    # The board's config.json is accepted by the firmware's own loader, in MicroPython.
    board = out / "nodes" / "sensor-b"
    r = subprocess.run([str(MICROPYTHON), "-c",
                        "import fwconfig\nc = fwconfig.load('config.json')\n"
                        "print(c.node, c.room, c.reader, c.doors, c.buttons, len(c.key))"],
                       cwd=board, env={"MICROPYPATH": str(FIRMWARE / "lib")},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split()[:2] == ["sensor-b", "property"]
    assert "desk-b" in r.stdout and "d-property" in r.stdout and "panic-b" in r.stdout
    assert (board / "ca.der").read_bytes() == (out / "ca" / "ca.der").read_bytes()


def test_rerun_adds_nodes_and_keeps_every_existing_secret(tmp_path):
    out = tmp_path / "out"
    provision(_site(tmp_path), out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*")
              if p.is_file() and p.suffix in (".key", ".password", ".crt", ".der")}
    report = provision(_site(tmp_path, EXTRA_NODE), out)
    assert report.added == ["sensor-c"] and sorted(report.kept) == ["node-a", "sensor-b"]
    for rel, data in before.items():
        assert (out / rel).read_bytes() == data, rel
    assert set(load_keys(out / "supervisor" / "keys.toml")) == {"node-a", "sensor-b", "sensor-c"}
    assert "sensor-c:" in (out / "broker" / "passwords").read_text()


def test_firmware_config_errors_name_the_key(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"node": "n", "site": "s", "room": "r", "key": "00" * 16, "mqtt": {"host": "h",
                                                                         "keepalive_s": 0}}))
    r = subprocess.run([str(MICROPYTHON), "-c", "import fwconfig\nfwconfig.load('config.json')"],
                       cwd=tmp_path, env={"MICROPYPATH": str(FIRMWARE / "lib")},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "config.json: mqtt.keepalive_s: expected an integer >= 1" in r.stdout + r.stderr


# --- a Mosquitto started with the provisioned configuration ------------------------------


class SiteBroker:
    """Provisioned files installed the way a site would, with mosquitto -c on them."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="custody-prov-"))
        self.root.chmod(0o755)  # Mosquitto drops to its own user: it must reach the files
        self.site = _site(self.root)
        self.out = self.root / "out"
        self.tls_port, self.local_port = free_port(), free_port()
        self.opts = Options(hosts=["localhost", "127.0.0.1"], tls_port=self.tls_port,
                            bind="127.0.0.1", local_port=self.local_port,
                            broker_dir=str(self.out / "broker"), data_dir=str(self.root / "data"),
                            log_file=str(self.root / "data" / "mosquitto.log"))
        provision(self.site, self.out, self.opts)
        (self.root / "data").mkdir()
        self._hand_over()
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.out / "broker" / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        # Both listeners: a client of the local one connected before it was open (the TLS
        # one answered first) and the whole module's fixture failed, once in a full run.
        wait_port("127.0.0.1", self.tls_port, 10, self.proc)
        wait_port("127.0.0.1", self.local_port, 10, self.proc)

    def _hand_over(self) -> None:
        if os.geteuid() != 0:
            return
        user = pwd.getpwnam("mosquitto")
        for d in (self.out / "broker", self.root / "data"):
            for p in [d, *d.rglob("*")]:
                os.chown(p, user.pw_uid, user.pw_gid)

    def reload(self) -> None:
        """What `systemctl reload mosquitto` does: re-read passwords and ACL."""
        self._hand_over()
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)

    def secret(self, rel: str) -> str:
        return (self.out / rel).read_text().strip()

    def log(self) -> str:
        p = self.root / "data" / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def site_broker() -> Iterator[SiteBroker]:
    b = SiteBroker()
    try:
        yield b
    finally:
        b.close()


class Conn:
    """A paho client that reports the CONNACK it got."""

    def __init__(self, port: int, user: str | None, password: str | None, ca: Path | None,
                 client_id: str = "") -> None:
        self.done = threading.Event()
        self.rc: Any = None
        self.messages: list[tuple[str, bytes]] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if user is not None:
            self.c.username_pw_set(user, password)
        if ca is not None:
            self.c.tls_set(ca_certs=str(ca))
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()
        assert self.done.wait(10), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.rc = rc
        self.done.set()

    @property
    def ok(self) -> bool:
        return not self.rc.is_failure

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_anonymous_connect_is_refused_on_both_listeners(site_broker):
    ca = site_broker.out / "ca" / "ca.crt"
    for port, cafile in ((site_broker.tls_port, ca), (site_broker.local_port, None)):
        c = Conn(port, None, None, cafile)
        assert not c.ok, port
        c.close()
    c = Conn(site_broker.tls_port, "node-a", "wrong-password", ca)
    assert not c.ok
    c.close()


def test_tls_with_a_wrong_ca_fails(site_broker, tmp_path):
    other = pki.make_ca("someone-else")
    (tmp_path / "other.crt").write_bytes(pki.cert_pem(other.cert))
    with pytest.raises(ssl.SSLError):
        Conn(site_broker.tls_port, "node-a", site_broker.secret("nodes/node-a/mqtt.password"),
             tmp_path / "other.crt")


def test_a_node_publishes_only_under_its_own_id(site_broker):
    ca = site_broker.out / "ca" / "ca.crt"
    sup = Conn(site_broker.local_port, "supervisor", site_broker.secret("supervisor/mqtt.password"),
               None)
    assert sup.ok
    sup.c.subscribe(f"{BASE}/#", qos=1)
    a = Conn(site_broker.tls_port, "node-a", site_broker.secret("nodes/node-a/mqtt.password"), ca,
             client_id="node-a")
    assert a.ok
    a.c.subscribe(f"{BASE}/node/sensor-b/ack", qos=1)  # another node's acks: not readable
    a.c.subscribe(f"{BASE}/node/node-a/ack", qos=1)
    time.sleep(0.5)
    key_a = bytes.fromhex(site_broker.secret("nodes/node-a/node.key"))
    forged = seal(key_a, "sensor-b", 1, 1, 0, "door", {"door": "d-property", "state": "open"})
    a.c.publish(f"{BASE}/node/sensor-b/event", forged, qos=1).wait_for_publish(5)
    a.c.publish(f"{BASE}/alert/critical/x", b"fake alert", qos=1).wait_for_publish(5)
    own = seal(key_a, "node-a", 1, 1, 0, "door", {"door": "d-property", "state": "open"})
    a.c.publish(f"{BASE}/node/node-a/event", own, qos=1).wait_for_publish(5)
    sup.c.publish(f"{BASE}/node/sensor-b/ack", b"for b", qos=1)
    sup.c.publish(f"{BASE}/node/node-a/ack", b"for a", qos=1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(t.endswith("node-a/ack") for t, _ in a.messages):
        time.sleep(0.05)
    time.sleep(0.5)
    got = [t for t, _ in sup.messages]
    assert f"{BASE}/node/node-a/event" in got
    assert f"{BASE}/node/sensor-b/event" not in got
    assert f"{BASE}/alert/critical/x" not in got
    assert [t for t, _ in a.messages] == [f"{BASE}/node/node-a/ack"]
    staff = Conn(site_broker.local_port, "admin", site_broker.secret("staff/admin.password"), None)
    assert staff.ok
    staff.c.publish(f"{BASE}/node/node-a/ack", b"staff may not ack", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert b"staff may not ack" not in [p for _, p in a.messages]
    # A staff login writes only its own requests: no node events under its name, no requests
    # under another account's; a node writes no staff request.
    for topic in (f"{BASE}/node/admin/event", f"{BASE}/request/o1/ack-alert"):
        staff.c.publish(topic, b"forged by staff", qos=1).wait_for_publish(5)
    a.c.publish(f"{BASE}/request/admin/ack-alert", b"forged by a node", qos=1).wait_for_publish(5)
    staff.c.publish(f"{BASE}/request/admin/ack-alert", b"genuine", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b"genuine" not in [p for _, p in sup.messages]:
        time.sleep(0.05)
    time.sleep(0.5)
    payloads = [p for _, p in sup.messages]
    assert b"genuine" in payloads
    assert b"forged by staff" not in payloads and b"forged by a node" not in payloads
    for c in (sup, a, staff):
        c.close()


def test_sensor_board_firmware_over_tls_with_provisioned_files(site_broker, tmp_path):
    # The real firmware, its config.json and ca.der exactly as provisioned (only the host is
    # the loopback address and NTP is off), against the provisioned TLS listener.
    board_dir = site_broker.out / "nodes" / "sensor-b"
    cfg = json.loads((board_dir / "config.json").read_text())
    cfg["mqtt"]["host"] = "127.0.0.1"
    cfg.update(ntp=False, health_interval_s=2, poll_ms=5)
    keys = load_keys(site_broker.out / "supervisor" / "keys.toml")
    acker = Acker("127.0.0.1", site_broker.local_port, keys, site="prov-site",
                  auth=("supervisor", site_broker.secret("supervisor/mqtt.password")))
    board = Board(tmp_path / "flash", cfg, with_reader=True)
    shutil.copy(board_dir / "ca.der", board.flash / "ca.der")
    try:
        board.start()
        assert acker.wait(lambda: acker.availability.get("sensor-b") == "online", 30), \
            board.log_text() + site_broker.log()
        board.press(5)
        assert acker.wait(lambda: len(acker.events) == 1), board.log_text()
        assert acker.events[0].type == "button" and acker.events[0].node == "sensor-b"
        assert acker.wait(lambda: board.outbox_files() == []), board.log_text()
        assert acker.wait(lambda: len(acker.health) >= 1)
        health = json.loads(json.loads(acker.health[-1])["env"])
        assert health["body"]["obj"]["nodelay"] is True
    finally:
        board.close()
        acker.close()


def test_sensor_board_with_another_ca_never_connects(site_broker, tmp_path):
    cfg = json.loads((site_broker.out / "nodes" / "sensor-b" / "config.json").read_text())
    cfg["mqtt"].update(host="127.0.0.1", backoff_max_s=1)
    cfg.update(ntp=False, poll_ms=5)
    board = Board(tmp_path / "flash", cfg, with_reader=True)
    (board.flash / "ca.der").write_bytes(pki.cert_der(pki.make_ca("someone-else").cert))
    try:
        board.start()
        deadline = time.monotonic() + 20
        while board.log_text().count("connect failed") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert board.log_text().count("connect failed") >= 2, board.log_text()
        assert "link: connected" not in board.log_text()
    finally:
        board.close()


def test_revoked_node_is_refused_and_others_stay(site_broker):
    ca = site_broker.out / "ca" / "ca.crt"
    password = site_broker.secret("nodes/sensor-b/mqtt.password")
    c = Conn(site_broker.tls_port, "sensor-b", password, ca)
    assert c.ok
    c.close()
    assert custody_main(["provision", "--out", str(site_broker.out), "--revoke", "sensor-b"]) == 0
    site_broker.reload()
    c = Conn(site_broker.tls_port, "sensor-b", password, ca)
    assert not c.ok, site_broker.log()
    c.close()
    assert "sensor-b" not in load_keys(site_broker.out / "supervisor" / "keys.toml")
    other = Conn(site_broker.tls_port, "node-a", site_broker.secret("nodes/node-a/mqtt.password"),
                 ca)
    assert other.ok
    other.close()
    # A re-run keeps it revoked (the site file still lists it).
    report = provision(site_broker.site, site_broker.out, site_broker.opts)
    assert report.skipped_revoked == ["sensor-b"]
    assert "sensor-b:" not in (site_broker.out / "broker" / "passwords").read_text()


def test_revoke_unknown_node_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "out"
    provision(_site(tmp_path), out)
    assert custody_main(["provision", "--out", str(out), "--revoke", "node-z"]) == 2
    assert "node 'node-z' was never provisioned" in capsys.readouterr().err
    with pytest.raises(Exception, match="never provisioned"):
        revoke(out, "node-q")
