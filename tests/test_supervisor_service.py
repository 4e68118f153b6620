"""The running supervisor's other faces: signed roster per node, retained room state and
checkpoint, `custody staff` and `custody alerts watch` against a real Mosquitto."""

import json
import subprocess
import sys
import threading
from typing import Any

from protocol.envelope import verify
from protocol.transport import LinkConf, make_client
from supervisor.journal import open_checkpoint
from tests.supervisor_support import BANDS, KEYS, Driver, InProcess, make_site, sped_up, write_files


def retained(host: str, port: int, topic: str, timeout: float = 10.0) -> bytes:
    got: list[bytes] = []
    ev = threading.Event()
    c = make_client(f"probe-{topic.replace('/', '-')[-40:]}", LinkConf(host, port))

    def on_message(cl: Any, u: Any, m: Any) -> None:
        got.append(bytes(m.payload))
        ev.set()

    c.on_message = on_message
    c.connect(host, port, 5)
    c.subscribe(topic, qos=1)
    c.loop_start()
    try:
        assert ev.wait(timeout), f"nothing retained on {topic}"
    finally:
        c.disconnect()
        c.loop_stop()
    return got[-1]


def test_roster_room_state_and_checkpoint(broker, tmp_path):
    site, clock = make_site(), sped_up(30)
    sup = InProcess(site, tmp_path, broker.host, broker.port, clock)
    d = Driver(broker.host, broker.port, site, clock)
    try:
        d.staff("register-officer", {"officer": "o1", "band": BANDS["o1"], "sex": "m"})
        d.staff("register-detainee", {"detainee": "d1", "band": BANDS["d1"], "case": "c1",
                                      "sex": "m", "custody_type": "short",
                                      "observation": "level1"})
        d.enter("o1", "entry")
        d.enter("d1", "entry")
        d.wait(3)
        for node in ("node-entry", "node-holding"):
            topic = d.topics.node(node, "roster")
            ev = verify(retained(broker.host, broker.port, topic), {node: KEYS[node]},
                        topic_node=node)
            assert ev.type == "roster" and ev.body["version"] == 2 and ev.seq == 2
            assert ev.body["bands"][BANDS["d1"]] == {"role": "detainee", "sex": "m",
                                                     "person": "d1", "case": "c1"}
            assert ev.body["bands"][BANDS["o1"]]["role"] == "officer"
        room = json.loads(retained(broker.host, broker.port, d.topics.state("room", "entry")))
        assert room["officers"] == ["o1"] and room["detainees"] == ["d1"]
        det = json.loads(retained(broker.host, broker.port, d.topics.state("detainee", "d1")))
        assert det["status"] == "in-custody" and det["room"] == "entry" and not det["searched"]
    finally:
        d.close()
        sup.stop()
    data = retained(broker.host, broker.port, d.topics.supervisor("checkpoint"))
    count, head = open_checkpoint(sup.sup.key, data)
    assert count == sup.sup.journal.count and head == sup.sup.journal.head.hex()
    assert sup.cp.read_bytes() == data
    assert retained(broker.host, broker.port, d.topics.supervisor("availability")) == b"offline"


def test_staff_cli_and_alerts_watch(broker, tmp_path):
    site_file, _ = write_files(tmp_path)
    site, clock = make_site(), sped_up(30)
    sup = InProcess(site, tmp_path, broker.host, broker.port, clock)
    base = [sys.executable, "-m", "custody"]
    pw = tmp_path / "desk.password"
    pw.write_text("anything\n")  # this broker is anonymous; test_staff_e2e logs in for real
    conn = ["--config", str(site_file), "--host", broker.host, "--port", str(broker.port),
            "--password-file", str(pw)]
    try:
        ok = subprocess.run([*base, "staff", "register-officer", *conn, "--user", "desk",
                             "--officer", "o9", "--band", "0a0b0c0d0e", "--sex", "f"],
                            capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["journal"] >= 1
        bad = subprocess.run([*base, "staff", "register-detainee", *conn, "--user", "desk",
                              "--detainee", "d9", "--band", "0a0b0c0d0e", "--case", "c",
                              "--sex", "m", "--custody-type", "short", "--observation",
                              "level1"], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "in use by officer o9" in bad.stderr, bad.stderr
        d = Driver(broker.host, broker.port, site, clock)
        d.event("node-holding", "button", {"button": "p1", "kind": "panic",
                                           "room": "holding-1"})
        d.wait_for("panic")
        d.close()
        watch = subprocess.run([*base, "alerts", "watch", *conn, "--user", "desk",
                                "--seconds", "2"],
                               capture_output=True, text=True, timeout=60)
        assert watch.returncode == 0, watch.stderr
        assert "panic" in watch.stdout and "Active alerts (1)" in watch.stdout, watch.stdout
    finally:
        sup.stop()


def test_alert_journaled_but_never_sent_is_sent_after_restart(broker, tmp_path):
    from supervisor.journal import Journal

    site, clock = make_site(), sped_up(30)
    d = Driver(broker.host, broker.port, site, clock)
    j = Journal(tmp_path / "journal.db")  # as a supervisor killed between commit and publish
    msg = {"id": "panic-0123456789ab", "rule": "panic", "state": "raised",
           "severity": "critical", "detainee": None, "room": "holding-1", "raised_ts": 1,
           "ts": 1, "message": "panic button p1 pressed", "by": None, "action": None}
    j.begin()
    j.append_own("alert", msg)
    j.add_pending(d.topics.alert("critical", "panic"), json.dumps(msg).encode())
    j.commit()
    j.close()
    sup = InProcess(site, tmp_path, broker.host, broker.port, clock)
    try:
        got = d.wait_for("panic")
        assert got["id"] == "panic-0123456789ab"
        d.wait(3)
    finally:
        sup.stop()
        d.close()
    j = Journal(tmp_path / "journal.db")
    assert j.pending() == []  # confirmed by the broker, so never sent again
    j.close()
    # no rule wants it any more (no panic incident in this journal), so it was resolved
    closed = sup.sup.state.alert_record("panic-0123456789ab")  # it left `alerts` (live mode)
    assert closed is not None and closed["state"] == "resolved"
