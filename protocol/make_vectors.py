"""Regenerate protocol/vectors/*.json (deterministic): `python -m protocol.make_vectors`."""

import hashlib
import json
from pathlib import Path
from typing import Any

from .canonical import dumps
from .envelope import MAX_PAYLOAD, mac_hex, seal

OUT = Path(__file__).resolve().parent / "vectors"
SITE = "test-site"
PREFIX = f"custody/v1/{SITE}"


def key_of(node: str) -> bytes:
    """The fixed test key of a node (never used outside vectors)."""
    return hashlib.sha256(f"{node} test key".encode()).digest()


KEYS = {n: key_of(n).hex() for n in ("node-a", "node-b", "sensor-1")}
TS = 1795000000000


def _sealed(node: str, seq: int, etype: str, body: dict[str, Any], epoch: int = 3,
            key_node: str | None = None) -> str:
    return seal(key_of(key_node or node), node, epoch, seq, TS + seq, etype, body).decode()


def valid() -> list[dict[str, Any]]:
    """Vectors that must be accepted, with the exact bytes a signer must produce."""
    cases: list[tuple[str, str, int, str, dict[str, Any]]] = [
        ("tap", "node-a", 1, "tap", {"band": "0a1b2c3d4e", "reader": "entry-desk",
                                     "room": "entry"}),
        ("door-open", "sensor-1", 7, "door", {"door": "d-property", "state": "open"}),
        ("panic", "sensor-1", 8, "button", {"button": "panic-1", "kind": "panic"}),
        ("presence-unicode-detail", "node-b", 42, "local_alert",
         {"id": "na-1", "phase": "new", "rule": "never-alone", "room": "holding-1",
          "bands": ["e2003412"], "detail": "Zoë — \"alone\" \\ 🚪"}),
        ("behaviour", "node-a", 2, "behaviour",
         {"id": "b-17", "phase": "update", "camera": "cam-h1", "room": "holding-1",
          "cls": "fall", "score_pct": 93, "track": 4, "persons": 1}),
        ("seq-zero-health", "node-b", 0, "health", {"uptime_s": 12, "queue": 0,
                                                   "obj": {"cpu_pct": 7, "temp_c10": -5}}),
    ]
    out = []
    for name, node, seq, etype, body in cases:
        out.append({
            "name": name, "key": KEYS[node], "topic": f"{PREFIX}/node/{node}/event",
            "sign": {"node": node, "epoch": 3, "seq": seq, "ts": TS + seq, "type": etype,
                     "body": body},
            "payload": _sealed(node, seq, etype, body),
            "expect": "accept",
        })
    return out


def invalid() -> list[dict[str, Any]]:
    """Vectors that must be rejected, each with its reason."""
    good = _sealed("node-a", 5, "door", {"door": "d-1", "state": "closed"})
    outer = json.loads(good)
    flipped = outer["env"].replace('"closed"', '"clos3d"')
    env_float = dumps({"v": 1, "node": "node-a", "epoch": 3, "seq": 6, "ts": TS, "type": "door",
                       "body": {"door": "d-1", "state": "open"}})
    env_float = env_float.replace('"state"', '"x":1.5,"state"')
    cases: list[tuple[str, str, str, list[list[Any]], str]] = [
        ("wrong-key", _sealed("node-a", 5, "door", {"door": "d-1", "state": "open"},
                              key_node="node-b"), "node-a", [], "bad_mac"),
        ("flipped-byte", dumps({"env": flipped, "mac": outer["mac"]}), "node-a", [], "bad_mac"),
        ("flipped-mac", dumps({"env": outer["env"], "mac": ("0" if outer["mac"][0] != "0" else "1")
                               + outer["mac"][1:]}), "node-a", [], "bad_mac"),
        ("replayed-sequence", good, "node-a", [["node-a", 3, 5]], "replay"),
        ("stale-epoch", good, "node-a", [["node-a", 4, 1]], "stale_epoch"),
        ("out-of-window", good, "node-a", [["node-a", 3, 5000]], "out_of_window"),
        ("unknown-node", _sealed("node-z", 1, "door", {"door": "d-1", "state": "open"},
                                 key_node="node-a"), "node-z", [], "unknown_node"),
        ("topic-node-mismatch", good, "node-b", [], "node_mismatch"),
        ("malformed-json", good[:-3], "node-a", [], "malformed"),
        ("not-an-object", "[1,2,3]", "node-a", [], "malformed"),
        ("mac-not-hex", dumps({"env": outer["env"], "mac": "z" * 64}), "node-a", [], "malformed"),
        ("oversize", _sealed("node-a", 9, "local_alert",
                             {"id": "x", "phase": "new", "rule": "r", "room": "r",
                              "bands": ["ab"] * (MAX_PAYLOAD // 4)}), "node-a", [], "oversize"),
        ("unknown-type", _sealed("node-a", 10, "teleport", {"to": "mars"}), "node-a", [],
         "unknown_type"),
        ("bad-body", _sealed("node-a", 11, "door", {"door": "d-1", "state": "ajar"}), "node-a", [],
         "bad_body"),
        ("float-in-body", dumps({"env": env_float,
                                 "mac": mac_hex(key_of("node-a"), env_float.encode())}),
         "node-a", [], "bad_body"),
    ]
    out = []
    for name, payload, topic_node, window, reason in cases:
        out.append({"name": name, "keys": {k: v for k, v in KEYS.items() if k != "node-z"},
                    "topic": f"{PREFIX}/node/{topic_node}/event", "payload": payload,
                    "admitted_before": window, "expect": "reject", "reason": reason})
    out.append({"name": "bad-topic-wildcard", "keys": KEYS,
                "topic": f"{PREFIX}/node/+/event", "payload": good, "admitted_before": [],
                "expect": "reject", "reason": "bad_topic"})
    out.append({"name": "bad-topic-uppercase", "keys": KEYS,
                "topic": f"{PREFIX}/node/Node-A/event", "payload": good, "admitted_before": [],
                "expect": "reject", "reason": "bad_topic"})
    return out


def canonical() -> list[dict[str, Any]]:
    """Values and their canonical text."""
    values: list[Any] = [
        {"b": 1, "a": [True, False, None], "c": {"z": -7, "y": ""}},
        "tab\there\nnew line \u00e9 \u20ac \U0001f6aa \"q\" \\ \x7f",
        [0, -1, 9007199254740991],
    ]
    return [{"value": v, "text": dumps(v)} for v in values]


def main() -> None:
    """Write every vector file."""
    OUT.mkdir(exist_ok=True)
    for name, data in (("valid", valid()), ("invalid", invalid()), ("canonical", canonical())):
        (OUT / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    main()
