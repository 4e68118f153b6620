"""A broker restart with the worst reconnect order (issue 12), through a real Mosquitto.

While the broker is down a high-risk detainee walks search -> corridor -> holding-1. When it
comes back the nodes replay their outboxes in the worst order: the holding room's node first,
then the corridor's, then the search room's, so every older move arrives after the newer one.
The supervisor folds presence in event time: the detainee stays in holding-1 and the welfare
check is raised on time."""

import time

from protocol.envelope import seal
from tests.supervisor_support import (
    BANDS,
    KEYS,
    SEX,
    Driver,
    Heartbeats,
    InProcess,
    make_site,
    sped_up,
)

SPEED = 30.0


def test_worst_order_reconnect_keeps_the_detainee_in_holding(broker, tmp_path):
    site = make_site()
    clock = sped_up(SPEED)
    sup = InProcess(site, tmp_path, broker.host, broker.port, clock)
    d = Driver(broker.host, broker.port, site, clock)
    beats = None
    try:
        for o in ("o1", "o2"):
            d.staff("register-officer", {"officer": o, "band": BANDS[o], "sex": SEX[o]})
        d.staff("register-detainee", {"detainee": "d1", "band": BANDS["d1"], "case": "c1",
                                      "sex": SEX["d1"], "custody_type": "short",
                                      "observation": "high"})
        broker.kill()
        t0 = clock.now_ms()
        band = BANDS["d1"]

        def ev(node: str, ts: int, etype: str, body: dict) -> tuple[str, bytes]:
            d.seq[node] = d.seq.get(node, 0) + 1
            return node, seal(KEYS[node], node, d.epoch, d.seq[node], ts, etype, body)

        # What each node stamped and kept in its outbox while the broker was down.
        walk = [
            ev("node-search", t0, "presence.enter", {"band": band, "room": "search",
                                                     "reader": "search-uhf"}),
            ev("node-corridor", t0 + 2000, "presence.enter", {"band": band, "room": "corridor",
                                                              "reader": "corridor-uhf"}),
            ev("node-search", t0 + 6000, "presence.leave", {"band": band, "room": "search",
                                                            "reader": "search-uhf",
                                                            "seen_ts": t0 + 1000}),
            ev("node-holding", t0 + 5000, "presence.enter", {"band": band, "room": "holding-1",
                                                             "reader": "holding-1-uhf"}),
            ev("node-corridor", t0 + 9000, "presence.leave", {"band": band, "room": "corridor",
                                                              "reader": "corridor-uhf",
                                                              "seen_ts": t0 + 4000}),
        ]
        clock.sleep(10)
        broker.start()
        deadline = time.monotonic() + 15
        while not (d.client.is_connected() and sup.sup.client.is_connected()):
            assert time.monotonic() < deadline, "no reconnect after the broker restart"
            time.sleep(0.05)
        # A fresh broker forgot the driver's subscriptions (the supervisor renews its own).
        d.client.subscribe([(d.topics.alert_filter(), 1), (f"{d.topics.base}/response/+/+", 1)])
        time.sleep(0.5)
        d.staff("set-observation", {"detainee": "d1", "observation": "high"})  # both are back
        beats = Heartbeats(d, ["holding-1"])  # the cell's camera is live: only welfare is due
        for node in ("node-holding", "node-corridor", "node-search"):  # the worst order
            for n, payload in walk:
                if n == node:
                    d.client.publish(d.topics.node(n, "event"), payload,
                                     qos=1).wait_for_publish(5)
        replayed = clock.now_ms()
        # high: 60 s after entering holding at t0 + 5 s; "due soon" 20 s before.
        alert = d.wait_for("welfare-check", timeout=15)
        assert (alert["detainee"], alert["room"]) == ("d1", "holding-1")
        # On time: at the warning time, or at once if the replay came after it (a reconnect
        # takes real seconds, a minute of custody time at this speed).
        assert t0 + 45_000 <= alert["raised_ts"] <= max(t0 + 45_000, replayed) + 3_000
        state = sup.sup.state
        deadline = time.monotonic() + 10
        while state.late_events < 4 and time.monotonic() < deadline:  # all five ingested
            time.sleep(0.05)
        assert state.detainees["d1"].visit is not None
        assert state.detainees["d1"].visit.room == "holding-1"
        assert [r.id for r in state.rooms.values() if band in r.bands] == ["holding-1"]
        assert state.late_events == 4  # both corridor moves, both search moves
        rules = {a["rule"] for a in d.alerts if a["state"] == "raised"}
        # search-first: no search was recorded; nothing puts d1 anywhere but holding-1.
        assert rules == {"welfare-check", "search-first"}, d.alerts
    finally:
        if beats is not None:
            beats.close()
        d.close()
        sup.stop()
