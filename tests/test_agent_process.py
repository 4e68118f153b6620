"""The agent process: doors, systemd notify and clean stop, a vanishing reader port, forged
acks and rosters."""

import contextlib
import os
import socket
import time

import paho.mqtt.client as mqtt

from edge_agent.drivers import uhf_m100
from protocol.envelope import seal
from protocol.verifier import ack_payload
from tests.agent_support import (
    NODE,
    TOPICS,
    AgentProcess,
    Observer,
    Pty,
    Rig,
    band,
    read_bands,
    wait_for,
    wait_up,
    write_config,
    write_site,
)


def test_door_line_sd_notify_and_sigterm_clean_stop(broker, tmp_path):
    rig = Rig()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(10)
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path))
    obs = Observer(broker)
    agent = AgentProcess(cfg, env={"NOTIFY_SOCKET": str(tmp_path / "notify"),
                                   "WATCHDOG_USEC": "1000000"}).start()
    try:
        assert sock.recv(64) == b"READY=1"
        assert sock.recv(64) == b"WATCHDOG=1"
        wait_up(obs, agent)
        rig.contact.write(b"open\n")
        time.sleep(0.3)
        rig.contact.write(b"closed\r\nopen\nclosed\n")  # bounce settles on closed
        wait_for(lambda: len(obs.unique("door")) == 2, 10, "door events", agent.log_text)
        assert [e.body for e in obs.unique("door")] == [{"door": "d-a", "state": "open"},
                                                         {"door": "d-a", "state": "closed"}]
        assert agent.terminate() == 0
        msgs = set()
        while True:
            m = sock.recv(64)
            msgs.add(m)
            if m == b"STOPPING=1":
                break
        wait_for(lambda: obs.availability[-1:] == ["offline"], 10, "offline", agent.log_text)
    finally:
        agent.close()
        obs.close()
        rig.close()
        sock.close()


def test_vanished_reader_port_is_reopened_with_fault_events(broker, tmp_path):
    rig = Rig()
    link = tmp_path / "custody-uhf"  # what a udev symlink does: a stable name
    os.symlink(rig.uhf.name, link)
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path))
    cfg.write_text(cfg.read_text().replace(rig.uhf.name, str(link)))
    obs = Observer(broker)
    agent = AgentProcess(cfg).start()
    second = None
    try:
        wait_up(obs, agent)
        rig.uhf.close()  # the reader is unplugged
        new = wait_for(lambda: [e for e in obs.unique("fault") if e.body["kind"] == "port-lost"],
                       10, "port-lost fault", agent.log_text)[0]
        assert new.body["phase"] == "new" and new.body["device"] == "uhf-a"
        second = Pty()  # plugged back in: the link points at the new device
        os.unlink(link)
        os.symlink(second.name, link)
        end = wait_for(lambda: [e for e in obs.unique("fault") if e.body["phase"] == "end"
                                and e.body["kind"] == "port-lost"], 20, "port back",
                       agent.log_text)[0]
        assert end.body["id"] == new.body["id"]
        wait_for(lambda: obs.health[-1]["obj"]["readers"]["uhf-a"]["reopens"] >= 1
                 and obs.health[-1]["obj"]["readers"]["uhf-a"]["open"] == 1, 10,
                 "health showing the reopened port", agent.log_text)
        second.write(uhf_m100.inventory_notice(uhf_m100.band_epc(band(1))))
        wait_for(lambda: obs.unique("presence.enter"), 10, "a read on the new port",
                 agent.log_text)
        assert agent.proc is not None and agent.proc.poll() is None
    finally:
        agent.close()
        obs.close()
        rig.close()
        if second is not None:
            second.close()


def test_a_reader_that_answered_empty_polls_then_falls_silent_is_a_fault(broker, tmp_path):
    # The port stays open (the line is plugged in) but the module stops answering: presence
    # in the room is no longer known, which an empty room would not show.
    rig = Rig()
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path))
    obs = Observer(broker)
    agent = AgentProcess(cfg).start()
    no_tag = uhf_m100.error_frame(uhf_m100.ERR_NO_TAG)
    polls = bytearray()

    def answer(seconds: float) -> None:
        """Answer empty polls as a module in multiple polling does, for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rig.uhf.write(no_tag)
            time.sleep(0.05)

    try:
        wait_up(obs, agent)
        answer(1.0)
        os.set_blocking(rig.uhf.master, False)
        with contextlib.suppress(BlockingIOError):
            while os.read(rig.uhf.master, 4096):
                pass  # the poll command sent at start
        silent_from = time.monotonic()
        new = wait_for(lambda: [e for e in obs.unique("fault") if e.body["kind"] == "silent"],
                       15, "silent fault", agent.log_text)[0]
        waited = time.monotonic() - silent_from
        assert new.body["phase"] == "new" and new.body["device"] == "uhf-a"
        assert 4.0 <= waited <= 12.0, waited  # SILENT_S is 5 s
        with contextlib.suppress(BlockingIOError):
            polls += os.read(rig.uhf.master, 4096)
        assert uhf_m100.multi_poll_command() in polls  # asked to poll again half-way
        assert not [e for e in obs.unique("fault") if e.body["kind"] == "port-lost"]
        answer(0.5)
        end = wait_for(lambda: [e for e in obs.unique("fault") if e.body["kind"] == "silent"
                                and e.body["phase"] == "end"], 10, "frames again",
                       agent.log_text)[0]
        assert end.body["id"] == new.body["id"]
        # The desk reader never answered an empty poll (silence is its normal state).
        assert {e.body["device"] for e in obs.unique("fault")
                if e.body["kind"] == "silent"} == {"uhf-a"}
    finally:
        agent.close()
        obs.close()
        rig.close()


def test_forged_ack_and_roster_are_refused(broker, tmp_path):
    rig = Rig()
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path), retransmit_s=60)
    obs = Observer(broker)
    agent = AgentProcess(cfg).start()
    try:
        wait_up(obs, agent)
        read_bands(rig, range(3))
        evs = wait_for(lambda: len(obs.unique("presence.enter")) == 3 and obs.unique(
                       "presence.enter"), 10,
                       "events", agent.log_text)
        epoch = evs[0].epoch
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger")
        c.connect(broker.host, broker.port, 5)
        c.loop_start()
        wrong = b"\x99" * 32
        c.publish(TOPICS.node(NODE, "ack"), ack_payload(wrong, NODE, 1, 0, epoch, [1, 2, 3]),
                  qos=1).wait_for_publish(5)
        c.publish(TOPICS.node(NODE, "roster"),
                  seal(wrong, NODE, 1, 1, 0, "roster", {"version": 1, "bands": {}}),
                  qos=1).wait_for_publish(5)
        c.loop_stop()
        c.disconnect()
        h = wait_for(lambda: obs.health and obs.health[-1]["obj"]["ack_rejected"] == 1
                     and obs.health[-1]["obj"]["roster_rejected"] == 1 and obs.health[-1],
                     10, "rejections counted", agent.log_text)
        assert h["queue"] >= 3 and h["obj"]["roster_version"] == -1
        # The refusal is in every health until a roster is taken: the supervisor alerts on it.
        assert h["obj"]["roster_refused"] == 1 and "mac" in h["obj"]["roster_error"].lower()
    finally:
        agent.close()
        obs.close()
        rig.close()


def test_small_outbox_raises_high_water_then_rejects_new_never_drops_old(broker, tmp_path):
    rig = Rig()
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path), outbox_max_events=10)
    obs = Observer(broker)
    agent = AgentProcess(cfg).start()
    try:
        wait_up(obs, agent)
        read_bands(rig, range(14))
        h = wait_for(lambda: obs.health and obs.health[-1]["obj"]["outbox"]["rejected"] >= 4
                     and obs.health[-1], 10, "rejections", agent.log_text)
        assert h["obj"]["outbox"]["capacity"] == 10
        alerts = [e.body for e in obs.unique("local_alert")]
        assert [(a["rule"], a["phase"]) for a in alerts] == [("outbox-high-water", "new")]
        assert [e.body["kind"] for e in obs.unique("fault")] == ["high-water"]
        # The oldest events are all still there: seq 1.. without a hole.
        seqs = sorted(e.seq for e in obs.unique("presence.enter", "local_alert", "fault"))
        assert seqs == list(range(1, len(seqs) + 1)) and h["queue"] == len(seqs)
    finally:
        agent.close()
        obs.close()
        rig.close()
