"""The rules evaluated where something changed, and when a deadline passes: same answers as
`evaluate` (every rule over the whole site), at a fraction of the work.

The site splits into scopes: each room (the presence, camera and welfare rules), each node
(offline, roster, sequence gaps) and the site (intake, limits, property, behaviours, device
activities, incidents). Each scope's wanted alerts are kept. A scope is evaluated again when
folding touched it (`State.touched`: a room changed, or a node was heard from, which moves the
clocks of the rooms it watches) or when its next deadline (rules/deadlines.py) has come;
otherwise its answer cannot have changed, since the rules are pure functions of (state, now,
timings) and the deadlines list every time comparison they make.
"""

from collections.abc import Callable, Sequence
from typing import Any

from ..state import RoomState, State
from ..timers import TimerQueue
from . import deadlines, incidents
from .base import Desired
from .devices import behaviour, device_activities, missing_events, node_health
from .intake import brought_straight_in, real_search, search_first, unknown_band
from .limits import property_rule, temporary_exit_overdue, time_limit
from .presence import co_suspects, door_open, holding_watch, interview, never_alone
from .recording import recording_gap
from .welfare import welfare_check

RoomRule = Callable[[State, int, Any, Sequence[RoomState]], list[Desired]]
ROOM_RULES: tuple[RoomRule, ...] = (
    search_first, unknown_band, never_alone, holding_watch, door_open, interview, co_suspects,
    recording_gap, welfare_check)
NODE_RULES = (node_health, missing_events)
# The rules that look at the whole site at once (no loop over rooms or nodes).
SITE_RULES: tuple[Callable[[State, int, Any], list[Desired]], ...] = (
    brought_straight_in, real_search, time_limit, temporary_exit_overdue, property_rule,
    behaviour, device_activities, incidents)
SITE = ("site", "")
Scope = tuple[str, str]  # ("room", id), ("node", id) or SITE


class Evaluator:
    """Keeps every scope's wanted alerts; `wanted(now)` re-evaluates only what may differ."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.kept: dict[Scope, list[Desired]] = {}  # only scopes that want something
        self.timers: TimerQueue[Scope] = TimerQueue()  # scope -> its next deadline
        self.watched: dict[str, set[str]] = {}  # node -> rooms whose clock it sets
        for room, nodes in state.room_nodes.items():
            for n in nodes:
                self.watched.setdefault(n, set()).add(room)
        self.cam_of: dict[str, str] = {}  # room -> node of its camera, as last evaluated
        self.last_now: int | None = None  # None: evaluate everything next time
        self.evaluated = 0  # scopes evaluated (for the benchmarks)

    def wanted(self, now_ms: int) -> dict[str, Desired]:
        """All alerts that should be open at `now_ms`, by id (the same as `evaluate`)."""
        state, touched = self.state, self.state.touched
        scopes: set[Scope] = set()
        # A clock that stepped back may un-pass a deadline: everything again, as `evaluate`.
        if touched.everything or self.last_now is None or now_ms < self.last_now:
            scopes.update(("room", r) for r in state.rooms)
            scopes.update(("node", n) for n in state.nodes)
            scopes.add(SITE)
        else:
            scopes.update(("room", r) for r in touched.rooms if r in state.rooms)
            for n in touched.nodes:
                scopes.add(("node", n))
                scopes.update(("room", r) for r in self.watched.get(n, ()))
            if touched.site:
                scopes.add(SITE)
        touched.clear()
        self.last_now = now_ms
        scopes.update(self.timers.take(now_ms))
        for scope in scopes:
            self._evaluate(scope, now_ms)
        self.evaluated += len(scopes)
        out: dict[str, Desired] = {}
        for kept in self.kept.values():
            for d in kept:
                out[d.id] = d
        return out

    def _evaluate(self, scope: Scope, now_ms: int) -> None:
        state, rules = self.state, self.state.rules
        kind, key = scope
        got: list[Desired] = []
        deadline: int | None
        if kind == "room":
            room = state.rooms[key]
            for rule in ROOM_RULES:
                got += rule(state, now_ms, rules, [room])
            deadline = deadlines.room_deadline(state, room, now_ms)
            self._camera_moved(room)
        elif kind == "node":
            for node_rule in NODE_RULES:
                got += node_rule(state, now_ms, rules, [key])
            ns = state.nodes.get(key)
            deadline = None if ns is None else deadlines.node_deadline(state, ns, now_ms)
        else:
            for site_rule in SITE_RULES:
                got += site_rule(state, now_ms, rules)
            deadline = deadlines.site_deadline(state, now_ms)
        if got:
            self.kept[scope] = got
        else:
            self.kept.pop(scope, None)
        self.timers.set(scope, deadline)

    def _camera_moved(self, room: RoomState) -> None:
        """Keep `watched` in step with the node whose camera covers the room (its heartbeats
        set the room's camera clock; a change of camera node touches the room itself)."""
        old = self.cam_of.get(room.id)
        if room.cam_node == old:
            return
        if old is not None and old not in self.state.room_nodes.get(room.id, ()):
            self.watched.get(old, set()).discard(room.id)
        if room.cam_node is not None:
            self.cam_of[room.id] = room.cam_node
            self.watched.setdefault(room.cam_node, set()).add(room.id)
