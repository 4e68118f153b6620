# Wall-clock milliseconds for event timestamps. On a board the clock is set by NTP in
# boot.py; under the unix port the simulator's CUSTODY_CLOCK_* variables are honoured so
# the firmware shares the simulated custody time of protocol/clock.py, including its held
# clock (CUSTODY_CLOCK_FILE: custody time stops at the simulator's lease).
import os
import struct
import time

# Ports whose epoch is 2000-01-01 need the offset to Unix time.
_OFFSET_S = 946684800 if time.gmtime(0)[0] == 2000 else 0
_sim = None
_getenv = getattr(os, "getenv", None)
if _getenv is not None and _getenv("CUSTODY_CLOCK_SPEED"):
    _sim = (float(_getenv("CUSTODY_CLOCK_SPEED")), float(_getenv("CUSTODY_CLOCK_START") or 0),
            float(_getenv("CUSTODY_CLOCK_ANCHOR") or 0))
_held = _getenv("CUSTODY_CLOCK_FILE") if _getenv is not None else None


_last = None  # the last consistent (start, anchor, lease) read


def _held_params():
    """(start, anchor, lease) from the held clock's file: seq (u64) then three f64; an odd
    or changing seq is a write in progress: the last consistent values still hold."""
    global _last
    for _ in range(5000):
        with open(_held, "rb") as f:
            a = f.read(32)
            f.seek(0)
            b = f.read(8)
        if len(a) == 32 and a[:8] == b and not a[0] & 1:
            _last = struct.unpack("<ddd", a[8:])
            return _last
        if _last is not None:
            return _last
        time.sleep_ms(1)
    raise OSError("held clock: no consistent read for 5 s")


def real_ms():
    """Unix time in integer milliseconds from the board's clock."""
    return time.time_ns() // 1000000 + _OFFSET_S * 1000


def now_ms():
    """Custody time in integer milliseconds (simulated when the environment says so)."""
    if _sim is None or (_sim[0] == 1.0 and _sim[1] == _sim[2]):
        return real_ms()
    speed, start, anchor = _sim
    real = real_ms() / 1000
    if _held:
        start, anchor, lease = _held_params()
        real = min(real, lease)
    return int((start + (real - anchor) * speed) * 1000)


def clock_valid():
    """True once the clock holds a plausible date (after NTP), so epochs can use it."""
    return real_ms() > 1700000000000
