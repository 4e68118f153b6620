"""Fault injection: child processes that can be killed and restarted, and a TCP relay per node
between its agent and the broker that can cut the node off for a while."""

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path


class Child:
    """A program the simulator runs (supervisor, agent, board), restartable, logging to a file
    (`cwd`: its working directory, e.g. a board's flash)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path,
                 cwd: Path | None = None) -> None:
        self.name, self.argv, self.env, self.log, self.cwd = name, argv, env, log, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start (again); output appended to the log file."""
        if self.running:
            return
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=f,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=self.cwd)
        self.starts += 1

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 15) -> str:
        """Last lines of the log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Relay:
    """TCP relays from a local port per node to the broker; `cut(node, s)` drops the node's
    connections and refuses new ones for `s` seconds (a pulled network cable);
    `lag(node, delay, s)` holds every byte to and from the node for `delay` real seconds, for
    `s` seconds (a congested link or a stalled switch: late, in order, nothing lost). How long
    a cut or a lag lasts is measured on `now` (the run's custody clock, which may stand still
    while the simulator is held up; real monotonic time by default)."""

    def __init__(self, broker_host: str, broker_port: int,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.target = (broker_host, broker_port)
        self.now = now
        self.sel = selectors.DefaultSelector()
        self.ports: dict[str, int] = {}
        self.cut_until: dict[str, float] = {}
        self.lag_until: dict[str, tuple[float, float]] = {}  # node -> (delay s, until)
        # destination socket -> bytes waiting to be written (due time, data), in order
        self.delayed: dict[socket.socket, deque[tuple[float, bytes]]] = {}
        self.pairs: dict[socket.socket, tuple[socket.socket, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sim-relay", daemon=True)
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, ("wake", ""))

    def add(self, node: str) -> int:
        """Open a listener for one node; returns the port its agent connects to."""
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(8)
        ls.setblocking(False)
        self.sel.register(ls, selectors.EVENT_READ, ("listen", node))
        self.ports[node] = ls.getsockname()[1]
        return self.ports[node]

    def start(self) -> "Relay":
        """Run the relay thread."""
        self._thread.start()
        return self

    def cut(self, node: str, seconds: float) -> None:
        """Cut a node off the network for `seconds` (on `now`)."""
        with self._lock:
            self.cut_until[node] = self.now() + seconds
        self._wake_w.send(b"x")

    def lag(self, node: str, delay_s: float, seconds: float) -> None:
        """Delay the node's traffic both ways by `delay_s` real seconds for `seconds` (on
        `now`)."""
        with self._lock:
            self.lag_until[node] = (delay_s, self.now() + seconds)
        self._wake_w.send(b"x")

    def delay_of(self, node: str) -> float:
        """The node's current delay (real seconds; 0 when not lagged)."""
        with self._lock:
            delay, until = self.lag_until.get(node, (0.0, 0.0))
        return delay if self.now() < until else 0.0

    def is_cut(self, node: str) -> bool:
        """True while the node is cut off."""
        with self._lock:
            return self.now() < self.cut_until.get(node, 0.0)

    def _close(self, s: socket.socket) -> None:
        peer = self.pairs.pop(s, None)
        self.delayed.pop(s, None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(s)
        s.close()
        if peer is not None:
            other = peer[0]
            self.delayed.pop(other, None)
            self.pairs.pop(other, None)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(other)
            other.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            due = [q[0][0] for q in self.delayed.values() if q]
            wait = 0.2 if not due else max(0.0, min(0.2, min(due) - time.monotonic()))
            for key, _ in self.sel.select(timeout=wait):
                kind, node = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if kind == "wake":
                    with contextlib.suppress(OSError):
                        sock.recv(4096)
                elif kind == "listen":
                    self._accept(sock, node)
                else:
                    self._pump(sock)
            self._flush_delayed()
            # Drop the connections of nodes that are cut off.
            for s, (_, node) in list(self.pairs.items()):
                if s in self.pairs and self.is_cut(node):
                    self._close(s)

    def _accept(self, ls: socket.socket, node: str) -> None:
        try:
            client, _ = ls.accept()
        except OSError:
            return
        if self.is_cut(node):
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()  # broker down: the node sees a refused connection, as it would
            return
        for s in (client, upstream):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pairs[client] = (upstream, node)
        self.pairs[upstream] = (client, node)
        self.sel.register(client, selectors.EVENT_READ, ("pipe", node))
        self.sel.register(upstream, selectors.EVENT_READ, ("pipe", node))

    def _pump(self, s: socket.socket) -> None:
        if s not in self.pairs:
            return
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(s)
            return
        other, node = self.pairs[s]
        delay = self.delay_of(node)
        if delay > 0 or self.delayed.get(other):  # behind what is already held: keep order
            self.delayed.setdefault(other, deque()).append((time.monotonic() + delay, data))
            return
        self._send(s, other, data)

    def _send(self, s: socket.socket, other: socket.socket, data: bytes) -> None:
        try:
            other.setblocking(True)
            other.sendall(data)
            other.setblocking(False)
        except OSError:
            self._close(s)

    def _flush_delayed(self) -> None:
        now = time.monotonic()
        for dest, q in list(self.delayed.items()):
            while q and q[0][0] <= now and dest in self.pairs:
                _, data = q.popleft()
                self._send(dest, dest, data)
            if not q:
                self.delayed.pop(dest, None)

    def stop(self) -> None:
        """Close everything."""
        self._stop.set()
        self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join(2)
        for s in list(self.pairs):
            if s in self.pairs:
                self._close(s)
        for key in list(self.sel.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()
        self._wake_w.close()


def env_with(clock_env: dict[str, str]) -> dict[str, str]:
    """The environment for a child: ours plus the shared simulated clock."""
    env = dict(os.environ)
    env.update(clock_env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Children import this checkout, whatever their working directory.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
