"""One detainee's custody record as timed lines: what `custody record` prints and the desk shows."""

from .state import State


def header(state: State, detainee: str) -> str | None:
    """The record's first line (None when the detainee is unknown)."""
    c = state.detainees.get(detainee)
    if c is None:
        return None
    return (f"{c.id}: case {c.case}, sex {c.sex}, {c.custody_type}, observation {c.observation}, "
            f"band {c.band}")


def record_lines(state: State, detainee: str) -> list[tuple[int, str]]:
    """Every timed line of the detainee's record, oldest first (empty when unknown)."""
    c = state.detainees.get(detainee)
    if c is None:
        return []
    lines: list[tuple[int, str]] = list(c.timeline)
    for v in c.visits:
        officers = ", ".join(sorted(v.officers)) or "no officer"
        lines.append((v.enter_ms, f"enters {v.room} ({v.kind}); officers present: {officers}"))
        if v.leave_ms is not None:
            lines.append((v.leave_ms, f"leaves {v.room}"))
    for a in state.alerts.values():
        if a.get("detainee") == c.id:
            lines.append((a["raised_ts"], f"ALERT {a['rule']} ({a['severity']}): {a['message']}"
                                          f" [{a['state']}]"))
            if a.get("acked_ts"):
                lines.append((a["acked_ts"], f"alert {a['rule']} acknowledged by "
                                             f"{a['acked_by']}: {a.get('action') or ''}"))
    return sorted(lines, key=lambda x: x[0])
