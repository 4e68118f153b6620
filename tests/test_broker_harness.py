"""The harness starts a real Mosquitto; messages go through it; auth and ACL apply."""

import threading

import paho.mqtt.client as mqtt
import pytest

from custody.broker import BrokerConfig, Mosquitto
from protocol.transport import LinkConf, make_client


def _roundtrip(port: int, topic: str, user: str | None = None, pw: str | None = None,
               pub_user: str | None = None, pub_pw: str | None = None) -> list[bytes]:
    got: list[bytes] = []
    subscribed = threading.Event()
    received = threading.Event()
    sub = make_client("sub", LinkConf(port=port, username=user, password=pw))
    sub.on_subscribe = lambda c, u, mid, rc, props: subscribed.set()

    def on_message(c, u, msg):
        got.append(msg.payload)
        received.set()

    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    sub.connect("127.0.0.1", port, 5)
    sub.loop_start()
    assert subscribed.wait(5)
    pub = make_client("pub", LinkConf(port=port, username=pub_user, password=pub_pw))
    pub.connect("127.0.0.1", port, 5)
    pub.loop_start()
    pub.publish(topic, b"hello", qos=1).wait_for_publish(5)
    received.wait(2)
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return got


def test_publish_and_receive_through_harness_mosquitto(broker):
    assert _roundtrip(broker.port, "custody/v1/t/node/a/event") == [b"hello"]


def test_password_and_acl(tmp_path):
    acl = ("user reader\ntopic read custody/#\n\n"
           "user node-a\ntopic write custody/v1/t/node/node-a/#\n")
    cfg = BrokerConfig(users={"reader": "r-pass", "node-a": "a-pass"}, acl=acl)
    with Mosquitto(cfg) as b:
        ok = _roundtrip(b.port, "custody/v1/t/node/node-a/event", "reader", "r-pass",
                        "node-a", "a-pass")
        assert ok == [b"hello"]
        # node-a may not publish under node-b: the broker drops it silently.
        denied = _roundtrip(b.port, "custody/v1/t/node/node-b/event", "reader", "r-pass",
                            "node-a", "a-pass")
        assert denied == []
        c = make_client("anon", LinkConf(port=b.port))
        result: list[object] = []
        done = threading.Event()

        def on_connect(cl, u, flags, rc, props):
            result.append(rc)
            done.set()

        c.on_connect = on_connect
        c.connect("127.0.0.1", b.port, 5)
        c.loop_start()
        assert done.wait(5)
        c.loop_stop()
        assert result[0].is_failure


def test_broken_config_reports_log(tmp_path):
    cfg = BrokerConfig(extra=["no_such_option 1"])
    b = Mosquitto(cfg)
    with pytest.raises(Exception, match="broker"):
        b.start(timeout=5)
    b.stop()


def test_restart_keeps_port_and_persistent_session(tmp_path):
    with Mosquitto(BrokerConfig()) as b:
        port = b.port
        got: list[bytes] = []
        sub = make_client("durable", LinkConf(port=port), clean_start=False)
        sub.on_message = lambda c, u, m: got.append(m.payload)
        sub.connect("127.0.0.1", port, 5)
        sub.subscribe("x/y", qos=1)
        sub.loop_start()
        sub.publish("noop", b"", qos=1).wait_for_publish(5)
        sub.loop_stop()
        sub.disconnect()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="p")
        pub.connect("127.0.0.1", port, 5)
        pub.loop_start()
        pub.publish("x/y", b"queued", qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        b.restart()
        assert b.port == port
        done = threading.Event()

        def on_message(c, u, m):
            got.append(m.payload)
            done.set()

        sub.on_message = on_message
        sub.reconnect()
        sub.loop_start()
        assert done.wait(5)
        sub.loop_stop()
        assert got == [b"queued"]
