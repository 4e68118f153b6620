"""Simulator units: frame encoders (checked against hand-made bytes from the formats and the
agent's parsers), noisy lines, ptys with pyserial, scenario loading, plans, scoring."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import serial

from edge_agent.drivers.rdm6300 import Rdm6300Parser
from edge_agent.drivers.uhf_m100 import M100Parser
from protocol.config import ConfigError
from sim.actors import OUTSIDE
from sim.devices.camera import VirtualCamera
from sim.devices.frames import Noise, impair, rdm6300_frame, uhf_error, uhf_inventory
from sim.devices.readers import VirtualReader
from sim.scenario import MissingFootage, list_scenarios, load_scenario
from sim.score import Raised, score
from sim.timetable import Expected, Plan

BAND = "0a1b2c3d4e"


def test_rdm6300_frame_bytes():
    # 0x02, "0A1B2C3D4E", XOR 0a^1b^2c^3d^4e = 0x4e, 0x03
    assert rdm6300_frame(BAND) == b"\x020A1B2C3D4E4E\x03"


def test_uhf_inventory_bytes_follow_the_manual():
    f = uhf_inventory(BAND, rssi=-60)
    assert f[0] == 0xBB and f[-1] == 0x7E
    assert f[1:3] == bytes([0x02, 0x22])
    pl = int.from_bytes(f[3:5], "big")
    assert pl == 1 + 2 + 12 + 2 and len(f) == 5 + pl + 2
    payload = f[5:5 + pl]
    assert payload[0] == (-60) & 0xFF
    assert payload[1:3] == bytes([0x30, 0x00])  # PC: 6 words, no status bits
    assert payload[3:15] == bytes(7) + bytes.fromhex(BAND)
    assert f[-2] == sum(f[1:-2]) & 0xFF
    assert uhf_error() == bytes([0xBB, 0x01, 0xFF, 0x00, 0x01, 0x15, 0x16, 0x7E])


def test_agent_parsers_read_our_frames_and_status_bits():
    reads = Rdm6300Parser().feed(rdm6300_frame(BAND) * 2)
    assert [r.band for r in reads] == [BAND, BAND]
    p = M100Parser()
    reads = p.feed(uhf_inventory(BAND, tamper=True) + uhf_error() + uhf_inventory(
        BAND, battery_low=True))
    assert [(r.band, r.tamper, r.battery_low) for r in reads] == [
        (BAND, True, False), (BAND, False, True)]


@pytest.mark.parametrize("kind", ["uhf", "rdm6300"])
def test_noisy_split_frames_lose_only_the_corrupted_ones(kind):
    rng = random.Random(7)
    noise = Noise(junk_rate=0.3, corrupt_rate=0.1, split_rate=0.5)
    parser = M100Parser() if kind == "uhf" else Rdm6300Parser()
    stream, intact = b"", 0
    for i in range(300):
        band = f"{i:010x}"
        frame = uhf_inventory(band) if kind == "uhf" else rdm6300_frame(band)
        writes, ok = impair(frame, noise, rng)
        assert b"".join(writes).endswith(frame[-1:])
        intact += ok
        stream += b"".join(writes)
    got = []
    for i in range(0, len(stream), 7):  # fed in arbitrary pieces, as a serial port delivers
        got += [r.band for r in parser.feed(stream[i:i + 7])]
    assert 200 < intact < 300
    # Every intact frame is read; a corrupted one is never read as another band.
    assert len(got) == intact
    assert all(int(b, 16) < 300 for b in got)


def test_pty_reader_delivers_frames_to_pyserial():
    vr = VirtualReader("r1", "rdm6300")
    try:
        with serial.Serial(vr.path, 9600, timeout=1) as port:
            vr.read_band(BAND)
            data = port.read(14)
        assert Rdm6300Parser().feed(data)[0].band == BAND
    finally:
        vr.close()


def test_camera_writes_kp_lines_with_33_landmarks():
    import json

    cam = VirtualCamera("c1")
    try:
        with open(cam.path, "rb") as port:  # a named pipe (sim/devices/pty_port.py)
            cam.frame(1000, ["off-a", "det-1"])
            cam.frame(1400, ["det-1"], falling="det-1")
            lines = [json.loads(port.readline()) for _ in range(2)]
        assert lines[0]["ts"] == 1000 and len(lines[0]["persons"]) == 2
        assert all(len(p) == 33 and all(len(k) == 3 for k in p) for p in lines[0]["persons"])
        nose, ankle = lines[0]["persons"][0][0], lines[0]["persons"][0][27]
        assert nose[1] < ankle[1]  # upright: head above feet
    finally:
        cam.close()


def test_every_shipped_scenario_loads_and_lists_its_alerts():
    paths = list_scenarios()
    assert any(p.stem == "normal-day" for p in paths)
    for p in paths:
        try:
            sc = load_scenario(p)
        except MissingFootage as exc:  # real clips absent: refused, naming what is missing
            assert "shared" in str(exc) and "missing" in str(exc), exc
            continue
        if p.stem in ("normal-day", "lag-node"):  # compliant days: nothing may be raised
            assert sc.plan.expected == [], p
        elif p.stem != "random-day":
            assert sc.plan.expected, p
        assert sc.duration_s > 0
        assert all(e.from_s + e.within_s < sc.duration_s for e in sc.plan.expected), p


def _replay(plan: Plan):
    where: dict[str, str] = {}
    for s in plan.sorted_steps():
        if s.action == "move":
            for p in s.args["people"]:
                where[p] = s.args["room"]
        yield s, dict(where)


def test_compliant_plan_never_leaves_a_detainee_alone_outside_holding():
    sc = load_scenario(Path("sim/scenarios/normal-day.toml"))
    kinds = {r.id: r.kind for r in sc.centre.site.rooms}
    searched: set[str] = set()
    for step, where in _replay(sc.plan):
        if step.action == "command" and step.args["command"] == "record-search":
            searched.add(step.args["args"]["detainee"])
        for d in sc.centre.detainees:
            room = where.get(d, OUTSIDE)
            if room == OUTSIDE:
                continue
            if d not in searched:
                assert kinds[room] in ("entry", "search"), (step, d, room)
            if kinds[room] != "holding":
                officers = [p for p, r in where.items() if r == room and p in sc.centre.officers]
                assert officers, (step, d, room)


def test_scenario_that_does_not_list_its_alerts_is_refused(tmp_path):
    text = Path("sim/scenarios/never-alone.toml").read_text()
    cut = text[: text.index("[[expect]]")].replace(
        'site = "../sites/compact.toml"', f'site = "{Path("sim/sites/compact.toml").resolve()}"')
    f = tmp_path / "bad.toml"
    f.write_text(cut)
    with pytest.raises(ConfigError, match="never-alone"):
        load_scenario(f)


def test_score_matches_misses_and_flags_false():
    start = 1_000_000
    exp = [Expected("never-alone", "det-1", "information", 100, 40),
           Expected("fall", None, "holding-1", 500, 30)]
    raised = [Raised("a1", "never-alone", "critical", "det-1", "information",
                     start + 112_000, 0.0),
              Raised("a2", "never-alone", "critical", "det-2", "information",
                     start + 112_000, 0.0),
              Raised("a3", "fall", "critical", None, "holding-1", start + 600_000, 0.0)]
    s = score("t", exp, raised, start)
    assert [m["alert"] for m in s.matched] == ["a1"]
    assert s.latency_ms == [12_000]
    assert [m["rule"] for m in s.missed] == ["fall"]  # raised too late
    assert sorted(f["id"] for f in s.false) == ["a2", "a3"]
    assert not s.passed
    assert set(s.as_json()) >= {"scenario", "expected", "raised", "missed", "false",
                                "latency_ms"}


def test_people_keep_their_spot_when_someone_leaves():
    import json

    cam = VirtualCamera("c2")
    try:
        with open(cam.path, "rb") as port:  # a named pipe (sim/devices/pty_port.py)
            cam.frame(1000, ["det-1", "off-a"])
            cam.frame(1200, ["det-1"])
            two, one = (json.loads(port.readline()) for _ in range(2))
        x = one["persons"][0][0][0]  # det-1's nose, alone now
        assert min(abs(p[0][0] - x) for p in two["persons"]) < 0.02
    finally:
        cam.close()


BOARD_SITE = Path(__file__).resolve().parent.parent / "sim" / "sites" / "compact.toml"


def test_sim_board_config_and_pin_mapping(tmp_path):
    """The sim's board gets the provisioned config format on plain loopback TCP, and its
    door and button map to the configured pins at the right (active-low) levels."""
    import json

    from protocol.config import read_toml
    from protocol.site import parse_site
    from sim.devices.board import VirtualBoard, sim_board_config

    site = parse_site(read_toml(BOARD_SITE), BOARD_SITE)
    node = next(n for n in site.nodes if n.kind == "sensor")
    cfg = sim_board_config(site, node, "ab" * 32, "127.0.0.1", 1883)
    assert cfg["mqtt"] == {"host": "127.0.0.1", "port": 1883, "keepalive_s": 10,
                           "backoff_max_s": 2}  # no TLS, no login
    assert cfg["ntp"] is False and cfg["node"] == "sensor-exit" and cfg["room"] == "exit"
    assert cfg["site"] == "compact" and cfg["key"] == "ab" * 32
    assert cfg["doors"] == [{"door": "d-exit", "pin": 4, "active_low": True}]
    assert cfg["buttons"] == [{"id": "panic-exit", "kind": "panic", "pin": 5}]
    vb = VirtualBoard(node, cfg, tmp_path / "sensor-exit", {"PATH": "/usr/bin"})
    assert json.loads((vb.flash / "config.json").read_text()) == cfg
    assert (vb.flash / "main.py").exists() and (vb.flash / "lib" / "node.py").exists()
    # At rest: door closed (contact pulls the pin low), button released (pull-up high).
    assert (vb.level(4), vb.level(5)) == (0, 1)
    vb.set_door("d-exit", "open")
    vb.set_button("panic-exit", True)
    assert (vb.level(4), vb.level(5)) == (1, 0)
    vb.set_door("d-exit", "closed")
    vb.set_button("panic-exit", False)
    assert (vb.level(4), vb.level(5)) == (0, 1)
    with pytest.raises(KeyError):
        vb.set_door("d-holding-1", "open")  # wired to a room node, not to this board
    env = vb.child.env
    assert env["CUSTODY_FW_PINS"] == str(vb.pins) and "test_support" in env["MICROPYPATH"]
    assert vb.child.cwd == vb.flash


def test_scenario_steps_must_name_a_real_button_and_node(tmp_path):
    text = (Path(__file__).resolve().parent.parent / "sim/scenarios/panic-button.toml"
            ).read_text().replace('site = "../sites/compact.toml"', f'site = "{BOARD_SITE}"')
    bad_button = tmp_path / "b.toml"
    bad_button.write_text(text.replace('button = "panic-exit"', 'button = "panic-nowhere"'))
    with pytest.raises(ConfigError, match=r"steps\[0\]\.button"):
        load_scenario(bad_button)
    bad_node = tmp_path / "n.toml"
    bad_node.write_text(text + '\n[[steps]]\nat_s = 10\naction = "fault"\nkind = "kill-node"\n'
                        'target = "sensor-nowhere"\n')
    with pytest.raises(ConfigError, match=r"steps\[1\]\.target"):
        load_scenario(bad_node)


def _camera_events(people: list[str], kind: str, seconds: float = 90.0) -> list[tuple[str, str]]:
    """What the node's behaviour logic (default classifier) makes of a virtual camera showing
    `people` (the first one falls / lies down / everyone fights from 20 s), frames 150 ms apart
    around the behaviour's start and ~1.7 s apart otherwise, as the runner sends them."""
    from edge_agent.vision.behaviour import BehaviourMonitor, make_classifier
    from edge_agent.vision.tracker import Tracker

    cam = VirtualCamera("c-unit")
    lines: list[dict] = []
    cam.port.write = lambda b: lines.append(json.loads(b)) or True  # type: ignore[method-assign]
    tracker, out = Tracker(), []
    mon = BehaviourMonitor("c-unit", lying_still_ms=60_000, classifier=make_classifier())
    stamps = [*range(1, 20_000, 1667), *range(20_000, 34_000, 150),
              *range(34_000, round(seconds * 1000), 1667)]
    try:
        for ts in stamps:
            on = ts >= 20_000
            cam.frame(ts, people, falling=people[0] if on and kind == "fall" else None,
                      lying=people[0] if on and kind == "lying" else None,
                      fighting=on and kind == "fight")
            tracks = tracker.update(ts, [np.asarray(p, dtype=np.float32)
                                         for p in lines[-1]["persons"]])
            for tid in tracker.dropped:
                out += [(ph, b["cls"]) for ph, b in mon.track_gone(tid)]
            out += [(ph, b["cls"]) for ph, b in mon.step(ts, tracks, 4 / 3,
                                                           list(tracker.tracks.values()))]
    finally:
        cam.close()
    return [e for e in out if e[0] == "new"]


@pytest.mark.parametrize("who", ["det-1", "det-y"])  # spots 0.31 and 0.69 (right of centre)
def test_virtual_camera_shows_a_fall_the_node_sees_whichever_side_the_person_stands(who):
    # A fall towards the nearer edge put the head out of the picture: never judged.
    assert _camera_events([who, "off-a"], "fall", 30.0) == [("new", "fall")]


@pytest.mark.parametrize("who", ["det-1", "det-o"])
def test_virtual_camera_lying_down_is_lying_still_never_a_fall(who):
    # Lying down on the bench used to be a jump from standing to flat: a fall to the model.
    assert _camera_events([who], "lying") == [("new", "lying_still")]


def test_virtual_camera_fight_is_a_fight():
    assert ("new", "fight") in _camera_events(["det-1", "off-ben"], "fight", 40.0)
