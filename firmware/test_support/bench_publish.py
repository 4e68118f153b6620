# QoS 1 publish rate of the firmware's MQTT path in MicroPython, with and without TCP_NODELAY.
# Usage: micropython bench_publish.py PORT COUNT NODELAY(0|1)   -> prints "<msgs> <ms>"
import sys
import time

from umqtt.simple import MQTTClient

import envelope

port, count, nodelay = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
c = MQTTClient("bench-%d" % nodelay, "127.0.0.1", port, keepalive=30)
c.set_callback(lambda t, m: None)
c.connect()
if nodelay:
    c.sock.setsockopt(6, 1, 1)
key = b"k" * 32
t0 = time.ticks_ms()
for seq in range(1, count + 1):
    p = envelope.seal(key, "bench", 1, seq, 0, "door", {"door": "d-1", "state": "open"})
    c.publish(b"custody/v1/bench/node/bench/event", p, False, 1)
dt = time.ticks_diff(time.ticks_ms(), t0)
c.disconnect()
print(count, dt)
