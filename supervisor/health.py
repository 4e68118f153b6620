"""The supervisor's own retained health, as the nodes have theirs: `supervisor/health`.

What an operator needs to see before staff notice anything: ingest and rejection counters
by reason, the inbox's depth, the journal's size and the free disk under it, the last
checkpoint, whether the journal is failing (degraded) and which nodes are throttled.
"""

import shutil
import time
from pathlib import Path
from typing import Any

HEALTH_INTERVAL_S = 5.0  # real seconds between publications


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def health_body(sup: Any, now_ms: int) -> dict[str, Any]:
    """The health document of a running Supervisor."""
    db = Path(sup.journal.path)
    try:
        free = shutil.disk_usage(db.parent).free
    except OSError:
        free = -1
    ing = sup.ingest
    counts = dict(sorted(ing.stats.counts.items()))
    return {
        "ts": now_ms,
        "status": "degraded" if sup.degraded.active else "online",
        "degraded_since": sup.degraded.since_ms,
        "journal_failures": sup.degraded.failures,
        "ingest": counts,
        "rejected": dict(sorted(ing.rejected_by_reason.items())),
        "throttled_nodes": ing.budget.throttled_nodes(),
        # Staff accounts over their request budget now, and their requests refused for it.
        "throttled_accounts": sorted(sup.staff.throttled),
        "throttled_requests": sup.staff.throttled_total,
        "queue": sup.inbox.qsize(),
        # Times the inbox was full and the broker had to hold messages (back-pressure).
        "queue_full": sup.inbox_full,
        "journal": {"entries": sup.journal.count,
                    "bytes": _size(db) + _size(Path(str(db) + "-wal")),
                    "free_bytes": free},
        "checkpoint": sup.last_checkpoint,
        # Start-up from a snapshot, snapshots refused (integrity) or stale, the last made.
        "snapshots": sup.snapshots.health_body(),
        # Evidence views and how they ended (fetched, cached, mismatch, timeout, refused...).
        "evidence": {**dict(sorted(sup.evidence.stats.items())),
                     "refused_views": sup.staff.evidence_refused},
    }


class HealthPublisher:
    """Publishes the health document retained, at most every HEALTH_INTERVAL_S."""

    def __init__(self, interval_s: float = HEALTH_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last = 0.0

    def due(self) -> bool:
        """Whether it is time to publish again."""
        mono = time.monotonic()
        if mono - self._last < self.interval_s:
            return False
        self._last = mono
        return True
