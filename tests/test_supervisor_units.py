"""Rules as plain functions of (state, now, timings); alert lifecycle; staff checks; ingest.

No broker here: entries go through a real journal and the state fold; time is whatever `now`
the test passes (the injectable clock).
"""

import json
import time
from pathlib import Path
from typing import Any

import pytest

from protocol.envelope import seal
from protocol.staff import request_payload
from protocol.topics import Topics
from supervisor import rules as R
from supervisor.alerts import AlertManager
from supervisor.ingest import Ingest
from supervisor.journal import Journal
from supervisor.staff import Staff
from supervisor.state import State
from tests.supervisor_support import BANDS, KEYS, ROOM_NODE, SEX, make_directory, make_site

T0 = 1_700_000_000_000


class World:
    """A journal + state + alert manager + staff, with time set by the test."""

    def __init__(self, tmp: Path, archive: bool = False, **overrides: Any) -> None:
        self.site = make_site(**overrides)
        self.topics = Topics(self.site.id)
        self.journal = Journal(tmp / "j.db")
        self.state = State(self.site, archive)  # live mode (as the supervisor) by default
        self.now = T0
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.alerts = AlertManager(self.state, self.journal, self.topics, self.publish)
        self.staff_h = Staff(self.state, self.journal, self.alerts, lambda: self.now,
                             make_directory())
        self.ingest = Ingest(self.journal, self.state, self.topics, KEYS, self.publish,
                             lambda: self.now)
        self.seq: dict[str, int] = {}

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.published.append((topic, json.loads(payload)))

    def at(self, seconds: float, beat: bool = True) -> "World":
        """Set the time; every node (unless `beat` is False) says it is alive and up to date,
        as its health beats do, so that absence is judged by the nodes' watermarks."""
        self.now = T0 + int(seconds * 1000)
        if beat:
            self.beat(*sorted(set(ROOM_NODE.values())))
        return self

    def beat(self, *nodes: str, through: int | None = None) -> None:
        """A health beat from each node, up to date `through` (default: now)."""
        items = []
        for node in nodes:
            body = {"uptime_s": 1, "queue": 0,
                    "obj": {"through_ts": self.now if through is None else through}}
            items.append((self.topics.node(node, "health"),
                          seal(KEYS[node], node, 1, 0, self.now, "health", body)))
        self.ingest.process(items)

    def event(self, node: str, etype: str, body: dict[str, Any], key: bytes | None = None
              ) -> None:
        self.seq[node] = self.seq.get(node, 0) + 1
        payload = seal(key or KEYS[node], node, 1, self.seq[node], self.now, etype, body)
        self.ingest.process([(self.topics.node(node, "event"), payload)])

    def enter(self, who: str, room: str) -> None:
        self.event(ROOM_NODE[room], "presence.enter", {"band": BANDS[who], "room": room,
                                                       "reader": f"{room}-uhf"})

    def leave(self, who: str, room: str) -> None:
        self.event(ROOM_NODE[room], "presence.leave", {"band": BANDS[who], "room": room,
                                                       "reader": f"{room}-uhf"})

    def staff(self, command: str, args: dict[str, Any], user: str | None = None
              ) -> dict[str, Any]:
        # Approvals come from the duty supervisor (on no team), the rest from officer o1.
        user = user or ("sup" if command.startswith("approve-") else "o1")
        txn = f"t{len(self.state.txns)}-{self.journal.count}-{self.now}"
        return json.loads(self.staff_h.handle(user, command, request_payload(txn, None, args)))

    def people(self) -> None:
        for o in ("o1", "o2", "o3"):
            assert self.staff("register-officer", {"officer": o, "band": BANDS[o],
                                                   "sex": SEX[o]})["ok"]
        assert self.staff("register-detainee", {
            "detainee": "d1", "band": BANDS["d1"], "case": "c1", "sex": "m",
            "custody_type": "short", "observation": "level1"})["ok"]

    def rule(self, fn: Any) -> list[tuple[str, str | None, str | None]]:
        return [(d.rule, d.detainee, d.room) for d in fn(self.state, self.now, self.site.rules)]


@pytest.fixture
def w(tmp_path):
    world = World(tmp_path)
    yield world
    world.journal.close()


def test_never_alone_waits_for_its_grace_and_uses_the_doorway_grace(w):
    w.people()
    w.at(0).enter("o1", "medical")
    w.enter("d1", "medical")
    w.at(1).leave("o1", "medical")
    assert w.at(10.9).rule(R.never_alone) == []
    assert w.at(11).rule(R.never_alone) == [("never-alone", "d1", "medical")]
    w.at(12).enter("d1", "corridor")
    assert w.at(31.9).rule(R.never_alone) == []  # corridor: 20 s in the test site
    assert w.at(32).rule(R.never_alone) == [("never-alone", "d1", "corridor")]
    w.at(33).enter("o2", "corridor")
    assert w.rule(R.never_alone) == []


def test_never_alone_prefers_corroboration_by_the_camera(w):
    w.people()
    w.at(0).enter("o1", "medical")
    w.enter("d1", "medical")
    w.at(1).leave("o1", "medical")
    cam = {"camera": "cam-medical", "room": "medical"}
    w.at(11).event("node-medical", "camera", {**cam, "live": True})
    w.event("node-medical", "person_count", {**cam, "count": 2})
    [d] = R.never_alone(w.state, w.at(12).now, w.site.rules)
    assert d.severity == "warning" and "unconfirmed" in d.message
    w.event("node-medical", "person_count", {**cam, "count": 1})
    [d] = R.never_alone(w.state, w.at(13).now, w.site.rules)
    assert d.severity == "critical" and "camera agrees" in d.message


def test_real_search_checks_officers_sex_and_duration(w):
    w.people()
    w.at(0).enter("o2", "search")  # a woman only: detainee is a man, and one officer
    w.enter("d1", "search")
    w.at(10).staff("record-search", {"detainee": "d1", "officers": ["o2"],
                                     "result": "completed"})
    [d] = R.real_search(w.state, w.now, w.site.rules)
    assert "1 officer(s)" in d.message and "sex" in d.message and "10 s" in d.message


def test_welfare_visit_must_be_sensor_verified(w):
    w.people()
    w.at(0).enter("o1", "holding-1")
    w.enter("d1", "holding-1")
    w.leave("o1", "holding-1")
    assert w.at(99).rule(R.welfare_check) == []
    [d] = R.welfare_check(w.state, w.at(100).now, w.site.rules)  # level1 120 s, warn 20 s
    assert d.severity == "info"
    # an officer inside long enough but the camera never sees two people: not verified
    w.at(101).enter("o1", "holding-1")
    w.at(110).leave("o1", "holding-1")
    assert R.welfare_check(w.state, w.at(120).now, w.site.rules)[0].severity == "warning"
    assert R.welfare_check(w.state, w.at(140).now, w.site.rules)[0].severity == "critical"
    w.at(141).enter("o1", "holding-1")
    w.event("node-holding", "person_count",
            {"camera": "cam-holding-1", "room": "holding-1", "count": 2})
    w.at(147).leave("o1", "holding-1")
    assert w.rule(R.welfare_check) == []
    assert w.state.detainees["d1"].last_verified_ms == T0 + 147_000


def test_time_limit_stages_replace_each_other(w):
    w.people()  # short: 1 h, warn at 75 %, 90 %, 10 min before
    assert w.at(2699).rule(R.time_limit) == []
    msgs = [R.time_limit(w.state, w.at(s).now, w.site.rules)[0].message
            for s in (2700, 3000, 3240, 3600)]
    assert [m.split(": time in custody ")[1].split(" of")[0] for m in msgs] == \
        ["75 %", "10 min left", "90 %", "limit exceeded"]
    assert w.staff("approve-extension", {"detainee": "d1", "hours": 2})["ok"]
    assert w.rule(R.time_limit) == []


def test_alert_lifecycle_escalates_unless_acknowledged_and_never_raises_twice(tmp_path):
    w = World(tmp_path, alert_escalate_after_s=60)
    w.people()
    w.at(0).enter("d1", "medical")
    w.at(20)
    w.alerts.reconcile(w.now)
    raised = [m for _, m in w.published if m.get("state") == "raised"]
    assert sorted(m["rule"] for m in raised) == ["never-alone", "search-first"]
    alone = next(m for m in raised if m["rule"] == "never-alone")
    first = next(m for m in raised if m["rule"] == "search-first")
    assert w.staff("ack-alert", {"alert": first["id"], "action": "on my way"})["ok"]
    w.published.clear()
    w.at(81)
    w.alerts.reconcile(w.now)
    states = [(m["rule"], m["state"], m["severity"]) for _, m in w.published if "rule" in m]
    # never-alone (critical) escalates to... critical stays critical; search-first was acked
    assert states == [("never-alone", "escalated", "critical")]
    w.alerts.reconcile(w.now)
    assert len([m for _, m in w.published if "rule" in m]) == 1  # no duplicate
    w.at(82).enter("o1", "medical")
    w.alerts.reconcile(w.now)
    assert w.state.alerts[alone["id"]]["state"] == "resolved"
    r = w.staff("false-alarm", {"alert": first["id"], "note": "drill"}, user="o2")
    assert r["ok"] and w.state.false_alarms == {"search-first": 1}
    assert not w.staff("resolve-alert", {"alert": first["id"]})["ok"]  # already closed
    w.journal.close()


def test_staff_refuses_bad_commands_whole(w):
    w.people()
    before = w.journal.count
    bad = [
        ("register-detainee", {"detainee": "d2", "band": BANDS["o1"], "case": "c", "sex": "m",
                               "custody_type": "short", "observation": "level1"}, "in use"),
        ("register-detainee", {"detainee": "d2", "band": "0101", "case": "c", "sex": "m",
                               "custody_type": "nope", "observation": "level1"}, "custody_type"),
        ("record-search", {"detainee": "dx", "officers": [], "result": "completed"},
         "not registered"),
        ("approve-extension", {"detainee": "d1", "hours": 5}, "one of [2]"),
        ("approve-temporary-exit", {"detainee": "d1", "return_by_ts": T0 - 1, "reason": "x"},
         "future"),
        ("property-in", {"item": "knife"}, "not logged"),
        ("ack-alert", {"alert": "nope", "action": "x"}, "does not exist"),
        ("log-belongings", {"detainee": "d1", "locker": "l1"}, "missing argument 'items'"),
    ]
    for cmd, args, why in bad:
        r = w.staff(cmd, args)
        assert not r["ok"] and why in r["error"], (cmd, r)
    # Nothing changed; each refusal is journaled as refused (who, what, why).
    assert w.journal.count == before + len(bad)
    assert [(r["user"], r["command"]) for r in w.state.refused] == \
        [("sup" if c.startswith("approve-") else "o1", c) for c, _, _ in bad]


def test_duplicates_are_acked_again_and_journaled_once(w):
    payload = seal(KEYS["node-entry"], "node-entry", 1, 1, T0, "door",
                   {"door": "d1", "state": "open"})
    topic = w.topics.node("node-entry", "event")
    w.ingest.process([(topic, payload), (topic, payload)])
    w.ingest.process([(topic, payload)])
    acks = [m for t, m in w.published if t.endswith("/ack")]
    assert [json.loads(a["env"])["body"]["seqs"] for a in acks] == [[1, 1], [1]]
    assert w.journal.count == 1


def test_rejected_messages_are_journaled_alerted_and_kept_out_of_state(w):
    forged = seal(KEYS["node-search"], "node-entry", 1, 1, T0, "presence.enter",
                  {"band": "00000000ff", "room": "medical", "reader": "r"})
    w.ingest.process([(w.topics.node("node-entry", "event"), forged),
                      (w.topics.node("node-entry", "event"), b"not json")])
    kinds = [e.kind for e in w.journal.entries()]
    assert kinds == ["security", "security"]
    assert not w.state.rooms["medical"].bands
    assert w.rule(R.incidents) == [("security", None, "entry"), ("security", None, "entry")]
    assert not [t for t, _ in w.published if t.endswith("/ack")]


def test_gap_then_fill(w):
    topic = w.topics.node("node-entry", "event")
    for s in (1, 4):
        w.ingest.process([(topic, seal(KEYS["node-entry"], "node-entry", 1, s, T0, "door",
                                       {"door": "d1", "state": "open"}))])
    assert w.state.nodes["node-entry"].gaps == [[2, 3, T0]]
    assert w.at(10).rule(R.missing_events) == [("missing-events", None, "entry")]
    for s in (3, 2):
        w.ingest.process([(topic, seal(KEYS["node-entry"], "node-entry", 1, s, T0, "door",
                                       {"door": "d1", "state": "open"}))])
    assert w.state.nodes["node-entry"].gaps == []



def test_a_gap_noticed_late_gets_its_grace_from_when_it_arrived(w):
    # A supervisor crash loses what its inbox held; the next event then arrives from the
    # broker's queue stamped a minute ago. The node resends the lost one only once it hears
    # from us, so the grace (10 s here) runs from the arrival, not from the stamp.
    topic = w.topics.node("node-entry", "event")

    def door(seq: int, stamped_s: float) -> None:
        w.ingest.process([(topic, seal(KEYS["node-entry"], "node-entry", 1, seq,
                                       T0 + int(stamped_s * 1000), "door",
                                       {"door": "d1", "state": "open"}))])

    door(1, 0)
    w.at(60, beat=False)
    door(3, 1)  # seq 2 was lost; seq 3 was stamped 59 s before it arrived
    assert w.state.nodes["node-entry"].gaps == [[2, 2, T0 + 60_000]]
    assert w.at(69).rule(R.missing_events) == []
    assert w.at(70).rule(R.missing_events) == [("missing-events", None, "entry")]

    # Replay knows no arrival times: the stamp. A restart then grants a gap that was not yet
    # due its grace afresh, and leaves one that was due as it was (its alert stays open).
    replayed = State(w.site)
    for e in w.journal.entries():
        replayed.apply(e)
    assert replayed.nodes["node-entry"].gaps == [[2, 2, T0 + 1000]]
    replayed.grace_all(T0 + 5000)
    assert replayed.nodes["node-entry"].gaps == [[2, 2, T0 + 5000]]
    replayed.grace_all(T0 + 20_000)  # due since T0 + 15 s
    assert replayed.nodes["node-entry"].gaps == [[2, 2, T0 + 5000]]

def test_report_follows_the_language_setting(tmp_path):
    from supervisor.report import report_html, write_report

    w = World(tmp_path, archive=True)  # the report needs the whole history
    w.people()
    w.at(0).enter("d1", "medical")
    w.alerts.reconcile(w.at(20).now)
    write_report(w.state, T0 - 1000, T0 + 3_600_000, tmp_path / "zh", lang="zh")
    zh = (tmp_path / "zh" / "report.html").read_text()
    assert "<html lang='zh-CN'>" in zh
    for heading in ("羁押合规报告", "各规则告警数", "误报", "各房间告警数", "各民警处置告警数",
                    "羁押时长与法定时限", "被拒绝的操作"):
        assert heading in zh, heading
    assert "Alerts per rule" not in zh and "never-alone" in zh  # rule ids stay as they are
    en = report_html("x", {"alerts": [], "rules": [], "rooms": [], "officers": [],
                           "custody": [], "refused": [], "refused_actions": []}, 0, 1, "en",
                     charts=False)
    assert "<h2>Alerts per rule</h2>" in en and "<img" not in en


def test_report_and_record_from_the_journal(tmp_path):
    import csv
    import subprocess
    import sys

    from tests.supervisor_support import write_files

    w = World(tmp_path)
    w.people()
    w.at(0).enter("d1", "medical")
    w.alerts.reconcile(w.at(20).now)
    alone = next(a for a in w.state.alerts.values() if a["rule"] == "never-alone")
    w.at(50).staff("ack-alert", {"alert": alone["id"], "action": "escort sent"}, user="o2")
    w.at(60).staff("false-alarm", {"alert": alone["id"], "note": "band fell off"}, user="o2")
    w.at(70).staff("approve-disposition", {"detainee": "d1", "disposition": "release"})
    w.at(80).enter("d1", "exit")
    w.journal.close()
    site_file, _ = write_files(tmp_path)
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "custody", "report", "--db", str(tmp_path / "j.db"),
                        "--config", str(site_file), "--from", str(T0 - 1000), "--to",
                        str(T0 + 3_600_000), "--out", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    html = (out / "report.html").read_text()
    assert "alerts_per_rule.png" in html and (out / "time_in_custody.png").stat().st_size > 1000
    rows = {row["rule"]: row for row in csv.DictReader((out / "alerts_per_rule.csv").open())}
    assert rows["never-alone"]["false_alarm_rate_pct"] == "100.0"
    assert rows["never-alone"]["median_ack_s"] == "30.0"
    officers = list(csv.DictReader((out / "alerts_per_officer.csv").open()))
    assert {"officer": "o2", "alerts_handled": "1"} in officers
    custody = next(csv.DictReader((out / "time_in_custody.csv").open()))
    assert custody["detainee"] == "d1" and custody["limit_h"] == "1.0"
    rec = subprocess.run([sys.executable, "-m", "custody", "record", "d1", "--db",
                          str(tmp_path / "j.db"), "--config", str(site_file)],
                         capture_output=True, text=True, timeout=60)
    assert rec.returncode == 0, rec.stderr
    for text in ("registered by o1", "enters medical", "ALERT never-alone",
                 "acknowledged by o2", "disposition release", "exit (release)"):
        assert text in rec.stdout, rec.stdout
    # Without a period: everything journaled so far; a bad time is one clear line, exit 2.
    base = [sys.executable, "-m", "custody", "report", "--db", str(tmp_path / "j.db"),
            "--config", str(site_file), "--out", str(tmp_path / "all")]
    whole = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert whole.returncode == 0, whole.stderr
    again = {row["rule"]: row for row in
             csv.DictReader((tmp_path / "all" / "alerts_per_rule.csv").open())}
    assert again["never-alone"]["false_alarm_rate_pct"] == "100.0"
    bad = subprocess.run([*base, "--from", "yesterday"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "--from/--to" in bad.stderr and "Traceback" not in bad.stderr


def test_fast_ack_is_byte_identical_to_the_protocol_ack():
    from protocol.verifier import ack_payload
    from supervisor.ingest import fast_ack_payload

    for node, seqs in (("node-entry", [3, 1, 2]), ("n", []), ("node-9", list(range(500)))):
        assert fast_ack_payload(b"k" * 32, node, 77, T0, 4, seqs) == \
            ack_payload(b"k" * 32, node, 77, T0, 4, seqs)


def test_alert_published_while_offline_is_delivered_once_not_fatal(broker):
    """paho's is_published() raises for a message queued while offline; paho still sends it on
    connect, and delivery() sees that, so nobody publishes it a second time."""
    import threading

    import paho.mqtt.client as mqtt

    from supervisor.alerts import delivery

    got: list[bytes] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="offline-alerts-sub")
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got.append(bytes(m.payload))
    sub.connect(broker.host, broker.port, 5)
    sub.subscribe("t/alert", qos=1)
    sub.loop_start()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="offline-alerts")
    offline = client.publish("t/alert", b"queued", qos=1)
    assert delivery(offline) == "waiting"
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    try:
        assert subscribed.wait(5)
        client.connect(broker.host, broker.port, 5)
        client.loop_start()
        assert connected.wait(5)
        deadline = time.monotonic() + 5
        while delivery(offline) != "delivered" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert delivery(offline) == "delivered"
        again = client.publish("t/alert", b"online", qos=1)
        again.wait_for_publish(5)
        assert delivery(again) == "delivered"
        time.sleep(0.3)
        assert got == [b"queued", b"online"]  # each once
        assert delivery(None) == "delivered"
    finally:
        for c in (client, sub):
            c.loop_stop()
            c.disconnect()


def _segment(w: World, room: str, start_s: float, end_s: float) -> None:
    w.event(ROOM_NODE[room], "segment", {
        "camera": f"cam-{room}", "room": room, "file": f"cam-{room}-{start_s}.mp4",
        "start_ms": T0 + int(start_s * 1000), "end_ms": T0 + int(end_s * 1000), "frames": 10,
        "bytes": 1000, "codec": "mp4v", "sha256": "a" * 64})


def test_segment_gap_while_occupied_is_a_recording_gap_once(w):
    """A gap between a camera's segments (node time) while a detainee is in a room that must
    be filmed is the recording-gap alarm, even when the heartbeats said `recording`; no alarm
    for an empty room; none twice when the heartbeat rule already raised it."""
    w.people()
    w.at(0).enter("d1", "holding-1")
    w.enter("o1", "holding-1")
    for t in range(0, 80, 5):  # heartbeats all along: live and recording
        w.at(t).event("node-holding", "camera", {"camera": "cam-holding-1",
                                                 "room": "holding-1", "live": True,
                                                 "recording": True})
        if t == 10:
            _segment(w, "holding-1", 0, 10)
            _segment(w, "interview-1", 0, 10)  # nobody in interview-1
        if t == 60:
            _segment(w, "holding-1", 45, 60)  # 35 s missing (> recording_gap_s 20)
            _segment(w, "interview-1", 45, 60)
        w.alerts.reconcile(w.now)
    gaps = [a for a in w.state.alerts.values() if a["rule"] == "recording-gap"]
    assert [(a["room"], a["detainee"]) for a in gaps] == [("holding-1", "d1")]
    assert "recorded nothing for 35 s" in gaps[0]["message"]
    # A short gap (one frame late, or under the site's gap) is no alarm.
    _segment(w, "holding-1", 61, 70)
    w.alerts.reconcile(w.now)
    assert len([a for a in w.state.alerts.values() if a["rule"] == "recording-gap"]) == 1


def test_segment_gap_already_told_by_heartbeats_is_not_raised_again(w):
    w.people()
    w.at(0).enter("d1", "holding-1")
    w.enter("o1", "holding-1")
    for t in range(0, 70, 5):
        recording = not 10 < t < 50  # the recorder stops for 40 s: the heartbeats say so
        w.at(t).event("node-holding", "camera", {"camera": "cam-holding-1",
                                                 "room": "holding-1", "live": True,
                                                 "recording": recording})
        if t == 10:
            _segment(w, "holding-1", 0, 10)
        if t == 60:
            _segment(w, "holding-1", 50, 60)
        w.alerts.reconcile(w.now)
    seen = {**w.state.recent_closed, **w.state.alerts}  # closed ones leave `alerts` (live)
    gaps = [a for a in seen.values() if a["rule"] == "recording-gap"]
    assert len(gaps) == 1 and "no recording from holding-1" in gaps[0]["message"]


class _Info:
    """A paho MQTTMessageInfo as `delivery` reads it: queued, PUBACKed once `done`."""

    rc = 0

    def __init__(self) -> None:
        self.done = False

    def is_published(self) -> bool:
        return self.done


def test_a_retained_alerts_view_waits_for_the_last_one_to_be_confirmed(tmp_path, monkeypatch):
    """state/alerts is the whole open list: while one is unconfirmed (a backlog keeps paho
    from reading PUBACKs) a newer one waits instead of piling copies up in paho's queue; the
    newest goes once the last is confirmed, or after SNAPSHOT_WAIT_S in any case."""
    import supervisor.alerts as alerts_mod

    w = World(tmp_path)
    sent: list[tuple[dict[str, Any], _Info]] = []

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> _Info:
        assert topic == w.topics.state("alerts") and qos == 1 and retain
        sent.append((json.loads(payload), _Info()))
        return sent[-1][1]

    am = AlertManager(w.state, w.journal, w.topics, publish)
    am.publish_snapshot(1000)
    am.snapshot_dirty = True  # something changed
    am.publish_snapshot(2000)
    assert [m["ts"] for m, _ in sent] == [1000] and am.snapshot_dirty
    sent[0][1].done = True
    am.publish_snapshot(3000)
    assert [m["ts"] for m, _ in sent] == [1000, 3000] and not am.snapshot_dirty
    am.publish_snapshot(4000)  # nothing changed: nothing sent
    am.snapshot_dirty = True
    monkeypatch.setattr(alerts_mod, "SNAPSHOT_WAIT_S", 0.0)  # unconfirmed for too long
    am.publish_snapshot(5000)
    assert [m["ts"] for m, _ in sent] == [1000, 3000, 5000]
