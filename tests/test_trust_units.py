"""Unit checks of the trust boundaries: node scope from the demo site, sanity limits,
strict JSON, the per-node budget, and time printing that survives any journaled value."""

import hashlib
import hmac
import json

import pytest

from protocol.envelope import Reason, VerifyError, verify
from protocol.events import Event
from protocol.replay import ReplayWindow
from protocol.site import DEMO_SITE, load_site
from supervisor.budget import Budget
from supervisor.cli import fmt_ts
from supervisor.scope import out_of_range, out_of_scope, site_scopes

SITE = load_site(DEMO_SITE)
SCOPES = site_scopes(SITE)
BAND = "00000000d1"


def ev(node: str, etype: str, body: dict) -> Event:
    return Event(node, 1, 1, 0, etype, body)


@pytest.mark.parametrize("etype,body", [
    ("presence.enter", {"band": BAND, "room": "holding-1", "reader": "holding-1-uhf"}),
    ("camera", {"camera": "cam-holding-1", "room": "holding-1", "live": True}),
    ("person_count", {"camera": "cam-holding-1", "room": "holding-1", "count": 2}),
    ("crossing", {"band": BAND, "door": "d-exit", "from_room": "corridor-1", "to_room": "exit"}),
    ("local_alert", {"id": "x", "phase": "new", "rule": "never-alone", "room": "property"}),
    ("door", {"door": "d-holding-1", "state": "open"}),
])
def test_the_property_sensor_board_speaks_only_for_its_door_and_button(etype, body):
    assert out_of_scope(SCOPES["sensor-property"], ev("sensor-property", etype, body))


def test_every_node_may_send_what_its_devices_make():
    assert out_of_scope(SCOPES["sensor-property"], ev("sensor-property", "door",
                                                      {"door": "d-property", "state": "open"})) \
        is None
    assert out_of_scope(SCOPES["sensor-property"], ev(
        "sensor-property", "button", {"button": "panic-property", "kind": "panic",
                                      "room": "property"})) is None
    hold = SCOPES["node-holding-1"]
    assert out_of_scope(hold, ev("node-holding-1", "presence.enter",
                                 {"band": BAND, "room": "holding-1",
                                  "reader": "holding-1-uhf"})) is None
    assert out_of_scope(hold, ev("node-holding-1", "camera",
                                 {"camera": "cam-holding-1", "room": "holding-1",
                                  "live": True})) is None
    # ... but not for the room next door, nor with another room's camera.
    assert out_of_scope(hold, ev("node-holding-1", "presence.enter",
                                 {"band": BAND, "room": "holding-2",
                                  "reader": "holding-1-uhf"}))
    assert out_of_scope(hold, ev("node-holding-1", "camera",
                                 {"camera": "cam-holding-2", "room": "holding-1",
                                  "live": True}))
    assert out_of_scope(None, ev("node-x", "door", {"door": "d-exit", "state": "open"}))
    assert "fault" in hold.types and "ack" not in hold.types


def test_bodies_outside_physical_ranges_are_refused():
    pc = {"camera": "c", "room": "r"}
    assert out_of_range(ev("n", "person_count", {**pc, "count": -5}))
    assert out_of_range(ev("n", "person_count", {**pc, "count": 2**60}))
    assert out_of_range(ev("n", "person_count", {**pc, "count": 3})) is None
    assert out_of_range(ev("n", "health", {"uptime_s": -1, "queue": 0}))


def test_an_absurd_sequence_jump_is_refused_without_moving_the_window():
    w = ReplayWindow()
    w.admit("n", 5, 1)
    with pytest.raises(VerifyError) as e:
        w.admit("n", 5, 2**53 - 1)
    assert e.value.reason == Reason.SEQ_JUMP
    with pytest.raises(VerifyError):
        w.admit("n", 6, 2**40)  # a new epoch starts near 1, not at any number
    assert w.admit("n", 5, 2).gap_from == 0  # the node is not locked out
    assert w.nodes["n"].epoch == 5


def test_duplicate_keys_in_a_signed_envelope_are_refused():
    key = b"k" * 32
    env = ('{"body":{"door":"d","state":"open","state":"closed"},"epoch":1,"node":"n",'
           '"seq":1,"ts":0,"type":"door","v":1}')
    mac = hmac.new(key, env.encode(), hashlib.sha256).hexdigest()
    with pytest.raises(VerifyError) as e:
        verify(json.dumps({"env": env, "mac": mac}).encode(), {"n": key})
    assert e.value.reason == Reason.MALFORMED and "duplicate key" in e.value.detail
    outer = ('{"env":"{}","mac":"' + mac + '","mac":"' + mac + '"}').encode()
    with pytest.raises(VerifyError):
        verify(outer, {"n": key})


def test_the_budget_throttles_a_rejecting_node_once_and_releases_it():
    b = Budget(reject_rate=10, reject_burst=20)
    t = 1000.0
    for _ in range(21):
        b.rejected("n", t)
    assert b.throttled("n", t) and b.nodes["n"].episodes == 1
    assert not b.throttled("other", t)
    assert b.throttled("n", t + 0.5)  # 5 tokens back: not yet half the burst
    assert not b.throttled("n", t + 1.2)


@pytest.mark.parametrize("ms", [9_007_199_254_740_000, -2**62, 2**53, 0])
def test_time_printing_survives_any_value(ms):
    assert isinstance(fmt_ts(ms), str)
