"""A NATS JetStream harness for tests, the region demo and benchmarks: one node or a cluster.

Writes one config per node (loopback client and route ports, JetStream store in a temp dir),
starts Debian's `nats-server -c` as children, waits until JetStream answers, and stops them.
A node can be killed with SIGKILL and started again on the same ports and store.
"""

import asyncio
import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .broker import BrokerError, free_port, wait_port


def nats_binary() -> str:
    """Path of nats-server, or BrokerError naming the package to install."""
    exe = shutil.which("nats-server") or ("/usr/sbin/nats-server"
                                          if Path("/usr/sbin/nats-server").exists() else None)
    if exe is None:
        raise BrokerError("nats-server not found: install the Debian package 'nats-server'")
    return exe


@dataclass
class NatsNode:
    """One server of the cluster."""

    name: str
    port: int
    route_port: int
    store: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class NatsCluster:
    """`size` JetStream servers on loopback; `urls` is what clients connect to."""

    size: int = 1
    workdir: Path | None = None
    nodes: list[NatsNode] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def urls(self) -> list[str]:
        """Client URLs of every node."""
        return [f"nats://127.0.0.1:{n.port}" for n in self.nodes]

    def start(self, timeout: float = 30.0) -> "NatsCluster":
        """Write the configs, start every node and wait until JetStream is ready."""
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="custody-nats-")
            self.workdir = Path(self._tmp.name)
        for i in range(self.size):
            name = f"n{i + 1}"
            self.nodes.append(NatsNode(name, free_port(), free_port(), self.workdir / name,
                                       self.workdir / f"{name}.conf"))
        for n in self.nodes:
            lines = [f'server_name: "{n.name}"', f"listen: 127.0.0.1:{n.port}",
                     # Small limits: the harness shares the machine with other work.
                     f'jetstream {{ store_dir: "{n.store}", max_memory_store: 256MB, '
                     'max_file_store: 2GB }']
            if self.size > 1:
                routes = ", ".join(f"nats-route://127.0.0.1:{o.route_port}"
                                   for o in self.nodes if o is not n)
                lines.append(f'cluster {{ name: "custody", listen: 127.0.0.1:{n.route_port}, '
                             f"routes: [{routes}] }}")
            n.conf.write_text("\n".join(lines) + "\n")
        for n in self.nodes:
            self._spawn(n)
        for n in self.nodes:
            assert n.proc is not None
            wait_port("127.0.0.1", n.port, timeout, n.proc)
        self.wait_jetstream(timeout)
        return self

    def _spawn(self, n: NatsNode) -> None:
        assert self.workdir is not None
        with open(self.workdir / f"{n.name}.log", "ab") as log:
            n.proc = subprocess.Popen([nats_binary(), "-c", str(n.conf)], stdout=log,
                                      stderr=subprocess.STDOUT)

    def wait_jetstream(self, timeout: float = 30.0) -> None:
        """Wait until JetStream answers an account request on every running node."""
        async def ready(url: str) -> bool:
            import nats
            try:
                nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=0)
            except Exception:
                return False
            try:
                await nc.jetstream().account_info()
                return True
            except Exception:
                return False
            finally:
                with contextlib.suppress(Exception):
                    await nc.close()

        deadline = time.monotonic() + timeout
        for n in self.nodes:
            if n.proc is None:
                continue
            url = f"nats://127.0.0.1:{n.port}"
            while not asyncio.run(ready(url)):
                if time.monotonic() > deadline:
                    raise BrokerError(f"JetStream on {url} not ready within {timeout}s "
                                      f"(see {self.workdir}/{n.name}.log)")
                time.sleep(0.2)

    def kill(self, i: int) -> None:
        """SIGKILL node i (no clean shutdown)."""
        p = self.nodes[i].proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.nodes[i].proc = None

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start node i again on its ports and store."""
        n = self.nodes[i]
        self._spawn(n)
        assert n.proc is not None
        wait_port("127.0.0.1", n.port, timeout, n.proc)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and remove the temp dir."""
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.terminate()
        for n in self.nodes:
            if n.proc is not None:
                try:
                    n.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait()
            n.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "NatsCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
