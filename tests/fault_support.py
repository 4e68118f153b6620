"""Parts for the fault tests: a tap device that numbers its events, the tally of device events
against journal entries, and a network namespace to cut a node off."""

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

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
