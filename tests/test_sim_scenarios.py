"""The shipped scenarios the suite runs pass end to end: `custody sim run` starts Mosquitto,
the supervisor and one agent per room node, drives them through virtual devices, and the alerts
on alert/# are exactly the expected ones (nothing missed, nothing false).

The random and demo days are longer (benchmarks/bench_sim_day.py and the demo test run them);
the one-rule scenarios whose rules the boundary pairs here cover run in
benchmarks/bench_scenarios.py, with every other shipped scenario.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.site import load_site
from sim.scenario import MissingFootage, find_scenario, list_scenarios, load_scenario
from tests.snapshot_support import assert_snapshots_agree

ROOT = Path(__file__).resolve().parent.parent
LONG = {"random-day", "demo-day"}
OWN_TEST = {"lag-node", "lag-node-camera"}  # tests/test_sim_lag.py runs them (and checks more)
# Run by hand (`custody sim run vocabulary`, ~1.5 min; vocabulary-2 ~3.5 min; overnight
# ~1.5 min) and by benchmarks/bench_scenarios.py.
BY_HAND = {"vocabulary", "vocabulary-2", "overnight"}
# One rule each, and that rule's boundary pair (both sides of its limit, in one of the
# boundary-* days below) is in the suite: benchmarks/bench_scenarios.py runs them, so the
# suite's time goes to the pairs (test_every_rule_of_a_benched_scenario_is_in_the_suite
# checks that no rule loses its run here).
BENCHED = {"brought-straight-in", "co-suspects", "device-offline", "exit", "fall",
           "holding-watch", "interview", "lying-still", "never-alone", "property", "real-search",
           "real-search-one-officer", "recording-gap", "search-first", "temporary-exit-overdue",
           "time-limit", "welfare-check"}
SCENARIOS = [p.stem for p in list_scenarios()
             if p.stem not in LONG | BY_HAND | OWN_TEST | BENCHED]
RAM = Path("/dev/shm")


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """Where a run keeps its outboxes, journal and logs: RAM when the machine has it.

    Every event is an fsync'd SQLite commit on the node and in the supervisor. A shared disk
    can hold an fsync for a few hundred ms, which does not scale with the sped-up clock: at
    x40 it is a camera heartbeat 10 custody seconds late and a false recording-gap (seen with
    another process writing to the same disk). The same SQLite on tmpfs keeps that real-time
    cost out of a test of the rules."""
    if RAM.is_dir() and os.access(RAM, os.W_OK) and shutil.disk_usage(RAM).free > 256 << 20:
        d = Path(tempfile.mkdtemp(prefix="custody-sim-test-", dir=RAM))
        yield d / "run"
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path / "run"


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_passes(name, tmp_path, run_dir):
    try:
        load_scenario(find_scenario(name))
    except MissingFootage as exc:
        # Only the real-footage scenarios, where ../shared/data is absent.
        pytest.skip(str(exc))
    out = tmp_path / "score.json"
    r = subprocess.run([sys.executable, "-m", "custody", "sim", "run", name, "--json", str(out),
                        "--workdir", str(run_dir)], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert out.exists(), r.stdout + r.stderr
    s = json.loads(out.read_text())
    assert s["scenario"] == name
    assert not s["missed"] and not s["false"], r.stdout
    assert len(s["latency_ms"]) == len(s["expected"])
    assert r.returncode == 0, r.stdout + r.stderr
    if name == "normal-day":
        assert s["raised"] == []
    # The day's journal: a snapshot made anywhere in it plus its tail is the replay from #1.
    assert_snapshots_agree(load_site(run_dir / "site.toml"), run_dir / "supervisor.db",
                           tmp_path / "snapshots")


def expected_rules(name: str) -> set[str]:
    """The rules a scenario expects (its real footage not needed)."""
    try:
        return {e.rule for e in load_scenario(find_scenario(name)).plan.expected}
    except MissingFootage:
        return set()


def test_every_rule_of_a_benched_scenario_is_in_the_suite():
    """A scenario left to the benchmark takes no rule with it: each rule it expects is
    expected by a scenario the suite runs."""
    shipped = {p.stem for p in list_scenarios()}
    assert not BENCHED - shipped, f"not shipped: {sorted(BENCHED - shipped)}"
    in_suite = set().union(*(expected_rules(n) for n in SCENARIOS))
    for name in sorted(BENCHED):
        rules = expected_rules(name)
        assert rules, f"{name} expects nothing"
        assert rules <= in_suite, f"{name}: {sorted(rules - in_suite)} run in no suite scenario"


def test_sim_run_exits_nonzero_when_an_expected_alert_is_missing(tmp_path):
    """A scenario expecting an alert the day never causes fails with exit status 1, and a
    staff command the supervisor refused is on the scorecard."""
    text = (ROOT / "sim/scenarios/never-alone.toml").read_text()
    text = text.replace('violations = ["left-alone"]', "violations = []")
    text = text.replace('site = "../sites/compact.toml"', f'site = "{ROOT}/sim/sites/compact.toml"')
    text += "\nfrom_s = 100\n"
    # A command the supervisor refuses (by state, which the loader cannot know): the
    # scorecard names it and the run fails on it too.
    text += ('\n[[steps]]\nat_s = 30\naction = "command"\ncommand = "property-in"\n'
             'user = "off-anna"\nargs = { item = "item-nowhere" }\n')
    f = tmp_path / "wrong.toml"
    f.write_text(text)
    out = tmp_path / "score.json"
    r = subprocess.run([sys.executable, "-m", "custody", "sim", "run", str(f), "--json",
                        str(out), "--speed", "120"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    s = json.loads(out.read_text())
    assert r.returncode == 1, r.stdout + r.stderr
    assert [m["rule"] for m in s["missed"]] == ["never-alone"]
    (refused,) = s["refused"]  # "at <custody s> s <command> by <user>: <the supervisor's>"
    assert refused.startswith("at 3") and refused.endswith(
        " s property-in by off-anna: property-in: item 'item-nowhere' is not logged"), refused
    assert "REFUSED " + refused in r.stdout
