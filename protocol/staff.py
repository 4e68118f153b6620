"""Staff commands: payloads on `request/<user>/<command>` -> `response/<user>/<command>`.

The broker's ACL lets a staff login publish only under its own `request/<login>/`, so the
acting account is the topic's user, never a claim in the payload. Request: {"txn": id,
"args": {...}} with an optional "user" that, when present, must equal the topic's user;
response: {"txn": id, "ok": bool, "error": str or null, "result": {...}}. Never retained.
Times are Unix milliseconds. A command is checked whole before anything changes; a bad one
gets `ok: false` and an error naming the field.
"""

import json
from dataclasses import dataclass
from typing import Any

from .events import Schema, _check
from .ids import ID_RE

SEXES = ("f", "m")
OBSERVATION_LEVELS = ("level1", "level2", "high")
DISPOSITIONS = ("release", "bail", "transfer", "charge", "detention")
VISITOR_KINDS = ("visitor", "lawyer")
MAX_REQUEST = 16384

COMMANDS: dict[str, Schema] = {
    "register-detainee": {"detainee": ("id", True), "band": ("band", True), "case": ("id", True),
                          "sex": ("str", True), "custody_type": ("id", True),
                          "observation": ("str", True), "arrived_ts": ("int", False),
                          "name": ("str", False)},
    "register-officer": {"officer": ("id", True), "band": ("band", True), "sex": ("str", True),
                         "name": ("str", False)},
    # A visitor or a lawyer gets a band too (neither officer nor detainee): it is never an
    # escort, and a lawyer with their client alone in an interview room is a legal
    # consultation. The band goes back at the exit.
    "register-visitor": {"visitor": ("id", True), "band": ("band", True), "kind": ("str", True),
                         "detainee": ("id", True), "name": ("str", False)},
    "set-observation": {"detainee": ("id", True), "observation": ("str", True)},
    "record-search": {"detainee": ("id", True), "officers": ("ids", True),
                      "result": ("str", True), "items_found": ("str", False)},
    "log-belongings": {"detainee": ("id", True), "locker": ("id", True), "items": ("strs", True)},
    "log-case-property": {"item": ("id", True), "case": ("id", True),
                          "description": ("str", True), "detainee": ("id", False)},
    "property-out": {"item": ("id", True), "due_ts": ("int", True), "reason": ("str", False)},
    "property-in": {"item": ("id", True)},
    "approve-temporary-exit": {"detainee": ("id", True), "return_by_ts": ("int", True),
                               "reason": ("str", True)},
    "approve-extension": {"detainee": ("id", True), "hours": ("int", True)},
    "approve-disposition": {"detainee": ("id", True), "disposition": ("str", True),
                            "note": ("str", False)},
    "record-welfare-check": {"detainee": ("id", True), "note": ("str", False)},
    "ack-alert": {"alert": ("id", True), "action": ("str", True)},
    "resolve-alert": {"alert": ("id", True), "note": ("str", False)},
    "false-alarm": {"alert": ("id", True), "note": ("str", False)},
    "record-emergency-exit": {"detainee": ("id", True), "reason": ("str", True),
                              "return_by_ts": ("int", True)},
    "record-finding": {"finding": ("str", True), "detainee": ("id", False),
                       "room": ("id", False), "severity": ("str", False)},
    "unlock-account": {"account": ("id", True)},
    # Fetch an evidence clip kept on a node (protocol/evidence.py), named by its id or by the
    # alert it belongs to. Masked by default; `clear` asks for the unmasked cut, which only a
    # legal officer may see and only with a reason; every view is journaled before the fetch.
    "view-evidence": {"evidence": ("id", False), "alert": ("id", False),
                      "clear": ("bool", False), "reason": ("str", False)},
}

_ENUMS: dict[str, tuple[str, ...]] = {"sex": SEXES, "observation": OBSERVATION_LEVELS,
                                      "disposition": DISPOSITIONS, "kind": VISITOR_KINDS,
                                      "result": ("completed", "refused", "incomplete"),
                                      "severity": ("note", "concern", "breach")}


class StaffError(ValueError):
    """A request that is malformed or whose arguments are wrong; names the field."""


@dataclass(frozen=True)
class Request:
    """A checked staff command."""

    command: str
    txn: str
    user: str | None  # the payload's claim, if any; the topic's user is the actor
    args: dict[str, Any]


def _check_arg(kind: str, value: Any) -> bool:
    if kind == "ids":
        return isinstance(value, list) and all(_check("id", v) for v in value)
    if kind == "strs":
        return isinstance(value, list) and all(_check("str", v) for v in value)
    return _check(kind, value)


def check_args(command: str, args: Any) -> dict[str, Any]:
    """Check a command's arguments against its schema; raise StaffError naming the field."""
    if command not in COMMANDS:
        raise StaffError(f"unknown command {command!r}")
    if not isinstance(args, dict):
        raise StaffError("args must be an object")
    schema = COMMANDS[command]
    for key in args:
        if key not in schema:
            raise StaffError(f"{command}: unknown argument {key!r}")
    for key, (kind, required) in schema.items():
        if key not in args:
            if required:
                raise StaffError(f"{command}: missing argument {key!r}")
            continue
        if not _check_arg(kind, args[key]):
            raise StaffError(f"{command}: argument {key!r} must be {kind}, got {args[key]!r}")
        allowed = _ENUMS.get(key)
        if allowed is not None and args[key] not in allowed:
            raise StaffError(f"{command}: argument {key!r} must be one of {', '.join(allowed)}")
    return args


def check_txn(txn: Any) -> str:
    """A transaction id: a string of 1-64 characters."""
    if not isinstance(txn, str) or not 1 <= len(txn) <= 64:
        raise StaffError("txn must be a string of 1-64 characters")
    return txn


def parse_request(command: str, payload: bytes) -> Request:
    """Check a request payload for `command`; raise StaffError naming what is wrong."""
    if command not in COMMANDS:
        raise StaffError(f"unknown command {command!r}")
    if len(payload) > MAX_REQUEST:
        raise StaffError(f"request larger than {MAX_REQUEST} bytes")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise StaffError(f"request is not JSON: {e}") from None
    if not isinstance(data, dict) or not {"txn", "args"} <= set(data) <= {"txn", "user", "args"}:
        raise StaffError("request must be an object with 'txn', 'args' and optionally 'user'")
    txn, user = check_txn(data["txn"]), data.get("user")
    if user is not None and (not isinstance(user, str) or not ID_RE.match(user)):
        raise StaffError("user must be an account id of [a-z0-9-]")
    return Request(command, txn, user, check_args(command, data["args"]))


def request_payload(txn: str, user: str | None, args: dict[str, Any]) -> bytes:
    """Encode a request (`user`, when given, must be the login that publishes it)."""
    doc: dict[str, Any] = {"txn": txn, "args": args}
    if user is not None:
        doc["user"] = user
    return json.dumps(doc).encode()


def response_payload(txn: str, ok: bool, error: str | None = None,
                     result: dict[str, Any] | None = None) -> bytes:
    """Encode a response."""
    return json.dumps({"txn": txn, "ok": ok, "error": error, "result": result or {}}).encode()
