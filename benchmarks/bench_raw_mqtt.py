"""Baseline: raw paho -> Mosquitto -> paho throughput at QoS 1, median of runs.

Other throughput figures are reported as ratios to this one measured in the same run
(import `raw_qos1_rate`). The payload is a real sealed event of typical size, the broker
the project's Mosquitto harness (persistence on, as a site runs it).

    .venv/bin/python -m benchmarks.bench_raw_mqtt [--messages 20000] [--runs 5]
"""

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import command_line, write_section
from custody.broker import BrokerConfig, Mosquitto
from protocol.envelope import seal

TOPIC = "custody/v1/bench/node/node-a/event"


def sample_payload() -> bytes:
    """A sealed presence event: the size of what nodes send most."""
    return seal(bytes(32), "node-a", 1, 123456, 1_700_000_000_000, "presence.enter",
                {"band": "00000000d1", "room": "holding-1", "reader": "uhf-1", "rssi": -52})


def _client(name: str, host: str, port: int) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, clean_session=True)
    c.max_inflight_messages_set(100)
    c.connect(host, port, keepalive=30)
    return c


def raw_qos1_rate(host: str, port: int, messages: int, payload: bytes | None = None,
                  timeout: float = 120.0) -> float:
    """Messages per second from one paho publisher to one paho subscriber, both QoS 1."""
    payload = payload or sample_payload()
    got = 0
    done, subscribed = threading.Event(), threading.Event()

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal got
        got += 1
        if got >= messages:
            done.set()

    sub = _client(f"bench-sub-{time.monotonic_ns()}", host, port)
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe(TOPIC, qos=1)
    sub.loop_start()
    pub = _client(f"bench-pub-{time.monotonic_ns()}", host, port)
    pub.loop_start()
    try:
        if not subscribed.wait(10):
            raise RuntimeError("subscription not acknowledged")
        start = time.perf_counter()
        for _ in range(messages):
            pub.publish(TOPIC, payload, qos=1)
        if not done.wait(timeout):
            raise RuntimeError(f"only {got} of {messages} messages arrived")
        return messages / (time.perf_counter() - start)
    finally:
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()


def main() -> int:
    """Measure and write the RESULTS.md section."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    payload = sample_payload()
    rates = []
    with Mosquitto(BrokerConfig()) as broker:
        raw_qos1_rate(broker.host, broker.port, 1000, payload)  # warm-up
        for i in range(args.runs):
            rates.append(raw_qos1_rate(broker.host, broker.port, args.messages, payload))
            print(f"run {i + 1}: {rates[-1]:,.0f} msg/s", flush=True)
    med = statistics.median(rates)
    write_section("Raw MQTT baseline (paho -> Mosquitto -> paho, QoS 1)", command_line(), (
        f"{args.messages:,} messages of {len(payload)} bytes (a sealed presence event) per run, "
        f"one publisher, one subscriber, both QoS 1, Mosquitto with persistence on.\n\n"
        f"| runs | median msg/s | min | max |\n|---:|---:|---:|---:|\n"
        f"| {args.runs} | **{med:,.0f}** | {min(rates):,.0f} | {max(rates):,.0f} |\n\n"
        "This is the denominator of the other throughput ratios, which re-measure it in "
        "their own run with `benchmarks.bench_raw_mqtt.raw_qos1_rate`."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
