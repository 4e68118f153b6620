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
from dataclasses import dataclass, field, replace
from typing import Any

from .actors import OUTSIDE
from .centre import Centre, Detainee, Officer, Visitor

# The duty custody supervisor: gives every approval and is on no detainee's team (four eyes).
DUTY_SUPERVISOR = "duty-sup"
WALK_S = 15.0  # custody seconds per room crossed on the way
# A hop never shorter than this, whatever the pace: a band lingers in a room for the presence
# TTL (5 s) after it leaves, so faster hops reach the exit before the corridor has seen the
# band (the exit read releases it, and the corridor then reports an unknown band).
WALK_MIN_S = 4.5
SEARCH_S = 240.0
VIOLATIONS = (
    "late-registration", "no-search", "short-search", "one-officer-search", "left-alone",
    "holding-camera-off", "one-officer-interview", "interview-camera-off", "missed-welfare",
    "exit-without-approval", "temporary-exit-overdue", "belongings-late", "fall", "fight",
    "lying-still", "node-offline", "band-tamper", "short-welfare-visits", "toilet-visit",
    "case-property-out", "observation-raised", "missed-reads", "two-readers",
    "meets-co-suspect", "extension", "lawyer-visit", "family-visit", "band-swap",
    "reader-fault", "door-left-open", "camera-tamper", "sleeps",
)
# The parameters each violation takes (custody seconds); a violation given as a table
# `{kind = "left-alone", id = "alone-9", duration_s = 9}` sets them. The planner expects an
# alert only when a parameter crosses its rule's limit, so the same kind with a value just
# inside the limit is the compliant twin of a boundary pair (it must raise nothing).
PARAMS: dict[str, tuple[str, ...]] = {
    "late-registration": ("late_s",),  # arrived this long before registration
    "short-search": ("duration_s",),  # the search's length
    "left-alone": ("duration_s", "at_s"),  # officers out for; at_s into information collection
    "holding-camera-off": ("duration_s",),
    "one-officer-interview": ("duration_s",),  # the second officer out for (default: all of it)
    "interview-camera-off": ("duration_s",),
    "temporary-exit-overdue": ("return_in_s", "back_after_s"),  # approved for; back after
    "belongings-late": ("after_s",),  # logged this long after registration (default: never)
    "lying-still": ("duration_s",),
    "node-offline": ("duration_s",),
    "band-tamper": ("duration_s",),
    "short-welfare-visits": ("duration_s",),  # every welfare visit lasts this long
    # one officer takes the detainee to the toilet at_s into holding, for duration_s, and
    # waits outside the door for outside_s of it (0: stays inside)
    "toilet-visit": ("at_s", "duration_s", "outside_s"),
    # case property of the detainee's case taken out at_s into holding, due back after
    # due_s, back after out_s
    "case-property-out": ("at_s", "due_s", "out_s"),
    # observation raised to high at_s into holding; adapt = 1: visits follow the new
    # interval, 0: they stop (the next visit is due sooner than anyone comes)
    "observation-raised": ("at_s", "adapt"),
    # both officers' bands go unread for duration_s during information collection (a read
    # streak lost: under the presence TTL it must change nothing)
    "missed-reads": ("duration_s",),
    # the detainee's band is also read by the next room's reader for duration_s during
    # information collection (a band seen by two readers)
    "two-readers": ("duration_s",),
    # an officer takes the detainee into the cell of a co-suspect (one of the same case planned
    # before them) at_s into holding, for duration_s, and again later for again_s (0: once);
    # the predictor decides which meeting is long enough for co-suspects
    "meets-co-suspect": ("at_s", "duration_s", "again_s"),
    # the duty supervisor approves an extension to `hours` at_s into holding (the predictor
    # moves the time-limit warnings accordingly)
    "extension": ("at_s", "hours"),
    # a lawyer is banded at the entry desk and sees the detainee alone in an interview room
    # (a legal consultation) at_s into holding for duration_s; when the lawyer leaves, the
    # detainee waits alone_s for the officer to come back
    "lawyer-visit": ("at_s", "duration_s", "alone_s"),
    # a family visitor sees the detainee in an information room with an officer, who steps
    # out for officer_out_s of the duration_s (a visitor is no escort)
    "family-visit": ("at_s", "duration_s", "officer_out_s"),
    # the detainee and a cellmate (the next detainee of the day in the same cell) open their
    # bands for open_s (the bands report tamper), swap them at_s into holding and swap them
    # back after worn_s
    "band-swap": ("at_s", "open_s", "worn_s"),
    # a reader of the detainee's cell at_s into holding: junk_s of junk bytes between intact
    # frames (a noisy line: nothing), corrupt_s of corrupted frames (a fault), unplugged for
    # unplugged_s (the port is lost)
    "reader-fault": ("at_s", "junk_s", "corrupt_s", "unplugged_s"),
    # the cell door is left open open_s after the officers leave at intake
    "door-left-open": ("open_s",),
    # the cell camera is blurred (moved = 1: turned away) at_s into holding for duration_s;
    # the node's tamper path holds a condition 3 s before reporting it
    "camera-tamper": ("at_s", "duration_s", "moved"),
    # the detainee lies down on the bench to sleep at_s into holding for duration_s, sitting
    # up for 10 s every turn_s (0: never); a spell lying past lying_still_s raises lying-still
    # (welfare visits go on at the observation level's interval, asleep or not)
    "sleeps": ("at_s", "duration_s", "turn_s"),
}
# The node's tamper path (edge_agent/vision/tamper.py): checks every second, reports a
# condition held for 3 s. Durations between the bands below are refused: there the
# prediction depends on where the checks and heartbeats fall.
TAMPER_QUIET_S, TAMPER_ONLY_S, TAMPER_ALL_S = 2.0, (5.0, 6.0), 45.0


@dataclass(frozen=True)
class Step:
    """One thing that happens at `at_s` custody seconds after the start."""

    at_s: float
    action: str  # move | command | tap | behaviour | band | fault | noise | camera
    args: dict[str, Any]
    id: str = ""  # named raw steps: expectations may follow them (`after`)


@dataclass(frozen=True)
class Expected:
    """An alert that must be raised: rule, subject, and raised in [from_s, from_s+within_s]."""

    rule: str
    detainee: str | None
    room: str | None
    from_s: float
    within_s: float
    note: str = ""
    cause: str = ""  # the violation or step id it follows (`after` in [[expect]])
    # What the alert must go through after it is raised (severity, escalated, lifecycle,
    # acked_by, closed_within_s), each scored.
    checks: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """Everything a run does, in time order, and what it must raise."""

    steps: list[Step] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)
    duration_s: float = 0.0
    reactions: list["Reaction"] = field(default_factory=list)

    def add(self, at_s: float, action: str, step_id: str = "", **args: Any) -> None:
        """Append a step."""
        self.steps.append(Step(round(at_s, 3), action, args, step_id))

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
    params: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> PARAMS values
    ids: dict[str, str] = field(default_factory=dict)  # kind -> violation id (default det:kind)

    def param(self, kind: str, name: str, default: float | None) -> float | None:
        """A violation's parameter, or `default`."""
        return self.params.get(kind, {}).get(name, default)

    def vid(self, kind: str) -> str:
        """The id `after` names this violation by."""
        return self.ids.get(kind, f"{self.detainee}:{kind}")


@dataclass(frozen=True)
class Reaction:
    """A staff member acting on an alert `after_s` custody seconds after it is raised; the
    alert is found by rule and subject, since its id is only known when it fires."""

    do: str  # ack-alert | resolve-alert | false-alarm
    by: str
    rule: str
    detainee: str | None
    room: str | None
    after_s: float
    note: str = ""


class PlanError(ValueError):
    """A day that cannot happen as written (an officer in two places, or off duty)."""


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
        # officer -> (start, end, what): nobody is in two places, nobody works off shift
        self.engaged: dict[str, list[tuple[float, float, str]]] = {}
        # what -> indices in plan.steps of a welfare visit (any officer on duty may make it)
        self.visit_steps: dict[str, list[int]] = {}
        self.cell_visits: dict[str, list[tuple[float, float]]] = {}  # cell -> welfare visits
        self._visit_s = 60.0  # how long the detainee being planned is visited for
        self.arrivals: dict[str, float] = {}  # detainee -> custody s of arrival (arrived_ts)
        self.graph: dict[str, set[str]] = {r.id: set() for r in centre.site.rooms}
        for d in centre.site.doors:
            a, b = d.between
            self.graph[a].add(b)
            self.graph[b].add(a)

    # -- rooms ---------------------------------------------------------------------------
    @property
    def hop(self) -> float:
        """Custody seconds to cross one room at this pace."""
        return max(WALK_S * self.pace, WALK_MIN_S)

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
            t += self.hop
            self.plan.add(t, "move", people=people, room=room)
        return t

    def on_duty(self, officer: str, start: float, end: float) -> bool:
        """Whether the officer's shift covers [start, end]."""
        o = self.c.officers[officer]
        return o.on_s <= start and end <= o.off_s

    def is_free(self, officer: str, start: float, end: float) -> bool:
        """On duty and not engaged elsewhere during [start, end]."""
        return self.on_duty(officer, start, end) and not any(
            start < e and s < end for s, e, _ in self.engaged.get(officer, []))

    def engage(self, officers: list[str], start: float, end: float, what: str) -> None:
        """Book officers for [start, end]; PlanError when one is already elsewhere."""
        for o in officers:
            if not self.on_duty(o, start, end):
                off = self.c.officers[o]
                raise PlanError(f"officer {o} is off duty for {what} ({start:.0f}-{end:.0f} s; "
                                f"shift {off.on_s:.0f}-{off.off_s:.0f} s)")
            for s, e, w in list(self.engaged.get(o, [])):
                if start < e and s < end and not self._hand_over(o, s, e, w):
                    raise PlanError(f"officer {o} in two places: {w} ({s:.0f}-{e:.0f} s) and "
                                    f"{what} ({start:.0f}-{end:.0f} s)")
            self.engaged.setdefault(o, []).append((start, end, what))

    def _hand_over(self, o: str, s: float, e: float, what: str) -> bool:
        """Give a welfare visit `o` was booked for to whoever else is on duty and free (a
        custody officer's own work comes first); False when it is not a visit or nobody is."""
        steps = self.visit_steps.get(what)
        if steps is None:
            return False
        other = next((x for x in sorted(self.c.officers)
                      if x != o and self.is_free(x, s, e)), None)
        if other is None:
            return False
        self.engaged[o].remove((s, e, what))
        self.engaged.setdefault(other, []).append((s, e, what))
        for i in steps:
            st = self.plan.steps[i]
            args = dict(st.args)
            if "people" in args:
                args["people"] = [other]
            if "user" in args:
                args["user"] = other
            self.plan.steps[i] = replace(st, args=args)
        return True

    def on_call(self, prefer: str, start: float, end: float, what: str) -> str:
        """Whoever is on duty and free for [start, end] (`prefer` first), booked."""
        for o in [prefer, *sorted(self.c.officers)]:
            if self.is_free(o, start, end):
                self.engage([o], start, end, what)
                return o
        raise PlanError(f"no officer on duty and free for {what} ({start:.0f}-{end:.0f} s)")

    def expect(self, rule: str, from_s: float, within_s: float, detainee: str | None = None,
               room: str | None = None, note: str = "", cause: str = "") -> None:
        """Record an alert the day must raise."""
        self.plan.expected.append(Expected(rule, detainee, room, round(from_s, 3),
                                           within_s, note, cause))

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
        late = 120.0
        if "late-registration" in v:
            late = float(stay.param("late-registration", "late_s", r.registration_limit_s + 300)
                         or 0)
            if late > r.registration_limit_s:
                self.expect("brought-straight-in", t, 60, detainee=d.id,
                            cause=stay.vid("late-registration"))
        self.arrivals[d.id] = t - late
        self._register(t, d, o1, int(late))
        belongings_after: float | None = 60
        if "belongings-late" in v:
            after = stay.param("belongings-late", "after_s", None)
            # after_s counts from registration (the rule's clock); the desk is 2 s later.
            belongings_after = None if after is None else after - 2
            if after is None or after >= r.belongings_limit_s:
                self.expect("property", t + r.belongings_limit_s, 120, detainee=d.id,
                            cause=stay.vid("belongings-late"))
        t += 2
        # Belongings are taken and logged at the booking-in desk (unless the day forgets them).
        self._entry_desk(t, d, o1, everyone, belongings_after, 10)
        t += 90 * self.pace
        here = "entry"
        if "no-search" in v:
            # Straight to information collection, searched only afterwards.
            # The supervisor raises search-first per room entered before the search
            # (subject: detainee and room), so every room on the way is an alert.
            for i, hop in enumerate(self.route(here, "information")):
                self.expect("search-first", t + (i + 1) * self.hop, 60,
                            detainee=d.id, room=hop, cause=stay.vid("no-search"))
            t_in = self.walk(t, everyone, here, "information")
            t, here = t_in + 300 * self.pace, "information"
        # Search.
        searchers = [o1] if "one-officer-search" in v else team
        # A third over the site's minimum, at most SEARCH_S (a site that lowers the minimum in
        # a scenario not about searching gets shorter searches, so packed days fit).
        dur = min(SEARCH_S, r.search_min_duration_s * 4 / 3)
        if "short-search" in v:
            dur = float(stay.param("short-search", "duration_s", 60.0) or 0)
        room, start = self.book("search", t, dur + 2 * WALK_S)
        if "one-officer-search" in v:
            self.plan.add(start, "move", people=[o2], room=OUTSIDE)
        if "no-search" in v:
            for i, hop in enumerate(self.route(here, room)[:-1]):
                self.expect("search-first", max(t, start) + (i + 1) * self.hop, 60,
                            detainee=d.id, room=hop, cause=stay.vid("no-search"))
        t = self.walk(max(t, start), [d.id, *searchers], here, room)
        t += dur
        self.plan.add(t, "command", command="record-search", user=o1,
                      args={"detainee": d.id, "officers": searchers, "result": "completed"})
        if "one-officer-search" in v or ("short-search" in v
                                          and dur < r.search_min_duration_s):
            self.expect("real-search", t - dur, dur + 60, detainee=d.id,
                        cause=stay.vid("one-officer-search" if "one-officer-search" in v
                                       else "short-search"))
        here = room
        if "one-officer-search" in v:
            self.plan.add(t + 5, "move", people=[o2], room=here)
            t += 5
        # Information collection (unless done before the search).
        if "no-search" not in v:
            stage = 600 * self.pace
            at = float(stay.param("left-alone", "at_s", 20.0) or 0)
            alone = float(stay.param("left-alone", "duration_s", 60.0) or 0)
            if "left-alone" in v:
                stage = max(stage, at + alone + 30)
            room, start = self.book("information", t, stage)
            t = self.walk(max(t, start), everyone, here, room)
            if "missed-reads" in v:
                lost = float(stay.param("missed-reads", "duration_s", 3.0) or 0)
                for o in team:
                    self.plan.add(t + 30, "band", person=o, unread_s=lost)
                # Unread past the presence TTL the officers are gone as far as anyone knows.
                if lost >= r.presence_ttl_s + r.never_alone_grace_s:
                    self.expect("never-alone", t + 30, r.presence_ttl_s
                                + r.never_alone_grace_s + 30, detainee=d.id, room=room,
                                cause=stay.vid("missed-reads"))
            if "two-readers" in v:
                also = float(stay.param("two-readers", "duration_s", 20.0) or 0)
                near = self.route(room, holding_of(self.c, d))[0]
                self.plan.add(t + 30, "band", person=d.id, echo_room=near, duration_s=also)
                grace = (r.never_alone_doorway_grace_s
                         if self.c.site.room(near).kind == "corridor"
                         else r.never_alone_grace_s)
                if also >= grace:
                    self.expect("never-alone", t + 30, grace + 30, detainee=d.id, room=near,
                                cause=stay.vid("two-readers"))
            if "left-alone" in v:
                self.plan.add(t + at, "move", people=team, room=OUTSIDE)
                if alone >= r.never_alone_grace_s:  # held_for: a condition that lasted the grace
                    self.expect("never-alone", t + at, r.never_alone_grace_s + 30,
                                detainee=d.id, room=room, cause=stay.vid("left-alone"))
                self.plan.add(t + at + alone, "move", people=team, room=room)
            t += max(stage, 100)
            here = room
        # Property store: belongings logged.
        if self.c.rooms_of_kind("property"):
            # One officer takes the detainee to the locker (two officers with a detainee in the
            # property store for a minute would look like an interview outside the rooms).
            room, start = self.book("property", t, 240 * self.pace)
            t = self.walk(max(t, start), [d.id, o1], here, room)
            self.plan.add(t - self.hop, "move", people=[o2], room=OUTSIDE)
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
        if "door-left-open" in v:
            self._door_left_open(t, d, holding, stay)
        self.engage(team, stay.arrive_s, t, f"the intake of {d.id}")
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
        for kind, at in (("toilet-visit", 200.0), ("case-property-out", 120.0),
                         ("observation-raised", 300.0), ("meets-co-suspect", 100.0),
                         ("extension", 60.0), ("lawyer-visit", 150.0),
                         ("family-visit", 150.0), ("band-swap", 100.0),
                         ("reader-fault", 100.0), ("camera-tamper", 150.0),
                         ("sleeps", 100.0)):
            if kind in v:
                events.append((t + float(stay.param(kind, "at_s", at) or 0), kind))
                events.sort()
        if "case-property-out" in v:
            self.plan.add(stay.arrive_s + 30, "command", command="log-case-property", user=o1,
                          args={"item": f"item-{d.id}", "case": d.case, "detainee": d.id,
                                "description": "phone seized as evidence"})
        if "band-tamper" in v:
            tamper_s = float(stay.param("band-tamper", "duration_s", 60.0) or 0)
            self.plan.add(t + 200, "band", person=d.id, tamper=True, battery_low=False)
            self.expect("band-tamper", t + 200, 30, room=holding, cause=stay.vid("band-tamper"))
            self.plan.add(t + 200 + tamper_s, "band", person=d.id, tamper=False,
                          battery_low=False)
        if "node-offline" in v:
            # A node of a room nobody uses today (the toilet's, else the last interview
            # room's): a dead node in an occupied room would also stop its camera.
            spare = (self.c.rooms_of_kind("toilet") or self.c.rooms_of_kind("interview"))[-1]
            node = self.c.node_of_room(spare)
            if node is not None:
                down = float(stay.param("node-offline", "duration_s",
                                        r.device_offline_s + 60) or 0)
                self.plan.add(t + 200, "fault", kind="kill-node", target=node.id)
                if down > r.device_offline_s:
                    self.expect("device-offline", t + 200, r.device_offline_s + 30, room=spare,
                                cause=stay.vid("node-offline"))
                self.plan.add(t + 200 + down, "fault", kind="start-node", target=node.id)
        self._visit_s = float(stay.param("short-welfare-visits", "duration_s", 60.0) or 0)
        if "short-welfare-visits" in v and self._visit_s < r.welfare_visit_min_s:
            # Visits too short to count: the first one due is missed as far as the rule knows.
            self.expect("welfare-check", in_holding + interval - r.welfare_warn_before_s, 60,
                        detainee=d.id, cause=stay.vid("short-welfare-visits"))
        if "missed-welfare" in v:
            self.expect("welfare-check", in_holding + interval - r.welfare_warn_before_s, 60,
                        detainee=d.id, cause=stay.vid("missed-welfare"))
            # Nobody visits, until the escalation point.
            events = [e for e in events if e[0] > t + interval + r.welfare_escalate_after_s
                      + 120]
            if not events:
                end = max(end, t + interval + r.welfare_escalate_after_s + 300)
        self._visitor = o1
        visits = "missed-welfare" not in v
        for when, what in events:
            booked: tuple[str, float] | None = None
            if what == "interview":
                # The interview room may be busy: the detainee waits (and is visited) in
                # the cell until it is free.
                booked = self.book("interview", max(t, when), 2400.0 * self.pace
                                   + 4 * WALK_S + 60)
                when = max(when, booked[1])
            # Welfare visits fill the time up to the next thing.
            while visits and last_check + visit_every < when - 120:
                last_check = self._welfare(last_check + visit_every, o1, d, holding)
            t = max(t, when)
            if what in ("fight", "toilet-visit"):
                span = 90.0 if what == "fight" else float(
                    stay.param("toilet-visit", "duration_s", 120.0) or 0) + 4 * self.hop + 30
                self._visitor = self.on_call(o1, t, t + span, f"{what} of {d.id}")
            if what == "extension":
                hours = int(stay.param("extension", "hours", 0) or 0)
                allowed = self.rules.custody_type(d.custody_type).extended_h
                if hours not in allowed:
                    raise PlanError(f"extension of {d.id} to {hours} h: the custody type "
                                    f"{d.custody_type} allows {list(allowed)}")
                self.plan.add(t, "command", command="approve-extension", user=DUTY_SUPERVISOR,
                              args={"detainee": d.id, "hours": hours})
            elif what == "meets-co-suspect":
                t = self._meet(t, d, o1, holding, stay)
            elif what in ("lawyer-visit", "family-visit"):
                t = self._visit(t, d, o1, holding, stay, what)
            elif what == "band-swap":
                t = self._swap(t, d, holding, stay)
            elif what == "reader-fault":
                t = self._reader_fault(t, holding, stay)
            elif what == "camera-tamper":
                t = self._camera_tamper(t, d, holding, stay)
            elif what == "sleeps":
                t = self._sleep(t, holding, stay)
            elif what == "toilet-visit":
                t = self._toilet(t, d, self._visitor, holding, stay)
            elif what == "case-property-out":
                t = self._case_property(t, d, o1, stay)
            elif what == "observation-raised":
                self.plan.add(t, "command", command="set-observation", user=o1,
                              args={"detainee": d.id, "observation": "high"})
                new = r.welfare_interval_s("high")
                if stay.param("observation-raised", "adapt", 1.0):
                    visit_every = new * 0.4
                    last_check = max(last_check, t + 30 - visit_every)
                else:
                    visits = False
                    # The last verified visit was under the old level: the new interval
                    # runs from it (verified when the officer's band leaves the cell).
                    due = last_check + self._visit_s + r.presence_ttl_s + new
                    self.expect("welfare-check", max(t, due - r.welfare_warn_before_s), 60,
                                detainee=d.id, cause=stay.vid("observation-raised"))
                    end = max(end, due - r.welfare_warn_before_s + 120)
            elif booked is not None:
                t = self._interview(t, d, team, holding, stay, booked)
                last_check = t
            elif what == "holding-camera-off":
                cam = self._camera(holding)
                if cam:
                    off = float(stay.param("holding-camera-off", "duration_s", 120.0) or 0)
                    cause = stay.vid("holding-camera-off")
                    self.plan.add(t, "camera", camera=cam, covered=True)
                    # The camera counts as not live once its heartbeat is a gap late.
                    if off > r.holding_watch_grace_s + r.recording_gap_s:
                        self.expect("holding-watch", t, r.holding_watch_grace_s
                                    + r.recording_gap_s + 30,
                                    detainee=d.id, room=holding, cause=cause)
                    if off > r.recording_gap_s:
                        self.expect("recording-gap", t, r.recording_gap_s + 30, room=holding,
                                    cause=cause)
                    self.plan.add(t + off, "camera", camera=cam, covered=False)
                    t += off + 10
            else:
                t = self._behaviour(t, what, d, holding, stay=stay)
        while visits and last_check + visit_every < end - 60:
            last_check = self._welfare(last_check + visit_every, o1, d, holding)
        self._visitor = o1
        t = max(t, end)
        # Disposition and exit.
        if "temporary-exit-overdue" in v:
            ret = float(stay.param("temporary-exit-overdue", "return_in_s", 600.0) or 0)
            back = stay.param("temporary-exit-overdue", "back_after_s", None)
            self.plan.add(t, "command", command="approve-temporary-exit", user=DUTY_SUPERVISOR,
                          args={"detainee": d.id, "return_in_s": ret, "reason": "hospital"})
            self.plan.add(t, "move", people=team, room=holding)
            t_out = t
            t = self.walk(t + 10, everyone, holding, "exit")
            self._exit_tap(t, d)
            self.plan.add(t + 10, "move", people=everyone, room=OUTSIDE)
            # The team goes out with the detainee (to hospital) until they are back.
            if back is None or t_out + back > t_out + ret:
                self.expect("temporary-exit-overdue", t_out + ret, 120, detainee=d.id,
                            cause=stay.vid("temporary-exit-overdue"))
            if back is None:
                self.engage(team, t_out, t + 900, f"the temporary exit of {d.id}")
                return t + 900
            # Back through the exit with both officers and to the cell: back_after_s after
            # the approval they are seen past the exit (which is what ends a temporary exit).
            t = t_out + float(back) - self.hop
            self.plan.add(t - 5, "move", people=everyone, room="exit")
            t = self.walk(t, everyone, "exit", holding)
            self.plan.add(t + 10, "move", people=team, room=OUTSIDE)
            self.engage(team, t_out, t + 10, f"the temporary exit of {d.id}")
            return t + 60
        if "exit-without-approval" not in v:
            self.plan.add(t, "command", command="approve-disposition", user=DUTY_SUPERVISOR,
                          args={"detainee": d.id, "disposition": "release"})
        self.plan.add(t + 5, "move", people=team, room=holding)
        t_fetch = t + 5
        t = self.walk(t + 10, everyone, holding, "exit")
        self._exit_tap(t, d)
        if "exit-without-approval" in v:
            self.expect("exit", t, 60, detainee=d.id, cause=stay.vid("exit-without-approval"))
        self.plan.add(t + 30, "move", people=everyone, room=OUTSIDE)
        self.engage(team, t_fetch, t + 30, f"the exit of {d.id}")
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

    def _toilet(self, t: float, d: Detainee, officer: str, holding: str, stay: Stay) -> float:
        """One officer takes the detainee to the toilet and back; returns when done."""
        dur = float(stay.param("toilet-visit", "duration_s", 120.0) or 0)
        outside = float(stay.param("toilet-visit", "outside_s", 0.0) or 0)
        room, start = self.book("toilet", t, dur + 4 * self.hop + 20)
        t = max(t, start)
        self.plan.add(t, "move", people=[officer], room=holding)
        t = self.walk(t + 10, [d.id, officer], holding, room)
        if outside > 0:
            # Waiting outside the door: the corridor the toilet opens onto.
            near = self.route(room, holding)[0]
            self.plan.add(t + 5, "move", people=[officer], room=near)
            if outside >= self.rules.never_alone_grace_s:
                self.expect("never-alone", t + 5, self.rules.never_alone_grace_s + 30,
                            detainee=d.id, room=room, cause=stay.vid("toilet-visit"))
            self.plan.add(t + 5 + outside, "move", people=[officer], room=room)
        t = self.walk(t + max(dur, outside + 10), [d.id, officer], room, holding) + 10
        self.plan.add(t, "move", people=[officer], room=OUTSIDE)
        return t

    def where_at(self, person: str, t: float) -> str:
        """Where the plan so far has a person at custody second t."""
        room = OUTSIDE
        for s in self.plan.sorted_steps():
            if s.at_s > t:
                break
            if s.action == "move" and person in s.args["people"]:
                room = s.args["room"]
        return room

    def _meet(self, t: float, d: Detainee, officer: str, holding: str, stay: Stay) -> float:
        """Take the detainee into a co-suspect's cell and back, once or twice."""
        for i, key in enumerate(("duration_s", "again_s")):
            dur = float(stay.param("meets-co-suspect", key, 30.0 if i == 0 else 0.0) or 0)
            if dur <= 0:
                break
            cells = {r.id for r in self.c.site.rooms if r.kind == "holding"}
            other = next((x for x in self.c.detainees.values() if x.case == d.case
                          and x.id != d.id and x.id in self.arrivals
                          and self.where_at(x.id, t) in cells), None)
            if other is None:
                raise PlanError(f"no co-suspect of {d.id} ({d.case}) in a cell at {t:.0f} s "
                                "(one planned before them)")
            cell = self.where_at(other.id, t)
            span = dur + 4 * self.hop + 40
            officer = self.on_call(officer, t, t + span, f"{d.id} meeting {other.id}")
            self.plan.add(t, "move", people=[officer], room=holding)
            route = self.route(holding, cell)
            for room in route[:-1]:
                t += self.hop
                self.plan.add(t, "move", people=[d.id, officer], room=room)
            t += self.hop
            # The step that puts them together names the cause (the predictor's `after`).
            self.plan.add(t, "move", step_id=f"{stay.vid('meets-co-suspect')}-{i + 1}",
                          people=[d.id, officer], room=cell)
            # walk() takes its first hop before the first move: out of the cell at t + dur.
            t = self.walk(t + dur - self.hop, [d.id, officer], cell, holding) + 10
            self.plan.add(t, "move", people=[officer], room=OUTSIDE)
            t += 120
        return t

    def _visit(self, t: float, d: Detainee, officer: str, holding: str, stay: Stay,
               kind: str) -> float:
        """A lawyer or a family visitor, banded at the entry desk, sees the detainee in an
        interview room and leaves through the exit; returns when the detainee is back."""
        lawyer = kind == "lawyer-visit"
        dur = float(stay.param(kind, "duration_s", 300.0) or 0)
        gap = float(stay.param(kind, "alone_s" if lawyer else "officer_out_s", 0.0) or 0)
        r = self.rules
        who = Visitor(f"{'law' if lawyer else 'vis'}-{d.id}", "lawyer" if lawyer else "visitor",
                      self.c.new_band(), d.id)
        self.c.visitors[who.id] = who
        entry = self.c.rooms_of_kind("entry")[0]
        exit_room = self.c.rooms_of_kind("exit")[0]
        # A lawyer sees their client in private in an interview room (a legal consultation); a
        # family visit is no interview: an information room, with an officer there.
        kind_of_room = "interview" if lawyer else "information"
        if not self.c.rooms_of_kind(kind_of_room):
            raise PlanError(f"the {kind} of {d.id} needs a room of kind {kind_of_room}")
        walk_in = len(self.route(entry, self.c.rooms_of_kind(kind_of_room)[0])) * self.hop
        room, start = self.book(kind_of_room, t, walk_in + dur + gap + 8 * self.hop + 60)
        t = max(t, start)
        self.plan.add(t, "move", people=[who.id], room=entry)
        self.plan.add(t + 2, "command", command="register-visitor", user=officer,
                      args={"visitor": who.id, "band": who.band, "kind": who.kind,
                            "detainee": d.id})
        # The visitor walks in on their own (nothing watches visitors' steps), the officer
        # fetches the detainee.
        t_in = self.walk(t + 10, [who.id], entry, room)
        fetch = t_in
        span = dur + gap + 2 * len(self.route(holding, room)) * self.hop + 60
        officer = next((o for o in [officer, *sorted(self.c.officers)]
                        if self.is_free(o, fetch, fetch + span)), "")
        if not officer:
            raise PlanError(f"no officer on duty and free for the {kind} of {d.id}")
        self.plan.add(fetch, "move", people=[officer], room=holding)
        t = self.walk(fetch + 10, [d.id, officer], holding, room)
        cause = stay.vid(kind)
        if lawyer:
            # A legal consultation: the officer waits outside, within call.
            self.plan.add(t + 5, "move", people=[officer], room=OUTSIDE)
            t_left = self.walk(t + 5 + dur, [who.id], room, exit_room)
            gone = t + 5 + dur + self.hop  # the lawyer's band leaves the interview room
            self.plan.add(t_left + 10, "move", people=[who.id], room=OUTSIDE)
            if gap >= r.never_alone_grace_s:
                self.expect("never-alone", gone, r.never_alone_grace_s + 30, detainee=d.id,
                            room=room, cause=cause)
            t = gone + gap
            self.plan.add(t, "move", people=[officer], room=room)
        else:
            if gap > 0:
                self.plan.add(t + 20, "move", people=[officer], room=OUTSIDE)
                if gap >= r.never_alone_grace_s:
                    self.expect("never-alone", t + 20, r.never_alone_grace_s + 30,
                                detainee=d.id, room=room, cause=cause)
                self.plan.add(t + 20 + gap, "move", people=[officer], room=room)
            t += max(dur, 20 + gap + 10)
            t_left = self.walk(t, [who.id], room, exit_room)
            self.plan.add(t_left + 10, "move", people=[who.id], room=OUTSIDE)
        t = self.walk(t + 5, [d.id, officer], room, holding) + 10
        self.plan.add(t, "move", people=[officer], room=OUTSIDE)
        self.engage([officer], fetch, t, f"the {kind} of {d.id}")
        return t

    def _swap(self, t: float, d: Detainee, holding: str, stay: Stay) -> float:
        """The detainee and a cellmate open their bands, swap them, wear them worn_s and swap
        them back. Only the bands' tamper loop can tell: each opening is a band-tamper alert
        per band (a swap without opening a band would pass unseen)."""
        open_s = float(stay.param("band-swap", "open_s", 20.0) or 0)
        worn = float(stay.param("band-swap", "worn_s", 120.0) or 0)
        mate = next((x for x in self.c.detainees.values() if x.id != d.id
                     and x.id in self.arrivals and self.where_at(x.id, t) == holding
                     and self.where_at(x.id, t + 2 * open_s + worn + 30) == holding), None)
        if mate is None:
            raise PlanError(f"no cellmate of {d.id} in {holding} from {t:.0f} s (one planned "
                            "before them, there all through the swap)")
        cause = stay.vid("band-swap")
        for start in (t, t + open_s + worn):
            for p in (d.id, mate.id):
                self.plan.add(start, "band", person=p, tamper=True, battery_low=False)
                if open_s > 0:
                    self.expect("band-tamper", start, 30, detainee=p, room=holding, cause=cause)
            self.plan.add(start + open_s / 2, "band", person=d.id, swap_with=mate.id)
            for p in (d.id, mate.id):
                self.plan.add(start + open_s, "band", person=p, tamper=False, battery_low=False)
        return t + 2 * open_s + worn + 10

    def _door_left_open(self, t: float, d: Detainee, holding: str, stay: Stay) -> None:
        """The officers leave the cell without shutting its door for open_s (before the first
        welfare visit, two minutes later)."""
        door = self.c.door_between(holding, self.route(holding, "exit")[0])
        contacts = {x.door for n in self.c.site.nodes for x in n.doors}
        if door is None or door not in contacts:
            raise PlanError(f"the door of {holding} has no contact on a node")
        open_s = float(stay.param("door-left-open", "open_s", 90.0) or 0)
        if open_s >= 110:
            raise PlanError(f"door-left-open open_s {open_s:g} s: at most 110 s (the first "
                            "welfare visit comes two minutes after the officers leave)")
        self.plan.add(t, "door", door=door, open_s=open_s)
        limit = self.rules.door_open_limit_s
        mates = [x for x in self.c.detainees if x != d.id and self.where_at(x, t) == holding]
        if open_s > limit:
            self.expect("door-open", t, limit + 40, detainee=None if mates else d.id,
                        room=holding, cause=stay.vid("door-left-open"))

    def _sleep(self, t: float, holding: str, stay: Stay) -> float:
        """Asleep on the bench: lying spells of turn_s parted by 10 s sitting up. The
        camera's lie-down takes 10 s, so spells within 10 s under / 20 s over lying_still_s
        are refused (the prediction would depend on the node's window)."""
        dur = float(stay.param("sleeps", "duration_s", 1800.0) or 0)
        turn = float(stay.param("sleeps", "turn_s", 0.0) or 0) or dur
        limit = self.rules.lying_still_s
        end = t + dur
        while t < end:
            spell = min(turn, end - t)
            if limit - 10 < spell < limit + 20:
                raise PlanError(f"sleeps: a spell of {spell:g} s lying is too close to "
                                f"lying_still_s ({limit} s) to predict")
            self.plan.add(t, "behaviour", room=holding, kind="lying", people=1)
            if spell >= limit + 20:
                self.expect("lying-still", t + limit, 60, room=holding,
                            cause=stay.vid("sleeps"))
            self.plan.add(t + spell, "behaviour", room=holding, kind="none")
            t += spell + 10
        return t

    def _camera_tamper(self, t: float, d: Detainee, holding: str, stay: Stay) -> float:
        """The cell camera blurred or turned away for duration_s: camera-tamper once the
        node has held it 3 s; long enough, the cell is unrecorded (recording-gap) and every
        detainee alone in it unwatched (holding-watch)."""
        cam = self._camera(holding)
        if cam is None:
            raise PlanError(f"{holding} has no camera")
        dur = float(stay.param("camera-tamper", "duration_s", 60.0) or 0)
        lo, hi = TAMPER_ONLY_S
        if not (dur <= TAMPER_QUIET_S or lo <= dur <= hi or dur >= TAMPER_ALL_S):
            raise PlanError(f"camera-tamper duration_s {dur:g}: at most {TAMPER_QUIET_S:g} "
                            f"(nothing), {lo:g}-{hi:g} (camera-tamper) or at least "
                            f"{TAMPER_ALL_S:g} s (also recording-gap and holding-watch)")
        view = "moved" if stay.param("camera-tamper", "moved", 0) else "blurred"
        cause = stay.vid("camera-tamper")
        self.plan.add(t, "camera", camera=cam, view=view)
        if dur >= lo:
            self.expect("camera-tamper", t, 60, room=holding, cause=cause)
        if dur >= TAMPER_ALL_S:
            r = self.rules
            self.expect("recording-gap", t, r.recording_gap_s + 40, room=holding, cause=cause)
            for x in sorted(self.c.detainees):
                if self.where_at(x, t) == holding or x == d.id:
                    self.expect("holding-watch", t, r.holding_watch_grace_s + 40, detainee=x,
                                room=holding, cause=cause)
        self.plan.add(t + dur, "camera", camera=cam, view="clear")
        return t + dur + 10

    def _reader_fault(self, t: float, holding: str, stay: Stay) -> float:
        """The cell's presence reader: a noisy line (junk between intact frames), corrupted
        frames, then its cable pulled; returns when it is all over."""
        readers = self.c.readers(holding, "presence")
        if not readers:
            raise PlanError(f"{holding} has no presence reader")
        rid = readers[0].id
        cause = stay.vid("reader-fault")
        junk = float(stay.param("reader-fault", "junk_s", 0.0) or 0)
        corrupt = float(stay.param("reader-fault", "corrupt_s", 0.0) or 0)
        unplugged = float(stay.param("reader-fault", "unplugged_s", 0.0) or 0)
        clean: dict[str, Any] = {"junk_rate": 0.0, "corrupt_rate": 0.0, "split_rate": 0.0}
        if junk > 0:
            # Junk between frames and frames split in two: the parser finds every frame.
            self.plan.add(t, "noise", reader=rid, junk_rate=0.3, split_rate=0.5)
            self.plan.add(t + junk, "noise", reader=rid, **clean)
            t += junk + 10
        if corrupt > 0:
            # Frames with a flipped byte fail their checksum: the node reports a fault.
            self.plan.add(t, "noise", reader=rid, corrupt_rate=0.2)
            # The node counts bad frames per health interval (5 real s; 200 custody s at x40).
            self.expect("reader-fault", t, 330, room=holding, cause=cause)
            self.plan.add(t + corrupt, "noise", reader=rid, **clean)
            t += corrupt + 10
        if unplugged > 0:
            self.plan.add(t, "reader", reader=rid, plugged=False)
            self.expect("reader-fault", t, 330, room=holding, cause=cause)
            self.plan.add(t + unplugged, "reader", reader=rid, plugged=True)
            t += unplugged + 10
        return t

    def _case_property(self, t: float, d: Detainee, officer: str, stay: Stay) -> float:
        """Case property out (due back after due_s) and back in after out_s."""
        due = float(stay.param("case-property-out", "due_s", 600.0) or 0)
        out = float(stay.param("case-property-out", "out_s", 300.0) or 0)
        item = f"item-{d.id}"
        self.plan.add(t, "command", command="property-out", user=officer,
                      args={"item": item, "due_ts_in_s": due, "reason": "forensics"})
        if out > due:
            self.expect("property", t + due, 60, detainee=d.id,
                        cause=stay.vid("case-property-out"))
        self.plan.add(t + out, "command", command="property-in", user=officer,
                      args={"item": item})
        return t + 5

    def _welfare(self, t: float, officer: str, d: Detainee, holding: str) -> float:
        """An officer looks in on the detainee: in the cell for 60 s (or the violation's
        `duration_s`), seen by its camera; `officer` if free, else whoever is on duty."""
        stay_s = self._visit_s
        # Never two officers looking in on one cell at once: a minute together with a
        # detainee in a cell is an interview outside an interview room. A visit to a cellmate
        # that overlaps this one goes first; this one follows it.
        for s, e in sorted(self.cell_visits.get(holding, [])):
            if s < t + stay_s + 6 and t < e + 5:
                t = e + 5
        self.cell_visits.setdefault(holding, []).append((t, t + stay_s + 1))
        what = f"a welfare visit to {d.id} at {t:.0f} s"
        officer = self.on_call(officer, t, t + stay_s + 1, what)
        self.visit_steps[what] = [len(self.plan.steps) + i for i in range(3)]
        self.plan.add(t, "move", people=[officer], room=holding)
        self.plan.add(t + stay_s, "command", command="record-welfare-check", user=officer,
                      args={"detainee": d.id, "note": "checked, fine"})
        self.plan.add(t + stay_s + 1, "move", people=[officer], room=OUTSIDE)
        return t

    def _interview(self, t: float, d: Detainee, team: list[str], holding: str, stay: Stay,
                   booked: tuple[str, float]) -> float:
        dur = 2400.0 * self.pace
        one_officer = "one-officer-interview" in stay.violations
        camera_off = "interview-camera-off" in stay.violations
        room, start = booked
        t = max(t, start)
        fetch = t
        self.plan.add(t, "move", people=team, room=holding)
        everyone = [d.id, *team]
        t = self.walk(t + 10, everyone, holding, room)
        out_s = float(stay.param("one-officer-interview", "duration_s", dur) or 0)
        if one_officer:
            self.plan.add(t, "move", people=[team[1]], room=OUTSIDE)
            if out_s >= self.rules.interview_grace_s:
                self.expect("interview", t, self.rules.interview_grace_s + 30, detainee=d.id,
                            room=room, cause=stay.vid("one-officer-interview"))
            if out_s < dur:
                self.plan.add(t + out_s, "move", people=[team[1]], room=room)
        if camera_off:
            cam = self._camera(room)
            off = float(stay.param("interview-camera-off", "duration_s", 90.0) or 0)
            if cam:
                self.plan.add(t + 300, "camera", camera=cam, covered=True)
                if off > self.rules.recording_gap_s:
                    self.expect("recording-gap", t + 300, self.rules.recording_gap_s + 30,
                                room=room, cause=stay.vid("interview-camera-off"))
                self.plan.add(t + 300 + off, "camera", camera=cam, covered=False)
                dur = max(dur, 300 + off + 30)
        t += dur
        if one_officer and out_s >= dur:
            self.plan.add(t, "move", people=[team[1]], room=room)
        t = self.walk(t, everyone, room, holding) + 10
        self.plan.add(t, "move", people=team, room=OUTSIDE)
        self.engage(team, fetch, t, f"the interview of {d.id}")
        return t

    def _behaviour(self, t: float, kind: str, d: Detainee, holding: str,
                   recover_s: float = 60.0, stay: Stay | None = None) -> float:
        cause = stay.vid(kind) if stay is not None else ""
        if kind == "fall":
            self.plan.add(t, "behaviour", room=holding, kind="fall", people=1)
            self.expect("fall", t, 30, room=holding, cause=cause)
            self.plan.add(t + recover_s, "behaviour", room=holding, kind="none")
            return t + recover_s + 10
        if kind == "lying-still":
            lie = self.rules.lying_still_s + 120.0
            if stay is not None:
                lie = float(stay.param("lying-still", "duration_s", lie) or 0)
            self.plan.add(t, "behaviour", room=holding, kind="lying", people=1)
            if lie > self.rules.lying_still_s:
                self.expect("lying-still", t + self.rules.lying_still_s, 60, room=holding,
                            cause=cause)
            self.plan.add(t + lie, "behaviour", room=holding, kind="none")
            return t + lie + 10
        # fight: an officer looks in and the detainee turns on them
        officer = self._visitor
        self.plan.add(t, "move", people=[officer], room=holding)
        self.plan.add(t + 20, "behaviour", room=holding, kind="fight", people=2)
        self.expect("fight", t + 20, 30, room=holding, cause=cause)
        self.plan.add(t + 50, "behaviour", room=holding, kind="none")
        self.plan.add(t + 80, "move", people=[officer], room=OUTSIDE)
        return t + 90


def holding_of(c: Centre, d: Detainee) -> str:
    """The detainee's holding room (the site's first when none is set)."""
    return d.holding or c.rooms_of_kind("holding")[0]


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
    together: dict[tuple[str, str, str], tuple[float, str]] = {}  # -> since, step id
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
                since, cause = together.pop(k)
                if s.at_s - since >= r.co_suspects_grace_s and k not in flagged:
                    flagged.add(k)
                    out.append(Expected("co-suspects", None, k[0], since,
                                        r.co_suspects_grace_s + 30, "co-suspects together",
                                        cause))
        for k in now_pairs:
            together.setdefault(k, (s.at_s, s.id))
    extended = {s.args["args"]["detainee"]: (s.at_s, int(s.args["args"]["hours"]))
                for s in plan.steps if s.action == "command"
                and s.args.get("command") == "approve-extension"}

    def first_warning(limit_s: float) -> float:
        return min([limit_s * p / 100 for p in r.time_limit_warn_pct]
                   + [limit_s - r.time_limit_final_warn_s])

    for d, arrived in arrivals.items():
        first = first_warning(r.custody_type(c.detainees[d].custody_type).limit_h * 3600)
        if d in extended and extended[d][0] <= arrived + first:
            # Extended before the first warning: the warnings follow the new limit.
            first = first_warning(extended[d][1] * 3600)
        left = gone.get(d, plan.duration_s)
        if arrived + first < left:
            out.append(Expected("time-limit", d, None, arrived + first, 60,
                                "custody time past its first warning"))
    return out
