"""What a node may speak for, from the site file, and the sanity limits of what it says.

A node holds one key; whoever holds it can sign anything. So the supervisor accepts from a
node only events about its own rooms, readers, doors, cameras and buttons, and only the
event types its devices make (a door board sends no presence or camera heartbeats), with
bodies in physical ranges. Everything else is a `scope` or `out_of_range` rejection.
"""

from dataclasses import dataclass
from typing import Any

from protocol.events import Event
from protocol.site import Node, Site

OUT_OF_SCOPE = "out_of_scope"
OUT_OF_RANGE = "out_of_range"

ALWAYS = frozenset({"fault", "health"})  # every node reports its own faults and health
CAMERA_TYPES = frozenset({"person_count", "behaviour", "tamper", "camera", "snapshot",
                          "segment", "evidence"})  # segment/evidence: edge_agent/recording
# Physical bounds of body integers: (type, field) -> (lowest, highest).
RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("person_count", "count"): (0, 100),
    ("behaviour", "score_pct"): (0, 100),
    ("behaviour", "track"): (0, 2**31),
    ("behaviour", "persons"): (0, 100),
    ("tamper", "score_pct"): (0, 100),
    # Rates are per custody second: a sped-up simulated clock multiplies them, so only absurd.
    ("camera", "fps_x10"): (0, 10**7),
    ("segment", "frames"): (0, 10**7),
    ("segment", "bytes"): (0, 2**40),
    ("evidence", "frames"): (0, 10**6),
    ("presence.enter", "rssi"): (-255, 255),
    ("fault", "count"): (0, 2**40),
    ("health", "uptime_s"): (0, 100 * 365 * 86400),
    ("health", "queue"): (0, 10**7),
}


@dataclass(frozen=True)
class NodeScope:
    """The rooms, devices and event types one node may speak for."""

    node: str
    rooms: frozenset[str]
    readers: frozenset[str]
    doors: frozenset[str]
    cameras: frozenset[str]
    buttons: frozenset[str]
    types: frozenset[str]


def node_scope(node: Node) -> NodeScope:
    """The scope the site file gives a node."""
    rooms = {node.room} | {r.side for r in node.readers if r.side}
    doors = {d.door for d in node.doors} | {r.door for r in node.readers if r.door}
    types = set(ALWAYS)
    roles = {r.role for r in node.readers}
    if node.readers:
        types.add("band.status")
    if "presence" in roles:
        types |= {"presence.enter", "presence.leave"}
    if roles & {"tap", "door"}:
        types.add("tap")
    if "door" in roles:
        types.add("crossing")
    if node.doors:
        types.add("door")
    if node.buttons:
        types.add("button")
    if node.cameras:
        types |= CAMERA_TYPES
    if node.kind == "room":  # a Pi runs the room's local rules; a sensor board does not
        types.add("local_alert")
    return NodeScope(node.id, frozenset(rooms), frozenset(r.id for r in node.readers),
                     frozenset(doors), frozenset(c.id for c in node.cameras),
                     frozenset(b.id for b in node.buttons), frozenset(types))


def site_scopes(site: Site) -> dict[str, NodeScope]:
    """Every node's scope."""
    return {n.id: node_scope(n) for n in site.nodes}


_FIELDS: dict[str, str] = {"room": "rooms", "from_room": "rooms", "to_room": "rooms",
                           "reader": "readers", "door": "doors", "camera": "cameras",
                           "button": "buttons"}


def out_of_scope(scope: NodeScope | None, ev: Event) -> str | None:
    """What the event claims beyond the node's scope, or None when it is within it."""
    if scope is None:
        return f"{ev.node} is not a node of this site"
    if ev.type not in scope.types:
        return f"{ev.node} sent {ev.type!r}, an event type its devices do not make"
    for name, value in ev.body.items():
        allowed = _FIELDS.get(name)
        if allowed is None:
            continue
        if ev.type == "fault":  # a fault names a device, not a place
            continue
        if value not in getattr(scope, allowed):
            what = allowed[:-1]
            return f"{ev.node} named {what} {value!r} in {ev.type!r}, not one of its own"
    return None


def out_of_range(ev: Event) -> str | None:
    """The first body integer outside its physical range, or None."""
    for name, value in ev.body.items():
        bounds = RANGES.get((ev.type, name))
        if bounds is not None and isinstance(value, int) and not bounds[0] <= value <= bounds[1]:
            return f"{ev.type}.{name} = {value} outside [{bounds[0]}, {bounds[1]}]"
    return _list_range(ev.body)


def _list_range(body: dict[str, Any]) -> str | None:
    bands = body.get("bands")
    if isinstance(bands, list) and len(bands) > 64:
        return f"{len(bands)} bands in one event"
    return None
