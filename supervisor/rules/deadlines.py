"""When each scope's rules may next answer differently with nothing new folded: the timer queue.

Every time comparison a rule makes is listed here beside its rule, as the supervisor time at
which it flips (`None`: never, on the present state). A deadline may come early (the scope is
evaluated again and answers the same), never late: the comparison script and test
(benchmarks/compare_rule_eval.py, tests/test_rule_eval.py) hold the incremental evaluator to the
full one at every event and every tick. Comparisons are against the supervisor's clock `now`,
or against a room's or camera's clock (its nodes' watermark), which `State.clock_reaches`
turns into supervisor time.
"""

import math
from collections import defaultdict
from collections.abc import Callable, Iterable

from ..state import NodeState, RoomState, State
from .base import detainees_in_rooms
from .limits import limit_ms
from .recording import camera_dead_since


def earliest(times: Iterable[int | None]) -> int | None:
    """The soonest of `times` (None: none)."""
    return min((t for t in times if t is not None), default=None)


def after(now_ms: int, at: float) -> int | None:
    """A `now >= at` comparison: when it turns true (None if it already is)."""
    t = math.ceil(at)
    return t if t > now_ms else None


def past(now_ms: int, at: float) -> int | None:
    """A `now > at` comparison: when it turns true (None if it already is)."""
    return after(now_ms, math.floor(at) + 1)


def site_deadline(state: State, now_ms: int) -> int | None:
    """Arrivals, time limits, temporary exits, property (the rest of the site's rules are
    not timed: real search, behaviours, device activities, incidents)."""
    rules = state.rules
    out: list[int | None] = []
    for t, _room in state.arrivals.values():  # brought_straight_in
        out.append(after(now_ms, t + rules.registration_limit_s * 1000))
    for c in state.detainees.values():
        if c.in_custody:  # time_limit: each stage, then property's belongings
            limit = limit_ms(state, c.id)
            deadline = c.arrived_ms + limit
            out.extend(after(now_ms, c.arrived_ms + limit * p // 100)
                       for p in rules.time_limit_warn_pct)
            out.append(after(now_ms, deadline - rules.time_limit_final_warn_s * 1000))
            out.append(after(now_ms, deadline))
            if not c.belongings:
                out.append(after(now_ms, c.registered_ms + rules.belongings_limit_s * 1000))
        if c.temp_out is not None:  # temporary_exit_overdue
            out.append(past(now_ms, c.temp_out["return_by_ts"]))
    for p in state.property.values():  # property: case property out
        if p["out"] is not None:
            out.append(past(now_ms, p["out"]["due_ts"]))
    return earliest(out)


def node_deadline(state: State, ns: NodeState, now_ms: int) -> int | None:
    """Offline for the grace (node_health), a gap unfilled for the grace (missing_events)."""
    grace = state.rules.device_offline_s * 1000
    out = [after(now_ms, t + grace) for _lo, _hi, t in ns.gaps]
    if ns.availability == "offline":
        out.append(after(now_ms, ns.availability_since + grace))
    return earliest(out)


def room_deadline(state: State, room: RoomState, now_ms: int) -> int | None:
    """The presence, camera and welfare rules of one room. Without a detainee inside none of
    them is timed (search first and unknown band are not timed at all)."""
    if room.detainee_since is None and not any(True for _ in detainees_in_rooms(state, [room])):
        return None
    rules = state.rules
    nodes = state.room_nodes.get(room.id, set())
    cam_nodes = [room.cam_node] if room.cam_node is not None else nodes
    room_now, cam_now = state.room_clock(room.id, now_ms), state.camera_clock(room, now_ms)

    def clocked(clock_now: int, clock_nodes: set[str] | list[str]) -> Callable[[float],
                                                                                int | None]:
        def at(t: float) -> int | None:  # `clock >= t`, in supervisor time
            return None if clock_now >= t else state.clock_reaches(clock_nodes, t, now_ms)
        return at

    on_room, on_cam = clocked(room_now, nodes), clocked(cam_now, cam_nodes)
    out: list[int | None] = []
    # camera_dead_since: a live camera heard from last at L is dead once its clock passes
    # L + gap (never_alone's corroboration, holding_watch).
    gap = rules.recording_gap_s * 1000
    if not room.tamper and room.cam_last_live is not None and room.cam_dead_since is None:
        out.append(on_cam(math.floor(room.cam_last_live + gap) + 1))
    dead = camera_dead_since(state, room, now_ms, rules)
    k = rules.interview_min_officers
    by_case: dict[str, list[int]] = defaultdict(list)
    for c, _room, entered in detainees_in_rooms(state, [room]):
        by_case[c.case].append(entered)
        if room.kind != "holding" and room.officer_count == 0:  # never_alone
            grace = (rules.never_alone_doorway_grace_s if room.kind == "corridor"
                     else rules.never_alone_grace_s)
            since = state.unescorted_since(room, c.id, max(entered, room.officers_zero_since))
            out.append(on_room(since + grace * 1000))
        if room.kind == "holding" and room.officer_count == 0 and dead is not None:
            since = max(entered, room.officers_zero_since, dead)  # holding_watch
            out.append(on_cam(since + rules.holding_watch_grace_s * 1000))
        if room.kind == "interview" and room.officer_count < k:  # interview
            since = state.unescorted_since(room, c.id, max(entered, room.below_min_since))
            out.append(on_room(since + rules.interview_grace_s * 1000))
        elif room.min_since is not None:
            out.append(on_room(max(entered, room.min_since) + rules.interview_grace_s * 1000))
        if room.kind == "holding":  # welfare_check: a visit long enough, then the due times
            for b, top in room.officer_stay_max.items():
                if b in room.bands and top >= 2 and room.officer_stay_live.get(b, False):
                    out.append(on_room(room.bands[b] + rules.welfare_visit_min_s * 1000))
            due = max(entered, c.last_verified_ms) + rules.welfare_interval_s(c.observation) * 1000
            out.append(after(now_ms, due - rules.welfare_warn_before_s * 1000))
            out.append(after(now_ms, due))
            out.append(after(now_ms, due + rules.welfare_escalate_after_s * 1000))
    if room.kind == "holding" and room.officer_count == 0 and room.detainee_since is not None:
        for i in state.room_doors.get(room.id, ()):  # door_open: an open door of the cell
            door = state.site.doors[i]
            st = state.doors.get(door.id)
            if st is not None and st[0] == "open" and room.id in door.between:
                since = max(st[1], room.detainee_since, room.officers_zero_since)
                out.append(on_room(since + rules.door_open_limit_s * 1000))
    for entered_all in by_case.values():  # co_suspects: from the second one's entry
        if len(entered_all) >= 2:
            out.append(on_room(sorted(entered_all)[1] + rules.co_suspects_grace_s * 1000))
    if room.detainee_since is not None:  # recording_gap: clock - since > gap
        since = max(room.detainee_since, room.cam_last_rec or 0)
        out.append(on_cam(math.floor(since + gap) + 1))
    return earliest(out)

