"""What a rule returns, and helpers every rule shares."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from protocol.alerts import RULES

from ..process import Custody, incident_id
from ..state import RoomState, State


@dataclass(frozen=True)
class Desired:
    """An alert that should be open now."""

    id: str
    rule: str
    severity: str
    detainee: str | None
    room: str | None
    since: int  # when the condition started (ms)
    message: str
    evidence: str | None = None  # the node's evidence clip for it (protocol/evidence.py)


def desired(rule: str, key: str, since: int, detainee: str | None, room: str | None,
            message: str, severity: str | None = None, evidence: str | None = None) -> Desired:
    """A Desired with the stable id of (rule, key, since) and the rule's default severity."""
    return Desired(incident_id(rule, key, since), rule, severity or RULES[rule], detainee, room,
                   since, message, evidence)


Rooms = Iterable[RoomState] | None  # the rooms a room rule looks at (None: every room)


def detainees_in_rooms(state: State, rooms: Rooms = None
                       ) -> Iterator[tuple[Custody, RoomState, int]]:
    """(custody, room, entered ms) for every registered detainee band present in a room
    (of `rooms`, or of the whole site)."""
    for room in state.rooms.values() if rooms is None else rooms:
        for band, entered in room.bands.items():
            p = state.bands.get(band)
            if p is not None and p.role == "detainee":
                yield state.detainees[p.person], room, entered


def held_for(since: int, now_ms: int, grace_s: float) -> bool:
    """Whether a condition that started at `since` has lasted `grace_s`."""
    return now_ms - since >= grace_s * 1000
