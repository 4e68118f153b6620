"""The signed envelope: how an event travels and how it is checked.

Payload bytes on the wire are canonical JSON of `{"env": E, "mac": M}` where E is the
canonical JSON text of the envelope object

    {"v": 1, "node": id, "epoch": int>=1, "seq": int>=0, "ts": ms, "type": str, "body": {...}}

and M is the lower-case hex HMAC-SHA256, under the node's own key, of the exact ASCII
bytes of E. Carrying E as a string means the verifier MACs exactly the bytes the signer
signed, with no re-encoding on either side.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from . import PROTOCOL_VERSION
from .canonical import CanonicalError, dumps
from .events import BodyError, Event, validate_body
from .ids import ID_RE

MAX_PAYLOAD = 8192
MAC_HEX_LEN = 64
ENVELOPE_KEYS = frozenset({"v", "node", "epoch", "seq", "ts", "type", "body"})


class Reason:
    """Why a payload was rejected; also the counters' names."""

    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_NODE = "unknown_node"
    NODE_MISMATCH = "node_mismatch"
    BAD_MAC = "bad_mac"
    BAD_FIELD = "bad_field"
    UNKNOWN_TYPE = "unknown_type"
    BAD_BODY = "bad_body"
    REPLAY = "replay"
    STALE_EPOCH = "stale_epoch"
    OUT_OF_WINDOW = "out_of_window"
    SEQ_JUMP = "seq_jump"
    FUTURE_EPOCH = "future_epoch"
    CLOCK_SKEW = "clock_skew"
    OUT_OF_SCOPE = "out_of_scope"
    OUT_OF_RANGE = "out_of_range"
    THROTTLED = "throttled"


class VerifyError(ValueError):
    """A payload that failed verification; `reason` is one of Reason's values."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a repeated key is refused (json.loads would keep the last one)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise VerifyError(Reason.MALFORMED, f"duplicate key {k!r}")
        out[k] = v
    return out


def loads_strict(text: str | bytes) -> Any:
    """json.loads that refuses duplicate keys (canonical JSON never has them)."""
    return json.loads(text, object_pairs_hook=_no_duplicates)


def mac_hex(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 of `data` under `key`, lower-case hex."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def seal(
    key: bytes, node: str, epoch: int, seq: int, ts_ms: int, event_type: str,
    body: dict[str, Any],
) -> bytes:
    """Build the signed wire payload for one event."""
    env = dumps({"v": PROTOCOL_VERSION, "node": node, "epoch": epoch, "seq": seq,
                 "ts": ts_ms, "type": event_type, "body": body})
    return dumps({"env": env, "mac": mac_hex(key, env.encode("ascii"))}).encode("ascii")


def _int(env: dict[str, Any], key: str, minimum: int) -> int:
    v = env.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum or v >= 2**53:
        raise VerifyError(Reason.BAD_FIELD, f"{key} must be an integer >= {minimum}")
    return v


@dataclass(frozen=True)
class Opened:
    """The outer layer of a payload, before its MAC is checked."""

    env_text: str
    mac: str
    claimed_node: str


def open_payload(payload: bytes) -> Opened:
    """Split a payload into envelope text and MAC; raise VerifyError when malformed."""
    if len(payload) > MAX_PAYLOAD:
        raise VerifyError(Reason.OVERSIZE, f"{len(payload)} bytes > {MAX_PAYLOAD}")
    try:
        outer = loads_strict(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        # RecursionError: json nests arrays by recursion; a deep `[[[[...` must not escape.
        raise VerifyError(Reason.MALFORMED, f"not JSON: {e}") from None
    if not isinstance(outer, dict) or set(outer) != {"env", "mac"}:
        raise VerifyError(Reason.MALFORMED, "payload must be an object with 'env' and 'mac'")
    env_text, mac = outer["env"], outer["mac"]
    if not isinstance(env_text, str) or not isinstance(mac, str):
        raise VerifyError(Reason.MALFORMED, "'env' and 'mac' must be strings")
    if len(mac) != MAC_HEX_LEN or any(c not in "0123456789abcdef" for c in mac):
        raise VerifyError(Reason.MALFORMED, "'mac' must be 64 lower-case hex digits")
    try:
        env = loads_strict(env_text)
    except (ValueError, RecursionError) as e:
        raise VerifyError(Reason.MALFORMED, f"'env' is not JSON: {e}") from None
    if not isinstance(env, dict):
        raise VerifyError(Reason.MALFORMED, "'env' must be an object")
    node = env.get("node")
    if not isinstance(node, str) or not ID_RE.match(node):
        raise VerifyError(Reason.BAD_FIELD, "node must be a [a-z0-9-] id")
    return Opened(env_text, mac, node)


def verify(payload: bytes, keys: dict[str, bytes], topic_node: str | None = None) -> Event:
    """Verify a payload's size, shape, node, MAC and fields; return the typed event.

    Replay is not checked here: that needs per-node state (see ReplayWindow).
    """
    opened = open_payload(payload)
    if topic_node is not None and opened.claimed_node != topic_node:
        raise VerifyError(Reason.NODE_MISMATCH,
                          f"envelope node {opened.claimed_node!r} != topic node {topic_node!r}")
    key = keys.get(opened.claimed_node)
    if key is None:
        raise VerifyError(Reason.UNKNOWN_NODE, f"no key for node {opened.claimed_node!r}")
    try:
        signed = opened.env_text.encode("ascii")
    except UnicodeEncodeError:
        raise VerifyError(Reason.MALFORMED, "'env' must be ASCII canonical JSON") from None
    if not hmac.compare_digest(mac_hex(key, signed), opened.mac):
        raise VerifyError(Reason.BAD_MAC, f"MAC does not match node {opened.claimed_node!r}'s key")
    env = loads_strict(opened.env_text)
    if set(env) != ENVELOPE_KEYS:
        raise VerifyError(Reason.BAD_FIELD, f"envelope keys must be {sorted(ENVELOPE_KEYS)}")
    if env["v"] != PROTOCOL_VERSION:
        raise VerifyError(Reason.BAD_FIELD, f"protocol version {env['v']!r} unsupported")
    epoch, seq, ts = _int(env, "epoch", 1), _int(env, "seq", 0), _int(env, "ts", 0)
    etype = env["type"]
    if not isinstance(etype, str):
        raise VerifyError(Reason.BAD_FIELD, "type must be a string")
    try:
        dumps(env["body"])  # floats and other non-canonical values are refused
        body = validate_body(etype, env["body"])
    except CanonicalError as e:
        raise VerifyError(Reason.BAD_BODY, str(e)) from None
    except BodyError as e:
        reason = Reason.UNKNOWN_TYPE if str(e).startswith("unknown event type") else Reason.BAD_BODY
        raise VerifyError(reason, str(e)) from None
    return Event(opened.claimed_node, epoch, seq, ts, etype, body)
