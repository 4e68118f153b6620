"""The node's MQTT link: availability with a last will, acks and roster in, events and health out.

paho runs its own network thread (loop_start); every callback only puts an item on the agent's
queue, and is guarded so that no exception can reach paho's thread. Reconnects use
exponential back-off with +/-50 % jitter (so a site's nodes don't all hammer a restarted broker
in the same instant).
"""

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from protocol.topics import Topics
from protocol.transport import CallbackErrors, LinkConf, make_client

log = logging.getLogger(__name__)

BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 15.0
# Items put on the agent's queue: ("connected",), ("disconnected",), ("message", topic, bytes)
# (acks, roster and the supervisor's availability).
ItemSink = Callable[[tuple[Any, ...]], None]


def jittered(attempt: int, lo: float = BACKOFF_MIN_S, hi: float = BACKOFF_MAX_S) -> float:
    """Back-off for the n-th consecutive failed attempt (0-based), with +/-50 % jitter."""
    return min(hi, lo * 2 ** min(attempt, 16)) * random.uniform(0.5, 1.5)


class Link:
    """One node's connection to the site broker."""

    def __init__(self, node: str, topics: Topics, conf: LinkConf, sink: ItemSink) -> None:
        self.node, self.topics, self.conf, self.sink = node, topics, conf, sink
        self.errors = CallbackErrors()
        self.availability = topics.node(node, "availability")
        self.client = make_client(node, conf, clean_start=True,
                                  will=(self.availability, b"offline", True))
        self.connected = threading.Event()
        self.connects = 0
        self._attempt = 0
        self._set_delay()
        g = self.errors.guard
        self.client.on_connect = g(self._on_connect)
        self.client.on_disconnect = g(self._on_disconnect)
        self.client.on_connect_fail = g(self._on_connect_fail)
        self.client.on_message = g(self._on_message)

    def _set_delay(self) -> None:
        d = jittered(self._attempt)
        # paho waits min_delay before its next attempt after a reset; it accepts floats.
        self.client.reconnect_delay_set(min_delay=d, max_delay=d)  # type: ignore[arg-type]
        self._attempt += 1

    def start(self) -> None:
        """Connect in the background (retrying until it works)."""
        self.client.connect_async(self.conf.host, self.conf.port, self.conf.keepalive_s)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            self._set_delay()
            return
        self._attempt = 0
        self._set_delay()
        self.connects += 1
        client.publish(self.availability, b"online", qos=1, retain=True)
        client.subscribe([(self.topics.node(self.node, "ack"), 1),
                          (self.topics.node(self.node, "roster"), 1),
                          # The supervisor asking for an evidence clip (protocol/evidence.py).
                          (self.topics.node(self.node, "evidence-request"), 1),
                          (self.topics.supervisor("availability"), 1)])
        self.connected.set()
        log.info("connected to %s:%d", self.conf.host, self.conf.port)
        self.sink(("connected",))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        self._set_delay()
        if was:
            log.warning("disconnected from the broker: %s", reason)
            self.sink(("disconnected",))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._set_delay()
        log.debug("connection attempt failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.sink(("message", msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes, retain: bool = False
                ) -> mqtt.MQTTMessageInfo | None:
        """Queue one QoS 1 message; None when not connected (the outbox keeps events)."""
        if not self.connected.is_set():
            return None
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return info if info.rc == mqtt.MQTT_ERR_SUCCESS else None

    def stop(self, timeout: float = 2.0) -> None:
        """Say `offline` (a clean disconnect fires no last will), then disconnect."""
        try:
            if self.connected.is_set():
                info = self.client.publish(self.availability, b"offline", qos=1, retain=True)
                info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as e:
            log.debug("offline not delivered: %s", e)
        self.client.disconnect()
        self.client.loop_stop()
