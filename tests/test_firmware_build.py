"""The firmware signs and verifies as protocol/ does (inside MicroPython) and compiles."""

import ast
import json
import subprocess
from pathlib import Path

from protocol.events import _ENUMS, EVENT_TYPES, PHASES
from tests.fw_harness import FIRMWARE, MICROPYTHON, MPY_CROSS, ROOT

VECTORS = ROOT / "protocol" / "vectors"


def _micropython(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"MICROPYPATH": f"{FIRMWARE / 'lib'}:{FIRMWARE / 'test_support'}"}
    return subprocess.run([str(MICROPYTHON), str(script), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_every_json_vector_passes_inside_micropython():
    r = _micropython(FIRMWARE / "test_support" / "run_vectors.py", str(VECTORS))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    counts = {kind: sum(1 for x in lines if x.startswith(kind + " ") and x.endswith(" ok"))
              for kind in ("canonical", "valid", "invalid")}
    expected = {kind: len(json.loads((VECTORS / f"{kind}.json").read_text()))
                for kind in ("canonical", "valid", "invalid")}
    assert counts == expected, r.stdout
    assert lines[-1] == "done 0 failures"


def test_firmware_verifier_catches_a_vector_it_should_fail(tmp_path):
    # The runner must be able to fail: a tampered copy of the vectors is reported.
    for name in ("canonical", "invalid"):
        (tmp_path / f"{name}.json").write_text((VECTORS / f"{name}.json").read_text())
    valid = json.loads((VECTORS / "valid.json").read_text())
    valid[0]["payload"] = valid[0]["payload"].replace('"mac":"0', '"mac":"1')
    (tmp_path / "valid.json").write_text(json.dumps(valid))
    r = _micropython(FIRMWARE / "test_support" / "run_vectors.py", str(tmp_path))
    assert r.returncode == 1
    assert "valid tap FAIL payload differs" in r.stdout


def test_firmware_schema_is_protocols_schema():
    text = (FIRMWARE / "lib" / "schema.py").read_text()
    tree = ast.parse(text)
    values = {t.targets[0].id: ast.literal_eval(t.value) for t in tree.body  # type: ignore[attr-defined]
              if isinstance(t, ast.Assign)}
    assert values["EVENT_TYPES"] == EVENT_TYPES
    assert values["ENUMS"] == _ENUMS
    assert values["PHASES"] == PHASES


def test_mpy_cross_compiles_every_firmware_file(tmp_path):
    files = sorted(FIRMWARE.rglob("*.py"))
    assert len(files) >= 12
    for f in files:
        r = subprocess.run([str(MPY_CROSS), "-o", str(tmp_path / (f.stem + ".mpy")), str(f)],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{f}: {r.stderr}"


def test_mpy_cross_rejects_what_micropython_rejects(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return (yield from)\n")
    r = subprocess.run([str(MPY_CROSS), str(bad)], capture_output=True, text=True)
    assert r.returncode != 0


def test_firmware_units_inside_micropython(tmp_path):
    r = _micropython(FIRMWARE / "test_support" / "unit_checks.py", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["ok", "rdm6300", "ok", "outbox-sequence", "ok",
                                "outbox-torn-write", "ok", "outbox-full"]


def test_shipped_example_config_is_refused_until_provisioned(tmp_path):
    # firmware/config.json documents every key; its placeholder key must stop a board cold.
    (tmp_path / "config.json").write_text((FIRMWARE / "config.json").read_text())
    r = subprocess.run([str(MICROPYTHON), "-c", "import fwconfig\nfwconfig.load('config.json')"],
                       cwd=tmp_path, env={"MICROPYPATH": str(FIRMWARE / "lib")},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "config.json: key: expected hex digits" in r.stdout + r.stderr
