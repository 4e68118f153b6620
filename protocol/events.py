"""Event types and their bodies: the vocabulary nodes speak.

A body schema maps field name to (kind, required). Kinds: "id" ([a-z0-9-]), "band"
(lower-case hex), "str", "int", "bool", "phase" (new/update/end), "ids" (list of ids),
"bands" (list of bands), "obj" (a nested object, checked by whoever uses it), "sha256"
(64 lower-case hex digits).
Events that last follow `new` -> `update` -> `end` under a stable `id`.
Floats never appear (canonical JSON has none): scores are percent, rates are x10.
"""

import re
from dataclasses import dataclass
from typing import Any

from .ids import BAND_RE, ID_RE

PHASES = ("new", "update", "end")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

Schema = dict[str, tuple[str, bool]]

EVENT_TYPES: dict[str, Schema] = {
    # A band entered / left the room's presence (UHF reader with TTL, or a tap).
    "presence.enter": {"band": ("band", True), "room": ("id", True), "reader": ("id", True),
                       "rssi": ("int", False)},
    # seen_ts: the band's last read (ms), the evidence of when it left; the event's own ts is
    # when the presence TTL ran out.
    "presence.leave": {"band": ("band", True), "room": ("id", True), "reader": ("id", True),
                       "seen_ts": ("int", False)},
    # A tap on a desk or door reader.
    "tap": {"band": ("band", True), "reader": ("id", True), "room": ("id", True),
            "door": ("id", False)},
    # A band crossed a door, direction from paired readers.
    "crossing": {"band": ("band", True), "door": ("id", True), "from_room": ("id", True),
                 "to_room": ("id", True)},
    "door": {"door": ("id", True), "state": ("str", True)},
    # Panic/call buttons: never muted, never rate-limited.
    "button": {"button": ("id", True), "kind": ("str", True), "room": ("id", False)},
    # Reader-reported band condition.
    "band.status": {"band": ("band", True), "reader": ("id", True), "tamper": ("bool", False),
                    "battery_low": ("bool", False)},
    # A rule the node enforces itself (never alone, interview officers, unknown band...).
    "local_alert": {"id": ("id", True), "phase": ("phase", True), "rule": ("id", True),
                    "room": ("id", True), "bands": ("bands", False), "detail": ("str", False)},
    # Vision: person count, behaviour anomaly, tamper, camera liveness.
    "person_count": {"camera": ("id", True), "room": ("id", True), "count": ("int", True)},
    "behaviour": {"id": ("id", True), "phase": ("phase", True), "camera": ("id", True),
                  "room": ("id", True), "cls": ("str", True), "score_pct": ("int", True),
                  "track": ("int", False), "persons": ("int", False),
                  "evidence": ("id", False)},
    "tamper": {"id": ("id", True), "phase": ("phase", True), "camera": ("id", True),
               "room": ("id", True), "kind": ("str", True), "score_pct": ("int", False)},
    "camera": {"camera": ("id", True), "room": ("id", True), "live": ("bool", True),
               "recording": ("bool", False), "fps_x10": ("int", False)},
    "snapshot": {"camera": ("id", True), "room": ("id", True), "alert": ("str", True),
                 "jpeg_b64": ("str", True), "masked": ("bool", True)},
    # Whole-process recording: one closed video segment on the node (edge_agent/recording).
    "segment": {"camera": ("id", True), "room": ("id", True), "file": ("str", True),
                "start_ms": ("int", True), "end_ms": ("int", True), "frames": ("int", True),
                "bytes": ("int", True), "codec": ("str", True), "sha256": ("sha256", True)},
    # A privacy-masked evidence clip kept on the node around an alert (`alert` = the behaviour
    # or tamper event id); fetched only on request (protocol/evidence.py).
    "evidence": {"id": ("id", True), "camera": ("id", True), "room": ("id", True),
                 "alert": ("id", True), "start_ms": ("int", True), "end_ms": ("int", True),
                 "frames": ("int", True), "sha256": ("sha256", True),
                 "clear_sha256": ("sha256", True), "masked": ("bool", True)},
    # Device faults: reader checksum errors, lost ports, outbox high water...
    "fault": {"id": ("id", True), "phase": ("phase", True), "device": ("id", True),
              "kind": ("str", True), "count": ("int", False), "detail": ("str", False)},
    # Periodic health, also retained on the health topic.
    "health": {"uptime_s": ("int", True), "queue": ("int", True), "obj": ("obj", False)},
    # Supervisor -> node messages (signed with the node's key).
    "ack": {"epoch": ("int", True), "seqs": ("ints", True)},
    "roster": {"version": ("int", True), "bands": ("obj", True)},
    # Evidence fetch (protocol/evidence.py): the supervisor's request for one chunk, signed
    # with the node's key, and the header of the node's answer (the chunk's bytes follow it).
    "evidence_request": {"txn": ("str", True), "evidence": ("id", True), "user": ("id", True),
                         "clear": ("bool", False), "offset": ("int", False),
                         "length": ("int", False)},
    "evidence_data": {"txn": ("str", True), "evidence": ("id", True), "ok": ("bool", True),
                      "error": ("str", False), "sha256": ("sha256", False),
                      "total": ("int", False), "offset": ("int", False), "eof": ("bool", False),
                      "clear": ("bool", False), "length": ("int", False),
                      "chunk_sha256": ("sha256", False)},
}

DOOR_STATES = ("open", "closed")
BUTTON_KINDS = ("panic", "call")
BEHAVIOUR_CLASSES = ("fall", "lying_still", "agitated", "fight")
TAMPER_KINDS = ("covered", "blurred", "moved")


class BodyError(ValueError):
    """A body that does not match its event type's schema."""


def _check(kind: str, value: Any) -> bool:
    if kind == "id":
        return isinstance(value, str) and bool(ID_RE.match(value))
    if kind == "band":
        return isinstance(value, str) and bool(BAND_RE.match(value))
    if kind == "str":
        return isinstance(value, str) and len(value) <= 512
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "phase":
        return value in PHASES
    if kind == "bands":
        return isinstance(value, list) and all(_check("band", v) for v in value)
    if kind == "ints":
        return isinstance(value, list) and all(_check("int", v) for v in value)
    if kind == "obj":
        return isinstance(value, dict)
    if kind == "sha256":
        return isinstance(value, str) and bool(SHA256_RE.match(value))
    raise AssertionError(f"unknown schema kind {kind}")


_ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("door", "state"): DOOR_STATES,
    ("button", "kind"): BUTTON_KINDS,
    ("behaviour", "cls"): BEHAVIOUR_CLASSES,
    ("tamper", "kind"): TAMPER_KINDS,
}


def validate_body(event_type: str, body: Any) -> dict[str, Any]:
    """Check `body` against the schema of `event_type`; return it or raise BodyError."""
    schema = EVENT_TYPES.get(event_type)
    if schema is None:
        raise BodyError(f"unknown event type {event_type!r}")
    if not isinstance(body, dict):
        raise BodyError(f"{event_type}: body must be an object")
    for key in body:
        if key not in schema:
            raise BodyError(f"{event_type}: unknown field {key!r}")
    for key, (kind, required) in schema.items():
        if key not in body:
            if required:
                raise BodyError(f"{event_type}: missing field {key!r}")
            continue
        if not _check(kind, body[key]):
            raise BodyError(f"{event_type}: field {key!r} must be {kind}, got {body[key]!r}")
        allowed = _ENUMS.get((event_type, key))
        if allowed is not None and body[key] not in allowed:
            raise BodyError(f"{event_type}: field {key!r} must be one of {allowed}")
    return body


@dataclass(frozen=True)
class Event:
    """A verified event as the supervisor sees it."""

    node: str
    epoch: int
    seq: int
    ts_ms: int
    type: str
    body: dict[str, Any]
