"""Scoring: expected alerts against raised ones: matched (with latency), missed, false."""

from dataclasses import asdict, dataclass, field
from typing import Any

from .timetable import Expected

EARLY_SLACK_S = 5.0  # an alert may carry a timestamp a little before the planned moment


@dataclass(frozen=True)
class Raised:
    """An alert as staff saw it on alert/#: its first message."""

    id: str
    rule: str
    severity: str
    detainee: str | None
    room: str | None
    raised_ts: int  # custody ms
    seen_real: float  # real Unix time we received it
    message: str = ""


@dataclass
class Score:
    """The scorecard of one run."""

    scenario: str
    expected: list[dict[str, Any]] = field(default_factory=list)
    raised: list[dict[str, Any]] = field(default_factory=list)
    matched: list[dict[str, Any]] = field(default_factory=list)
    missed: list[dict[str, Any]] = field(default_factory=list)
    false: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: list[int] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when nothing was missed and nothing false was raised."""
        return not self.missed and not self.false

    def as_json(self) -> dict[str, Any]:
        """The JSON the CLI writes."""
        return {"scenario": self.scenario, "passed": self.passed, "expected": self.expected,
                "raised": self.raised, "matched": self.matched, "missed": self.missed,
                "false": self.false, "latency_ms": self.latency_ms}


def _subject_ok(e: Expected, r: Raised) -> bool:
    """The alert names the expected subject and contradicts none of it."""
    if e.detainee is not None and r.detainee is not None and r.detainee != e.detainee:
        return False
    if e.room is not None and r.room is not None and r.room != e.room:
        return False
    return (e.detainee is not None and r.detainee == e.detainee) or (
        e.room is not None and r.room == e.room)


def score(name: str, expected: list[Expected], raised: list[Raised], start_ms: int) -> Score:
    """Match each expected alert to the earliest fitting raised alert (one each)."""
    s = Score(name, [asdict(e) for e in expected], [asdict(r) for r in raised])
    free = sorted(raised, key=lambda r: r.raised_ts)
    for e in sorted(expected, key=lambda x: x.from_s):
        lo = start_ms + int((e.from_s - EARLY_SLACK_S) * 1000)
        hi = start_ms + int((e.from_s + e.within_s) * 1000)
        hit = next((r for r in free if r.rule == e.rule and _subject_ok(e, r)
                    and lo <= r.raised_ts <= hi), None)
        if hit is None:
            s.missed.append(asdict(e))
            continue
        free.remove(hit)
        lat = max(0, hit.raised_ts - (start_ms + int(e.from_s * 1000)))
        s.matched.append({"expected": asdict(e), "alert": hit.id, "latency_ms": lat})
        s.latency_ms.append(lat)
    s.false = [asdict(r) for r in free]
    return s
