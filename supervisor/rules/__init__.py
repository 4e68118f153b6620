"""Every rule of DESIGN.md's table as a plain function of (state, now, timings).

Each rule returns the alerts that should be open right now (`Desired`); the alert manager
raises what is new, resolves what is no longer wanted and escalates what waits too long.
"""

from collections.abc import Callable

from protocol.site import Rules

from ..state import State
from .base import Desired
from .devices import behaviour, devices, missing_events
from .intake import brought_straight_in, real_search, search_first, unknown_band
from .limits import property_rule, temporary_exit_overdue, time_limit
from .presence import co_suspects, door_open, holding_watch, interview, never_alone
from .recording import recording_gap
from .welfare import welfare_check

RuleFn = Callable[[State, int, Rules], list[Desired]]

ALL_RULES: tuple[RuleFn, ...] = (
    brought_straight_in, search_first, real_search, unknown_band,
    never_alone, holding_watch, door_open, interview, co_suspects, recording_gap, welfare_check,
    time_limit, temporary_exit_overdue, property_rule,
    behaviour, devices, missing_events,
)


def incidents(state: State, now_ms: int, rules: Rules) -> list[Desired]:
    """Latched incidents (exit, panic, security, late registration) while open."""
    from protocol.alerts import RULES

    return [Desired(i.id, i.rule, RULES[i.rule], i.detainee, i.room, i.since,
                    i.message + (f" ({i.count} times)" if i.count > 1 else ""))
            for i in state.incidents.values() if i.open]


def evaluate(state: State, now_ms: int) -> dict[str, Desired]:
    """All alerts that should be open at `now_ms`, by id."""
    out: dict[str, Desired] = {}
    for fn in (*ALL_RULES, incidents):
        for d in fn(state, now_ms, state.rules):
            out[d.id] = d
    return out


__all__ = ["ALL_RULES", "Desired", "evaluate", "incidents"]
