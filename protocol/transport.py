"""paho-mqtt 2.x clients set up the one way every program needs them.

VERSION2 callbacks; every callback wrapped so an exception is logged and counted instead of
raised into paho's network thread (where it would silently stop the client).
"""

import argparse
import contextlib
import functools
import logging
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import paho.mqtt.client as mqtt

from .config import ConfigError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class LinkConf:
    """How to reach the broker."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr or a log line
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 5


def add_login_args(p: argparse.ArgumentParser) -> None:
    """Add --username and --password-file (never a password on the command line: `ps` and
    the shell history would show it)."""
    p.add_argument("--username")
    p.add_argument("--password-file", help="file holding the broker password (as provisioned)")


def login_password(args: argparse.Namespace) -> str | None:
    """The password read from --password-file (ConfigError if unreadable), else None."""
    if getattr(args, "password_file", None):
        try:
            with open(args.password_file, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            raise ConfigError(args.password_file, "--password-file",
                              f"a readable file ({e.strerror})") from None
    password: str | None = getattr(args, "password", None)
    return password


class CallbackErrors:
    """Counts exceptions caught in callbacks, by callback name (thread-safe)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def guard(self, fn: F) -> F:
        """Wrap a callback so it never raises into paho."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception:
                with self._lock:
                    self.counts[fn.__name__] += 1
                log.exception("callback %s failed (kept running)", fn.__name__)
                return None

        return wrapper  # type: ignore[return-value]


def make_client(client_id: str, conf: LinkConf, *, clean_start: bool = True,
                will: tuple[str, bytes, bool] | None = None) -> mqtt.Client:
    """A MQTT 3.1.1 client with credentials, TLS and last will applied (not yet connected).

    `clean_start=False` keeps a persistent session so QoS 1 messages wait for us while away.
    """
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean_start, protocol=mqtt.MQTTv311)
    if conf.username is not None:
        client.username_pw_set(conf.username, conf.password)
    if conf.ca_file:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=conf.ca_file)
        if conf.cert_file:
            ctx.load_cert_chain(conf.cert_file, conf.key_file)
        client.tls_set_context(ctx)
    if will is not None:
        topic, payload, retain = will
        client.will_set(topic, payload, qos=1, retain=retain)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    # Many QoS 1 messages in flight; paho's own queue is memory only, our outboxes hold truth.
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.on_socket_open = _nodelay
    return client


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    # paho leaves Nagle on; small QoS 1 messages then crawl behind delayed ACKs.
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
