"""Rules the node enforces itself, with no supervisor: evaluated on every tick of the loop.

A condition must hold continuously for its grace before a `local_alert` `new` is published;
while it holds the alert is `update`d when the bands involved change; it `end`s when the
condition clears. Grace and timing are custody seconds from the site's [rules].
"""

import itertools
from dataclasses import dataclass, field
from typing import Any

from protocol.site import Room, Rules

from .roster import Roster

EventOut = tuple[str, dict[str, Any]]
Key = tuple[str, str]  # (rule, subject)


@dataclass(frozen=True)
class Condition:
    """A rule condition that holds right now."""

    bands: tuple[str, ...]
    grace_s: float
    detail: str


@dataclass
class ActiveAlert:
    """A local alert that has been raised and not ended."""

    id: str
    rule: str
    bands: tuple[str, ...]


@dataclass(frozen=True)
class Inputs:
    """What the rules look at on one tick."""

    present: frozenset[str]  # bands in the room (presence readers)
    seen: frozenset[str]  # bands read by any reader of the node recently
    status: dict[str, tuple[bool, bool]]  # band -> (tamper, battery low)
    roster: Roster | None
    outbox_high_water: bool = False


@dataclass
class LocalRules:
    """Never-alone, interview, unknown band, band tamper/battery, outbox high water."""

    room: Room
    rules: Rules
    doorway: bool  # corridors: the longer never-alone grace
    since: dict[Key, float] = field(default_factory=dict)
    grace: dict[Key, float] = field(default_factory=dict)  # of conditions not yet raised
    active: dict[Key, ActiveAlert] = field(default_factory=dict)
    _n: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))

    def conditions(self, i: Inputs) -> dict[Key, Condition]:
        """Every rule condition that holds for these inputs."""
        out: dict[Key, Condition] = {}
        r, room = self.rules, self.room
        if i.roster is not None:
            detainees = sorted(b for b in i.present if i.roster.role(b) == "detainee")
            officers = sorted(b for b in i.present if i.roster.role(b) == "officer")
            if detainees and not officers and room.kind != "holding":
                grace = r.never_alone_doorway_grace_s if self.doorway else r.never_alone_grace_s
                out[("never-alone", room.id)] = Condition(
                    tuple(detainees), grace, f"{len(detainees)} detainee(s), no officer")
            if detainees and room.kind == "interview" and len(officers) < r.interview_min_officers:
                out[("interview", room.id)] = Condition(
                    tuple(detainees + officers), r.interview_grace_s,
                    f"{len(officers)} officer(s) < {r.interview_min_officers}")
            for band in sorted(i.seen):
                if i.roster.role(band) is None:
                    out[("unknown-band", band)] = Condition((band,), 0, "band not on the roster")
        for band, (tamper, low) in sorted(i.status.items()):
            if tamper:
                out[("band-tamper", band)] = Condition((band,), 0, "band reports tamper")
            if low:
                out[("band-battery", band)] = Condition((band,), 0, "band reports battery low")
        if i.outbox_high_water:
            out[("outbox-high-water", room.id)] = Condition((), 0, "outbox at or above 50 %")
        return out

    def evaluate(self, now: float, i: Inputs) -> list[EventOut]:
        """Local alert events for this tick (custody time `now`)."""
        out: list[EventOut] = []
        conds = self.conditions(i)
        self.grace.clear()
        for key, c in conds.items():
            start = self.since.setdefault(key, now)
            a = self.active.get(key)
            if a is not None:
                if a.bands != c.bands:
                    a.bands = c.bands
                    out.append(self._event(a, "update", c.detail))
            elif now - start >= c.grace_s:
                a = ActiveAlert(f"{key[0]}-{int(now * 1000):x}-{next(self._n)}", key[0], c.bands)
                self.active[key] = a
                out.append(self._event(a, "new", c.detail))
            else:
                self.grace[key] = c.grace_s
        for key in [k for k in self.since if k not in conds]:
            del self.since[key]
            a = self.active.pop(key, None)
            if a is not None:
                out.append(self._event(a, "end", "condition cleared"))
        return out

    def next_deadline(self) -> float | None:
        """Custody time at which a pending condition's grace runs out, if any is pending."""
        times = [self.since[k] + g for k, g in self.grace.items()]
        return min(times) if times else None

    def _event(self, a: ActiveAlert, phase: str, detail: str) -> EventOut:
        return ("local_alert", {"id": a.id, "phase": phase, "rule": a.rule, "room": self.room.id,
                                "bands": list(a.bands), "detail": detail})

    def ended_after_restart(self, saved: list[dict[str, Any]]) -> list[EventOut]:
        """End events for alerts a previous run left active (re-raised by evaluate if due)."""
        out: list[EventOut] = []
        for s in saved:
            a = ActiveAlert(str(s["id"]), str(s["rule"]), tuple(s.get("bands", ())))
            out.append(self._event(a, "end", "agent restarted"))
        return out

    def saved(self) -> list[dict[str, Any]]:
        """Active alerts, to remember across a restart."""
        return [{"id": a.id, "rule": a.rule, "bands": list(a.bands)} for a in self.active.values()]
