"""Recording gap, and the camera liveness other rules use."""

from protocol.site import Rules

from ..state import RoomState, State
from .base import Desired, Rooms, desired, held_for


def camera_dead_since(state: State, room: RoomState, now_ms: int, rules: Rules) -> int | None:
    """Since when the room's camera is not live (None while it is live).

    Silence is judged in the camera node's time (its watermark), so transport lag never reads
    as a dead camera; a node that is offline, or silent past its grace, observes nothing.
    """
    gap = rules.recording_gap_s * 1000
    if room.tamper:
        return min(room.tamper.values())
    offline = state.camera_offline_since(room)
    if room.cam_last_live is None:
        dead = room.cam_dead_since or 0
    elif room.cam_dead_since is not None:
        dead = room.cam_dead_since
    elif state.camera_clock(room, now_ms) - room.cam_last_live > gap:
        dead = room.cam_last_live + gap
    elif offline is not None:
        return offline
    else:
        return None
    return dead if offline is None else min(dead, offline)


def recording_gap(state: State, now_ms: int, rules: Rules, rooms: Rooms = None
                  ) -> list[Desired]:
    """A camera-required room with a detainee inside and no recording heartbeat.

    Measured against the camera node's watermark, not the supervisor's clock.
    """
    out = []
    for room in state.rooms.values() if rooms is None else rooms:
        if room.detainee_since is None or not state.site.room(room.id).camera_required:
            continue
        since = max(room.detainee_since, room.cam_last_rec or 0)
        clock = state.camera_clock(room, now_ms)
        if clock - since > rules.recording_gap_s * 1000 and held_for(since, clock,
                                                                     rules.recording_gap_s):
            out.append(desired("recording-gap", room.id, since, None, room.id,
                               f"no recording from {room.id}'s camera for more than "
                               f"{rules.recording_gap_s} s while occupied"))
    return out
