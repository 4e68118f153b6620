# Unit checks of firmware modules inside MicroPython. Usage: micropython unit_checks.py TMPDIR
# Prints "ok <name>" per check; raises (non-zero exit) on the first failure.
import os
import sys

import flash_outbox
import rdm6300

tmp = sys.argv[1]


def frame(hex10):
    raw = bytes(int(hex10[i:i + 2], 16) for i in range(0, 10, 2))
    x = 0
    for b in raw:
        x ^= b
    return b"\x02" + hex10.upper().encode() + ("%02X" % x).encode() + b"\x03"


class FakeUart:
    def __init__(self, chunks):
        self.chunks = chunks

    def any(self):
        return 1 if self.chunks else 0

    def read(self):
        return self.chunks.pop(0) if self.chunks else None


# RDM6300: noise, a split frame, a corrupt frame, two bands back to back.
good, other = frame("0a1b2c3d4e"), frame("00000000aa")
bad = bytearray(frame("1122334455"))
bad[5] = ord("0") if bad[5] != ord("0") else ord("1")
r = rdm6300.Reader(FakeUart([b"\xff\x13", good[:6], good[6:] + bytes(bad) + other]), 1000)
bands = []
for _ in range(3):
    bands += r.poll()
assert bands == ["0a1b2c3d4e", "00000000aa"], bands
assert r.errors >= 2, r.errors
assert rdm6300.parse_frame(good) == "0a1b2c3d4e"
assert rdm6300.parse_frame(bytes(bad)) is None
print("ok rdm6300")

# Outbox: sequence survives "reset" (reopen), even after the newest event was acked.
d = tmp + "/ob"
ob = flash_outbox.Outbox(d, b"k" * 32, "n-1", 7)
assert ob.epoch == 7 or ob.epoch > 1700000000, ob.epoch
a = ob.append("door", {"door": "d", "state": "open"})
b = ob.append("door", {"door": "d", "state": "closed"})
assert b[1] == a[1] + 1
assert ob.ack(b[0], [b[1]]) == 1
ob2 = flash_outbox.Outbox(d, b"k" * 32, "n-1", 7)
assert ob2.pending == [a], ob2.pending
c = ob2.append("door", {"door": "d", "state": "open"})
assert c == (a[0], b[1] + 1), c
assert ob2.ack(a[0], [a[1], c[1], 999]) == 2
assert sorted(os.listdir(d)) == ["state.json"], os.listdir(d)
ob3 = flash_outbox.Outbox(d, b"k" * 32, "n-1", 7)
assert ob3.append("door", {"door": "d", "state": "open"}) == (a[0], c[1] + 1)
print("ok outbox-sequence")

# A half-written event (reset during the write) is discarded, never published.
with open(d + "/%d-%d.ev.tmp" % (a[0], 99), "wb") as f:
    f.write(b"{half")
ob4 = flash_outbox.Outbox(d, b"k" * 32, "n-1", 7)
assert not any(n.endswith(".tmp") for n in os.listdir(d))
assert (a[0], 99) not in ob4.pending
print("ok outbox-torn-write")

# Full outbox: doors are dropped and counted, a panic press is still kept.
small = flash_outbox.Outbox(tmp + "/small", b"k" * 32, "n-1", 1, max_events=2)
small.append("door", {"door": "d", "state": "open"})
small.append("door", {"door": "d", "state": "closed"})
assert small.append("door", {"door": "d", "state": "open"}) is None and small.dropped == 1
assert small.append("button", {"button": "p", "kind": "panic"}, must_keep=True) is not None
print("ok outbox-full")
