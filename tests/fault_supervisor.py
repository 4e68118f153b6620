"""The real `custody supervisor` with one fault injected, for the fault tests.

    python tests/fault_supervisor.py KILL_AT_ALERT supervisor --config ...

`kill-at-alert:N`: SIGKILL itself when the N-th alert change is about to be journaled, that
is after the rules were evaluated and decided to raise it, before the journal commit: the
window in which a crash could lose or double an alert.
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custody.cli import main
from supervisor.journal import Journal


def _inject(spec: str) -> None:
    kind, _, n = spec.partition(":")
    if kind != "kill-at-alert":
        raise SystemExit(f"unknown fault {spec!r}")
    target, seen = int(n or "1"), [0]
    original = Journal.append_own

    def append_own(self: Journal, entry_kind: str, obj: object) -> object:
        if entry_kind == "alert":
            seen[0] += 1
            if seen[0] == target:
                print(f"fault: SIGKILL before journaling alert {obj!r}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, entry_kind, obj)

    Journal.append_own = append_own  # type: ignore[method-assign]


if __name__ == "__main__":
    _inject(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
