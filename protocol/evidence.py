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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
