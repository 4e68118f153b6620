"""Presence, local rules, roster, config, door debouncing and sd_notify, piece by piece."""

import os
import socket
import time

import pytest

from edge_agent.config import load_agent_config
from edge_agent.doors import Debouncer, LineDoor
from edge_agent.drivers import Read
from edge_agent.local_rules import Inputs, LocalRules
from edge_agent.presence import Presence, ReaderRole
from edge_agent.roster import RosterError, verify_roster
from edge_agent.sdnotify import Notifier
from protocol.config import ConfigError
from protocol.envelope import VerifyError, seal
from protocol.site import DEMO_SITE, Room, Rules
from tests.agent_support import KEY, NODE

ROSTER = {"version": 3, "bands": {"aa": {"role": "officer", "sex": "f", "person": "p1"},
                                   "dd": {"role": "detainee", "sex": "m", "person": "p2",
                                          "case": "c1"}}}


def _roster():
    return verify_roster(seal(KEY, NODE, 1, 3, 0, "roster", ROSTER), NODE, KEY)


def _inputs(present, seen=None, status=None, roster=True):
    return Inputs(frozenset(present), frozenset(seen if seen is not None else present),
                  status or {}, _roster() if roster else None)


def test_never_alone_grace_then_end():
    rules = LocalRules(Room("r", "medical", "r", False), Rules(), doorway=False)
    assert rules.evaluate(100.0, _inputs({"dd"})) == []
    assert rules.evaluate(109.9, _inputs({"dd"})) == []
    (new,) = rules.evaluate(110.0, _inputs({"dd"}))
    assert new[1]["phase"] == "new" and new[1]["rule"] == "never-alone"
    (end,) = rules.evaluate(111.0, _inputs({"dd", "aa"}))
    assert end[1]["phase"] == "end" and end[1]["id"] == new[1]["id"]


def test_never_alone_cleared_before_grace_raises_nothing_and_restarts_grace():
    rules = LocalRules(Room("r", "search", "r", False), Rules(), doorway=False)
    rules.evaluate(0.0, _inputs({"dd"}))
    assert rules.evaluate(9.0, _inputs({"dd", "aa"})) == []
    assert rules.evaluate(12.0, _inputs({"dd"})) == []  # grace starts again at 12
    assert rules.evaluate(21.0, _inputs({"dd"})) == []
    assert len(rules.evaluate(22.0, _inputs({"dd"}))) == 1


def test_corridor_uses_doorway_grace_and_holding_is_exempt():
    corridor = LocalRules(Room("c", "corridor", "c", False), Rules(), doorway=True)
    corridor.evaluate(0.0, _inputs({"dd"}))
    assert corridor.evaluate(29.0, _inputs({"dd"})) == []
    assert corridor.evaluate(30.0, _inputs({"dd"}))[0][1]["rule"] == "never-alone"
    holding = LocalRules(Room("h", "holding", "h", True), Rules(), doorway=False)
    holding.evaluate(0.0, _inputs({"dd"}))
    assert holding.evaluate(1000.0, _inputs({"dd"})) == []


def test_unknown_band_only_with_a_roster_and_tamper_battery():
    rules = LocalRules(Room("r", "entry", "r", False), Rules(), doorway=False)
    assert rules.evaluate(0.0, _inputs(set(), {"ee"}, roster=False)) == []
    out = rules.evaluate(1.0, _inputs(set(), {"ee"}, {"aa": (True, True)}))
    assert sorted((e[1]["rule"], tuple(e[1]["bands"])) for e in out) == [
        ("band-battery", ("aa",)), ("band-tamper", ("aa",)), ("unknown-band", ("ee",))]


def test_update_when_bands_change_and_restart_ends():
    rules = LocalRules(Room("r", "medical", "r", False), Rules(never_alone_grace_s=1), False)
    rules.evaluate(0.0, _inputs({"dd"}))
    rules.evaluate(1.0, _inputs({"dd"}))
    roster = _roster()
    roster.bands["d2"] = roster.bands["dd"]
    i = Inputs(frozenset({"dd", "d2"}), frozenset({"dd", "d2"}), {}, roster)
    (upd,) = rules.evaluate(2.0, i)
    assert upd[1]["phase"] == "update" and upd[1]["bands"] == ["d2", "dd"]
    (end,) = LocalRules(Room("r", "medical", "r", False), Rules(), False).ended_after_restart(
        rules.saved())
    assert end[1]["phase"] == "end" and end[1]["id"] == upd[1]["id"]


def test_presence_ttl_taps_and_crossing():
    readers = {"u": ReaderRole("u", "presence", "r"), "t": ReaderRole("t", "tap", "r"),
               "i": ReaderRole("i", "door", "r", "d"), "o": ReaderRole("o", "door", "c", "d")}
    p = Presence("r", readers, ttl_s=5, crossing_window_s=10, tap_rearm_s=1)
    assert p.on_read("u", Read("aa", -50), 0.0, 0.0)[0][0] == "presence.enter"
    assert p.on_read("u", Read("aa", -50), 4.0, 4.0) == []
    assert p.tick(8.9, 8.9) == []
    assert p.tick(9.1, 9.1)[0] == ("presence.leave", {"band": "aa", "room": "r", "reader": "u",
                                                      "seen_ts": 4000})
    assert [e[0] for e in p.on_read("t", Read("bb"), 10.0, 10.0)] == ["tap"]
    assert p.on_read("t", Read("bb"), 10.5, 10.5) == []  # still in the field
    assert [e[0] for e in p.on_read("t", Read("bb"), 12.0, 12.0)] == ["tap"]
    p.on_read("o", Read("cc"), 20.0, 20.0)
    out = p.on_read("i", Read("cc"), 22.0, 22.0)
    assert out[-1] == ("crossing", {"band": "cc", "door": "d", "from_room": "c", "to_room": "r"})
    p.on_read("o", Read("ee"), 30.0, 30.0)
    assert [e[0] for e in p.on_read("i", Read("ee"), 41.0, 41.0)] == ["tap"]  # too slow


def test_roster_refuses_bad_mac_wrong_type_and_bad_entries():
    with pytest.raises(VerifyError):
        verify_roster(seal(b"x" * 32, NODE, 1, 3, 0, "roster", ROSTER), NODE, KEY)
    with pytest.raises(RosterError):
        verify_roster(seal(KEY, NODE, 1, 4, 0, "roster", ROSTER), NODE, KEY)  # seq != version
    bad = {"version": 1, "bands": {"dd": {"role": "guard"}}}
    with pytest.raises(RosterError):
        verify_roster(seal(KEY, NODE, 1, 1, 0, "roster", bad), NODE, KEY)
    assert _roster().role("dd") == "detainee" and _roster().role("zz") is None


def _conf(tmp_path, text):
    (tmp_path / "k").write_text("00" * 32)
    p = tmp_path / "a.toml"
    p.write_text(f'[agent]\nnode = "node-entry"\nsite = "{DEMO_SITE}"\nkey_file = "k"\n'
                 f'outbox = "o.db"\n{text}')
    return p


def test_config_resolves_overrides_against_the_site(tmp_path):
    c = load_agent_config(_conf(tmp_path, 'vision = false\n[readers.entry-uhf]\nport = "/x"\n'
                                          '[doors.d-entry-search]\nsource = "line:/y"\n'))
    assert {r.id: r.port for r in c.readers}["entry-uhf"] == "/x"
    assert {d.door: d.source for d in c.doors} == {"d-entry-search": "line:/y",
                                                   "d-entry-corridor-1": "gpio:27"}
    assert c.outbox == tmp_path / "o.db" and c.mqtt.keepalive_s == 5 and not c.vision
    assert c.camera_heartbeat_s == c.site.rules.recording_gap_s / 2
    assert c.recording == {}  # no [recording]: the cameras do not record


def test_config_recording_section_becomes_camera_options(tmp_path):
    c = load_agent_config(_conf(tmp_path, '[recording]\ndir = "rec"\nsegment_s = 30\n'
                                          'evidence_dir = "ev"\n'))
    assert c.recording["record_dir"] == str(tmp_path / "rec")
    assert c.recording["segment_s"] == 30 and c.recording["ring_hours"] == 24
    assert c.recording["evidence_dir"] == str(tmp_path / "ev")


@pytest.mark.parametrize("text,key", [
    ("colour = 1\n", "agent.colour"),
    ('[readers.nope]\nport = "/x"\n', "readers.nope"),
    ('[doors.d-entry-search]\nsource = "usb:3"\n', "doors.d-entry-search.source"),
    ("outbox_max_events = -1\n", "agent.outbox_max_events"),
    ('[mqtt]\nport = "x"\n', "mqtt.port"),
    ("camera_heartbeat_s = 10\n", "agent.camera_heartbeat_s"),  # = the site's recording gap
    ('[recording]\ndir = "r"\ncodec = "h265"\n', "recording.codec"),
])
def test_config_errors_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as e:
        load_agent_config(_conf(tmp_path, text))
    assert e.value.key == key


def test_debouncer_reports_only_stable_changes():
    d = Debouncer(0.03)
    d.observe("open", 0.0)
    assert d.poll(0.01) is None
    d.observe("closed", 0.015)  # bounce
    d.observe("open", 0.02)
    assert d.poll(0.04) is None and d.poll(0.05) == "open"
    assert d.poll(1.0) is None


def test_line_door_on_a_real_pty_debounced():
    master, slave = os.openpty()
    changes = []
    door = LineDoor("d-a", os.ttyname(slave), 0.03)
    door.start(lambda d, s: changes.append((d, s)))
    try:
        time.sleep(0.2)
        os.write(master, b"open\n")
        time.sleep(0.2)
        os.write(master, b"closed\nopen\nclosed\n")  # contact bounce: one change
        time.sleep(0.2)
        os.write(master, b"ajar\n")
        time.sleep(0.2)
        assert changes == [("d-a", "open"), ("d-a", "closed")]
        assert door.stats()["bad_lines"] == 1
    finally:
        door.stop()
        os.close(master)
        os.close(slave)


def test_sd_notify_datagrams(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "4000000"})
    assert n.notify("READY=1") and n.watchdog_interval() == 2.0
    assert sock.recv(100) == b"READY=1"
    sock.close()
    assert not Notifier({}).notify("READY=1")


def test_cli_config_error_is_one_line_and_status_2(tmp_path, capsys):
    from custody.cli import main

    assert main(["agent", "--config", str(_conf(tmp_path, "vison = true\n"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "agent.vison" in err and "a.toml" in err


def test_presence_set_commits_with_its_event(tmp_path):
    from edge_agent.outbox import Outbox
    from protocol.clock import REAL

    box = Outbox(tmp_path / "o.db", "node-a", KEY, REAL)
    box.append("presence.enter", {"band": "aa", "room": "r", "reader": "u"},
               meta={"present": '{"aa": "u"}'})
    assert box.get_json("present") == {"aa": "u"}
    box.close()


def test_deadlines_tell_the_loop_when_to_wake():
    rules = LocalRules(Room("r", "medical", "r", False), Rules(), doorway=False)
    assert rules.next_deadline() is None
    rules.evaluate(100.0, _inputs({"dd"}))
    assert rules.next_deadline() == 110.0
    rules.evaluate(110.0, _inputs({"dd"}))  # raised: nothing pending any more
    assert rules.next_deadline() is None
    p = Presence("r", {"u": ReaderRole("u", "presence", "r")}, ttl_s=5)
    assert p.next_change() is None
    p.on_read("u", Read("aa"), 3.0, 3.0)
    assert p.next_change() == 8.0


def test_link_callbacks_never_raise_into_paho():
    import paho.mqtt.client as mqtt

    from edge_agent.link import Link, jittered
    from protocol.topics import Topics
    from protocol.transport import LinkConf

    def sink(item):
        raise RuntimeError("a bug downstream")

    link = Link("node-a", Topics("s"), LinkConf(), sink)
    msg = mqtt.MQTTMessage(topic=b"custody/v1/s/node/node-a/ack")
    msg.payload = b"x"
    assert link.client.on_message(link.client, None, msg) is None
    assert link.errors.counts["_on_message"] == 1
    delays = [jittered(n) for n in range(12)]
    assert all(0.25 <= d <= 22.5 for d in delays) and delays[-1] >= 7.5


class _Published:
    def is_published(self):
        return True


class _Link:
    """Stands in for the MQTT link: every publish is taken and PUBACKed at once."""

    def __init__(self):
        self.sent: list[bytes] = []

    def publish(self, topic, payload, retain=False):
        self.sent.append(payload)
        return _Published()


def test_a_backlog_waits_in_the_outbox_and_only_silence_resends_it(tmp_path, monkeypatch):
    """At most ACK_WINDOW events are out unacked, however deep the outbox (a broker queue
    past max_queued_messages drops silently); a queue ahead of the oldest is no reason to
    resend while acks come, a whole interval without one is."""
    from types import SimpleNamespace

    from edge_agent import agent as agent_mod
    from edge_agent.agent import Agent
    from protocol.verifier import ack_payload
    from tests.agent_support import Rig, write_config, write_site

    rig = Rig()
    cfg = write_config(tmp_path, SimpleNamespace(host="127.0.0.1", port=1), rig,
                       write_site(tmp_path), retransmit_s=5)
    from custody.provisioning.files import QUEUE_PER_NODE

    # The broker's queue for the supervisor holds every node's whole window (and then some).
    assert agent_mod.ACK_WINDOW < QUEUE_PER_NODE
    agent = Agent(load_agent_config(cfg))
    ACK_WINDOW = 400  # the module's constant, smaller: fewer commits to make
    monkeypatch.setattr(agent_mod, "ACK_WINDOW", ACK_WINDOW)
    agent.outbox.db.execute("PRAGMA synchronous=OFF")
    try:
        n = ACK_WINDOW * 3
        for i in range(n):
            agent.outbox.append("door", {"door": "d-a", "state": "open" if i % 2 else "closed"})
        agent.link = link = _Link()  # type: ignore[assignment]
        agent.online, agent.supervisor_online = True, True
        agent._go_back()
        for _ in range(20):
            agent.pump()
        assert agent.cursor == ACK_WINDOW and len(link.sent) == ACK_WINDOW

        def ack(seqs):
            agent._on_ack(ack_payload(KEY, NODE, 1, 0, agent.outbox.epoch, list(seqs)))

        ack(range(1, 101))  # acking the oldest opens the window by as many
        for _ in range(20):
            agent.pump()
        assert agent.cursor == ACK_WINDOW + 100
        # The oldest unacked has waited longer than the interval, but an ack just came.
        for s in agent.sent:
            agent.sent[s] -= 60.0
        agent._retransmit_due()
        assert agent.counts["retransmits"] == 0
        agent.acked_mono -= 60.0  # ...and now nothing came for a whole interval
        before = len(link.sent)
        agent._retransmit_due()
        for _ in range(20):
            agent.pump()
        assert agent.counts["retransmits"] == 1
        # Sent again from the oldest unacked, the same window's worth and no more.
        assert link.sent[before:] == link.sent[100:100 + ACK_WINDOW]
    finally:
        agent.outbox.close()
        rig.close()


def test_an_event_lost_before_an_acked_one_is_sent_again_at_once(tmp_path):
    """The supervisor acks in arrival order and MQTT keeps send order: an event sent before
    an acked one and not acked itself was lost (a broker restart), so it goes again at once
    rather than after the real-time retransmit timer, and only a bounded number of times."""
    from types import SimpleNamespace

    from edge_agent import agent as agent_mod
    from edge_agent.agent import Agent
    from protocol.verifier import ack_payload
    from tests.agent_support import Rig, write_config, write_site

    rig = Rig()
    cfg = write_config(tmp_path, SimpleNamespace(host="127.0.0.1", port=1), rig,
                       write_site(tmp_path), retransmit_s=60)
    agent = Agent(load_agent_config(cfg))
    try:
        for i in range(6):
            agent.outbox.append("door", {"door": "d-a", "state": "open" if i % 2 else "closed"})
        agent.link = link = _Link()  # type: ignore[assignment]
        agent.online, agent.supervisor_online = True, True
        agent._go_back()
        payloads = list(link.sent)
        assert len(payloads) == 6

        def ack(seqs):
            agent._on_ack(ack_payload(KEY, NODE, 1, 0, agent.outbox.epoch, list(seqs)))

        ack([1, 2])  # in order: nothing is missing
        assert len(link.sent) == 6 and agent.counts["fast_resends"] == 0
        ack([4])  # 3 was sent before 4 and never acked: lost
        assert link.sent[6:] == [payloads[2]] and agent.counts["fast_resends"] == 1
        ack([5, 6])  # sent before the resend of 3: no reason to send 3 a second time
        assert len(link.sent) == 7
        for _ in range(agent_mod.FAST_RESENDS_MAX + 2):  # a 3 that never gets through
            agent.outbox.append("door", {"door": "d-a", "state": "open"})
            agent.pump()
            ack([agent.cursor])
        assert agent.counts["fast_resends"] == agent_mod.FAST_RESENDS_MAX
        assert agent.outbox.oldest() == 3  # still held for the retransmit timer
        ack([3])
        assert 3 not in agent.sent and 3 not in agent.fast_resends

        # A dropped connection forgets the supervisor's availability: its next "online"
        # (a restarted broker lost everything queued for it) replays what is unacked.
        agent.outbox.append("door", {"door": "d-a", "state": "closed"})
        agent.pump()
        agent.handle(("disconnected",))
        assert agent.supervisor_online is None
        agent.handle(("connected",))
        before = len(link.sent)
        agent._on_supervisor(b"online")
        assert link.sent[before:] == link.sent[-1:] and len(link.sent) == before + 1
    finally:
        agent.outbox.close()
        rig.close()
