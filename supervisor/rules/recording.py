"""Recording gap, and the camera liveness other rules use."""

from protocol.site import Rules

from ..state import RoomState, State
from .base import Desired, desired, held_for


def camera_dead_since(room: RoomState, now_ms: int, rules: Rules) -> int | None:
    """Since when the room's camera is not live (None while it is live)."""
    gap = rules.recording_gap_s * 1000
    if room.tamper:
        return min(room.tamper.values())
    if room.cam_last_live is None:
        return room.cam_dead_since or 0
    if room.cam_dead_since is not None:
        return room.cam_dead_since
    if now_ms - room.cam_last_live > gap:
        return room.cam_last_live + gap
    return None


def recording_gap(state: State, now_ms: int, rules: Rules) -> list[Desired]:
    """A camera-required room with a detainee inside and no recording heartbeat."""
    out = []
    for r in state.site.rooms:
        room = state.rooms[r.id]
        if not r.camera_required or room.detainee_since is None:
            continue
        since = max(room.detainee_since, room.cam_last_rec or 0)
        if now_ms - since > rules.recording_gap_s * 1000 and held_for(since, now_ms,
                                                                      rules.recording_gap_s):
            out.append(desired("recording-gap", r.id, since, None, r.id,
                               f"no recording from {r.id}'s camera for more than "
                               f"{rules.recording_gap_s} s while occupied"))
    return out
