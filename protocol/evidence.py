"""Evidence clips kept on a node: the request the supervisor sends and the node's answer.

A node keeps a privacy-masked clip (and the clear cut) around each alert and announces it with
an `evidence` event (ids, span, SHA-256s); the video itself leaves the node only when asked.
The supervisor, after checking the staff member's role for `view-evidence` (protocol/staff.py)
and journaling the view, sends the node an `evidence_request` on
`node/<node>/evidence-request` (signed with the node's key like `ack` and `roster`); the node
answers each request with one chunk on `node/<node>/evidence-data`, and the supervisor asks for
the next offset until `eof`, then checks the whole file's SHA-256 against the journaled one.

request  {"txn", "evidence", "user", "clear", "offset", "length"}
response {"txn", "evidence", "ok", "error", "sha256", "total", "offset", "data_b64", "eof",
          "clear"}

On the wire both go in the signed envelope (protocol/envelope.py, seq 0, the node's key).
A request is an `evidence_request` event. An answer is the envelope of an `evidence_data`
event whose body is the response without `data_b64` plus `length` and `chunk_sha256`,
then one newline, then the chunk's raw bytes: the MAC covers the header, the header pins
the chunk by its hash, and the envelope stays under its 8 KiB limit whatever the chunk's
size (canonical JSON never contains a raw newline, so the first one ends the header).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .envelope import Event, VerifyError, seal, verify
from .ids import ID_RE

REQUEST_CHANNEL = "evidence-request"
DATA_CHANNEL = "evidence-data"
MAX_CHUNK = 192 * 1024  # bytes of video per response (~256 KiB as base64)


class EvidenceError(ValueError):
    """A malformed evidence request; names the field."""


@dataclass(frozen=True)
class EvidenceRequest:
    """A checked request for one chunk of an evidence clip."""

    txn: str
    evidence: str
    user: str
    clear: bool = False
    offset: int = 0
    length: int = MAX_CHUNK


def parse_request(data: Any) -> EvidenceRequest:
    """Check a decoded request body; raise EvidenceError naming the field."""
    if not isinstance(data, dict):
        raise EvidenceError("evidence request must be an object")
    extra = set(data) - {"txn", "evidence", "user", "clear", "offset", "length"}
    if extra:
        raise EvidenceError(f"evidence request: unknown field {sorted(extra)[0]!r}")
    txn = data.get("txn")
    if not isinstance(txn, str) or not 1 <= len(txn) <= 64:
        raise EvidenceError("evidence request: txn must be a string of 1-64 characters")
    for key in ("evidence", "user"):
        v = data.get(key)
        if not isinstance(v, str) or not ID_RE.match(v):
            raise EvidenceError(f"evidence request: {key} must be an id of [a-z0-9-]")
    clear = data.get("clear", False)
    if not isinstance(clear, bool):
        raise EvidenceError("evidence request: clear must be a boolean")
    offset, length = data.get("offset", 0), data.get("length", MAX_CHUNK)
    for key, v in (("offset", offset), ("length", length)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise EvidenceError(f"evidence request: {key} must be an integer >= 0")
    if length > MAX_CHUNK:
        raise EvidenceError(f"evidence request: length must be at most {MAX_CHUNK}")
    return EvidenceRequest(txn, data["evidence"], data["user"], clear, offset, length)


def response(req: EvidenceRequest, ok: bool, error: str | None = None,
             **fields: Any) -> dict[str, Any]:
    """A response body to `req` (fields: sha256, total, offset, data_b64, eof, clear)."""
    return {"txn": req.txn, "evidence": req.evidence, "ok": ok, "error": error, **fields}


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (a segment or clip, as journaled and checked)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _opened(payload: bytes, key: bytes, node: str, etype: str, what: str) -> Event:
    """The verified event of type `etype` from `node`; EvidenceError names the fault."""
    try:
        ev = verify(payload, {node: key}, topic_node=node)
    except VerifyError as e:
        raise EvidenceError(f"evidence {what} refused: {e}") from None
    if ev.type != etype:
        raise EvidenceError(f"evidence {what} refused: type {ev.type!r}")
    return ev


def seal_request(key: bytes, node: str, ts_ms: int, req: EvidenceRequest) -> bytes:
    """The signed payload for `node/<node>/evidence-request`."""
    return seal(key, node, 1, 0, ts_ms, "evidence_request", asdict(req))


def open_request(payload: bytes, key: bytes, node: str) -> EvidenceRequest:
    """Verify a request's signature and fields; raise EvidenceError naming the fault."""
    return parse_request(_opened(payload, key, node, "evidence_request", "request").body)


def seal_response(key: bytes, node: str, ts_ms: int, resp: dict[str, Any]) -> bytes:
    """The signed payload for `node/<node>/evidence-data` from a `response()` dict."""
    data = base64.b64decode(resp.get("data_b64") or "")
    body = {k: v for k, v in resp.items() if k != "data_b64" and v is not None}
    if "error" in body:
        body["error"] = str(body["error"])[:500]
    if resp.get("ok"):
        body["length"] = len(data)
        body["chunk_sha256"] = hashlib.sha256(data).hexdigest()
    return seal(key, node, 1, 0, ts_ms, "evidence_data", body) + b"\n" + data


def open_response(payload: bytes, key: bytes, node: str) -> tuple[dict[str, Any], bytes]:
    """Verify an answer: (header body, chunk bytes); raise EvidenceError naming the fault."""
    head, sep, data = payload.partition(b"\n")
    if not sep:
        raise EvidenceError("evidence answer: no newline after the signed header")
    body = _opened(head, key, node, "evidence_data", "answer").body
    if body["ok"]:
        if body.get("length") != len(data) or \
                body.get("chunk_sha256") != hashlib.sha256(data).hexdigest():
            raise EvidenceError("evidence answer: the chunk does not match its signed hash")
        for key_ in ("sha256", "total", "offset", "eof"):
            if key_ not in body:
                raise EvidenceError(f"evidence answer: missing field {key_!r}")
    elif data:
        raise EvidenceError("evidence answer: a refusal carries no data")
    return body, data
