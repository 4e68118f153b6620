"""Time as every component sees it: real, or sped up by the simulator.

The simulator sets CUSTODY_CLOCK_SPEED (e.g. 60: one real second is one simulated minute),
CUSTODY_CLOCK_START (simulated Unix time at the anchor) and CUSTODY_CLOCK_ANCHOR (real Unix
time of that moment) in the environment of every process it starts, so all processes agree
on one simulated time without talking to each other. Network timeouts (MQTT keepalive,
reconnect back-off) stay real; only custody time (rule timings, timestamps) is scaled.

A held clock (CUSTODY_CLOCK_FILE as well) also stops while any process of a simulated run
is held up: protocol/heldclock.py.
"""

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """Simulated time = start + (real time - anchor) * speed; real time when speed is 1."""

    speed: float = 1.0
    start: float = 0.0
    anchor: float = 0.0

    def now(self) -> float:
        """Current (possibly simulated) Unix time in seconds."""
        if self.speed == 1.0 and self.start == self.anchor:
            return time.time()
        return self.start + (time.time() - self.anchor) * self.speed

    def now_ms(self) -> int:
        """Current time in integer milliseconds, as events carry it."""
        return int(self.now() * 1000)

    def real_seconds(self, custody_seconds: float) -> float:
        """How long `custody_seconds` of custody time lasts in real time."""
        return custody_seconds / self.speed

    def sleep(self, custody_seconds: float) -> None:
        """Sleep for a span of custody time."""
        time.sleep(max(0.0, custody_seconds / self.speed))

    def env(self) -> dict[str, str]:
        """Environment variables that give a child process this same clock."""
        return {"CUSTODY_CLOCK_SPEED": repr(self.speed), "CUSTODY_CLOCK_START": repr(self.start),
                "CUSTODY_CLOCK_ANCHOR": repr(self.anchor)}


REAL = Clock()

def simulated(speed: float, start: float) -> Clock:
    """A clock running `speed` times faster than real time, now reading `start`."""
    if speed <= 0:
        raise ValueError("clock speed must be > 0")
    return Clock(speed, start, time.time())


def from_env(environ: dict[str, str] | None = None) -> Clock:
    """The clock described by CUSTODY_CLOCK_* variables, or real time when they are absent."""
    e = os.environ if environ is None else environ
    if "CUSTODY_CLOCK_SPEED" not in e:
        return REAL
    if e.get("CUSTODY_CLOCK_FILE"):
        from .heldclock import held_from_env  # only simulated runs use it

        base = from_env({k: v for k, v in e.items() if k != "CUSTODY_CLOCK_FILE"})
        return held_from_env(base, e)
    try:
        speed = float(e["CUSTODY_CLOCK_SPEED"])
        start = float(e["CUSTODY_CLOCK_START"])
        anchor = float(e["CUSTODY_CLOCK_ANCHOR"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"CUSTODY_CLOCK_* environment is incomplete or not numeric: {exc}") \
            from None
    if speed <= 0:
        raise ValueError("CUSTODY_CLOCK_SPEED must be > 0")
    return Clock(speed, start, anchor)
