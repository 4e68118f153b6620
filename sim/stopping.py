"""A run stopped by SIGTERM stops everything it started, as Ctrl-C does.

`custody demo` and `custody sim run` start a broker, a supervisor and one agent per room node;
their `finally` stops them. Python turns only SIGINT into an exception, so a SIGTERM (systemd,
a CI timeout, a benchmark ending the demo, `kill`) ended the run at once and left every child
running as an orphan, still publishing and holding its ports. SIGINT from a background job is
ignored by the shell's rules, so a signal a caller can rely on must be SIGTERM.

Only the first signal interrupts. GNU `timeout` signals the process and then its process
group, so a second SIGTERM arrives while the `finally` stops the children; raised there, it
cut the clean-up short and left them all running (seen once with `timeout 90 custody demo`).
Later signals are logged and ignored: the clean-up is bounded (each child gets SIGTERM, then
SIGKILL after its timeout), and SIGKILL is still there for a hung one.
"""

import logging
import signal
from types import FrameType

log = logging.getLogger(__name__)

_stopping = False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    global _stopping
    name = signal.Signals(signum).name
    if _stopping:
        log.warning("%s while stopping: ignored, the clean-up goes on", name)
        return
    _stopping = True
    raise KeyboardInterrupt(f"signal {name}")


def stop_on_sigterm() -> None:
    """Make the first SIGTERM or SIGINT raise KeyboardInterrupt in the main thread, and
    later ones not interrupt the clean-up it starts (call from the main thread)."""
    global _stopping
    _stopping = False
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
