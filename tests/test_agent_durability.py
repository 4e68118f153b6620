"""Nothing lost: kill -9 with unacked events, and a broker outage (short here; the 60 s
version is benchmarks/bench_agent_outage.py)."""

import os

from tests.agent_support import (
    Acker,
    AgentProcess,
    Observer,
    Rig,
    assert_in_order_without_gaps,
    band,
    read_bands,
    run_outage,
    wait_for,
    wait_up,
    write_config,
    write_site,
)

OUTAGE_S = float(os.environ.get("CUSTODY_TEST_OUTAGE_S", "5"))


def test_kill9_with_unacked_events_then_restart_delivers_all_in_order(broker, tmp_path):
    rig = Rig()
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path))
    obs = Observer(broker)
    agent = AgentProcess(cfg).start()
    acker = None
    try:
        wait_up(obs, agent)
        read_bands(rig, range(30))
        wait_for(lambda: len(obs.unique("presence.enter")) == 30, 15, "30 enters",
                 agent.log_text)
        before = {(e.epoch, e.seq) for e in obs.events}
        agent.kill9()  # nobody has acked anything: all of it is only in the outbox
        acker = Acker(broker)
        agent = AgentProcess(cfg).start()
        wait_up(obs, agent)
        read_bands(rig, range(30, 35))  # and more after the restart
        wait_for(lambda: len(acker.first) >= 70, 30, "every event after the restart",
                 agent.log_text)
        wait_for(lambda: obs.health and obs.health[-1]["queue"] == 0, 15, "empty outbox",
                 agent.log_text)
        seqs = assert_in_order_without_gaps(acker)
        assert len(seqs) == 70  # 35 enters + 35 leaves
        assert before <= set(acker.first)
        assert {e.body["band"] for e in obs.unique("presence.leave")} == {
            band(i) for i in range(35)}
        assert agent.terminate() == 0
    finally:
        agent.close()
        if acker is not None:
            acker.close()
        obs.close()
        rig.close()


def test_broker_outage_loses_nothing_and_availability_goes_offline_then_online(broker,
                                                                                tmp_path):
    result = run_outage(broker, tmp_path, OUTAGE_S)
    assert result["events"] == 80


def test_supervisor_coming_back_online_gets_everything_at_once(broker, tmp_path):
    rig = Rig()
    # Ack timeouts far beyond the test: only the supervisor's availability can trigger this.
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path), retransmit_s=120)
    obs = Observer(broker)
    agent = AgentProcess(cfg).start()
    acker = None
    try:
        wait_up(obs, agent)
        read_bands(rig, range(10))
        wait_for(lambda: len(obs.unique("presence.enter", "presence.leave")) == 20, 15,
                 "20 events, unacked", agent.log_text)
        acker = Acker(broker, announce=True)  # the supervisor starts and says "online"
        wait_for(lambda: len(acker.first) == 20, 15, "a replay on supervisor online",
                 agent.log_text)
        assert_in_order_without_gaps(acker)
        wait_for(lambda: obs.health[-1]["queue"] == 0, 10, "empty outbox", agent.log_text)
    finally:
        agent.close()
        if acker is not None:
            acker.close()
        obs.close()
        rig.close()
