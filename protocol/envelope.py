"""The signed envelope: how an event travels and how it is checked.

Payload bytes on the wire are canonical JSON of `{"env": E, "mac": M}` where E is the
canonical JSON text of the envelope object

    {"v": 1, "node": id, "epoch": int>=1, "seq": int>=0, "ts": ms, "type": str, "body": {...}}

and M is the lower-case hex HMAC-SHA256, under the node's own key, of the exact ASCII
bytes of E. Carrying E as a string means the verifier MACs exactly the bytes the signer
signed, with no re-encoding on either side.
"""

import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from . import PROTOCOL_VERSION
from .canonical import CanonicalError, dumps
from .events import BodyError, Event, validate_body
from .ids import ID_RE

MAX_PAYLOAD = 8192
MAC_HEX_LEN = 64
ENVELOPE_KEYS = frozenset({"v", "node", "epoch", "seq", "ts", "type", "body"})
MAX_DEPTH = 16  # canonical JSON's nesting limit (protocol/canonical.py)
# The canonical wire form `{"env":"<E, escaped>","mac":"<64 hex>"}`, as ASCII text.
_OUTER_HEAD = '{"env":'
_OUTER_TAIL = re.compile(r'","mac":"([0-9a-f]{64})"\}\Z')
_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]  # C decoder


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
    return hmac.digest(key, data, "sha256").hex()  # the one-shot C path of hmac.new


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

    Replay is not checked here: that needs per-node state (see ReplayWindow). A canonical
    payload for a known topic node takes the fast path (MAC over the received envelope bytes
    first, then one C-speed parse); anything it does not accept, verify_slow judges, so the
    outcome and its reason are those of the full check.
    """
    if topic_node is not None and len(payload) <= MAX_PAYLOAD:
        event = _verify_fast(payload, keys, topic_node)
        if event is not None:
            return event
    return verify_slow(payload, keys, topic_node)


def _refuse_number(text: str) -> Any:
    raise ValueError(f"{text} is not canonical")  # floats, NaN, Infinity


# Built once: json.loads/json.dumps with options build a new decoder/encoder on every call.
_DECODER = json.JSONDecoder(parse_float=_refuse_number, parse_constant=_refuse_number)
CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _nesting(text: str) -> int:
    """An upper bound on the nesting depth of JSON `text` (brackets inside strings count)."""
    return text.count("{") + text.count("[")


def _verify_fast(payload: bytes, keys: dict[str, bytes], node: str) -> Event | None:
    """The event of a canonical, correctly signed payload from `node`; None for anything else.

    Accepting implies verify_slow accepts with the same event: the outer object is exactly
    env then mac; the envelope re-encodes (sorted keys, C encoder) to exactly its own text,
    which excludes duplicate keys (a dict keeps one of them), and floats and NaN are refused
    while parsing; nesting is bounded before the body is handed on.
    """
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        return None
    # The tail's first quote closes E's literal: the shortest payload is `{"env":""` + 74.
    tail = _OUTER_TAIL.match(text, len(text) - 75) if len(text) >= 83 else None
    key = keys.get(node)
    if tail is None or key is None or not text.startswith(_OUTER_HEAD) or \
            text[7] != '"' or not ID_RE.match(node):
        return None
    literal = text[7:tail.start() + 1]  # the JSON string literal carrying E
    try:
        env_text, end = _scanstring(literal, 1, True)
    except ValueError:
        return None
    if end != len(literal):
        return None
    try:
        signed = env_text.encode("ascii")
    except UnicodeEncodeError:
        return None
    if not hmac.compare_digest(hmac.digest(key, signed, "sha256").hex(), tail.group(1)):
        return None  # verify_slow names the fault (wrong node, unknown node, bad MAC...)
    try:
        env, end = _DECODER.raw_decode(env_text)
    except (ValueError, RecursionError):
        return None
    if end != len(env_text) or not isinstance(env, dict) or len(env) != len(ENVELOPE_KEYS) or \
            env.keys() != ENVELOPE_KEYS or env["node"] != node or \
            env["v"] != PROTOCOL_VERSION or _nesting(env_text) > MAX_DEPTH + 1:
        return None
    if CANONICAL_ENCODER.encode(env) != env_text:
        return None
    epoch, seq, ts, etype = env["epoch"], env["seq"], env["ts"], env["type"]
    for v, minimum in ((epoch, 1), (seq, 0), (ts, 0)):
        if type(v) is not int or v < minimum or v >= 2**53:
            return None
    if not isinstance(etype, str):
        return None
    try:
        body = validate_body(etype, env["body"])
    except BodyError:
        return None
    return Event(node, epoch, seq, ts, etype, body)


def verify_slow(payload: bytes, keys: dict[str, bytes], topic_node: str | None = None
                ) -> Event:
    """verify() for any payload, checking in the order that names the first fault."""
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
