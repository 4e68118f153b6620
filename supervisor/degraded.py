"""A supervisor that cannot write its journal stays up and says so.

While the journal cannot commit (disk full, I/O error) nothing is acked, so every node's
outbox keeps what it sent and retransmits it; staff requests are refused with a clear
error; the retained availability reads `degraded` and a critical `supervisor-degraded`
alert goes straight to MQTT (it cannot be journaled yet). The first commit that succeeds
ends it: the outage is journaled as a `security` entry (reason `journal_unwritable`, which
opens the same rule's incident for staff to close), the alert is resolved on MQTT, and the
availability reads `online` again -- no restart.
"""

import errno
import json
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from protocol.canonical import dumpb
from protocol.staff import response_payload
from protocol.topics import Topics

log = logging.getLogger(__name__)
Publish = Callable[[str, bytes, int, bool], Any]
RULE, SEVERITY, REASON = "supervisor-degraded", "critical", "journal_unwritable"


def is_storage_error(e: BaseException) -> bool:
    """Whether an exception means the journal's storage failed (not a bug in our code)."""
    if isinstance(e, sqlite3.OperationalError):
        text = str(e).lower()
        return any(w in text for w in ("disk", "full", "i/o", "readonly", "read-only",
                                       "unable to open"))
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT)
    return False


def refusal(request: bytes, error: str) -> bytes:
    """A staff response refusing `request` (its txn echoed when it has one)."""
    txn = "?"
    try:
        obj = json.loads(request)
        if isinstance(obj, dict) and isinstance(obj.get("txn"), str):
            txn = obj["txn"]
    except (ValueError, RecursionError):
        pass
    return response_payload(txn, False, error)


class Degraded:
    """The degraded state and what it publishes on entering and leaving it."""

    def __init__(self, topics: Topics, publish: Publish) -> None:
        self.topics, self.publish = topics, publish
        self.since_ms: int | None = None
        self.detail = ""
        self.failures = 0
        self.dropped = 0  # node messages left unacked (their outboxes keep them)
        self.refused = 0  # staff requests refused
        self.episodes = 0

    @property
    def active(self) -> bool:
        """Whether the journal is currently failing."""
        return self.since_ms is not None

    def failed(self, e: BaseException, now_ms: int) -> None:
        """A commit failed: enter (or stay in) the degraded state."""
        self.failures += 1
        if self.since_ms is not None:
            return
        self.since_ms, self.detail, self.episodes = now_ms, str(e)[:300], self.episodes + 1
        log.critical("journal cannot be written (%s): degraded, acking nothing until it can", e)
        self.publish(self.topics.supervisor("availability"), b"degraded", 1, True)
        self.publish(self.topics.alert(SEVERITY, RULE), self._alert("raised", now_ms), 1, False)

    def record(self, now_ms: int) -> dict[str, Any]:
        """The `security` entry that journals the outage once the journal takes writes."""
        return {"ts": now_ms, "topic": self.topics.supervisor("availability"),
                "reason": REASON, "node": "supervisor", "payload_hex": "",
                "detail": (f"journal could not be written from {self.since_ms} to {now_ms} "
                           f"({self.detail}); {self.dropped} node message(s) left unacked "
                           f"for their outboxes to resend, {self.refused} staff "
                           "request(s) refused")}

    def recovered(self, now_ms: int) -> None:
        """The outage is journaled: resolve the alert, say `online` again."""
        if self.since_ms is None:
            return
        log.warning("journal writable again after %d ms", now_ms - self.since_ms)
        self.publish(self.topics.alert(SEVERITY, RULE), self._alert("resolved", now_ms), 1, False)
        self.publish(self.topics.supervisor("availability"), b"online", 1, True)
        self.since_ms, self.dropped, self.refused = None, 0, 0

    def _alert(self, state: str, now_ms: int) -> bytes:
        since = self.since_ms or now_ms
        return dumpb({"id": f"{RULE}-{since}", "rule": RULE, "state": state,
                      "severity": SEVERITY, "detainee": None, "room": None,
                      "raised_ts": since, "ts": now_ms,
                      "message": f"supervisor cannot write its journal: {self.detail}",
                      "by": None, "action": None})
