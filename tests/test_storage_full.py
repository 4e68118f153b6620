"""A full disk loses nothing and says so: a real supervisor with its journal on a 2 MB tmpfs.

Filling the tmpfs makes the journal's commits fail: the supervisor stays up, acks nothing
(the nodes' outboxes keep their events), refuses staff requests with a clear error, shows
`degraded` on its retained availability and health, and raises `supervisor-degraded` on
MQTT. Freeing the space ends it without a restart: the outage is journaled, every event
resent is journaled once and acked.
"""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from protocol.transport import LinkConf, make_client
from tests.fault_support import journal_own, journal_rows
from tests.supervisor_support import Driver, make_site, sped_up, write_accounts, write_files


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, unmounted afterwards."""
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs ({r.stderr.strip()}): the full-disk tests "
                    "need root and mount(2)")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def fill(d: Path) -> Path:
    """Fill the filesystem under `d` to the last byte; return the filler file."""
    filler = d / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"\0" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError:
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)
    return filler


class Watch:
    """Everything the supervisor publishes: availability, health, alerts, acks."""

    def __init__(self, host: str, port: int, base: str) -> None:
        self.lock = threading.Lock()
        self.availability: list[bytes] = []
        self.health: dict[str, Any] = {}
        self.alerts: list[dict[str, Any]] = []
        self.acked: set[int] = set()
        self.c = make_client(f"watch-{time.monotonic_ns()}", LinkConf(host, port))
        self.c.on_message = self._msg
        self.c.connect(host, port)
        self.c.subscribe([(f"{base}/supervisor/#", 1), (f"{base}/alert/#", 1),
                          (f"{base}/node/+/ack", 1)])
        self.c.loop_start()

    def _msg(self, c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            if m.topic.endswith("/availability"):
                self.availability.append(bytes(m.payload))
            elif m.topic.endswith("/supervisor/health"):
                self.health = json.loads(m.payload)
            elif "/alert/" in m.topic:
                self.alerts.append(json.loads(m.payload))
            elif m.topic.endswith("/ack"):
                env = json.loads(json.loads(m.payload)["env"])
                self.acked.update(env["body"]["seqs"])

    def of(self, rule: str, state: str) -> list[dict[str, Any]]:
        with self.lock:
            return [a for a in self.alerts if a["rule"] == rule and a["state"] == state]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def until(pred: Any, timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-3000:]}")


def test_supervisor_on_a_full_disk_stays_up_degraded_and_resumes_without_restart(
        broker, tmp_path, small_disk):
    site_file, keys_file = write_files(tmp_path)
    site, clock = make_site(), sped_up(5.0)
    db, cp, log = small_disk / "j.db", small_disk / "cp.json", tmp_path / "supervisor.log"
    env = {**os.environ, **clock.env()}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "custody", "supervisor", "--config",
                                 str(site_file), "--keys", str(keys_file), "--db", str(db),
                                 "--checkpoint", str(cp), "--host", broker.host, "--port",
                                 str(broker.port), "--accounts",
                                 str(write_accounts(tmp_path / "accounts.json"))], env=env,
                                stdout=out,
                                stderr=subprocess.STDOUT)
    d = Driver(broker.host, broker.port, site, clock)
    w = Watch(broker.host, broker.port, d.topics.base)
    sent: dict[int, bytes] = {}

    def door(i: int) -> None:
        sent[i] = d.event("node-entry", "door", {"door": "d1", "state": "open" if i % 2
                                                  else "closed"}, seq=i)
    try:
        until(lambda: b"online" in w.availability, 20, "the supervisor online", log)
        for i in range(1, 11):
            door(i)
        until(lambda: set(range(1, 11)) <= w.acked, 20, "events 1-10 acked", log)
        filler = fill(small_disk)
        for i in range(11, 61):
            door(i)
        until(lambda: w.availability[-1:] == [b"degraded"], 20, "availability degraded", log)
        until(lambda: w.of("supervisor-degraded", "raised"), 10, "the critical alert", log)
        assert w.of("supervisor-degraded", "raised")[0]["severity"] == "critical"
        until(lambda: w.health.get("status") == "degraded", 15, "health degraded", log)
        refused = d.staff("register-officer", {"officer": "o9", "band": "00000000a9",
                                               "sex": "m"}, user="o3", expect_ok=False)
        assert "degraded" in refused["error"]
        time.sleep(1.0)
        assert proc.poll() is None, "the supervisor must stay up"
        unacked = set(range(11, 61)) - w.acked
        assert unacked, "a failing journal acked events it could not have committed"

        filler.unlink()
        until(lambda: w.availability[-1:] == [b"online"], 20, "availability online again", log)
        until(lambda: w.of("supervisor-degraded", "resolved"), 10, "the alert resolved", log)
        for i in sorted(unacked):  # what the node's outbox resends
            d.client.publish(d.topics.node("node-entry", "event"), sent[i], qos=1)
        until(lambda: set(range(1, 61)) <= w.acked, 30, "every event acked", log)
        assert proc.poll() is None
    finally:
        with contextlib.suppress(Exception):
            proc.terminate()
            proc.wait(10)
        w.close()
        d.close()
    rows = [(r[1], r[2], r[3]) for r in journal_rows(db, "event")]
    assert sorted(s for n, _, s in rows if n == "node-entry") == list(range(1, 61))
    outage = [s for s in journal_own(db, "security") if s["reason"] == "journal_unwritable"]
    assert len(outage) == 1 and "could not be written" in outage[0]["detail"]
    r = subprocess.run([sys.executable, "-m", "custody", "audit", "verify", "--db", str(db),
                        "--checkpoint", str(cp), "--checkpoint-key",
                        str(tmp_path / "checkpoint.key")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_agent_on_a_full_disk_raises_a_fault_holds_events_and_commits_them_later(
        broker, tmp_path, small_disk):
    from tests.agent_support import (
        Acker,
        AgentProcess,
        Observer,
        Rig,
        assert_in_order_without_gaps,
        band,
        read_bands,
        wait_for,
        wait_up,
        write_config,
        write_site,
    )

    rig = Rig()
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path))
    cfg.write_text(cfg.read_text().replace('outbox = "var/outbox.db"',
                                           f'outbox = "{small_disk}/outbox.db"'))
    obs, acker = Observer(broker), Acker(broker)
    agent = AgentProcess(cfg).start()

    def unwritable() -> list[str]:
        return [h["obj"]["outbox"].get("unwritable", "") for h in obs.health]
    try:
        wait_up(obs, agent)
        read_bands(rig, range(5))
        wait_for(lambda: len(obs.unique("presence.enter")) == 5, 15, "5 enters", agent.log_text)
        committed_before = max(s for _, s in acker.first)
        filler = fill(small_disk)
        read_bands(rig, range(5, 25))
        # The fault is raised at once, through health (seq 0, never stored).
        wait_for(lambda: any(unwritable()), 10, "health naming the unwritable outbox",
                 agent.log_text)
        time.sleep(1.0)
        # No sequence number was handed out for an event that could not be committed.
        seen = {e.seq for e in obs.events if e.type != "health"}
        assert max(seen) <= committed_before + 2, (sorted(seen), committed_before)
        filler.unlink()
        wait_for(lambda: len(obs.unique("presence.enter")) == 25, 20,
                 "every held enter committed and published", agent.log_text)
        wait_for(lambda: [e for e in obs.unique("fault") if e.body["phase"] == "end"
                          and e.body["device"] == "outbox"], 10, "the fault ended",
                 agent.log_text)
        wait_for(lambda: unwritable() and unwritable()[-1] == "", 10, "health clear",
                 agent.log_text)
        wait_for(lambda: obs.health and obs.health[-1]["queue"] == 0, 15, "all acked",
                 agent.log_text)
        seqs = assert_in_order_without_gaps(acker)  # nothing committed was skipped
        assert {e.body["band"] for e in obs.unique("presence.enter")} == {band(i)
                                                                         for i in range(25)}
        new = [e for e in obs.unique("fault") if e.body["device"] == "outbox"]
        assert [e.body["phase"] for e in new] == ["new", "end"]
        assert "0 dropped" in new[-1].body["detail"]
        assert len(seqs) == len(set(seqs))
        assert agent.terminate() == 0
    finally:
        agent.close()
        acker.close()
        obs.close()
        rig.close()
