"""Presence rules: never alone, holding room watch, interview, co-suspects apart."""

from collections import defaultdict

from protocol.site import Rules

from ..state import INTERVIEW_ELSEWHERE, RoomState, State
from .base import Desired, Rooms, desired, detainees_in_rooms, held_for
from .recording import camera_dead_since


def never_alone(state: State, now_ms: int, rules: Rules, rooms: Rooms = None
                ) -> list[Desired]:
    """A detainee outside holding with no officer band for the grace."""
    out = []
    for c, room, entered in detainees_in_rooms(state, rooms):
        if room.kind == "holding" or room.officer_count > 0 or state.counsel_in(room, c.id):
            continue  # a visitor is no escort; a lawyer's consultation is not time alone
        since = state.unescorted_since(room, c.id, max(entered, room.officers_zero_since))
        grace = (rules.never_alone_doorway_grace_s if room.kind == "corridor"
                 else rules.never_alone_grace_s)
        if held_for(since, state.room_clock(room.id, now_ms), grace):
            note, severity = corroboration(state, room, since, now_ms, rules)
            out.append(desired("never-alone", f"{c.id}/{room.id}", since, c.id, room.id,
                               f"{c.id} alone in {room.id} (no officer band; {note})", severity))
    return out


def corroboration(state: State, room: RoomState, since: int, now_ms: int, rules: Rules
                  ) -> tuple[str, str | None]:
    """Does the camera agree the detainee is alone? (note, severity override or None).

    A live camera that counted two or more people since the condition began contradicts the
    bands (an officer without a band, a band misread): the alert is raised as a warning until
    the camera agrees, so that staff learn to trust the critical ones.
    """
    if camera_dead_since(state, room, now_ms, rules) is not None:
        return "no live camera to confirm", None
    if room.person_count_ts >= since and room.person_count >= 2:
        return f"camera sees {room.person_count} people: unconfirmed", "warning"
    if room.person_count_ts >= since:
        return "camera agrees", None
    return "camera has not counted since", None


def holding_watch(state: State, now_ms: int, rules: Rules, rooms: Rooms = None
                  ) -> list[Desired]:
    """A detainee alone in holding while the room's camera is not live."""
    out = []
    for c, room, entered in detainees_in_rooms(state, rooms):
        if room.kind != "holding" or room.officer_count > 0:
            continue
        dead = camera_dead_since(state, room, now_ms, rules)
        if dead is None:
            continue
        since = max(entered, room.officers_zero_since, dead)
        if held_for(since, state.camera_clock(room, now_ms), rules.holding_watch_grace_s):
            out.append(desired("holding-watch", f"{c.id}/{room.id}", since, c.id, room.id,
                               f"{c.id} alone in {room.id} and its camera is not live"))
    return out


def door_open(state: State, now_ms: int, rules: Rules, rooms: Rooms = None) -> list[Desired]:
    """A holding room's door open while a detainee is inside and no officer is: the cell is
    not closed on them (an open door with an officer in the cell is a visit)."""
    out = []
    only = None if rooms is None else {r.id for r in rooms}
    doors = state.site.doors
    if only is not None:  # only the doors of those rooms' occupied cells, in site order
        cells = [r for r in only if r in state.rooms and state.rooms[r].kind == "holding"]
        ids = sorted({i for r in cells for i in state.room_doors.get(r, ())})
        doors = tuple(doors[i] for i in ids)
    for door in doors:
        st = state.doors.get(door.id)
        if st is None or st[0] != "open":
            continue
        for room_id in door.between:
            if only is not None and room_id not in only:
                continue
            room = state.rooms.get(room_id)
            if (room is None or room.kind != "holding" or room.officer_count > 0
                    or room.detainee_since is None):
                continue
            since = max(st[1], room.detainee_since, room.officers_zero_since)
            if held_for(since, state.room_clock(room.id, now_ms), rules.door_open_limit_s):
                out.append(desired("door-open", f"{door.id}/{room.id}", since,
                                   state._only_detainee(room.id), room.id,
                                   f"door {door.id} of {room.id} open with "
                                   f"{', '.join(state.detainees_in(room))} inside and no "
                                   "officer"))
    return out


def interview(state: State, now_ms: int, rules: Rules, rooms: Rooms = None) -> list[Desired]:
    """Interview with too few officers, or officers interviewing outside an interview room."""
    out = []
    k = rules.interview_min_officers
    for c, room, entered in detainees_in_rooms(state, rooms):
        if room.kind == "interview" and room.officer_count < k:
            if room.officer_count == 0 and state.counsel_in(room, c.id):
                continue  # a legal consultation, not an interview
            since = state.unescorted_since(room, c.id, max(entered, room.below_min_since))
            msg = f"{c.id} in {room.id} with {room.officer_count} officer(s) < {k}"
        elif room.kind in INTERVIEW_ELSEWHERE and room.min_since is not None:
            since = max(entered, room.min_since)
            msg = f"{c.id} with {room.officer_count} officers in {room.id}: interview " \
                  "outside an interview room"
        else:
            continue
        if held_for(since, state.room_clock(room.id, now_ms), rules.interview_grace_s):
            out.append(desired("interview", f"{c.id}/{room.id}", since, c.id, room.id, msg))
    return out


def co_suspects(state: State, now_ms: int, rules: Rules, rooms: Rooms = None
                ) -> list[Desired]:
    """Two or more detainees of one case in one room for the grace."""
    by_case: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for c, room, entered in detainees_in_rooms(state, rooms):
        by_case[(room.id, c.case)].append((entered, c.id))
    out = []
    for (room_id, case), members in sorted(by_case.items()):
        if len(members) < 2:
            continue
        since = sorted(members)[1][0]
        if held_for(since, state.room_clock(room_id, now_ms), rules.co_suspects_grace_s):
            ids = sorted(m[1] for m in members)
            out.append(desired("co-suspects", f"{room_id}/{case}", since, ids[0], room_id,
                               f"co-suspects of case {case} together in {room_id}: "
                               f"{', '.join(ids)}"))
    return out
