"""Durations that survive a node restart (issue 12): a fault open when the node dies ends
when it starts again, under the id the supervisor knows, so its alert cannot stay open for a
fault the node has forgotten."""

import os

from tests.agent_support import (
    AgentProcess,
    Observer,
    Pty,
    Rig,
    wait_for,
    wait_up,
    write_config,
    write_site,
)


def test_fault_open_across_a_kill9_restart_ends(broker, tmp_path):
    rig = Rig()
    link = tmp_path / "custody-uhf"
    os.symlink(rig.uhf.name, link)
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path))
    cfg.write_text(cfg.read_text().replace(rig.uhf.name, str(link)))
    obs = Observer(broker)
    agent = AgentProcess(cfg).start()
    second = None
    try:
        wait_up(obs, agent)
        rig.uhf.close()  # the reader is unplugged: a port-lost fault opens
        new = wait_for(lambda: [e for e in obs.unique("fault") if e.body["kind"] == "port-lost"],
                       10, "port-lost fault", agent.log_text)[0]
        agent.kill9()  # the fault's id was only in the dead process's memory
        second = Pty()  # fixed while the node was down
        os.unlink(link)
        os.symlink(second.name, link)
        agent = AgentProcess(cfg).start()
        end = wait_for(lambda: [e for e in obs.unique("fault") if e.body["phase"] == "end"],
                       20, "the forgotten fault ended", agent.log_text)
        assert [(e.body["id"], e.body["kind"]) for e in end] == [(new.body["id"], "port-lost")]
        assert end[0].body["detail"] == "ended at node restart"
        wait_up(obs, agent)
        # Nothing else is open: no second fault for a port that works.
        assert [e.body["phase"] for e in obs.unique("fault")] == ["new", "end"]
        assert agent.terminate() == 0
    finally:
        agent.close()
        obs.close()
        rig.close()
        if second is not None:
            second.close()
