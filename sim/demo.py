"""`custody demo`: a busy custody day on embedded defaults, live in the terminal.

Mosquitto from the harness (amqtt where Mosquitto is absent), the supervisor on SQLite, one
agent per room of sites/demo-centre.toml, virtual readers, doors and cameras, a seeded day
with injected violations. Shows rooms and alerts live with a progress bar (or plain lines
when there is no terminal), prints the mosquitto_sub line for staff, and ends with the
scorecard and the compliance report's path. Ctrl-C stops everything cleanly.
"""

import argparse
import contextlib
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from custody.broker import BrokerConfig, start_broker

from .cli import print_score
from .priority import raise_priority, restore_priority
from .runner import Run, RunOptions
from .scenario import SCENARIO_DIR, describe, load_scenario
from .score import Score
from .stopping import stop_on_sigterm
from .timetable import DUTY_SUPERVISOR

DEMO_SCENARIO = SCENARIO_DIR / "demo-day.toml"


class View:
    """What the live view shows: recent alerts and counts (fed from the run's callbacks)."""

    def __init__(self) -> None:
        self.alerts: deque[dict[str, Any]] = deque(maxlen=12)
        self.counts = {"raised": 0, "resolved": 0, "other": 0}
        self.notes: deque[str] = deque(maxlen=4)
        self.lock = threading.Lock()
        self.plain = False

    def on_event(self, kind: str, data: Any) -> None:
        """Run callback: remember alerts; in plain mode print them as they come."""
        if kind == "alert":
            with self.lock:
                self.alerts.appendleft(data)
                st = data.get("state")
                self.counts["raised" if st == "raised" else "resolved" if st == "resolved"
                            else "other"] += 1
            if self.plain:
                print(f"ALERT {data.get('state', '?'):<12} {data.get('severity', ''):<8} "
                      f"{data.get('rule', ''):<22} {data.get('detainee') or '-':<8} "
                      f"{data.get('room') or '-':<12} {data.get('message', '')}", flush=True)
        elif kind in ("fault", "command_error"):
            with self.lock:
                self.notes.appendleft(f"{kind}: {data}")
            if self.plain:
                print(f"{kind.upper()} {data}", flush=True)


class DeskStaff:
    """Simulated staff at the desk, acting as their own accounts through the staff path.

    Most alerts are acknowledged within a minute of custody time by an officer (round robin
    over the centre's officers), and the first non-critical alert still open after a few
    seconds is marked a false alarm with a reason, so the report's lifecycle figures are made
    by named accounts. Exits are approved by the duty supervisor in the day's timetable.
    """

    ACK_SHARE = 0.9  # the rest stay unacknowledged until they resolve (or escalate)
    OPEN = ("raised", "updated", "escalated")
    FALSE_AFTER_MS = 5_000  # custody time an alert is looked at before it is called false

    def __init__(self, run: Run, seed: int | None) -> None:
        self.run = run
        self.rng = random.Random(seed)
        self.officers = sorted(run.sc.centre.officers)
        self.alerts: dict[str, dict[str, Any]] = {}  # id -> state, severity, seen, ack_at
        self.acted: set[str] = set()
        self.false_marked = False
        self.false_txn: str | None = None  # until its answer: refused -> try another alert
        self.n = 0
        self.lock = threading.Lock()

    def on_alert(self, data: dict[str, Any]) -> None:
        """An alert message (MQTT thread): note its state; plan an acknowledgement."""
        aid = str(data.get("id"))
        now = self.run.clock.now_ms()
        with self.lock:
            a = self.alerts.get(aid)
            if a is None:
                a = self.alerts[aid] = {
                    "seen": now, "ack_at": (now + int(self.rng.uniform(10, 50) * 1000)
                                            if self.rng.random() < self.ACK_SHARE else None)}
            a["state"], a["severity"] = str(data.get("state")), data.get("severity")

    def tick(self) -> None:
        """Act on what is due (main thread); alerts that closed meanwhile are left alone."""
        if not self.officers:
            return
        now = self.run.clock.now_ms()
        todo: list[tuple[str, str, dict[str, Any]]] = []
        if self.false_txn is not None:
            with self.run._lock:
                answer = self.run.responses.get(self.false_txn)
            if answer is not None:
                self.false_txn = None
                self.false_marked = bool(answer.get("ok"))  # e.g. it had just resolved
        with self.lock:
            for aid, a in self.alerts.items():
                if aid in self.acted or a["state"] not in self.OPEN:
                    continue
                who = self.officers[self.n % len(self.officers)]
                if (not self.false_marked and a["severity"] != "critical"
                        and now - a["seen"] >= self.FALSE_AFTER_MS):
                    self.false_marked = True
                    todo.append(("false-alarm", who, {
                        "alert": aid, "note": "checked on camera and in person: nothing wrong"}))
                elif a["ack_at"] is not None and now >= a["ack_at"]:
                    todo.append(("ack-alert", who, {"alert": aid,
                                                    "action": "attended the room"}))
                else:
                    continue
                self.acted.add(aid)
                self.n += 1
        for command, user, args in todo:
            txn = self.run.command(command, user, args)
            if command == "false-alarm":
                self.false_txn = txn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _render(run: Run, view: View, t: float, total: float) -> Any:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    site = run.sc.centre.site
    occ = run.floor.occupied()
    rooms = Table(title=f"{site.name}  —  custody time {t / 3600:4.1f} h of {total / 3600:.1f} h"
                  f"  (x{run.sc.speed:g})", expand=True)
    rooms.add_column("room")
    rooms.add_column("kind")
    rooms.add_column("detainees")
    rooms.add_column("officers")
    for r in site.rooms:
        people = occ.get(r.id, [])
        dets = [p for p in people if p in run.sc.centre.detainees]
        offs = [p for p in people if p in run.sc.centre.officers]
        rooms.add_row(r.id, r.kind, " ".join(dets) or "·", " ".join(offs) or "·",
                      style="bold" if dets else "dim")
    alerts = Table(title=f"alerts (raised {view.counts['raised']}, resolved "
                   f"{view.counts['resolved']})", expand=True)
    for col in ("state", "severity", "rule", "detainee", "room", "message"):
        alerts.add_column(col)
    with view.lock:
        for a in view.alerts:
            sev = a.get("severity", "")
            style = "red" if sev == "critical" else "yellow" if sev == "warning" else ""
            alerts.add_row(str(a.get("state", "")), sev, str(a.get("rule", "")),
                           str(a.get("detainee") or "-"), str(a.get("room") or "-"),
                           str(a.get("message", ""))[:60], style=style)
        notes = list(view.notes)
    bar = ProgressBar(total=total, completed=t)
    return Group(rooms, alerts, bar, *notes)


REPORT_TIMEOUT_S = 600  # 2-20 s on an idle machine; minutes at load 50


def report(run: Run, out: Path) -> Path | None:
    """Ask the supervisor's `custody report` for the compliance report; None if it failed."""
    # The period is the simulated day (custody time, Unix ms), from an hour before it began.
    cmd = [sys.executable, "-m", "custody", "report", "--site", str(run.site_file),
           "--out", str(out), "--from", str(run.start_ms - 3_600_000),
           "--to", str(run.clock.now_ms())]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=run.supervisor.env
                           if run.supervisor else None, timeout=REPORT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        print(f"demo: compliance report not done after {REPORT_TIMEOUT_S} s (a busy "
              f"machine?); make it by hand: {' '.join(cmd[2:])}")
        return None
    if r.returncode != 0:
        print(f"demo: compliance report failed: {(r.stderr or r.stdout).strip()[-400:]}")
        return None
    html = out / "report.html"
    return html if html.exists() else out


def demo(args: argparse.Namespace) -> int:
    """Run the demo day."""
    sc = load_scenario(args.scenario, seed=args.seed, speed=args.speed)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(
        prefix="custody-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    view = View()
    live_ok = sys.stdout.isatty() and not args.plain
    view.plain = not live_ok
    stop_on_sigterm()  # before any process starts: a SIGTERM stops them all (sim/stopping.py)
    nice = raise_priority()  # the broker too (sim/priority.py)
    broker = start_broker(BrokerConfig(port=args.port))
    desk_port = args.desk_port or _free_port()
    desk_password = secrets.token_urlsafe(12)
    staff: list[DeskStaff] = []

    def on_event(kind: str, data: Any) -> None:
        view.on_event(kind, data)
        if kind == "alert" and staff and isinstance(data, dict):
            staff[0].on_alert(data)

    run = Run(sc, RunOptions(workdir=workdir, keep=True, on_event=on_event, broker=broker,
                             desk_port=desk_port, desk_password=desk_password))
    staff.append(DeskStaff(run, args.seed))
    score: Score | None = None
    print(f"custody demo: {describe(sc)}")
    print(f"broker: {broker.kind} on {broker.host}:{broker.port}; files and logs in {workdir}")
    print("staff can watch the alerts live with:\n  mosquitto_sub -h 127.0.0.1 -p "
          f"{broker.port} -t '{sc.centre.site.topic_prefix}/+/alert/#' -v", flush=True)
    print(f"desk: http://127.0.0.1:{desk_port} user {DUTY_SUPERVISOR} password "
          f"{desk_password}", flush=True)
    total = sc.duration_s
    try:
        run.start()
        if live_ok:
            from rich.live import Live

            with Live(_render(run, view, 0, total), refresh_per_second=4) as live:
                def live_step(t: float) -> None:
                    staff[0].tick()
                    live.update(_render(run, view, t, total))

                run.run_steps(live_step)
        else:
            marks = [i / 10 for i in range(1, 11)]

            def progress(t: float) -> None:
                staff[0].tick()
                while marks and t >= total * marks[0]:
                    print(f"progress {marks.pop(0) * 100:3.0f} %  custody time "
                          f"{t / 3600:.2f} h", flush=True)

            run.run_steps(progress)
        time.sleep(1.0)
        score = run.score()
        print_score(score)
        path = report(run, workdir / "compliance-report")
        if path is not None:
            print(f"compliance report: {path}")
    except KeyboardInterrupt:
        print("\ncustody demo: interrupted, stopping everything...", flush=True)
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            run.stop()
            broker.close()
        restore_priority(nice)
    print(f"custody demo: stopped; files and logs in {workdir}")
    return 0 if score is not None and score.passed else 1


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody demo`."""
    p = sub.add_parser("demo", help="run a busy simulated custody day with a live view")
    p.add_argument("--scenario", default=str(DEMO_SCENARIO), help="scenario file to run")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--speed", type=float, default=None,
                   help="clock speed (default: the scenario's)")
    p.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    p.add_argument("--workdir", default=None, help="where files, logs and the report go")
    p.add_argument("--plain", action="store_true", help="plain lines instead of a live view")
    p.add_argument("--desk-port", type=int, default=0,
                   help="port of the web desk on 127.0.0.1 (default: a free one)")
    p.set_defaults(func=demo)
