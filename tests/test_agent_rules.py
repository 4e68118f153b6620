"""Local rules fire on the node itself, with no supervisor anywhere."""

import threading
import time

from edge_agent.drivers import uhf_m100
from protocol.clock import simulated
from tests.agent_support import (
    DETAINEE,
    OFFICER,
    AgentProcess,
    Observer,
    Rig,
    publish_roster,
    wait_for,
    wait_up,
    write_config,
    write_site,
)

SPEED = 2.5  # custody seconds per real second: the default 10 s grace takes 4 s; the
# 1 s margin is then 0.4 s real, ample for a loaded machine


class Feeder:
    """Keeps bands in the UHF field: one inventory notice per band every 0.1 s (real)."""

    def __init__(self, rig: Rig) -> None:
        self.rig, self.bands = rig, set[str]()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for b in list(self.bands):
                self.rig.uhf.write(uhf_m100.inventory_notice(uhf_m100.band_epc(b)))
            self.stop.wait(0.1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)


def test_never_alone_fires_within_grace_plus_one_second_without_supervisor(broker, tmp_path):
    rig = Rig()
    publish_roster(broker, {OFFICER: {"role": "officer", "sex": "f", "person": "p-1"},
                            DETAINEE: {"role": "detainee", "sex": "m", "person": "p-2",
                                       "case": "c-1"}})
    clock = simulated(SPEED, 1_800_000_000.0)
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path))
    obs = Observer(broker)
    agent = AgentProcess(cfg, env=clock.env()).start()
    feeder = Feeder(rig)
    try:
        wait_up(obs, agent)
        wait_for(lambda: obs.health[-1]["obj"]["roster_version"] == 1, 15, "the roster",
                 agent.log_text)
        feeder.bands.add(DETAINEE)
        alert = wait_for(lambda: [e for e in obs.unique("local_alert")
                                  if e.body["phase"] == "new"], 15, "never-alone",
                         agent.log_text)[0]
        enter = obs.unique("presence.enter")[0]
        assert alert.body["rule"] == "never-alone"
        assert alert.body["room"] == "room-a" and alert.body["bands"] == [DETAINEE]
        waited_ms = alert.ts_ms - enter.ts_ms  # custody time, as stamped by the node
        assert 10_000 <= waited_ms <= 11_000, waited_ms
        # An officer arrives: the alert ends under the same id.
        feeder.bands.add(OFFICER)
        end = wait_for(lambda: [e for e in obs.unique("local_alert")
                                if e.body["phase"] == "end"], 10, "alert end", agent.log_text)[0]
        assert end.body["id"] == alert.body["id"] and end.body["rule"] == "never-alone"
        assert [e.body["phase"] for e in obs.unique("local_alert")] == ["new", "end"]
    finally:
        feeder.close()
        agent.close()
        obs.close()
        rig.close()


def test_interview_with_one_officer_and_band_tamper(broker, tmp_path):
    rig = Rig()
    publish_roster(broker, {OFFICER: {"role": "officer", "sex": "f", "person": "p-1"},
                            DETAINEE: {"role": "detainee", "sex": "m", "person": "p-2",
                                       "case": "c-1"}})
    clock = simulated(SPEED, 1_800_000_000.0)
    cfg = write_config(tmp_path, broker, rig,
                       write_site(tmp_path, "interview", "interview_grace_s = 5"))
    obs = Observer(broker)
    agent = AgentProcess(cfg, env=clock.env()).start()
    feeder = Feeder(rig)
    try:
        wait_up(obs, agent)
        wait_for(lambda: obs.health[-1]["obj"]["roster_version"] == 1, 15, "the roster",
                 agent.log_text)
        feeder.bands.update({DETAINEE, OFFICER})
        alert = wait_for(lambda: [e for e in obs.unique("local_alert")
                                  if e.body["rule"] == "interview"], 15, "interview alert",
                         agent.log_text)[0]
        enters = obs.unique("presence.enter")
        assert alert.body["phase"] == "new"
        assert sorted(alert.body["bands"]) == sorted([DETAINEE, OFFICER])
        assert 5_000 <= alert.ts_ms - max(e.ts_ms for e in enters) <= 6_000
        assert not [e for e in obs.unique("local_alert") if e.body["rule"] == "never-alone"]
        # The detainee's band reports a broken tamper loop (PC attribute bit 0).
        feeder.bands.discard(DETAINEE)
        tampered = uhf_m100.inventory_notice(uhf_m100.band_epc(DETAINEE), pc=0x3001)
        for _ in range(3):
            rig.uhf.write(tampered)
            time.sleep(0.05)
        status = wait_for(lambda: obs.unique("band.status"), 10, "band.status",
                          agent.log_text)[0]
        assert status.body == {"band": DETAINEE, "reader": "uhf-a", "tamper": True,
                               "battery_low": False}
        tamper = wait_for(lambda: [e for e in obs.unique("local_alert")
                                   if e.body["rule"] == "band-tamper"], 10, "band-tamper",
                          agent.log_text)[0]
        assert tamper.body["bands"] == [DETAINEE] and tamper.body["phase"] == "new"
    finally:
        feeder.close()
        agent.close()
        obs.close()
        rig.close()
