"""Parts for the fault tests: a tap device that numbers its events, the tally of device events
against journal entries, and a network namespace to cut a node off."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent.drivers import rdm6300
from tests.agent_support import Pty


@dataclass
class TapDevice:
    """A desk reader on a pty that taps a fresh band per event: band i = i as 10 hex digits.

    Each band is read once, so each write is exactly one device event (a `tap`), and the
    band id carries the event's number through node, broker and journal.
    """

    pty: Pty
    base: int = 0x0A00000000
    generated: list[str] = field(default_factory=list)

    def tap(self) -> str:
        """Write one frame of a new band; return its band id."""
        band = f"{self.base + len(self.generated) + 1:010x}"
        self.pty.write(rdm6300.encode(band))
        self.generated.append(band)
        return band

    def burst(self, n: int, rate_hz: float = 200.0) -> list[str]:
        """Tap `n` new bands at about `rate_hz`."""
        out = []
        for _ in range(n):
            out.append(self.tap())
            time.sleep(1.0 / rate_hz)
        return out


@dataclass(frozen=True)
class Tally:
    """Device events against journal entries."""

    generated: int
    journaled: int
    missing: int
    duplicated: int
    out_of_order: int  # journaled events whose node sequence order differs from device order
    late: int  # journaled after an event the device produced later (a gap filled by resend)

    def clean(self) -> bool:
        """Nothing missing, duplicated or out of order."""
        return self.missing == self.duplicated == self.out_of_order == 0


def tally(generated: list[str], journal: list[tuple[tuple[int, int], str]]) -> Tally:
    """Compare device bands (in device order) with journal entries ((epoch, seq), band)
    in journal order, counting only the bands this device generated."""
    mine = set(generated)
    entries = [(es, b) for es, b in journal if b in mine]
    bands = [b for _, b in entries]
    seen: set[str] = set()
    dup = 0
    for b in bands:
        if b in seen:
            dup += 1
        seen.add(b)
    first: dict[str, tuple[int, int]] = {}
    for es, b in entries:
        first.setdefault(b, es)
    # Order by node sequence: the device order must be the (epoch, seq) order.
    by_seq = [b for b, _ in sorted(first.items(), key=lambda kv: kv[1])]
    expected = [b for b in generated if b in first]
    out_of_order = sum(1 for a, b in zip(by_seq, expected, strict=True) if a != b)
    index = {b: i for i, b in enumerate(generated)}
    late, top = 0, -1
    for b in dict.fromkeys(bands):
        if index[b] < top:
            late += 1
        top = max(top, index[b])
    return Tally(len(generated), len(entries), len(mine - seen), dup, out_of_order, late)


def netns_available() -> bool:
    """True when we may create network namespaces (root with iproute2)."""
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["ip", "netns", "add", f"cprobe{os.getpid()}"], capture_output=True)
    if r.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", f"cprobe{os.getpid()}"], capture_output=True)
    return True


class NetNs:
    """A network namespace joined to the host by a veth pair (host .1, namespace .2).

    The broker listens on the host address; a node runs inside with `prefix()`; `cut()`
    takes the host end down (the node's packets go nowhere, as when a cable is pulled) and
    `restore()` brings it back.
    """

    def __init__(self, index: int) -> None:
        tag = f"{os.getpid() % 10000}{index}"
        self.name = f"cust{tag}"
        self.host_if, self.ns_if = f"ch{tag}", f"cn{tag}"
        net = 10 + (os.getpid() + index) % 200
        self.host_ip, self.ns_ip = f"10.213.{net}.1", f"10.213.{net}.2"

    def _ip(self, *args: str, ns: bool = False) -> None:
        cmd = ["ip", "netns", "exec", self.name, "ip", *args] if ns else ["ip", *args]
        subprocess.run(cmd, check=True, capture_output=True)

    def create(self) -> "NetNs":
        """Make the namespace and the link."""
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._ip("link", "set", self.ns_if, "netns", self.name)
        self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        self._ip("link", "set", self.host_if, "up")
        self._ip("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=True)
        self._ip("link", "set", self.ns_if, "up", ns=True)
        self._ip("link", "set", "lo", "up", ns=True)
        return self

    def prefix(self) -> list[str]:
        """Command prefix running a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        """Pull the cable."""
        self._ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        """Plug it back in."""
        self._ip("link", "set", self.host_if, "up")

    def delete(self) -> None:
        """Remove link and namespace."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ip("link", "del", self.host_if)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def __enter__(self) -> "NetNs":
        return self.create()

    def __exit__(self, *exc: Any) -> None:
        self.delete()


# ---- processes and what they left behind ----------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
INJECTOR = Path(__file__).resolve().parent / "fault_supervisor.py"


class Proc:
    """A child process with a log file, killable with -9, stoppable with SIGSTOP."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.argv, self.log = argv, log
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Proc":
        """Start (again)."""
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=logf,
                                         stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        """The running child's pid."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """Still running."""
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send a signal if running."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill9(self) -> None:
        """kill -9 and reap."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        """Wait for exit; the exit status."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGCONT (in case it was stopped), SIGTERM, wait; kill if it will not go."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def text(self) -> str:
        """The log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    log_text = text  # the name tests.agent_support's helpers call


def supervisor_argv(site: Path, keys: Path, db: Path, host: str, port: int,
                    inject: str | None = None) -> list[str]:
    """`custody supervisor` for a site; with `inject`, through tests/fault_supervisor.py."""
    args = ["supervisor", "--config", str(site), "--keys", str(keys), "--db", str(db),
            "--checkpoint", str(db.with_suffix(".checkpoint")), "--host", host,
            "--port", str(port)]
    if inject is not None:
        return [sys.executable, str(INJECTOR), inject, *args]
    return [sys.executable, "-m", "custody", *args]


def journal_rows(db: Path, kind: str | None = None) -> list[tuple[int, str, int, int, str, bytes]]:
    """(idx, node, epoch, seq, kind, payload) in journal order, read-only."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        q = "SELECT idx, node, epoch, seq, kind, payload FROM journal"
        rows = con.execute(q + (" WHERE kind = ?" if kind else "") + " ORDER BY idx",
                           (kind,) if kind else ()).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
    return [(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in rows]


def journal_events(db: Path, node: str, etype: str) -> list[tuple[tuple[int, int], str]]:
    """((epoch, seq), band) of one node's journaled events of one type, in journal order."""
    out = []
    for _, n, epoch, seq, _, payload in journal_rows(db, "event"):
        if n != node:
            continue
        env = json.loads(json.loads(payload)["env"])
        if env["type"] == etype:
            out.append(((epoch, seq), env["body"]["band"]))
    return out


def journal_own(db: Path, kind: str) -> list[dict[str, Any]]:
    """The supervisor's own entries of a kind ("alert", "security", "availability"...)."""
    return [json.loads(p) for *_, p in journal_rows(db, kind)]


def outbox_committed(outbox: Path) -> int:
    """How many events the node has committed to its outbox so far (next_seq - 1)."""
    if not outbox.exists():
        return 0
    con = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute("SELECT v FROM meta WHERE k = 'next_seq'").fetchone()
        return int(row[0]) - 1 if row else 0
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def outbox_unacked(outbox: Path) -> int:
    """Events still waiting for the supervisor's ack."""
    con = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        con.close()


class AlertListener:
    """Records every message on the site's alert topics (what staff would receive)."""

    def __init__(self, host: str, port: int, base: str,
                 auth: tuple[str, str] | None = None, persistent: bool = False) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        # persistent: a QoS 1 session that outlives a broker restart, as a staff console's.
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"alerts-{time.monotonic_ns()}",
                                  clean_session=not persistent)
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.on_connect = lambda c, *a: c.subscribe(f"{base}/alert/#", 1)
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, 5)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append({**json.loads(msg.payload), "_topic": msg.topic,
                                  "_rx": time.monotonic()})

    def of(self, rule: str, state: str | None = None) -> list[dict[str, Any]]:
        """Messages of one rule (and lifecycle state)."""
        with self.lock:
            return [m for m in self.messages
                    if m["rule"] == rule and (state is None or m["state"] == state)]

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


def wait_until(pred: Any, timeout: float, what: str, *logs: Any) -> Any:
    """Poll until pred() is truthy; fail naming `what` with the tails of the given logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    tails = "\n".join(f"--- {getattr(p, 'log', p)} ---\n{p.text()[-2500:]}" for p in logs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


def journal_count(db: Path, kind: str) -> int:
    """How many entries of a kind the journal holds."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT COUNT(*) FROM journal WHERE kind = ?",
                               (kind,)).fetchone()[0])
    finally:
        con.close()
