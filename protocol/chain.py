"""The journal's chain and checkpoint format: the contract between a site and its witnesses.

Each entry's hash covers the previous hash, a canonical header and the entry's exact bytes; a
checkpoint is the signed (count, head) of the chain. The site's supervisor writes them and
every witness (`custody audit verify`, the bureau) checks them with these same functions.
"""

import hashlib
import hmac
import json

from .canonical import dumpb
from .ids import ID_RE

GENESIS = bytes(32)


def entry_hash(prev: bytes, node: str, epoch: int, seq: int, kind: str, payload: bytes) -> bytes:
    """Chain hash of one entry over the previous hash and the entry's exact bytes."""
    if ID_RE.match(node) and ID_RE.match(kind):  # ids need no escaping: same bytes, faster
        header = f'["{node}",{epoch},{seq},"{kind}",{len(payload)}]\n'.encode("ascii")
    else:
        header = dumpb([node, epoch, seq, kind, len(payload)]) + b"\n"
    return hashlib.sha256(prev + header + payload).digest()


def checkpoint(key: bytes, count: int, head: bytes, ts_ms: int) -> bytes:
    """A signed checkpoint: canonical JSON {count, head, ts, mac}."""
    body = {"count": count, "head": head.hex(), "ts": ts_ms}
    mac = hmac.new(key, dumpb(body), hashlib.sha256).hexdigest()
    return dumpb({**body, "mac": mac})


def open_checkpoint(key: bytes, data: bytes) -> tuple[int, str]:
    """Check a checkpoint's MAC; return (count, head hex) or raise ValueError."""
    try:
        obj = json.loads(data)
        count, head, ts = int(obj["count"]), str(obj["head"]), int(obj["ts"])
        mac = str(obj["mac"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"checkpoint is malformed: {e}") from None
    want = hmac.new(key, dumpb({"count": count, "head": head, "ts": ts}),
                    hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, mac):
        raise ValueError("checkpoint signature does not match the supervisor key")
    return count, head
