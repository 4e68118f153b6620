"""A run stopped by SIGTERM stops everything it started, as Ctrl-C does.

`custody demo` and `custody sim run` start a broker, a supervisor and one agent per room node;
their `finally` stops them. Python turns only SIGINT into an exception, so a SIGTERM (systemd,
a CI timeout, a benchmark ending the demo, `kill`) ended the run at once and left every child
running as an orphan, still publishing and holding its ports. SIGINT from a background job is
ignored by the shell's rules, so a signal a caller can rely on must be SIGTERM.
"""

import signal
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def stop_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread (call from the main thread)."""
    signal.signal(signal.SIGTERM, _interrupt)
