"""The custody process on a realistic timetable, as timed steps, with injectable violations.

A detainee's day: arrival and registration at the entry desk, safety search, information
collection, property store (belongings logged), medical, holding with welfare visits,
interviews, disposition and exit. Each stage books its room (search, information, medical,
property and interview rooms take one detainee at a time); walking between rooms goes through
the corridors of the site's door graph, always with the escorting team. Violations change the
day at one stage and say which alert it must raise (rule, subject, window).
"""

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .actors import OUTSIDE
from .centre import Centre, Detainee, Officer

# The duty custody supervisor: gives every approval and is on no detainee's team (four eyes).
DUTY_SUPERVISOR = "duty-sup"
WALK_S = 15.0  # custody seconds per room crossed on the way
SEARCH_S = 240.0
VIOLATIONS = (
    "late-registration", "no-search", "short-search", "one-officer-search", "left-alone",
    "holding-camera-off", "one-officer-interview", "interview-camera-off", "missed-welfare",
    "exit-without-approval", "temporary-exit-overdue", "belongings-late", "fall", "fight",
    "lying-still", "node-offline", "band-tamper",
)


@dataclass(frozen=True)
class Step:
    """One thing that happens at `at_s` custody seconds after the start."""

    at_s: float
    action: str  # move | command | tap | behaviour | band | fault | noise | camera
    args: dict[str, Any]


@dataclass(frozen=True)
class Expected:
    """An alert that must be raised: rule, subject, and raised in [from_s, from_s+within_s]."""

    rule: str
    detainee: str | None
    room: str | None
    from_s: float
    within_s: float
    note: str = ""


@dataclass
class Plan:
    """Everything a run does, in time order, and what it must raise."""

    steps: list[Step] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)
    duration_s: float = 0.0

    def add(self, at_s: float, action: str, **args: Any) -> None:
        """Append a step."""
        self.steps.append(Step(round(at_s, 3), action, args))

    def sorted_steps(self) -> list[Step]:
        """Steps in time order (stable for equal times)."""
        return sorted(self.steps, key=lambda s: s.at_s)


@dataclass(frozen=True)
class Stay:
    """How one detainee's day goes."""

    detainee: str
    team: tuple[str, str]  # escorting officers (one of them the detainee's sex)
    arrive_s: float
    stay_s: float
    interviews: int = 1
    violations: tuple[str, ...] = ()
    intake: str = "full"  # "quick": searched and straight to holding, the day ends there


class Planner:
    """Books rooms and writes the steps of each detainee's day into one plan."""

    SINGLE_USE = ("search", "information", "medical", "property", "interview")

    def __init__(self, centre: Centre, seed: int = 0, pace: float = 1.0) -> None:
        self.pace = pace  # < 1: stages without a legal minimum go faster (short test days)
        self.c = centre
        self.rules = centre.site.rules
        self.rng = random.Random(seed)
        self.plan = Plan()
        self.busy: dict[str, list[tuple[float, float]]] = {}
        self._visitor = ""
        self.arrivals: dict[str, float] = {}  # detainee -> custody s of arrival (arrived_ts)
        self.graph: dict[str, set[str]] = {r.id: set() for r in centre.site.rooms}
        for d in centre.site.doors:
            a, b = d.between
            self.graph[a].add(b)
            self.graph[b].add(a)

    # -- rooms ---------------------------------------------------------------------------
    def route(self, a: str, b: str) -> list[str]:
        """Rooms walked through from a to b (excluding a, including b)."""
        if a == b:
            return []
        prev: dict[str, str] = {}
        q = deque([a])
        seen = {a}
        while q:
            r = q.popleft()
            for n in sorted(self.graph[r]):
                if n not in seen:
                    seen.add(n)
                    prev[n] = r
                    q.append(n)
        if b not in prev:
            raise ValueError(f"no way from {a} to {b} through the site's doors")
        path = [b]
        while path[-1] != a and prev[path[-1]] != a:
            path.append(prev[path[-1]])
        return list(reversed(path))

    def book(self, kind: str, earliest: float, dur: float) -> tuple[str, float]:
        """The room of `kind` free soonest for `dur` from `earliest`, and when."""
        best: tuple[float, str] | None = None
        for room in self.c.rooms_of_kind(kind):
            t = earliest
            for s, e in sorted(self.busy.get(room, [])):
                if t + dur <= s - 30:
                    break
                t = max(t, e + 30)
            if best is None or t < best[0]:
                best = (t, room)
        if best is None:
            raise ValueError(f"the site has no room of kind {kind!r}")
        self.busy.setdefault(best[1], []).append((best[0], best[0] + dur))
        return best[1], best[0]

    def walk(self, t: float, people: list[str], a: str, b: str) -> float:
        """Move a group from a to b room by room; returns the arrival time."""
        for room in self.route(a, b):
            t += WALK_S * self.pace
            self.plan.add(t, "move", people=people, room=room)
        return t

    def expect(self, rule: str, from_s: float, within_s: float, detainee: str | None = None,
               room: str | None = None, note: str = "") -> None:
        """Record an alert the day must raise."""
        self.plan.expected.append(Expected(rule, detainee, room, round(from_s, 3),
                                           within_s, note))

    # -- the day -------------------------------------------------------------------------
    def register_people(self, at_s: float = 0.0) -> None:
        """Register every officer at the start (staff bands issued at shift start)."""
        first = next(iter(self.c.officers))
        for o in self.c.officers.values():
            self.plan.add(at_s, "command", command="register-officer", user=first,
                          args={"officer": o.id, "band": o.band, "sex": o.sex})

    def _register(self, t: float, d: Detainee, user: str, arrived_s_ago: int) -> None:
        """The register-detainee command at the entry desk."""
        self.plan.add(t, "command", command="register-detainee", user=user,
                      args={"detainee": d.id, "band": d.band, "case": d.case, "sex": d.sex,
                            "custody_type": d.custody_type, "observation": d.observation,
                            "arrived_s_ago": arrived_s_ago})

    def _entry_desk(self, t: float, d: Detainee, user: str, everyone: list[str],
                    belongings_after: float | None, tap_after: float) -> None:
        """Everyone into the entry room at t, belongings logged `belongings_after` s later
        (None: not logged), the detainee's band tapped on the desk reader if there is one."""
        self.plan.add(t, "move", people=everyone, room="entry")
        if belongings_after is not None:
            self.plan.add(t + belongings_after, "command", command="log-belongings", user=user,
                          args={"detainee": d.id, "locker": f"locker-{d.id}",
                                "items": ["wallet", "phone", "keys"]})
        entry_taps = self.c.readers("entry", "tap")
        if entry_taps:
            self.plan.add(t + tap_after, "tap", person=d.id, reader=entry_taps[0].id)

    def detainee_day(self, stay: Stay) -> float:
        """Write one detainee's day; returns when they have left."""
        if stay.intake == "quick":
            return self.quick_day(stay)
        d = self.c.detainees[stay.detainee]
        o1, o2 = stay.team
        v = set(stay.violations)
        r = self.rules
        team = [o1, o2]
        everyone = [d.id, *team]
        t = stay.arrive_s
        # Arrival: band issued and registered at the entry desk.
        late = r.registration_limit_s + 300 if "late-registration" in v else 120
        self.arrivals[d.id] = t - late
        self._register(t, d, o1, late)
        if "late-registration" in v:
            self.expect("brought-straight-in", t, 60, detainee=d.id)
        if "belongings-late" in v:
            self.expect("property", t + r.belongings_limit_s, 120, detainee=d.id)
        t += 2
        # Belongings are taken and logged at the booking-in desk (unless the day forgets them).
        self._entry_desk(t, d, o1, everyone, None if "belongings-late" in v else 60, 10)
        t += 90 * self.pace
        here = "entry"
        if "no-search" in v:
            # Straight to information collection, searched only afterwards.
            # The supervisor raises search-first per room entered before the search
            # (subject: detainee and room), so every room on the way is an alert.
            for i, hop in enumerate(self.route(here, "information")):
                self.expect("search-first", t + (i + 1) * WALK_S * self.pace, 60,
                            detainee=d.id, room=hop)
            t_in = self.walk(t, everyone, here, "information")
            t, here = t_in + 300 * self.pace, "information"
        # Search.
        searchers = [o1] if "one-officer-search" in v else team
        dur = 60.0 if "short-search" in v else SEARCH_S
        room, start = self.book("search", t, dur + 2 * WALK_S)
        if "one-officer-search" in v:
            self.plan.add(start, "move", people=[o2], room=OUTSIDE)
        if "no-search" in v:
            for i, hop in enumerate(self.route(here, room)[:-1]):
                self.expect("search-first", max(t, start) + (i + 1) * WALK_S * self.pace, 60,
                            detainee=d.id, room=hop)
        t = self.walk(max(t, start), [d.id, *searchers], here, room)
        t += dur
        self.plan.add(t, "command", command="record-search", user=o1,
                      args={"detainee": d.id, "officers": searchers, "result": "completed"})
        if "short-search" in v or "one-officer-search" in v:
            self.expect("real-search", t - dur, dur + 60, detainee=d.id)
        here = room
        if "one-officer-search" in v:
            self.plan.add(t + 5, "move", people=[o2], room=here)
            t += 5
        # Information collection (unless done before the search).
        if "no-search" not in v:
            stage = 600 * self.pace
            room, start = self.book("information", t, stage)
            t = self.walk(max(t, start), everyone, here, room)
            if "left-alone" in v:
                self.plan.add(t + 20, "move", people=team, room=OUTSIDE)
                self.expect("never-alone", t + 20, r.never_alone_grace_s + 30, detainee=d.id,
                            room=room)
                self.plan.add(t + 80, "move", people=team, room=room)
            t += max(stage, 100)
            here = room
        # Property store: belongings logged.
        if self.c.rooms_of_kind("property"):
            # One officer takes the detainee to the locker (two officers with a detainee in the
            # property store for a minute would look like an interview outside the rooms).
            room, start = self.book("property", t, 240 * self.pace)
            t = self.walk(max(t, start), [d.id, o1], here, room)
            self.plan.add(t - WALK_S * self.pace, "move", people=[o2], room=OUTSIDE)
            t += min(180 * self.pace, r.interview_grace_s * 0.5)
            self.plan.add(t, "move", people=[o2], room=room)
            t += 5
            here = room
        # Medical.
        if self.c.rooms_of_kind("medical"):
            room, start = self.book("medical", t, 300 * self.pace)
            t = self.walk(max(t, start), everyone, here, room) + 300 * self.pace
            here = room
        # Holding, welfare visits and interviews until disposition.
        end = stay.arrive_s + stay.stay_s
        if "belongings-late" in v:  # still in custody when the belongings limit passes
            end = max(end, stay.arrive_s + r.belongings_limit_s + 300)
        holding = d.holding or self.c.rooms_of_kind("holding")[0]
        t = self.walk(t, everyone, here, holding)
        in_holding = t
        t += 20
        self.plan.add(t, "move", people=team, room=OUTSIDE)  # officers leave the cell
        interval = r.welfare_interval_s(d.observation)
        visit_every = interval * 0.4
        last_check = t - visit_every + 120  # first look-in two minutes after the door shuts
        events: list[tuple[float, str]] = []
        n_int = stay.interviews
        for i in range(n_int):
            events.append((t + (end - t) * (i + 1) / (n_int + 1), "interview"))
        events.sort()
        behaviour = [k for k in ("fall", "fight", "lying-still") if k in v]
        if behaviour:
            events.append((t + 300, behaviour[0]))
            events.sort()
        if "holding-camera-off" in v:
            events.append((t + 240, "holding-camera-off"))
            events.sort()
        if "band-tamper" in v:
            self.plan.add(t + 200, "band", person=d.id, tamper=True, battery_low=False)
            self.expect("band-tamper", t + 200, 30, room=holding)
            self.plan.add(t + 260, "band", person=d.id, tamper=False, battery_low=False)
        if "node-offline" in v:
            # A node of a room nobody uses today (the toilet's, else the last interview
            # room's): a dead node in an occupied room would also stop its camera.
            spare = (self.c.rooms_of_kind("toilet") or self.c.rooms_of_kind("interview"))[-1]
            node = self.c.node_of_room(spare)
            if node is not None:
                self.plan.add(t + 200, "fault", kind="kill-node", target=node.id)
                self.expect("device-offline", t + 200, r.device_offline_s + 30, room=spare)
                self.plan.add(t + 200 + r.device_offline_s + 60, "fault", kind="start-node",
                              target=node.id)
        if "missed-welfare" in v:
            self.expect("welfare-check", in_holding + interval - r.welfare_warn_before_s, 60,
                        detainee=d.id)
            # Nobody visits, until the escalation point.
            events = [e for e in events if e[0] > t + interval + r.welfare_escalate_after_s
                      + 120]
            if not events:
                end = max(end, t + interval + r.welfare_escalate_after_s + 300)
        self._visitor = o1
        for when, what in events:
            booked: tuple[str, float] | None = None
            if what == "interview":
                # The interview room may be busy: the detainee waits (and is visited) in
                # the cell until it is free.
                booked = self.book("interview", max(t, when), 2400.0 * self.pace
                                   + 4 * WALK_S + 60)
                when = max(when, booked[1])
            # Welfare visits fill the time up to the next thing.
            while "missed-welfare" not in v and last_check + visit_every < when - 120:
                last_check = self._welfare(last_check + visit_every, o1, d, holding)
            t = max(t, when)
            if booked is not None:
                t = self._interview(t, d, team, holding, "one-officer-interview" in v,
                                    "interview-camera-off" in v, booked)
                last_check = t
            elif what == "holding-camera-off":
                cam = self._camera(holding)
                if cam:
                    self.plan.add(t, "camera", camera=cam, covered=True)
                    self.expect("holding-watch", t, r.holding_watch_grace_s
                                + r.recording_gap_s + 30,
                                detainee=d.id, room=holding)
                    self.expect("recording-gap", t, r.recording_gap_s + 30, room=holding)
                    self.plan.add(t + 120, "camera", camera=cam, covered=False)
                    t += 130
            else:
                t = self._behaviour(t, what, d, holding)
        while "missed-welfare" not in v and last_check + visit_every < end - 60:
            last_check = self._welfare(last_check + visit_every, o1, d, holding)
        t = max(t, end)
        # Disposition and exit.
        if "temporary-exit-overdue" in v:
            self.plan.add(t, "command", command="approve-temporary-exit", user=DUTY_SUPERVISOR,
                          args={"detainee": d.id, "return_in_s": 600, "reason": "hospital"})
            self.plan.add(t, "move", people=team, room=holding)
            self.expect("temporary-exit-overdue", t + 600, 120, detainee=d.id)
            t = self.walk(t + 10, everyone, holding, "exit")
            self._exit_tap(t, d)
            self.plan.add(t + 10, "move", people=everyone, room=OUTSIDE)
            return t + 900
        if "exit-without-approval" not in v:
            self.plan.add(t, "command", command="approve-disposition", user=DUTY_SUPERVISOR,
                          args={"detainee": d.id, "disposition": "release"})
        self.plan.add(t + 5, "move", people=team, room=holding)
        t = self.walk(t + 10, everyone, holding, "exit")
        self._exit_tap(t, d)
        if "exit-without-approval" in v:
            self.expect("exit", t, 60, detainee=d.id)
        self.plan.add(t + 30, "move", people=everyone, room=OUTSIDE)
        return t + 30

    def quick_day(self, stay: Stay) -> float:
        """A minimal day for slow (real-time) runs: registration, belongings, the entry tap,
        a search by both officers lasting the site's minimum plus a third, straight to the
        holding room, the officers leave, the behaviour violations happen there; the run
        ends with the detainee still held (no information collection, welfare visits,
        interviews or exit). Returns when the last thing is over."""
        d = self.c.detainees[stay.detainee]
        o1, o2 = stay.team
        team = [o1, o2]
        everyone = [d.id, *team]
        t = stay.arrive_s
        self.arrivals[d.id] = t - 120
        self._register(t, d, o1, 120)
        t += 2
        self._entry_desk(t, d, o1, everyone, 2, 1)
        t += 5
        dur = self.rules.search_min_duration_s * 4 / 3
        room, start = self.book("search", t, dur + 2 * WALK_S)
        t = self.walk(max(t, start), everyone, "entry", room) + dur
        self.plan.add(t, "command", command="record-search", user=o1,
                      args={"detainee": d.id, "officers": team, "result": "completed"})
        holding = d.holding or self.c.rooms_of_kind("holding")[0]
        t = self.walk(t, everyone, room, holding) + 5
        self.plan.add(t, "move", people=team, room=OUTSIDE)
        self._visitor = o1
        for kind in ("fall", "fight", "lying-still"):
            if kind in stay.violations:
                t = self._behaviour(t + 5, kind, d, holding, recover_s=25)
        return t

    def _exit_tap(self, t: float, d: Detainee) -> None:
        taps = self.c.readers("exit", "tap")
        if taps:
            self.plan.add(t + 5, "tap", person=d.id, reader=taps[0].id)

    def _camera(self, room: str) -> str | None:
        node = self.c.node_of_room(room)
        return node.cameras[0].id if node and node.cameras else None

    def _welfare(self, t: float, officer: str, d: Detainee, holding: str) -> float:
        """An officer looks in on the detainee: in the cell for 60 s, seen by its camera."""
        self.plan.add(t, "move", people=[officer], room=holding)
        self.plan.add(t + 60, "command", command="record-welfare-check", user=officer,
                      args={"detainee": d.id, "note": "checked, fine"})
        self.plan.add(t + 61, "move", people=[officer], room=OUTSIDE)
        return t

    def _interview(self, t: float, d: Detainee, team: list[str], holding: str,
                   one_officer: bool, camera_off: bool, booked: tuple[str, float]) -> float:
        dur = 2400.0 * self.pace
        room, start = booked
        t = max(t, start)
        self.plan.add(t, "move", people=team, room=holding)
        everyone = [d.id, *team]
        t = self.walk(t + 10, everyone, holding, room)
        if one_officer:
            self.plan.add(t, "move", people=[team[1]], room=OUTSIDE)
            self.expect("interview", t, self.rules.interview_grace_s + 30, detainee=d.id,
                        room=room)
        if camera_off:
            cam = self._camera(room)
            if cam:
                self.plan.add(t + 300, "camera", camera=cam, covered=True)
                self.expect("recording-gap", t + 300, self.rules.recording_gap_s + 30,
                            room=room)
                self.plan.add(t + 390, "camera", camera=cam, covered=False)
        t += dur
        if one_officer:
            self.plan.add(t, "move", people=[team[1]], room=room)
        t = self.walk(t, everyone, room, holding) + 10
        self.plan.add(t, "move", people=team, room=OUTSIDE)
        return t

    def _behaviour(self, t: float, kind: str, d: Detainee, holding: str,
                   recover_s: float = 60.0) -> float:
        if kind == "fall":
            self.plan.add(t, "behaviour", room=holding, kind="fall", people=1)
            self.expect("fall", t, 30, room=holding)
            self.plan.add(t + recover_s, "behaviour", room=holding, kind="none")
            return t + recover_s + 10
        if kind == "lying-still":
            self.plan.add(t, "behaviour", room=holding, kind="lying", people=1)
            self.expect("lying-still", t + self.rules.lying_still_s, 60, room=holding)
            self.plan.add(t + self.rules.lying_still_s + 120, "behaviour", room=holding,
                          kind="none")
            return t + self.rules.lying_still_s + 130
        # fight: an officer looks in and the detainee turns on them
        officer = self._visitor
        self.plan.add(t, "move", people=[officer], room=holding)
        self.plan.add(t + 20, "behaviour", room=holding, kind="fight", people=2)
        self.expect("fight", t + 20, 30, room=holding)
        self.plan.add(t + 50, "behaviour", room=holding, kind="none")
        self.plan.add(t + 80, "move", people=[officer], room=OUTSIDE)
        return t + 90


def make_team(officers: list[Officer], sex: str, rng: random.Random) -> tuple[str, str]:
    """Two officers, at least one of the detainee's sex."""
    same = [o.id for o in officers if o.sex == sex]
    if not same:
        raise ValueError(f"no officer of sex {sex!r} for a same-sex search")
    first = rng.choice(same)
    second = rng.choice([o.id for o in officers if o.id != first])
    return first, second


def predicted(planner: Planner, arrivals: dict[str, float]) -> list[Expected]:
    """Alerts that follow from the whole plan rather than one violation: co-suspects sharing a
    room longer than the grace, and custody time passing the first warning of its limit."""
    c, r, plan = planner.c, planner.rules, planner.plan
    out: list[Expected] = []
    where: dict[str, str] = {}
    together: dict[tuple[str, str, str], float] = {}  # (room, d1, d2) -> since
    flagged: set[tuple[str, str, str]] = set()
    gone: dict[str, float] = {}
    for s in plan.sorted_steps():
        if s.action != "move":
            continue
        for p in s.args["people"]:
            where[p] = s.args["room"]
            if p in c.detainees and s.args["room"] == OUTSIDE:
                gone[p] = s.at_s
        dets = sorted(d for d in c.detainees if where.get(d, OUTSIDE) != OUTSIDE)
        now_pairs = {(where[a], a, b) for i, a in enumerate(dets) for b in dets[i + 1:]
                     if where[a] == where[b] and c.detainees[a].case == c.detainees[b].case}
        for k in list(together):
            if k not in now_pairs:
                since = together.pop(k)
                if s.at_s - since >= r.co_suspects_grace_s and k not in flagged:
                    flagged.add(k)
                    out.append(Expected("co-suspects", None, k[0], since,
                                        r.co_suspects_grace_s + 30, "co-suspects together"))
        for k in now_pairs:
            together.setdefault(k, s.at_s)
    for d, arrived in arrivals.items():
        limit_s = r.custody_type(c.detainees[d].custody_type).limit_h * 3600
        first = min([limit_s * p / 100 for p in r.time_limit_warn_pct]
                    + [limit_s - r.time_limit_final_warn_s])
        left = gone.get(d, plan.duration_s)
        if arrived + first < left:
            out.append(Expected("time-limit", d, None, arrived + first, 60,
                                "custody time past its first warning"))
    return out
