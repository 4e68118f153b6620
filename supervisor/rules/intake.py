"""Intake rules: brought straight in, search first, real search, unknown band."""

from protocol.site import Rules

from ..state import State
from .base import Desired, Rooms, desired, detainees_in_rooms, held_for


def brought_straight_in(state: State, now_ms: int, rules: Rules) -> list[Desired]:
    """An unregistered band sighted in entry and not registered within the limit."""
    return [desired("brought-straight-in", band, t, None, room,
                    f"band {band} arrived in {room} and is not registered after "
                    f"{rules.registration_limit_s // 60} min")
            for band, (t, room) in sorted(state.arrivals.items())
            if held_for(t, now_ms, rules.registration_limit_s)]


def search_first(state: State, now_ms: int, rules: Rules, rooms: Rooms = None
                 ) -> list[Desired]:
    """A detainee beyond entry/search before a completed search."""
    out = []
    for c, room, entered in detainees_in_rooms(state, rooms):
        done = c.search is not None and c.search["result"] == "completed"
        if not done and room.kind not in ("entry", "search"):
            out.append(desired("search-first", f"{c.id}/{room.id}", entered, c.id, room.id,
                               f"{c.id} taken to {room.id} before a completed search"))
    return out


def read_tolerance_ms(rules: Rules) -> int:
    """How much shorter than the truth a stay measured from band reads can be.

    A stay runs from the band's first read in the room to its last; each may miss the real
    moment by up to one read interval, and a reader reads a present band several times per
    presence TTL (the node drops a band not read for a TTL). Half the TTL covers both ends.
    """
    return rules.presence_ttl_s * 1000 // 2


def real_search(state: State, now_ms: int, rules: Rules) -> list[Desired]:
    """A completed search with too few officers, none of the same sex, or too short."""
    out = []
    for c in state.detainees.values():
        s = c.search
        if s is None or s["result"] != "completed":
            continue
        faults = []
        if s["room"] is None:
            faults.append("detainee never in a search room")
        else:
            if len(s["officers"]) < rules.search_min_officers:
                faults.append(f"{len(s['officers'])} officer(s) present < "
                              f"{rules.search_min_officers}")
            if c.sex not in s["officer_sexes"]:
                faults.append("no officer of the detainee's sex present")
            if s["duration_ms"] + read_tolerance_ms(rules) < rules.search_min_duration_s * 1000:
                faults.append(f"search lasted {s['duration_ms'] / 1000:g} s < "
                              f"{rules.search_min_duration_s} s")
        if faults:
            out.append(desired("real-search", c.id, s["ts"], c.id, s["room"],
                               f"search of {c.id}: {'; '.join(faults)}"))
    return out


def unknown_band(state: State, now_ms: int, rules: Rules, rooms: Rooms = None
                 ) -> list[Desired]:
    """An unregistered band present in a room that is not an entry or exit room."""
    out = []
    for room in state.rooms.values() if rooms is None else rooms:
        if room.kind in ("entry", "exit"):
            continue
        for band, entered in room.bands.items():
            if band not in state.bands:
                out.append(desired("unknown-band", f"{band}/{room.id}", entered, None, room.id,
                                   f"unregistered band {band} in {room.id}"))
    return out
