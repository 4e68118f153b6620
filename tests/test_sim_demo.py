"""`custody demo` smoke test: a tiny day without a terminal; a real mosquitto_sub started on
the printed command line receives the alerts; the printed desk account signs in to the desk;
the run ends cleanly with a scorecard."""

import contextlib
import http.client
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def desk_sign_in(line: str) -> tuple[int, str]:
    """Sign in with the demo's printed `desk: URL user U password P`; (status, floor page)."""
    m = re.fullmatch(r"desk: (\S+) user (\S+) password (\S+)", line.strip())
    assert m, line
    u = urlsplit(m.group(1))
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
    for _ in range(100):  # the supervisor may still be starting
        try:
            c.request("POST", "/signin", urlencode({"user": m.group(2),
                                                    "password": m.group(3)}),
                      {"Content-Type": "application/x-www-form-urlencoded"})
            break
        except ConnectionRefusedError:
            time.sleep(0.2)
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
    r = c.getresponse()
    r.read()
    assert r.status == 303 and r.getheader("Location") == "/floor", r.status
    cookie = (r.getheader("Set-Cookie") or "").split(";", 1)[0]
    c.request("GET", "/floor", headers={"Cookie": cookie})
    page = c.getresponse()
    return page.status, page.read().decode()


def test_demo_prints_a_working_mosquitto_sub_line_and_a_scorecard(tmp_path):
    scenario = (ROOT / "sim/scenarios/never-alone.toml").read_text().replace(
        'site = "../sites/compact.toml"', f'site = "{ROOT}/sim/sites/compact.toml"')
    f = tmp_path / "tiny.toml"
    f.write_text(scenario)
    demo = subprocess.Popen([sys.executable, "-m", "custody", "demo", "--scenario", str(f),
                             "--workdir", str(tmp_path / "demo")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    sub: subprocess.Popen[str] | None = None
    received: list[str] = []
    desk: list[tuple[int, str]] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.strip().startswith("mosquitto_sub "):
                # Exactly what staff would paste into a shell.
                sub = subprocess.Popen(shlex.split(line.strip()), stdout=subprocess.PIPE,
                                       text=True)
                threading.Thread(target=lambda s=sub: received.extend(s.stdout),
                                 daemon=True).start()
            if line.startswith("desk: "):
                threading.Thread(target=lambda x=line: desk.append(desk_sign_in(x)),
                                 daemon=True).start()
        demo.wait(timeout=600)
    finally:
        if demo.poll() is None:
            demo.kill()
        if sub is not None:
            time.sleep(0.5)
            sub.terminate()
            sub.wait(5)
    out = "".join(lines)
    assert sub is not None, out
    assert re.search(r"-t 'custody/v1/\+/alert/#' -v", out)
    assert "ALERT raised" in out and "never-alone" in out, out  # plain mode, no TTY
    assert "progress 100 %" in out, out
    # The desk served the floor to the printed duty-supervisor account.
    assert desk and desk[0][0] == 200 and 'data-room="' in desk[0][1], (desk, out)
    assert "scenario tiny: expected 1" in out and "-> PASS" in out, out
    m = re.search(r"compliance report: (\S+)", out)
    assert m and Path(m.group(1)).is_file(), out
    assert demo.returncode == 0, out
    # The hand-started subscriber saw the alert on its topic.
    assert any("/alert/critical/never-alone " in r and '"det-1"' in r for r in received), \
        received


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid` (by parent links in /proc): pid -> command line."""
    parent: dict[int, int] = {}
    cmd: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: dict[int, str] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        for child, pp in parent.items():
            if pp == p and child not in out:
                out[child] = cmd.get(child, "")
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signals", [1, 2])
def test_a_sigterm_stops_every_process_a_run_started(tmp_path, signals):
    """`custody sim run` (and `custody demo`, sim/stopping.py) ended by SIGTERM stops its
    broker, supervisor and agents: before, they were left running as orphans, still
    publishing and holding their ports (found when a benchmark stopped the demo). A second
    SIGTERM during the clean-up (GNU timeout signals the process, then its group) must not
    cut it short."""
    proc = subprocess.Popen([sys.executable, "-m", "custody", "sim", "run", "boundary-device",
                             "--workdir", str(tmp_path / "run")], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            started.update(descendants(proc.pid))
            kinds = " ".join(started.values())
            if all(k in kinds for k in ("mosquitto", "custody supervisor", "custody agent")):
                break
            time.sleep(0.2)
        kinds = " ".join(started.values())
        assert all(k in kinds for k in ("mosquitto", "custody supervisor", "custody agent")), \
            kinds
        time.sleep(1.0)  # well inside the run (it lasts minutes)
        assert proc.poll() is None
        proc.terminate()
        if signals == 2:
            time.sleep(0.3)  # the clean-up has begun: the supervisor is stopping
            proc.terminate()
        proc.wait(90)
        left = {p: c for p, c in started.items() if alive(p)}
        assert not left, f"left running after SIGTERM: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in started:  # orphans too, when the test fails
            if alive(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, 9)
