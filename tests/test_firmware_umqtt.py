"""The firmware tests' umqtt.simple stand-in puts the same bytes on the wire as
micropython-lib's own umqtt.simple (fetched from the registry by setup.sh into
.cache/umqtt-upstream), driven through the same API calls against a scripted socket.

The registry carries umqtt.simple 1.3.4; the device pins 1.4.0, whose only API change is
TLS (`ssl=` an SSLContext instead of `ssl=True, ssl_params=`): MQTT bytes are the same, and
TLS is what the stand-in follows 1.4.0 in (firmware/README.md).
"""

import importlib.util
import socket as pysocket
import struct
import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT / ".cache" / "umqtt-upstream" / "umqtt" / "simple.py"
STAND_IN = ROOT / "firmware" / "test_support" / "umqtt" / "simple.py"


class ScriptedSocket:
    """Records what is written; answers reads from a script of broker bytes."""

    def __init__(self, replies: bytes) -> None:
        self.out = bytearray()
        self.inp = bytearray(replies)

    def connect(self, addr: Any) -> None:
        pass

    def write(self, data: bytes, n: int | None = None) -> int:
        chunk = bytes(data if n is None else data[:n])
        self.out += chunk
        return len(chunk)

    send = sendall = write

    def read(self, n: int) -> bytes:
        got, self.inp = bytes(self.inp[:n]), self.inp[n:]
        return got

    recv = read

    def setblocking(self, flag: bool) -> None:
        pass

    def setsockopt(self, *a: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _socket_module(sock: ScriptedSocket) -> types.ModuleType:
    m = types.ModuleType("usocket")
    m.socket = lambda *a, **k: sock  # type: ignore[attr-defined]
    m.getaddrinfo = lambda host, port, *a: [(2, 1, 0, "", (host, port))]  # type: ignore[attr-defined]
    for name in ("IPPROTO_TCP", "TCP_NODELAY", "AF_INET", "SOCK_STREAM"):
        setattr(m, name, getattr(pysocket, name))
    return m


def _load(path: Path, sock: ScriptedSocket) -> types.ModuleType:
    shim = _socket_module(sock)
    saved = {k: sys.modules.get(k) for k in ("usocket", "ustruct", "ubinascii")}
    sys.modules.update(usocket=shim, ustruct=struct,
                       ubinascii=importlib.import_module("binascii"))
    try:
        spec = importlib.util.spec_from_file_location(f"umqtt_{path.parent.parent.name}", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    mod.socket = shim  # the stand-in imports `socket`, micropython-lib `usocket`
    return mod


# What a broker answers: CONNACK (session present), PUBACK for pid 1, SUBACK for pid 2, and
# an incoming QoS 0 PUBLISH for the callback.
REPLIES = (b"\x20\x02\x01\x00" + b"\x40\x02\x00\x01" + b"\x90\x03\x00\x02\x01"
           + b"\x30\x0a\x00\x03a/bhello")


def _session(path: Path) -> tuple[bytes, list[tuple[bytes, bytes]], int]:
    sock = ScriptedSocket(REPLIES)
    mod = _load(path, sock)
    got: list[tuple[bytes, bytes]] = []
    c = mod.MQTTClient(b"node-x", "broker", 1883, user=b"node-x", password=b"pw",
                       keepalive=30)
    c.set_callback(lambda t, m: got.append((bytes(t), bytes(m))))
    c.set_last_will(b"custody/v1/s/node/node-x/availability", b"offline", retain=True, qos=1)
    present = c.connect(clean_session=False)
    c.publish(b"custody/v1/s/node/node-x/health", b"{}", retain=True)  # QoS 0
    c.publish(b"custody/v1/s/node/node-x/event", b'{"env":"x"}', qos=1)  # waits for PUBACK
    c.subscribe(b"custody/v1/s/node/node-x/ack", qos=1)
    c.wait_msg()
    c.ping()
    c.disconnect()
    return bytes(sock.out), got, present


def test_stand_in_speaks_byte_for_byte_like_micropython_lib():
    assert UPSTREAM.exists(), (
        f"{UPSTREAM} is missing: ./setup.sh fetches micropython-lib's umqtt.simple from the "
        "registry (pip download --no-clean of micropython-umqtt.simple)")
    up_bytes, up_got, up_present = _session(UPSTREAM)
    ours_bytes, ours_got, ours_present = _session(STAND_IN)
    assert ours_bytes == up_bytes, (ours_bytes.hex(" "), up_bytes.hex(" "))
    assert ours_got == up_got == [(b"a/b", b"hello")]
    assert ours_present == up_present == 1
