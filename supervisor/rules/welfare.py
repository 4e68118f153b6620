"""Welfare checks by observation level, with sensor-verified visits."""

from protocol.site import Rules

from ..state import State
from .base import Desired, Rooms, desired, detainees_in_rooms


def welfare_check(state: State, now_ms: int, rules: Rules, rooms: Rooms = None
                  ) -> list[Desired]:
    """Warn before a visit is due, raise when overdue, escalate after the limit."""
    out = []
    for c, room, entered in detainees_in_rooms(state, rooms):
        if room.kind != "holding":
            continue
        clock = state.room_clock(room.id, now_ms)
        visiting = any(clock - room.bands[b] >= rules.welfare_visit_min_s * 1000 and top >= 2
                       and room.officer_stay_live.get(b, False)
                       for b, top in room.officer_stay_max.items() if b in room.bands)
        if visiting:
            continue
        last = max(entered, c.last_verified_ms)
        due = last + rules.welfare_interval_s(c.observation) * 1000
        if now_ms < due - rules.welfare_warn_before_s * 1000:
            continue
        if now_ms >= due + rules.welfare_escalate_after_s * 1000:
            sev, state_txt = "critical", "overdue, escalated"
        elif now_ms >= due:
            sev, state_txt = "warning", "overdue"
        else:
            sev, state_txt = "info", "due soon"
        out.append(desired("welfare-check", c.id, due, c.id, room.id,
                           f"welfare check of {c.id} ({c.observation}) {state_txt}", sev))
    return out
