"""Scoring: expected alerts against raised ones: matched (with latency), missed, false; each
lifecycle step an expectation names (severity, escalation, acknowledgement, closing) checked
against the alert's messages; refused staff commands and staff reactions that never found
their alert fail the run too (a scenario whose commands are refused tests something else)."""

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
    lifecycle: list[dict[str, Any]] = field(default_factory=list)  # one per checked step
    refused: list[str] = field(default_factory=list)  # staff commands the supervisor refused
    unused: list[str] = field(default_factory=list)  # staff reactions never carried out
    # How often, and for how long in real seconds, custody time stood still because the
    # simulator was held up (protocol/clock.py's held clock): the run went slower, not wrong.
    clock_stops: int = 0
    clock_stopped_s: float = 0.0
    clock_held_by: dict[str, int] = field(default_factory=dict)  # process -> stops
    clock_gave_up: dict[str, int] = field(default_factory=dict)  # stale process -> times

    @property
    def passed(self) -> bool:
        """True when nothing was missed, nothing false was raised, every lifecycle step
        checked out, no staff command was refused and every staff reaction happened."""
        return (not self.missed and not self.false and not self.refused and not self.unused
                and all(c["ok"] for c in self.lifecycle))

    def as_json(self) -> dict[str, Any]:
        """The JSON the CLI writes."""
        return {"scenario": self.scenario, "passed": self.passed, "expected": self.expected,
                "raised": self.raised, "matched": self.matched, "missed": self.missed,
                "false": self.false, "latency_ms": self.latency_ms,
                "clock_stops": self.clock_stops,
                "clock_stopped_s": round(self.clock_stopped_s, 3),
                "clock_held_by": self.clock_held_by, "clock_gave_up": self.clock_gave_up,
                "lifecycle": self.lifecycle, "refused": self.refused, "unused": self.unused}


def _subject_ok(e: Expected, r: Raised) -> bool:
    """The alert names the expected subject and contradicts none of it."""
    if e.detainee is not None and r.detainee is not None and r.detainee != e.detainee:
        return False
    if e.room is not None and r.room is not None and r.room != e.room:
        return False
    return (e.detainee is not None and r.detainee == e.detainee) or (
        e.room is not None and r.room == e.room)


def lifecycle_checks(e: Expected, alert_id: str, msgs: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
    """Each lifecycle step `e.checks` names, against the alert's messages in order."""
    out: list[dict[str, Any]] = []
    states = [str(m.get("state")) for m in msgs if m.get("state") != "updated"]
    first = msgs[0] if msgs else {}

    def add(step: str, want: Any, got: Any) -> None:
        out.append({"alert": alert_id, "rule": e.rule, "subject": e.detainee or e.room,
                    "step": step, "want": want, "got": got, "ok": want == got})

    c = e.checks
    if "severity" in c:
        add("severity", c["severity"], first.get("severity"))
    if "escalated" in c:
        add("escalated", c["escalated"], "escalated" in states)
    if "lifecycle" in c:
        add("lifecycle", c["lifecycle"], states)
    if "acked_by" in c:
        acks = [m.get("by") for m in msgs if m.get("state") == "acknowledged"]
        add("acked_by", c["acked_by"], acks[0] if acks else None)
    if "closed_by" in c:
        closers = [m.get("by") or "" for m in msgs
                   if m.get("state") in ("resolved", "false_alarm")]
        add("closed_by", c["closed_by"], closers[0] if closers else None)
    if "closed_within_s" in c:
        closed = [int(m.get("ts") or 0) for m in msgs
                  if m.get("state") in ("resolved", "false_alarm")]
        took = (closed[0] - int(first.get("raised_ts") or 0)) / 1000 if closed else None
        ok = took is not None and took <= c["closed_within_s"]
        out.append({"alert": alert_id, "rule": e.rule, "subject": e.detainee or e.room,
                    "step": "closed_within_s", "want": c["closed_within_s"], "got": took,
                    "ok": ok})
    return out


def score(name: str, expected: list[Expected], raised: list[Raised], start_ms: int,
          history: list[dict[str, Any]] | None = None, refused: list[str] | None = None,
          unused: list[str] | None = None) -> Score:
    """Match each expected alert to the earliest fitting raised alert (one each); check the
    lifecycle steps of the matched ones against `history` (every alert message seen)."""
    s = Score(name, [asdict(e) for e in expected], [asdict(r) for r in raised],
              refused=list(refused or []), unused=list(unused or []))
    by_id: dict[str, list[dict[str, Any]]] = {}
    for m in history or []:
        by_id.setdefault(str(m.get("id")), []).append(m)
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
        if e.checks:
            s.lifecycle += lifecycle_checks(e, hit.id, by_id.get(hit.id, []))
    s.false = [asdict(r) for r in free]
    return s
