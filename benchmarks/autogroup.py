"""Give the Chromium a benchmark started the lowest share of the CPU.

A nice value is not enough. Playwright starts Chromium in a session of its own (setsid), and
with autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`, on in most
distributions' kernels) each session is one group that gets an equal share of a busy CPU,
whatever the nice values inside it. So a browser started at nice 19 still takes as much CPU
as the supervisor's whole group. What decides is the group's own nice value,
`/proc/<pid>/autogroup`.
"""

import os
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a process, or None if it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # (the command may hold spaces)
    return int(fields[1]), int(fields[3])


def descendants(root: int) -> list[int]:
    """Every process below `root`."""
    parents: dict[int, int] = {}
    for d in PROC.iterdir():
        if d.name.isdigit():
            st = _stat(int(d.name))
            if st is not None:
                parents[int(d.name)] = st[0]
    out, frontier = [], {root}
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        out += kids
        frontier = set(kids)
    return out


def _program(pid: int) -> str:
    """The first word of a process's command line ('' if it is gone)."""
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")[0].decode(
            errors="replace")
    except OSError:
        return ""


def lower_sessions(nice: int = 19, program: str = "/chromium", root: int | None = None
                   ) -> list[int]:
    """Set the autogroup nice of every session led by a process below `root` (this process
    by default) whose program ends with `program`; the leaders' pids. Only those: a broker
    the benchmark started is a session leader below it too."""
    leaders = []
    for pid in descendants(os.getpid() if root is None else root):
        st = _stat(pid)
        if st is None or st[1] != pid or not _program(pid).endswith(program):
            continue
        try:
            (PROC / str(pid) / "autogroup").write_text(str(nice))
        except OSError:
            continue  # gone, or no autogroup support: the caller checks what it got
        leaders.append(pid)
    return leaders


def autogroup_nice(pid: int) -> int | None:
    """The nice value of `pid`'s autogroup ('/autogroup-N nice K'), None without one."""
    try:
        text = (PROC / str(pid) / "autogroup").read_text().split()
    except OSError:
        return None
    return int(text[-1]) if len(text) >= 3 else None
