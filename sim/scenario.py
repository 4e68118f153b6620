"""Scenario files (TOML under sim/scenarios/) and the seeded random day, turned into a Plan.

    [scenario]
    name = "never-alone"                 # defaults to the file name
    description = "..."
    site = "demo-centre"                 # sites/<name>.toml, or a path relative to this file
    speed = 40                           # clock speed (custody seconds per real second)
    seed = 1
    tail_s = 120                         # custody seconds to keep running after the last step
    pace = 1.0                           # < 1 shortens stages that have no legal minimum
    [rules]                              # optional: overrides of the site's [rules]
    [[officers]]    id, sex ("f"|"m")
    [[detainees]]   id, case, sex, custody_type, observation, holding, team = [o1, o2],
                    arrive_s, stay_s, interviews, violations = [...]
    [[steps]]       at_s, action, ... (extra timed steps, e.g. faults; action = "button",
                    button = "<id>" presses a sensor board's button)
    [[expect]]      rule, detainee and/or room, within_s, from_s (for extra steps only)
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

from protocol.alerts import RULES
from protocol.config import ConfigError, Section, read_toml
from protocol.site import parse_site
from protocol.staff import OBSERVATION_LEVELS, SEXES

from .actors import OUTSIDE
from .centre import BandMaker, Centre, Detainee, Officer
from .timetable import VIOLATIONS, Expected, Plan, Planner, Stay, make_team, predicted

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
           "button")
NODE_FAULTS = ("kill-node", "start-node", "cut-node")
FAULTS = ("kill-broker", "start-broker", "kill-node", "start-node", "cut-node",
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
    sc.done()
    site_data = read_toml(site_file)
    overrides = top.section("rules")
    overrides.seen.update(overrides.data)
    if overrides.data:
        site_data.setdefault("rules", {}).update(overrides.data)
    site = parse_site(site_data, site_file)
    seed = sc_seed if seed is None else seed
    speed = sc_speed if speed is None else speed
    centre = Centre(site)
    bands = BandMaker(seed)
    rand = top.section("random")
    stays = _random_day(rand, centre, bands, seed) if rand.data else _people(top, centre, bands)
    planner = Planner(centre, seed, pace)
    planner.register_people()
    end = 0.0
    for stay in stays:
        end = max(end, planner.detainee_day(stay))
    plan = planner.plan
    last = max((s.at_s for s in plan.steps), default=0.0)
    plan.duration_s = max(end, last) + tail
    plan.expected += predicted(planner, planner.arrivals)
    generated = list(plan.expected)
    for i, st in enumerate(top.sections("steps")):
        step_at = st.number("at_s", lo=0.0)
        action = st.text("action", choices=ACTIONS)
        args = {k: v for k, v in st.data.items() if k not in ("at_s", "action")}
        st.seen.update(st.data)
        if action == "fault" and args.get("kind") not in FAULTS:
            raise ConfigError(path, f"steps[{i}].kind", f"one of {', '.join(FAULTS)}",
                              args.get("kind"))
        node_ids = {n.id for n in site.nodes}
        if (action == "fault" and args.get("kind") in NODE_FAULTS
                and args.get("target") not in node_ids):
            raise ConfigError(path, f"steps[{i}].target", "a node id of the site",
                              args.get("target"))
        buttons = {b.id for n in centre.sensor_nodes() for b in n.buttons}
        if action == "button" and args.get("button") not in buttons:
            known = ", ".join(sorted(buttons)) or "none"
            raise ConfigError(path, f"steps[{i}].button",
                              f"a button of the site's sensor nodes ({known})", args.get("button"))
        plan.add(step_at, action, **args)
        end = max(end, step_at + float(args.get("duration_s", 0)))
    if not rand.data:
        plan.expected = _expectations(top, path, generated, centre)
    video = _video(top, path, centre, stays, speed)
    top.done()
    last = max((s.at_s for s in plan.steps), default=0.0)
    plan.duration_s = max(end, last) + tail
    # Run at least until the window of every expected alert has closed.
    plan.duration_s = max([plan.duration_s, *(e.from_s + e.within_s + 10
                                              for e in plan.expected)])
    return Scenario(name, desc, str(path), site_data, centre, plan, speed, seed, tail, stays,
                    video)


def _video(top: Section, path: Path, centre: Centre, stays: list[Stay], speed: float
           ) -> VideoConf | None:
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
    for st in stays:
        held = centre.detainees[st.detainee].holding
        other = [k for k in ("fight", "lying-still") if k in st.violations]
        if held in rooms and other:
            raise ConfigError(path, "video.rooms", "rooms whose detainees only fall (a clip "
                              f"shows one person falling; {st.detainee} has {other[0]})", held)
    return VideoConf(tuple(rooms), str(clip))


def _people(top: Section, centre: Centre, bands: BandMaker) -> list[Stay]:
    for o in top.sections("officers"):
        off = Officer(o.text("id"), o.text("sex", choices=SEXES), bands.new(), o.text("name", ""))
        o.done()
        centre.officers[off.id] = off
    stays = []
    holding_rooms = centre.rooms_of_kind("holding")
    for i, d in enumerate(top.sections("detainees")):
        det = Detainee(d.text("id"), d.text("case"), d.text("sex", choices=SEXES),
                       d.text("custody_type", "administrative-questioning"),
                       d.text("observation", "level1", choices=OBSERVATION_LEVELS),
                       bands.new(), d.text("holding", holding_rooms[i % len(holding_rooms)]),
                       d.text("name", ""))
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
        viol = d.array("violations", [])
        for x in viol:
            if x not in VIOLATIONS:
                raise d.fail("violations", f"names from {', '.join(VIOLATIONS)}", x)
        stays.append(Stay(det.id, (team[0], team[1]), d.number("arrive_s", 60.0, lo=0.0),
                          d.number("stay_s", 5400.0, lo=600.0), d.integer("interviews", 1, lo=0),
                          tuple(viol), intake))
        d.done()
        centre.detainees[det.id] = det
    return stays


def _expectations(top: Section, path: Path, generated: list[Expected], centre: Centre
                  ) -> list[Expected]:
    """The file's [[expect]] list, timed by the plan; file and plan must agree exactly."""
    listed = []
    for i, e in enumerate(top.sections("expect")):
        rule = e.text("rule")
        if rule not in RULES:
            raise e.fail("rule", "a rule id of protocol/alerts.py", rule)
        det = e.text("detainee", "") or None
        room = e.text("room", "") or None
        if det is None and room is None:
            raise e.fail("detainee", "a detainee or a room (the alert's subject)")
        within = e.number("within_s", 0.0, lo=0.0)
        from_s = e.number("from_s", -1.0)
        e.done()
        match = [g for g in generated if (g.rule, g.detainee, g.room) == (rule, det, room)]
        if match:
            g = match[0]
            generated.remove(g)
            listed.append(replace(g, within_s=within or g.within_s))
        elif from_s >= 0 and within > 0:
            listed.append(Expected(rule, det, room, from_s, within, "listed"))
        else:
            raise ConfigError(path, f"expect[{i}]", "an alert the planned violations raise "
                              "(or from_s and within_s for one raised by extra steps)",
                              f"{rule} {det or ''} {room or ''}".strip())
    if generated:
        g = generated[0]
        raise ConfigError(path, "expect", "every alert the violations raise to be listed; "
                          f"missing rule={g.rule} detainee={g.detainee} room={g.room}")
    return listed


def _random_day(s: Section, centre: Centre, bands: BandMaker, seed: int) -> list[Stay]:
    """A seeded day: detainees arriving over the first half, some violations injected."""
    n = s.integer("detainees", 10, lo=1, hi=100)
    hours = s.number("hours", 8.0, lo=0.5, hi=48.0)
    rate = s.number("violation_rate", 0.3, lo=0.0, hi=1.0)
    kinds = s.array("violations", [v for v in VIOLATIONS if v not in ("node-offline",)])
    s.done()
    return random_day(centre, bands, seed, n, hours, rate, kinds)


def random_day(centre: Centre, bands: BandMaker, seed: int, n: int, hours: float,
               rate: float, kinds: list[str]) -> list[Stay]:
    """Fill `centre` with a team of two officers per detainee and plan a day for each."""
    rng = random.Random(seed)
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
        team = make_team([f, m], sex, rng)
        stays.append(Stay(det.id, team, arrive, max(stay, 3000.0), rng.choice([1, 1, 2]), viol))
    return stays


def describe(sc: Scenario) -> str:
    """One line about a scenario for `custody sim list`."""
    return (f"{sc.name}: {len(sc.centre.detainees)} detainees, {len(sc.centre.officers)} "
            f"officers, {sc.duration_s / 3600:.1f} h at x{sc.speed:g}, expects "
            f"{', '.join(sorted({e.rule for e in sc.plan.expected})) or 'no alerts'}")


__all__ = ["OUTSIDE", "MissingFootage", "Scenario", "VideoConf", "describe", "find_scenario",
           "list_scenarios", "load_scenario"]
