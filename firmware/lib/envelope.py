# The signed envelope, as protocol/envelope.py builds and checks it: seal() is
# byte-identical to the CPython code; verify() rejects what the CPython verifier rejects.
import json

import canon
import hmac256
from schema import ENUMS, EVENT_TYPES, PHASES

PROTOCOL_VERSION = 1
MAX_PAYLOAD = 8192
_KEYS = ("body", "epoch", "node", "seq", "ts", "type", "v")
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
_HEX = "0123456789abcdef"
_LIMIT = 1 << 53


class VerifyError(ValueError):
    def __init__(self, reason, detail):
        super().__init__(reason + ": " + detail)
        self.reason = reason
        self.detail = detail


def is_id(v):
    """True for a 1-64 character [a-z0-9-] id starting alphanumeric."""
    if not isinstance(v, str) or not 1 <= len(v) <= 64 or v[0] == "-":
        return False
    for ch in v:
        if ch not in _ID_CHARS:
            return False
    return True


def is_band(v):
    """True for 2-64 lower-case hex digits."""
    if not isinstance(v, str) or not 2 <= len(v) <= 64:
        return False
    for ch in v:
        if ch not in _HEX:
            return False
    return True


def seal(key, node, epoch, seq, ts_ms, event_type, body):
    """Signed wire payload (bytes) for one event."""
    env = canon.dumps({"v": PROTOCOL_VERSION, "node": node, "epoch": epoch, "seq": seq,
                       "ts": ts_ms, "type": event_type, "body": body})
    mac = hmac256.hexdigest(key, env.encode())
    return canon.dumps({"env": env, "mac": mac}).encode()


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check(kind, v):
    if kind == "id":
        return is_id(v)
    if kind == "band":
        return is_band(v)
    if kind == "str":
        return isinstance(v, str) and len(v) <= 512
    if kind == "int":
        return _is_int(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "phase":
        return v in PHASES
    if kind == "bands":
        return isinstance(v, list) and all(is_band(x) for x in v)
    if kind == "ints":
        return isinstance(v, list) and all(_is_int(x) for x in v)
    if kind == "obj":
        return isinstance(v, dict)
    if kind == "sha256":  # 64 lower-case hex digits (segment and evidence hashes)
        return isinstance(v, str) and len(v) == 64 and all(c in _HEX for c in v)
    return False


def check_body(event_type, body):
    """Raise VerifyError(unknown_type / bad_body) unless body fits event_type's schema."""
    schema = EVENT_TYPES.get(event_type)
    if schema is None:
        raise VerifyError("unknown_type", "unknown event type %r" % event_type)
    if not isinstance(body, dict):
        raise VerifyError("bad_body", "body must be an object")
    for k in body:
        if k not in schema:
            raise VerifyError("bad_body", "unknown field %r" % k)
    for k in schema:
        kind, required = schema[k]
        if k not in body:
            if required:
                raise VerifyError("bad_body", "missing field %r" % k)
            continue
        if not _check(kind, body[k]):
            raise VerifyError("bad_body", "field %r must be %s" % (k, kind))
        allowed = ENUMS.get((event_type, k))
        if allowed is not None and body[k] not in allowed:
            raise VerifyError("bad_body", "field %r not one of %r" % (k, allowed))


def _no_floats(v, depth=0):
    if isinstance(v, float) or depth > 16:
        raise VerifyError("bad_body", "floats are not canonical")
    if isinstance(v, dict):
        for x in v.values():
            _no_floats(x, depth + 1)
    elif isinstance(v, list):
        for x in v:
            _no_floats(x, depth + 1)


def verify(payload, keys, topic_node=None):
    """Check size, shape, node, MAC and fields; return the envelope dict or raise VerifyError."""
    if len(payload) > MAX_PAYLOAD:
        raise VerifyError("oversize", "%d bytes" % len(payload))
    try:
        outer = json.loads(payload)
    except (ValueError, UnicodeError):
        raise VerifyError("malformed", "not JSON")
    if not isinstance(outer, dict) or len(outer) != 2 or "env" not in outer or "mac" not in outer:
        raise VerifyError("malformed", "payload must be an object with 'env' and 'mac'")
    env_text, mac = outer["env"], outer["mac"]
    if not isinstance(env_text, str) or not isinstance(mac, str):
        raise VerifyError("malformed", "'env' and 'mac' must be strings")
    if len(mac) != 64 or any(c not in _HEX for c in mac):
        raise VerifyError("malformed", "'mac' must be 64 lower-case hex digits")
    try:
        env = json.loads(env_text)
    except ValueError:
        raise VerifyError("malformed", "'env' is not JSON")
    if not isinstance(env, dict):
        raise VerifyError("malformed", "'env' must be an object")
    node = env.get("node")
    if not is_id(node):
        raise VerifyError("bad_field", "node must be a [a-z0-9-] id")
    if topic_node is not None and node != topic_node:
        raise VerifyError("node_mismatch", "envelope node %r != topic node %r" % (node, topic_node))
    key = keys.get(node)
    if key is None:
        raise VerifyError("unknown_node", "no key for node %r" % node)
    for ch in env_text:
        if ord(ch) > 0x7E:
            raise VerifyError("malformed", "'env' must be ASCII canonical JSON")
    if not hmac256.equal(hmac256.hexdigest(key, env_text.encode()), mac):
        raise VerifyError("bad_mac", "MAC does not match node %r's key" % node)
    if sorted(env) != list(_KEYS):
        raise VerifyError("bad_field", "envelope keys must be %r" % (_KEYS,))
    if env["v"] != PROTOCOL_VERSION:
        raise VerifyError("bad_field", "protocol version unsupported")
    for name, lo in (("epoch", 1), ("seq", 0), ("ts", 0)):
        v = env[name]
        if not _is_int(v) or v < lo or v >= _LIMIT:
            raise VerifyError("bad_field", "%s must be an integer >= %d" % (name, lo))
    if not isinstance(env["type"], str):
        raise VerifyError("bad_field", "type must be a string")
    _no_floats(env["body"])
    check_body(env["type"], env["body"])
    return env


def parse_node_topic(topic, base, channel):
    """The node id of `<base>/node/<node>/<channel>`, or VerifyError(bad_topic)."""
    if not topic.startswith(base + "/node/"):
        raise VerifyError("bad_topic", "%r is not under %r" % (topic, base))
    parts = topic[len(base) + 6:].split("/")
    if len(parts) != 2 or parts[1] != channel or not is_id(parts[0]):
        raise VerifyError("bad_topic", "%r is not a node %s topic" % (topic, channel))
    return parts[0]


class ReplayWindow:
    """Each (node, epoch, seq) once; protocol/replay.py's rules."""

    def __init__(self, size=4096):
        self.size = size
        self.nodes = {}

    def admit(self, node, epoch, seq):
        """Record (epoch, seq) or raise VerifyError(replay / stale_epoch / out_of_window)."""
        w = self.nodes.get(node)
        if w is None:
            w = self.nodes[node] = [0, 0, set()]  # epoch, highest, recent
        if epoch < w[0]:
            raise VerifyError("stale_epoch", "%s: epoch %d < %d" % (node, epoch, w[0]))
        if epoch > w[0]:
            w[0], w[1], w[2] = epoch, 0, set()
        if seq in w[2]:
            raise VerifyError("replay", "%s: epoch %d seq %d already seen" % (node, epoch, seq))
        if seq <= w[1] - self.size:
            raise VerifyError("out_of_window", "%s: seq %d below window" % (node, seq))
        w[2].add(seq)
        if seq > w[1]:
            w[1] = seq
            if len(w[2]) > self.size:
                floor = seq - self.size
                w[2] = set(s for s in w[2] if s > floor)
