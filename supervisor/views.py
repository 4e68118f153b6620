"""The retained state/room/<room> views, recomputed only for rooms that may have changed.

A room's view (officers, detainees, unregistered bands, camera live) changes only when
folding touches the room or a node whose clock it reads (`State.touched`), or, with time
alone, when a live camera's node clock passes the recording gap (the camera turns dead).
So each tick looks at those rooms and at the rooms whose camera deadline has come, not at
every room of the site: at 1,000 rooms the full pass every 100 ms was the tick's main cost.
"""

import math
from collections.abc import Callable
from typing import Any

from protocol.canonical import dumpb
from protocol.topics import Topics

from .rules.recording import camera_dead_since
from .state import RoomState, State
from .timers import TimerQueue

Publish = Callable[[str, bytes, int, bool], Any]


class RoomViews:
    """Publishes each room's view (retained) when it differs from the one last published."""

    def __init__(self, state: State, topics: Topics, publish: Publish) -> None:
        self.state, self.topics, self.publish = state, topics, publish
        self.published: dict[str, dict[str, Any]] = {}  # room -> view (one per room)
        self.timers: TimerQueue[str] = TimerQueue()  # room -> when its live camera may turn dead
        self.watched: dict[str, set[str]] = {}  # node -> rooms whose camera clock it may set
        for room, nodes in state.room_nodes.items():
            for n in nodes:
                self.watched.setdefault(n, set()).add(room)
        self.last_now: int | None = None

    def view(self, room: RoomState, now_ms: int) -> dict[str, Any]:
        """The room's view at `now_ms` (without its `ts`)."""
        state = self.state
        return {"room": room.id, "kind": room.kind,
                "officers": sorted(state.bands[b].person for b in state.officers_in(room)),
                "detainees": state.detainees_in(room),
                "unregistered": sum(1 for b in room.bands if b not in state.bands),
                "camera_live": camera_dead_since(state, room, now_ms, state.rules) is None}

    def publish_changed(self, now_ms: int) -> int:
        """Publish the views that changed since the last call; return how many rooms looked."""
        state = self.state
        rooms, nodes, everything = state.touched.take_views()
        if everything or self.last_now is None or now_ms < self.last_now:
            todo = set(state.rooms)  # a clock that stepped back may un-pass a deadline
        else:
            todo = {r for r in rooms if r in state.rooms}
            for n in nodes:
                todo.update(self.watched.get(n, ()))
        self.last_now = now_ms
        todo.update(self.timers.take(now_ms))
        for r in todo:
            self._room(state.rooms[r], now_ms)
        return len(todo)

    def _room(self, room: RoomState, now_ms: int) -> None:
        view = self.view(room, now_ms)
        if self.published.get(room.id) != view:
            self.published[room.id] = view
            self.publish(self.topics.state("room", room.id), dumpb({**view, "ts": now_ms}), 1,
                         True)
        if room.cam_node is not None:  # its heartbeats set the camera clock from now on
            self.watched.setdefault(room.cam_node, set()).add(room.id)
        deadline = None
        if view["camera_live"] and room.cam_last_live is not None:
            # Live until the camera's clock passes its last live heartbeat by the gap.
            nodes = ([room.cam_node] if room.cam_node is not None
                     else self.state.room_nodes.get(room.id, set()))
            gap = self.state.rules.recording_gap_s * 1000
            target = math.floor(room.cam_last_live + gap) + 1
            deadline = self.state.clock_reaches(nodes, target, now_ms)
        self.timers.set(room.id, deadline)
