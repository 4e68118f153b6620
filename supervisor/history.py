"""What the live state no longer holds, read back from the journal: an archive replay.

The live supervisor folds in live mode (State(archive=False)): closed alerts and released
custody records leave its memory. The desk's compliance report and the record of a detainee
whose record left memory need the whole history, so they are built here by folding the
journal from #1 in archive mode, in a child process that opens the journal read-only (the
journal is in WAL mode: the supervisor keeps writing meanwhile) and runs at a lower priority,
so the worker that ingests and raises alerts is never held up by it. Slow on a long journal
(about 35 s per million entries here when the machine is quiet), never wrong: the same fold
`custody report` and `custody record` use.
"""

import contextlib
import json
import logging
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from protocol.site import Site

from .journal import read_entries
from .state import State

log = logging.getLogger(__name__)
CHILD = "import sys; from supervisor.history import child_main; sys.exit(child_main())"
TIMEOUT_S = 600.0  # a report over a very long journal may take minutes; then it is refused
_one_at_a_time = threading.Lock()  # two pages asking at once: one replay after the other
# Replays waiting their turn at most: each is a full fold of the journal, so a page reloaded
# over and over (or a script with one staff password) must not queue hours of them.
MAX_WAITING = 2
_queue = threading.Lock()
_waiting = 0


class HistoryError(RuntimeError):
    """The journal could not be replayed (the message says why)."""


def archive_state(site: Site, db: str | Path) -> State:
    """The fold of the whole journal with nothing left out (archive mode)."""
    state = State(site, archive=True)
    for e in read_entries(db):
        state.apply(e)
    return state


def _job(job: dict[str, Any]) -> Any:
    from .record import header, record_lines
    from .report import collect

    state = archive_state(job["site"], job["db"])
    if job["kind"] == "report":
        return collect(state, job["start"], job["end"])
    if job["kind"] == "record":
        return [header(state, job["detainee"]), record_lines(state, job["detainee"])]
    raise HistoryError(f"unknown history job {job['kind']!r}")


def child_main() -> int:
    """The replaying process (CHILD): the job comes pickled on stdin from the supervisor."""
    logging.basicConfig(level=logging.WARNING, format="history replay: %(message)s")
    with contextlib.suppress(OSError):
        os.nice(10)  # the live supervisor comes first
    job = pickle.load(sys.stdin.buffer)
    try:
        out = {"result": _job(job)}
    except Exception as e:  # reported to the desk, which shows it
        out = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0 if "error" not in out else 1


def run(site: Site, db: str | Path, kind: str, timeout_s: float = TIMEOUT_S, **args: Any
        ) -> Any:
    """Run one job ('report': start, end; 'record': detainee) over an archive replay of the
    journal in a child process; its JSON result, or HistoryError saying why there is none."""
    global _waiting
    job = pickle.dumps({"site": site, "db": str(db), "kind": kind, **args})
    with _queue:
        if _waiting >= MAX_WAITING:
            log.warning("history replay (%s) refused: %d already waiting", kind, _waiting)
            raise HistoryError(f"{_waiting} journal replays are already running or waiting; "
                               "try again when they are done")
        _waiting += 1
    try:
        with _one_at_a_time:
            done = subprocess.run([sys.executable, "-c", CHILD], input=job,
                                  capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise HistoryError(f"replaying the journal took over {timeout_s:g} s") from None
    except OSError as e:
        raise HistoryError(f"could not start the journal replay: {e}") from None
    finally:
        with _queue:
            _waiting -= 1
    try:
        out = json.loads(done.stdout.decode() or "{}")
    except ValueError:
        out = {}
    if "result" not in out:
        why = out.get("error") or (f"the replay exited {done.returncode}: "
                                   f"{done.stderr.decode(errors='replace')[-300:]}")
        log.error("history replay (%s) failed: %s", kind, why)
        raise HistoryError(why)
    return out["result"]
