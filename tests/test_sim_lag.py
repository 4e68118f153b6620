"""`lag-node` (issue 12): one node's traffic held 3 real seconds both ways by the simulator's
relay. Absence is judged in the node's own time, so the lag alone raises nothing, and a camera
that dies behind the lag still raises recording-gap as soon as the node's time says so."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.envelope import open_payload
from sim.scenario import find_scenario, load_scenario
from supervisor.journal import Journal
from tests.test_sim_scenarios import ROOT, run_dir  # noqa: F401 (the fixture)


def run(name: str, tmp_path: Path, workdir: Path) -> dict:
    out = tmp_path / "score.json"
    r = subprocess.run([sys.executable, "-m", "custody", "sim", "run", name, "--json", str(out),
                        "--workdir", str(workdir)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert out.exists(), r.stdout + r.stderr
    score = json.loads(out.read_text())
    assert not score["missed"] and not score["false"], r.stdout
    assert r.returncode == 0, r.stdout + r.stderr
    return score


@pytest.mark.slow
def test_lag_below_the_offline_grace_raises_nothing(tmp_path, run_dir):  # noqa: F811
    sc = load_scenario(find_scenario("lag-node"))
    [lag] = [s for s in sc.plan.steps if s.args.get("kind") == "lag-node"]
    assert lag.args["delay_s"] * sc.speed < sc.centre.site.rules.device_offline_s
    assert run("lag-node", tmp_path, run_dir)["raised"] == []


@pytest.mark.slow
def test_dead_camera_behind_a_lag_raises_recording_gap_on_node_time(tmp_path, run_dir):  # noqa: F811
    sc = load_scenario(find_scenario("lag-node-camera"))
    rules = sc.centre.site.rules
    [lag] = [s for s in sc.plan.steps if s.args.get("kind") == "lag-node"]
    lag_ms = lag.args["delay_s"] * sc.speed * 1000
    score = run("lag-node-camera", tmp_path, run_dir)
    [alert] = [a for a in score["raised"] if a["rule"] == "recording-gap"]
    # The last recording heartbeat of the cell's camera before the alert, in node time.
    journal = Journal(run_dir / "supervisor.db")
    last_rec = 0
    for e in journal.entries():
        if e.kind != "event" or e.node != "node-holding-1":
            continue
        env = json.loads(open_payload(e.payload).env_text)
        if (env["type"] == "camera" and env["body"]["live"] and env["body"].get("recording")
                and env["ts"] < alert["raised_ts"] - lag_ms):
            last_rec = env["ts"]
    journal.close()
    # Raised when the node's time (the supervisor's less the lag) passed last heartbeat + gap.
    # The lag subtracted is the nominal one: relay and scheduling jitter at x4 on a loaded
    # machine come on top (measured 0.6 to 2.3 s here), hence 3 s rather than the 1 s.
    node_time_late_ms = alert["raised_ts"] - lag_ms - (last_rec + rules.recording_gap_s * 1000)
    print(f"recording-gap raised {node_time_late_ms / 1000:.2f} s of node time after the gap")
    assert -1000 < node_time_late_ms <= 3000
