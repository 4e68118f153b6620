"""Scenario files (TOML under sim/scenarios/) and the seeded random day, turned into a Plan.

    [scenario]
    name = "never-alone"                 # defaults to the file name
    description = "..."
    site = "demo-centre"                 # sites/<name>.toml, or a path relative to this file
    speed = 40                           # clock speed (custody seconds per real second)
    seed = 1
    tail_s = 120                         # custody seconds to keep running after the last step
    pace = 1.0                           # < 1 shortens stages that have no legal minimum
    start = "23:40"                      # optional: custody time at the start ("HH:MM" today
                                         # in the site's time zone, or an ISO date and time)
    [rules]                              # optional: overrides of the site's [rules]
    [[officers]]    id, sex ("f"|"m"), on_s/off_s (the shift; welfare visits go to whoever
                    is on duty and free, an officer booked in two places is refused)
    [[detainees]]   id, case, sex, custody_type, observation, holding, team = [o1, o2],
                    arrive_s, stay_s, interviews, violations = [...] (names, or tables
                    {kind, id, <parameters of timetable.PARAMS>})
    [[steps]]       at_s, action, id, ... (extra timed steps, e.g. faults; action = "button",
                    button = "<id>" presses a sensor board's button)
    [[staff]]       do (ack | resolve | false-alarm), by (an officer), rule, detainee and/or
                    room, after_s (after the alert is raised), note
    [[expect]]      rule, detainee and/or room, within_s; after = "<violation or step id>"
                    (+ delay_s for a step) or from_s; severity, escalated, lifecycle = [...],
                    acked_by, closed_by, closed_within_s (the lifecycle, scored step by step)
    [random]        detainees, hours, violation_rate (a generated day instead of people)
    [video]         rooms = [...], fall_clip, data_dir (cameras fed real frames; see VideoConf)

A detainee's `intake = "quick"` (default "full") gives the minimal day real-time runs need:
registered, searched for the site's minimum plus a third, straight to the holding room,
violations there, the run ends with them still held.

Every alert a scenario must raise is listed in [[expect]]; the planned violations must agree
with that list exactly (a scenario whose file and plan disagree is refused), and any other
alert that fires counts as false.
"""

import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from protocol.alerts import RULES, STATES
from protocol.config import ConfigError, Section, read_toml
from protocol.ids import check_id
from protocol.site import parse_site
from protocol.staff import OBSERVATION_LEVELS, SEXES, StaffError, check_args
from protocol.topics import SEVERITIES

from .actors import OUTSIDE
from .centre import BandMaker, Centre, Detainee, Officer
from .devices.camera import VIEWS
from .timetable import (
    DUTY_SUPERVISOR,
    PARAMS,
    VIOLATIONS,
    Expected,
    Plan,
    PlanError,
    Planner,
    Reaction,
    Stay,
    make_team,
    predicted,
)

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
SITES_DIR = Path(__file__).resolve().parent.parent / "sites"
# The shared data folder beside the repository (../shared/data), as the tests find it;
# CUSTODY_SHARED_DATA overrides it.
SHARED_DATA = Path(os.environ.get("CUSTODY_SHARED_DATA")
                   or Path(__file__).resolve().parent.parent.parent / "shared" / "data")
VIDEO_MAX_ROOMS = 3  # each costs a node a full-rate pose pipeline and the sim a decoded clip
VIDEO_MAX_SPEED = 2.0  # the clip is played at fps x speed; the node's pipeline must keep up
INTAKES = ("full", "quick")
ACTIONS = ("move", "command", "tap", "behaviour", "band", "fault", "noise", "camera",
           "button", "reader", "door")
NODE_FAULTS = ("kill-node", "start-node", "cut-node", "lag-node")
# Kinds added with issue 18: the random day draws them as extra ordinary events (and
# violating ones only when named in [random] violations), so seeded days keep their draws.
NEW_VOCABULARY = ("short-welfare-visits", "toilet-visit", "case-property-out",
                  "observation-raised", "missed-reads", "two-readers", "meets-co-suspect",
                  "extension", "lawyer-visit", "family-visit", "band-swap", "reader-fault",
                  "door-left-open", "camera-tamper", "sleeps")
REACTIONS = {"ack": "ack-alert", "resolve": "resolve-alert", "false-alarm": "false-alarm"}
FAULTS = ("kill-broker", "start-broker", "kill-node", "start-node", "cut-node", "lag-node",
          "kill-supervisor", "start-supervisor")


class MissingFootage(ConfigError):
    """The real clips a video scenario needs are not on this machine."""


@dataclass(frozen=True)
class VideoConf:
    """Rooms whose cameras get real pixel frames (a named pipe of YUV4MPEG2 the node opens
    with OpenCV) instead of keypoint lines, and the real clip a fall plays."""

    rooms: tuple[str, ...]
    fall_clip: str  # absolute path, checked to exist and decode at load


@dataclass
class Scenario:
    """A loaded scenario: where, who, what happens, and what must be raised."""

    name: str
    description: str
    path: str
    site_data: dict[str, Any]
    centre: Centre
    plan: Plan
    speed: float
    seed: int
    tail_s: float
    stays: list[Stay] = field(default_factory=list)
    video: VideoConf | None = None
    start_epoch: float | None = None  # custody time when the processes start (None: now)

    @property
    def duration_s(self) -> float:
        """Custody seconds from start to the end of the run."""
        return self.plan.duration_s


def list_scenarios() -> list[Path]:
    """The scenario files shipped in sim/scenarios/."""
    return sorted(SCENARIO_DIR.glob("*.toml"))


def find_scenario(name_or_file: str) -> Path:
    """A scenario by name (sim/scenarios/<name>.toml) or by path."""
    p = Path(name_or_file)
    if p.suffix == ".toml" or p.exists():
        return p
    return SCENARIO_DIR / f"{name_or_file}.toml"


def _site_path(s: Section, base: Path) -> Path:
    name = s.text("site", "demo-centre")
    p = Path(name)
    if p.suffix != ".toml":
        return SITES_DIR / f"{name}.toml"
    return p if p.is_absolute() else base / p


def load_scenario(path: str | Path, seed: int | None = None, speed: float | None = None
                  ) -> Scenario:
    """Load, check and plan a scenario file; ConfigError names the file and key on error."""
    path = Path(path)
    top = Section(path, "", read_toml(path))
    sc = top.section("scenario", required=True)
    name = sc.text("name", path.stem)
    desc = sc.text("description", "")
    site_file = _site_path(sc, path.parent)
    sc_speed = sc.number("speed", 30.0, lo=0.1, hi=1000.0)
    sc_seed = sc.integer("seed", 1)
    tail = sc.number("tail_s", 120.0, lo=0.0)
    pace = sc.number("pace", 1.0, lo=0.05, hi=10.0)
    start = sc.text("start", "")
    sc.done()
    site_data = read_toml(site_file)
    overrides = top.section("rules")
    overrides.seen.update(overrides.data)
    if overrides.data:
        site_data.setdefault("rules", {}).update(overrides.data)
    site = parse_site(site_data, site_file)
    start_epoch = _start_epoch(sc, start, site.timezone) if start else None
    seed = sc_seed if seed is None else seed
    speed = sc_speed if speed is None else speed
    bands = BandMaker(seed)
    centre = Centre(site, bands=bands)
    rand = top.section("random")
    stays = _random_day(rand, centre, bands, seed) if rand.data else _people(top, centre, bands)
    planner = Planner(centre, seed, pace)
    planner.register_people()
    end = 0.0
    for stay in stays:
        try:
            end = max(end, planner.detainee_day(stay))
        except PlanError as e:
            raise ConfigError(path, "detainees", f"a day that can happen ({stay.detainee}: "
                              f"{e})") from None
    plan = planner.plan
    step_at: dict[str, float] = {}  # named raw steps (`after` in [[expect]])
    end = max(end, _steps(top, path, centre, plan, step_at))
    _check_commands(path, plan, {*centre.officers, DUTY_SUPERVISOR})
    last = max((s.at_s for s in plan.steps), default=0.0)
    plan.duration_s = max(end, last) + tail
    # Predicted after the raw steps: a raw move can put co-suspects together too.
    plan.expected += predicted(planner, planner.arrivals)
    generated = list(plan.expected)
    plan.reactions = _reactions(top, centre)
    if not rand.data:
        # Violation ids, and the ids the planner gives its own steps (a co-suspect meeting).
        vids = {st.vid(k) for st in stays for k in st.violations} | {
            s.id for s in plan.steps if s.id and s.id not in step_at}
        plan.expected = _expectations(top, path, generated, vids, step_at)
    video = _video(top, path, centre, stays, speed, plan)
    top.done()
    # Run at least until the window of every expected alert has closed.
    plan.duration_s = max([plan.duration_s, *(e.from_s + e.within_s + 10
                                              for e in plan.expected)])
    return Scenario(name, desc, str(path), site_data, centre, plan, speed, seed, tail, stays,
                    video, start_epoch)


def _start_epoch(sc: Section, start: str, timezone: str) -> float:
    """`start = "23:40"` (today, the site's time zone) or "2026-12-01T23:40" as Unix seconds:
    the custody time the run's clock starts at (a day that crosses midnight)."""
    from datetime import datetime
    from datetime import time as dtime
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(timezone)
    try:
        if "T" in start:
            when = datetime.fromisoformat(start)
        else:
            when = datetime.combine(datetime.now(tz).date(), dtime.fromisoformat(start))
    except ValueError:
        raise sc.fail("start", "HH:MM or YYYY-MM-DDTHH:MM (the site's time zone)",
                      start) from None
    return (when if when.tzinfo else when.replace(tzinfo=tz)).timestamp()


def _steps(top: Section, path: Path, centre: Centre, plan: Plan, step_at: dict[str, float]
           ) -> float:
    """The file's raw [[steps]], checked against the site and people; returns when the last
    one (with its duration) is over."""
    site = centre.site
    node_ids = {n.id for n in site.nodes}
    buttons = {b.id for n in centre.sensor_nodes() for b in n.buttons}
    people = set(centre.officers) | set(centre.detainees)
    rooms = {r.id for r in site.rooms} | {OUTSIDE}
    cameras = {c.id for n in site.nodes for c in n.cameras}
    readers = {r.id for n in site.nodes for r in n.readers}
    node_readers = {r.id for n in centre.room_nodes() for r in n.readers}
    contacts = {d.door for n in site.nodes for d in n.doors}
    end = 0.0
    for st in top.sections("steps"):
        at = st.number("at_s", lo=0.0)
        action = st.text("action", choices=ACTIONS)
        sid = st.text("id", "", check=lambda v: check_id(v, "step id") if v else v)
        if sid in step_at:
            raise st.fail("id", "a step id used once", sid)
        args = {k: v for k, v in st.data.items() if k not in ("at_s", "action", "id")}
        st.seen.update(st.data)
        if action == "fault" and args.get("kind") not in FAULTS:
            raise st.fail("kind", f"one of {', '.join(FAULTS)}", args.get("kind"))
        if (action == "fault" and args.get("kind") in NODE_FAULTS
                and args.get("target") not in node_ids):
            raise st.fail("target", "a node id of the site", args.get("target"))
        if action == "fault" and args.get("kind") == "lag-node":
            for k in ("delay_s", "duration_s"):
                v = args.get(k)
                if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                    raise st.fail(k, "a number of seconds > 0", v)
        if action == "button" and args.get("button") not in buttons:
            known = ", ".join(sorted(buttons)) or "none"
            raise st.fail("button", f"a button of the site's sensor nodes ({known})",
                          args.get("button"))
        if action == "move":
            who = args.get("people")
            if not isinstance(who, list) or not who or not set(who) <= people:
                raise st.fail("people", "ids from [[officers]] and [[detainees]]", who)
            if args.get("room") not in rooms:
                raise st.fail("room", f"a room of the site or {OUTSIDE!r}", args.get("room"))
        if action in ("tap", "band") and args.get("person") not in people:
            raise st.fail("person", "an id from [[officers]] or [[detainees]]",
                          args.get("person"))
        band_keys = {"person", "tamper", "battery_low", "unread_s", "echo_room", "duration_s",
                     "swap_with"}
        if action == "band" and not set(args) <= band_keys:
            raise st.fail(sorted(set(args) - band_keys)[0], "a band step key (tamper, "
                          "battery_low, unread_s, echo_room, duration_s, swap_with)")
        if action == "band" and "swap_with" in args and (
                args["swap_with"] not in people or args["swap_with"] == args.get("person")):
            raise st.fail("swap_with", "another id from [[officers]] or [[detainees]]",
                          args["swap_with"])
        if action == "noise" and "reader" in args and args["reader"] not in readers:
            raise st.fail("reader", "a reader of the site", args["reader"])
        if action == "reader" and args.get("reader") not in node_readers:
            # a sensor board's reader is opened by the firmware, which has no stable name
            raise st.fail("reader", "a reader of a room node of the site", args.get("reader"))
        if action == "reader" and (not set(args) <= {"reader", "plugged"} or "reader" not in args
                                   or not isinstance(args.get("plugged", True), bool)):
            raise st.fail("plugged", "reader = <id> and plugged = true|false", args)
        if action == "band" and "echo_room" in args and args["echo_room"] not in rooms:
            raise st.fail("echo_room", "a room of the site", args["echo_room"])
        if action == "tap" and args.get("reader") not in readers:
            raise st.fail("reader", "a reader of the site", args.get("reader"))
        if action == "camera" and args.get("camera") not in cameras:
            raise st.fail("camera", "a camera of the site", args.get("camera"))
        if action == "camera" and not (set(args) in ({"camera", "covered"}, {"camera", "view"})
                                       and args.get("view", "clear") in VIEWS):
            raise st.fail("view", "covered = true|false, or view = "
                          f"{'|'.join(VIEWS)}", args)
        if action == "door" and (args.get("door") not in contacts or set(args) != {
                "door", "open_s"} or not isinstance(args["open_s"], int | float)):
            raise st.fail("door", "door = <a door with a contact on a node of the site>, "
                          "open_s = <seconds>", args)
        if action == "command" and not isinstance(args.get("args"), dict):
            raise st.fail("args", "a table of the command's arguments", args.get("args"))
        if sid:
            step_at[sid] = at
        plan.add(at, action, step_id=sid, **args)
        end = max(end, at + float(args.get("duration_s", 0)))
    return end


# Approvals need the custody-supervisor role, which in a simulated centre only the duty
# supervisor has (sim/runner.py's write_accounts: every [[officers]] entry is an officer).
APPROVALS = ("approve-temporary-exit", "approve-extension", "approve-disposition")


def _check_commands(path: Path, plan: Plan, accounts: set[str]) -> None:
    """Every staff command of the plan passes the supervisor's own argument check (the same
    message), comes from an account of the centre, and approvals from the duty supervisor, so
    a scenario cannot flood its run with refusals nobody reads."""
    for s in plan.sorted_steps():
        if s.action != "command":
            continue
        args = {(k[:-6] + "_ts" if k.endswith("_s_ago") else
                 k[:-5] if k.endswith("_ts_in_s") else
                 k[:-5] + "_by_ts" if k.endswith("_in_s") else k): (
                    int(v) if k.endswith(("_s_ago", "_in_s")) else v)
                for k, v in dict(s.args.get("args") or {}).items()}
        user, command = str(s.args.get("user")), str(s.args.get("command"))
        try:
            check_args(command, args)
            if user not in accounts:
                raise StaffError(f"account {user!r} does not exist")
            if command in APPROVALS and user != DUTY_SUPERVISOR:
                raise StaffError(f"{command}: {user!r} has no custody-supervisor role "
                                 f"(in the simulator only {DUTY_SUPERVISOR!r} approves)")
        except StaffError as e:
            where = f"steps (id {s.id})" if s.id else "steps"
            raise ConfigError(path, where, f"a command the supervisor accepts; at "
                              f"{s.at_s:g} s it would refuse: {e}") from None


def _reactions(top: Section, centre: Centre) -> list[Reaction]:
    """The file's [[staff]] list: who does what to which alert, how long after it is raised."""
    out = []
    for r in top.sections("staff"):
        do = r.text("do", choices=tuple(REACTIONS))
        by = r.text("by")
        if by not in centre.officers and by != DUTY_SUPERVISOR:
            raise r.fail("by", f"an officer id from [[officers]] or {DUTY_SUPERVISOR}", by)
        rule = r.text("rule")
        if rule not in RULES:
            raise r.fail("rule", "a rule id of protocol/alerts.py", rule)
        det = r.text("detainee", "") or None
        room = r.text("room", "") or None
        if det is None and room is None:
            raise r.fail("detainee", "a detainee or a room (the alert's subject)")
        after = r.number("after_s", 0.0, lo=0.0)
        note = r.text("note", "")
        r.done()
        out.append(Reaction(REACTIONS[do], by, rule, det, room, after,
                            note or ("attending" if do == "ack" else "")))
    return out


def _video(top: Section, path: Path, centre: Centre, stays: list[Stay], speed: float,
           plan: Plan) -> VideoConf | None:
    """The [video] table, checked against the site, the people, the speed and the disk."""
    v = top.section("video")
    if not v.data:
        return None
    rooms = v.array("rooms")
    cam_rooms = {n.room for n in centre.room_nodes() if n.cameras}
    if not rooms or len(rooms) > VIDEO_MAX_ROOMS or len(set(rooms)) != len(rooms):
        raise v.fail("rooms", f"1 to {VIDEO_MAX_ROOMS} distinct room ids", rooms)
    for r in rooms:
        if r not in cam_rooms:
            raise v.fail("rooms", "rooms with a camera on a room node of the site "
                         f"({', '.join(sorted(cam_rooms))})", r)
    data_dir = Path(v.text("data_dir", str(SHARED_DATA)))
    if not data_dir.is_absolute():
        data_dir = (path.parent / data_dir).resolve()
    clip_rel = v.text("fall_clip")
    v.done()
    if speed > VIDEO_MAX_SPEED:
        raise ConfigError(path, "scenario.speed", f"at most x{VIDEO_MAX_SPEED:g} with [video] "
                          "rooms (real frames are played in real time)", speed)
    clip = data_dir / clip_rel
    if not clip.is_file():
        raise MissingFootage(path, "video.fall_clip", "a real video clip under the shared data "
                             f"folder; missing: {clip}")
    from .devices.video import load_clip  # OpenCV only for scenarios that use pixels

    try:
        load_clip(clip, max_frames=1)  # the run decodes it all; loading (and `sim list`) need not
    except ValueError as exc:
        raise v.fail("fall_clip", f"a clip OpenCV decodes ({exc})", clip_rel) from None
    video_cams = {c.id for n in centre.room_nodes() if n.room in rooms for c in n.cameras}
    for s in plan.steps:
        if s.action == "camera" and "view" in s.args and s.args.get("camera") in video_cams:
            raise ConfigError(path, "video.rooms", "rooms whose cameras are not blurred or "
                              "moved by a step (real frames have pixels; `view` is for "
                              "keypoint cameras)", s.args["camera"])
    for st in stays:
        held = centre.detainees[st.detainee].holding
        other = [k for k in ("fight", "lying-still") if k in st.violations]
        if held in rooms and other:
            raise ConfigError(path, "video.rooms", "rooms whose detainees only fall (a clip "
                              f"shows one person falling; {st.detainee} has {other[0]})", held)
    return VideoConf(tuple(rooms), str(clip))


def _id(what: str) -> Any:
    """A Section check: the id rule of protocol/ids.py, with its own message."""
    return lambda v: check_id(v, what)


def _violations(d: Section, det: str) -> tuple[tuple[str, ...], dict[str, dict[str, float]],
                                               dict[str, str]]:
    """A detainee's `violations`: names, or tables {kind, id, parameters}."""
    kinds: list[str] = []
    params: dict[str, dict[str, float]] = {}
    ids: dict[str, str] = {}
    for j, x in enumerate(d.array("violations", [])):
        if isinstance(x, dict):
            vs = Section(d.file, d.key(f"violations[{j}]"), x)
            kind = vs.text("kind", choices=VIOLATIONS)
            vid = vs.text("id", "", check=lambda v: check_id(v, "violation id") if v else v)
            params[kind] = {n: vs.number(n, lo=0.0) for n in PARAMS.get(kind, ()) if n in x}
            vs.done()
            if vid:
                ids[kind] = vid
        elif x in VIOLATIONS:
            kind = x
        else:
            raise d.fail("violations", f"names from {', '.join(VIOLATIONS)} or tables "
                         "{kind, id, parameters}", x)
        if kind in kinds:
            raise d.fail("violations", f"each kind once per detainee ({det})", kind)
        kinds.append(kind)
    return tuple(kinds), params, ids


def _people(top: Section, centre: Centre, bands: BandMaker) -> list[Stay]:
    for o in top.sections("officers"):
        off = Officer(o.text("id", check=_id("officer")), o.text("sex", choices=SEXES),
                      bands.new(), o.text("name", ""), o.number("on_s", 0.0, lo=0.0),
                      o.number("off_s", float("inf"), lo=0.0))
        o.done()
        if off.id in centre.officers or off.id == DUTY_SUPERVISOR:
            raise o.fail("id", f"an officer id used once (and not {DUTY_SUPERVISOR}, the "
                         "simulator's duty supervisor)", off.id)
        centre.officers[off.id] = off
    stays = []
    holding_rooms = centre.rooms_of_kind("holding")
    for i, d in enumerate(top.sections("detainees")):
        # The same id checks (and messages) as the supervisor's register-detainee.
        det = Detainee(d.text("id", check=_id("detainee")), d.text("case", check=_id("case")),
                       d.text("sex", choices=SEXES),
                       d.text("custody_type", "administrative-questioning",
                              check=_id("custody_type")),
                       d.text("observation", "level1", choices=OBSERVATION_LEVELS),
                       bands.new(), d.text("holding", holding_rooms[i % len(holding_rooms)]),
                       d.text("name", ""))
        if det.id in centre.detainees or det.id in centre.officers:
            raise d.fail("id", "a person id used once", det.id)
        try:
            centre.site.rules.custody_type(det.custody_type)
        except KeyError:
            raise d.fail("custody_type", "a custody type of the site", det.custody_type) \
                from None
        if det.holding not in holding_rooms:
            raise d.fail("holding", "a holding room of the site", det.holding)
        team = d.array("team")
        if len(team) != 2 or not all(t in centre.officers for t in team):
            raise d.fail("team", "two officer ids from [[officers]]", team)
        intake = d.text("intake", "full", choices=INTAKES)
        kinds, params, ids = _violations(d, det.id)
        stays.append(Stay(det.id, (team[0], team[1]), d.number("arrive_s", 60.0, lo=0.0),
                          d.number("stay_s", 5400.0, lo=300.0), d.integer("interviews", 1, lo=0),
                          kinds, intake, params, ids))
        d.done()
        centre.detainees[det.id] = det
    return stays


def _lifecycle(e: Section) -> dict[str, Any]:
    """What an [[expect]] says about the alert after it is raised (each scored)."""
    out: dict[str, Any] = {}
    if "severity" in e.data:
        out["severity"] = e.text("severity", choices=SEVERITIES)
    if "escalated" in e.data:
        out["escalated"] = e.flag("escalated")
    if "lifecycle" in e.data:
        states = e.array("lifecycle")
        for x in states:
            if x not in STATES or x == "updated":
                raise e.fail("lifecycle", "states from "
                             f"{', '.join(s for s in STATES if s != 'updated')}", x)
        out["lifecycle"] = list(states)
    if "acked_by" in e.data:
        out["acked_by"] = e.text("acked_by", check=_id("officer"))
    if "closed_by" in e.data:  # who resolved or marked it false ("" : the rules themselves)
        out["closed_by"] = e.text("closed_by", check=lambda v: check_id(v, "officer") if v
                                  else v)
    if "closed_within_s" in e.data:
        out["closed_within_s"] = e.number("closed_within_s", lo=0.0)
    return out


def _expectations(top: Section, path: Path, generated: list[Expected], vids: set[str],
                  step_at: dict[str, float]) -> list[Expected]:
    """The file's [[expect]] list, timed by the plan; file and plan must agree exactly."""
    listed = []
    for i, e in enumerate(top.sections("expect")):
        rule = e.text("rule")
        if rule not in RULES:
            raise e.fail("rule", "a rule id of protocol/alerts.py", rule)
        det = e.text("detainee", "") or None
        room = e.text("room", "") or None
        within = e.number("within_s", 0.0, lo=0.0)
        from_s = e.number("from_s", -1.0)
        after = e.text("after", "")
        if det is None and room is None and not after:
            raise e.fail("detainee", "a detainee or a room (the alert's subject), or after")
        delay = e.number("delay_s", 0.0, lo=0.0)
        checks = _lifecycle(e)
        e.done()
        if after and after not in vids and after not in step_at:
            known = ", ".join(sorted(vids | set(step_at))) or "none"
            raise e.fail("after", f"a violation or step id of this scenario ({known})", after)
        if after:
            # Named: the subject may be partly given; the cause decides.
            match = [g for g in generated if g.rule == rule and g.cause == after
                     and det in (None, g.detainee) and room in (None, g.room)]
        else:
            match = [g for g in generated if (g.rule, g.detainee, g.room) == (rule, det, room)]
        if match:
            g = match[0]
            generated.remove(g)
            listed.append(replace(g, within_s=within or g.within_s, checks=checks))
        elif after in step_at and within > 0 and (det or room):
            listed.append(Expected(rule, det, room, step_at[after] + delay, within,
                                   "listed", after, checks))
        elif not after and from_s >= 0 and within > 0:
            listed.append(Expected(rule, det, room, from_s, within, "listed", "", checks))
        else:
            raise ConfigError(path, f"expect[{i}]", "an alert the planned violations raise "
                              "(or after = a step id, or from_s, with within_s, for one raised "
                              "by extra steps)", f"{rule} {det or ''} {room or ''} "
                              f"{after}".strip())
    if generated:
        g = generated[0]
        raise ConfigError(path, "expect", "every alert the violations raise to be listed; "
                          f"missing rule={g.rule} detainee={g.detainee} room={g.room}"
                          + (f" after={g.cause}" if g.cause else ""))
    return listed


def _random_day(s: Section, centre: Centre, bands: BandMaker, seed: int) -> list[Stay]:
    """A seeded day: detainees arriving over the first half, some violations injected."""
    n = s.integer("detainees", 10, lo=1, hi=100)
    hours = s.number("hours", 8.0, lo=0.5, hi=48.0)
    rate = s.number("violation_rate", 0.3, lo=0.0, hi=1.0)
    kinds = s.array("violations", [v for v in VIOLATIONS if v not in ("node-offline",)
                                   and v not in NEW_VOCABULARY])
    if "band-swap" in kinds:  # it needs a cellmate the day has planned before
        raise s.fail("violations", "kinds a random day can draw (not band-swap)", "band-swap")
    s.done()
    return random_day(centre, bands, seed, n, hours, rate, kinds)


# The random day's vocabulary: kind -> (parameters inside the rule's limit, outside it).
# Welfare variants only ever comply there: detainees share cells, and a cellmate's visitor
# counts as a visit.
RANDOM_VARIANTS: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "toilet-visit": ({"outside_s": 0.0}, {"outside_s": 60.0}),
    "case-property-out": ({"due_s": 600.0, "out_s": 300.0}, {"due_s": 600.0, "out_s": 700.0}),
    "observation-raised": ({"adapt": 1.0}, {"adapt": 1.0}),
    "short-welfare-visits": ({"duration_s": 30.0}, {"duration_s": 30.0}),
    "left-alone": ({"duration_s": 5.0}, {"duration_s": 60.0}),
    "short-search": ({"duration_s": 200.0}, {"duration_s": 60.0}),
    "lawyer-visit": ({"alone_s": 0.0}, {"alone_s": 30.0}),
    "family-visit": ({"officer_out_s": 0.0}, {"officer_out_s": 30.0}),
    "reader-fault": ({"junk_s": 30.0}, {"corrupt_s": 20.0}),
    "door-left-open": ({"open_s": 30.0}, {"open_s": 100.0}),
    "camera-tamper": ({"duration_s": 2.0}, {"duration_s": 60.0}),
    "sleeps": ({"duration_s": 1800.0, "turn_s": 300.0}, {"duration_s": 900.0}),
}


def random_day(centre: Centre, bands: BandMaker, seed: int, n: int, hours: float,
               rate: float, kinds: list[str]) -> list[Stay]:
    """Fill `centre` with a team of two officers per detainee and plan a day for each."""
    rng = random.Random(seed)
    vrng = random.Random(seed * 7919 + 1)  # the vocabulary's draws: the rest stays as seeded
    holding = centre.rooms_of_kind("holding")
    span = hours * 3600
    stays = []
    for i in range(n):
        sex = rng.choice(SEXES)
        f = Officer(f"off-{i + 1:02d}a", "f", bands.new())
        m = Officer(f"off-{i + 1:02d}b", "m", bands.new())
        centre.officers[f.id], centre.officers[m.id] = f, m
        det = Detainee(f"det-{i + 1:02d}", f"case-{i + 1:02d}", sex,
                       rng.choice(["administrative-questioning", "criminal-summons",
                                   "continued-questioning"]),
                       rng.choice(OBSERVATION_LEVELS), bands.new(), holding[i % len(holding)])
        centre.detainees[det.id] = det
        arrive = 60 + (span * 0.45) * i / max(1, n)
        stay = rng.uniform(0.3, 0.5) * span
        stay = min(stay, span - arrive - 1800, 0.7 * 3600 * 8)
        viol: tuple[str, ...] = ()
        if kinds and rng.random() < rate:
            viol = (rng.choice(kinds),)
        params: dict[str, dict[str, float]] = {}
        if viol and viol[0] in RANDOM_VARIANTS:
            params[viol[0]] = dict(RANDOM_VARIANTS[viol[0]][1])
        # Half the detainees also do something ordinary the rules must leave alone.
        calm = [k for k in RANDOM_VARIANTS if k not in viol
                # node-offline kills the toilet's node, so nobody may be taken there
                and not (k == "toilet-visit" and "node-offline" in kinds)]
        if vrng.random() < 0.5:
            k = vrng.choice(calm)
            viol = (*viol, k)
            params[k] = dict(RANDOM_VARIANTS[k][0])
        team = make_team([f, m], sex, rng)
        stays.append(Stay(det.id, team, arrive, max(stay, 3000.0), rng.choice([1, 1, 2]), viol,
                          params=params))
    return stays


def describe(sc: Scenario) -> str:
    """One line about a scenario for `custody sim list`."""
    return (f"{sc.name}: {len(sc.centre.detainees)} detainees, {len(sc.centre.officers)} "
            f"officers, {sc.duration_s / 3600:.1f} h at x{sc.speed:g}, expects "
            f"{', '.join(sorted({e.rule for e in sc.plan.expected})) or 'no alerts'}")


def describe_expected(sc: Scenario) -> list[str]:
    """One line per expected alert and per staff reaction, for `custody sim list`."""
    out = []
    for e in sorted(sc.plan.expected, key=lambda x: x.from_s):
        subject = "/".join(x for x in (e.detainee, e.room) if x)
        after = f" after {e.cause}" if e.cause else ""
        checks = "; ".join(f"{k} {'>'.join(v) if isinstance(v, list) else v}"
                           for k, v in e.checks.items())
        out.append(f"{e.rule} {subject}{after} from {e.from_s:.0f} s within {e.within_s:.0f} s"
                   + (f" [{checks}]" if checks else ""))
    for x in sc.plan.reactions:
        out.append(f"staff: {x.by} does {x.do} {x.after_s:g} s after {x.rule} "
                   f"{'/'.join(y for y in (x.detainee, x.room) if y)}")
    return out


__all__ = ["OUTSIDE", "MissingFootage", "Scenario", "VideoConf", "describe", "describe_expected",
           "find_scenario",
           "list_scenarios", "load_scenario"]
