"""A sped-up run's processes ahead of ordinary jobs in the CPU queue.

At x60 every real scheduling delay lasts sixty times longer in custody time: a node kept off
the CPU for 170 ms by other jobs misses 10 custody seconds of frames and reads, a recording
gap and an absence that a real node, delayed 170 ms in real time, never has. So the simulator
asks for a higher scheduling priority (a lower nice value) before it starts the broker,
supervisor, nodes and boards, which inherit it, and gives it back at the end. The system under
test is not changed by this: its rules, graces and transport are the same; only the simulated
world's time compression stops magnifying the machine's other work. Without the privilege
(not root, no CAP_SYS_NICE) the run goes on at the normal priority and says so.

On Linux the nice value belongs to the thread: only the calling thread and what it starts
afterwards (threads, child processes) get it.
"""

import logging
import os

log = logging.getLogger(__name__)

SIM_NICE = -10  # ahead of nice-0 jobs by a CFS weight of about 9:1, below real-time classes


def raise_priority(nice: int = SIM_NICE) -> int | None:
    """Set this thread's nice value to `nice` (if lower than now); the old value, or None
    when it stayed unchanged (no privilege, or already at least as high)."""
    old = os.getpriority(os.PRIO_PROCESS, 0)
    if old <= nice:
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as e:
        log.warning("simulation runs at nice %d: could not raise its priority to %d (%s); a "
                    "busy machine delays it more, which a sped-up clock magnifies", old, nice, e)
        return None
    return old


def restore_priority(old: int | None) -> None:
    """Give back what raise_priority() took (no-op for None)."""
    if old is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, old)
    except OSError as e:  # lowering priority never needs a privilege; report, do not fail
        log.warning("could not restore nice %d: %s", old, e)
