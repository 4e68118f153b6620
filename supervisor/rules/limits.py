"""Time limits per custody type, temporary exits, property."""

from protocol.site import Rules

from ..state import State
from .base import Desired, desired


def limit_ms(state: State, detainee: str) -> int:
    """The detainee's legal limit in ms (the approved extension when there is one)."""
    c = state.detainees[detainee]
    try:
        hours = c.extension_h or state.rules.custody_type(c.custody_type).limit_h
    except KeyError:
        hours = 24
    return hours * 3600 * 1000


def time_limit(state: State, now_ms: int, rules: Rules) -> list[Desired]:
    """Stages at each warn percentage, at limit - final warning, and past the limit."""
    out = []
    for c in state.detainees.values():
        if not c.in_custody:
            continue
        limit = limit_ms(state, c.id)
        deadline = c.arrived_ms + limit
        stages = [(c.arrived_ms + limit * p // 100, f"{p} %", "warning")
                  for p in rules.time_limit_warn_pct]
        stages.append((deadline - rules.time_limit_final_warn_s * 1000,
                       f"{rules.time_limit_final_warn_s // 60} min left", "warning"))
        stages.append((deadline, "limit exceeded", "critical"))
        reached = [s for s in sorted(stages) if now_ms >= s[0]]
        if reached:
            at, label, sev = reached[-1]
            out.append(desired("time-limit", f"{c.id}/{label}", at, c.id, None,
                               f"{c.id} ({c.custody_type}): time in custody {label} of "
                               f"{limit // 3600000} h", sev))
    return out


def temporary_exit_overdue(state: State, now_ms: int, rules: Rules) -> list[Desired]:
    """A detainee out on temporary exit past the approved return time."""
    out = []
    for c in state.detainees.values():
        t = c.temp_out
        if t is not None and now_ms > t["return_by_ts"]:
            out.append(desired("temporary-exit-overdue", c.id, t["return_by_ts"], c.id, None,
                               f"{c.id} not back from temporary exit ({t['reason']})"))
    return out


def property_rule(state: State, now_ms: int, rules: Rules) -> list[Desired]:
    """Belongings not logged in time; case property out past its due time."""
    out = []
    for c in state.detainees.values():
        due = c.registered_ms + rules.belongings_limit_s * 1000
        if c.in_custody and not c.belongings and now_ms >= due:
            out.append(desired("property", f"belongings/{c.id}", due, c.id, None,
                               f"belongings of {c.id} not logged within "
                               f"{rules.belongings_limit_s // 60} min"))
    for item, p in sorted(state.property.items()):
        out_rec = p["out"]
        if out_rec is not None and now_ms > out_rec["due_ts"]:
            out.append(desired("property", f"item/{item}", out_rec["due_ts"], p["detainee"],
                               None, f"case property {item} ({p['case']}) out past its due time"))
    return out
