"""The site description: rooms, doors, nodes and rule timings, loaded from one TOML file."""

import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, Section, read_toml
from .ids import check_id
from .topics import DEFAULT_PREFIX, check_prefix

ROOM_KINDS = ("entry", "search", "information", "medical", "interview", "holding", "property",
              "corridor", "toilet", "exit")
READER_TYPES = ("rdm6300", "uhf")
READER_ROLES = ("tap", "presence", "door")
NODE_KINDS = ("room", "sensor")
DOOR_INPUTS = ("gpio", "mqtt")
OBSERVATION_LEVELS = ("level1", "level2", "high")


@dataclass(frozen=True)
class Room:
    """One room of the custody area."""

    id: str
    kind: str
    name: str
    camera_required: bool
    position: tuple[int, int] | None = None  # (column, row) of its tile on the desk's floor


@dataclass(frozen=True)
class Door:
    """A door between two rooms; `doorway` rooms get the longer never-alone grace."""

    id: str
    between: tuple[str, str]


@dataclass(frozen=True)
class Reader:
    """A serial RFID reader on a node. `side` is the room a door reader stands in."""

    id: str
    type: str
    role: str
    port: str
    baud: int
    door: str | None
    side: str | None


@dataclass(frozen=True)
class DoorInput:
    """A door contact wired to a node (GPIO) or reported by a sensor node (MQTT)."""

    door: str
    type: str
    pin: int
    active_low: bool


@dataclass(frozen=True)
class Camera:
    """A camera on a room node; `source` is a device index, file path or RTSP URL."""

    id: str
    source: str
    masked_regions: tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True)
class Button:
    """A panic or call button on a sensor node."""

    id: str
    kind: str
    pin: int


@dataclass(frozen=True)
class Node:
    """A room node (Pi) or a sensor node (MicroPython board)."""

    id: str
    kind: str
    room: str
    readers: tuple[Reader, ...]
    doors: tuple[DoorInput, ...]
    cameras: tuple[Camera, ...]
    buttons: tuple[Button, ...]


@dataclass(frozen=True)
class CustodyType:
    """A legal basis for holding someone, with its time limit and approved extensions."""

    id: str
    limit_h: int
    extended_h: tuple[int, ...]


DEFAULT_CUSTODY_TYPES = (
    CustodyType("criminal-summons", 12, (24,)),
    CustodyType("administrative-questioning", 8, (12, 24)),
    CustodyType("continued-questioning", 24, (48,)),
    CustodyType("criminal-detention", 24, ()),  # transfer to a detention house within 24 h
)


@dataclass(frozen=True)
class Rules:
    """Rule timings in seconds (DESIGN.md's defaults); every one overridable per site."""

    registration_limit_s: int = 600
    search_min_duration_s: int = 180
    search_min_officers: int = 2
    never_alone_grace_s: int = 10
    never_alone_doorway_grace_s: int = 30
    holding_watch_grace_s: int = 30
    door_open_limit_s: int = 60  # an occupied cell's door open with no officer inside
    interview_grace_s: int = 60
    interview_min_officers: int = 2
    recording_gap_s: int = 10
    co_suspects_grace_s: int = 30
    welfare_visit_min_s: int = 10
    welfare_interval_level1_s: int = 3600
    welfare_interval_level2_s: int = 1800
    welfare_interval_high_s: int = 900
    welfare_warn_before_s: int = 300
    welfare_escalate_after_s: int = 300
    time_limit_warn_pct: tuple[int, ...] = (75, 90)
    time_limit_final_warn_s: int = 3600
    belongings_limit_s: int = 1800
    lying_still_s: int = 600
    device_offline_s: int = 30
    presence_ttl_s: int = 5
    alert_escalate_after_s: int = 120
    custody_types: tuple[CustodyType, ...] = DEFAULT_CUSTODY_TYPES

    def welfare_interval_s(self, level: str) -> int:
        """Welfare-check interval for an observation level."""
        return {"level1": self.welfare_interval_level1_s, "level2": self.welfare_interval_level2_s,
                "high": self.welfare_interval_high_s}[level]

    def custody_type(self, type_id: str) -> CustodyType:
        """The custody type with this id (KeyError if unknown)."""
        for t in self.custody_types:
            if t.id == type_id:
                return t
        raise KeyError(type_id)


@dataclass(frozen=True)
class BrokerConf:
    """Where nodes and the supervisor reach the site's Mosquitto."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str = ""
    keepalive_s: int = 5


@dataclass(frozen=True)
class SupervisorConf:
    """The supervisor's storage and checkpoint settings."""

    db: str = "var/supervisor.db"
    checkpoint_file: str = "var/checkpoint.json"
    checkpoint_interval_s: int = 60
    keys_file: str = ""
    max_clock_skew_s: int = 120  # an event stamped further ahead of the supervisor is refused
    max_event_age_s: int = 7 * 86400  # ... or further behind (an outbox holds 72 h at peak)
    checkpoint_key_file: str = ""  # the checkpoint key, kept away from the journal
    # A state snapshot is made after a checkpoint once this many entries were journaled since
    # the last one: start-up replays at most about this many (supervisor/snapshot.py). Tail
    # replay costs 0.03-0.26 ms an entry here (quiet to loaded), so 20,000 keeps a restart
    # after a crash within 10 s with a long journal; the maker folds only what is new.
    snapshot_every: int = 20_000


@dataclass(frozen=True)
class BureauConf:
    """Where the uplink ships the journal: NATS servers and the JetStream stream."""

    urls: tuple[str, ...]
    stream: str = "CUSTODY"
    replicas: int = 1


@dataclass(frozen=True)
class Site:
    """A whole custody area."""

    id: str
    name: str
    topic_prefix: str
    rooms: tuple[Room, ...]
    doors: tuple[Door, ...]
    nodes: tuple[Node, ...]
    rules: Rules = field(default_factory=Rules)
    broker: BrokerConf = field(default_factory=BrokerConf)
    supervisor: SupervisorConf = field(default_factory=SupervisorConf)
    path: str = ""
    timezone: str = "UTC"  # IANA name; the desk and reports show times in it
    bureau: BureauConf | None = None  # None: no uplink (the embedded default)

    def room(self, room_id: str) -> Room:
        """The room with this id (KeyError if unknown)."""
        for r in self.rooms:
            if r.id == room_id:
                return r
        raise KeyError(room_id)

    def node(self, node_id: str) -> Node:
        """The node with this id (KeyError if unknown)."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def doorway_rooms(self) -> frozenset[str]:
        """Rooms that are doorways (corridors): never-alone uses the longer grace there."""
        return frozenset(r.id for r in self.rooms if r.kind == "corridor")


def _id(s: Section, name: str, what: str) -> str:
    return s.text(name, check=lambda v: check_id(v, what))


def _rules(s: Section) -> Rules:
    d = Rules()
    kw: dict[str, object] = {}
    for name in Rules.__dataclass_fields__:
        if name in ("custody_types", "time_limit_warn_pct"):
            continue
        default = getattr(d, name)
        kw[name] = s.integer(name, default, lo=1, hi=7 * 24 * 3600)
    pct = s.array("time_limit_warn_pct", list(d.time_limit_warn_pct))
    if not all(isinstance(p, int) and 1 <= p <= 99 for p in pct):
        raise s.fail("time_limit_warn_pct", "an array of integers in [1, 99]", pct)
    kw["time_limit_warn_pct"] = tuple(sorted(pct))
    types = s.sections("custody_types")
    if types:
        out = []
        for t in types:
            out.append(CustodyType(_id(t, "id", "custody type"), t.integer("limit_h", lo=1, hi=168),
                                   tuple(_ints(t, "extended_h"))))
            t.done()
        kw["custody_types"] = tuple(out)
    s.done()
    return Rules(**kw)  # type: ignore[arg-type]


def _ints(s: Section, name: str) -> list[int]:
    v = s.array(name, [])
    if not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 168 for x in v):
        raise s.fail(name, "an array of hours in [1, 168]", v)
    return v


def _reader(s: Section) -> Reader:
    r = Reader(
        id=_id(s, "id", "reader id"),
        type=s.text("type", choices=READER_TYPES),
        role=s.text("role", choices=READER_ROLES),
        port=s.text("port"),
        baud=s.integer("baud", 9600 if s.data.get("type") == "rdm6300" else 115200, lo=1200,
                   hi=921600),
        door=s.text("door", "") or None,
        side=s.text("side", "") or None,
    )
    if r.role == "door" and (r.door is None or r.side is None):
        raise s.fail("door", "door readers need both 'door' and 'side' (the room they face)")
    s.done()
    return r


def _node(s: Section) -> Node:
    readers = tuple(_reader(r) for r in s.sections("readers"))
    doors = []
    for d in s.sections("doors"):
        doors.append(DoorInput(_id(d, "door", "door id"), d.text("type", choices=DOOR_INPUTS),
                               d.integer("pin", 0, lo=0, hi=64), d.flag("active_low", True)))
        d.done()
    cams = []
    for c in s.sections("cameras"):
        regions = c.array("masked_regions", [])
        for reg in regions:
            if not (isinstance(reg, list) and len(reg) == 4 and all(isinstance(x, int)
                                                                   for x in reg)):
                raise c.fail("masked_regions", "arrays of 4 integers [x, y, w, h]", reg)
        cams.append(Camera(_id(c, "id", "camera id"), c.text("source"),
                           tuple((r[0], r[1], r[2], r[3]) for r in regions)))
        c.done()
    buttons = []
    for b in s.sections("buttons"):
        buttons.append(Button(_id(b, "id", "button id"), b.text("kind", choices=("panic", "call")),
                              b.integer("pin", lo=0, hi=64)))
        b.done()
    n = Node(_id(s, "id", "node id"), s.text("kind", "room", choices=NODE_KINDS),
             _id(s, "room", "room id"), readers, tuple(doors), tuple(cams), tuple(buttons))
    s.done()
    return n


def parse_site(data: dict[str, object], path: str | Path = "<site>") -> Site:
    """Validate a parsed site table and build the Site; raise ConfigError on any fault."""
    top = Section(path, "", data)
    site_s = top.section("site", required=True)
    site_id = _id(site_s, "id", "site id")
    name = site_s.text("name", site_id)
    prefix = site_s.text("topic_prefix", DEFAULT_PREFIX, check=check_prefix)
    timezone = site_s.text("timezone", "UTC", check=_check_timezone)
    site_s.done()

    rooms = []
    for r in top.sections("rooms", required=True):
        rooms.append(Room(_id(r, "id", "room id"), r.text("kind", choices=ROOM_KINDS),
                          r.text("name", r.data.get("id", "")) or r.data["id"],
                          r.flag("camera_required", r.data.get("kind") in ("holding",
                                                                             "interview")),
                          _position(r)))
        r.done()
    doors = []
    door_secs = top.sections("doors")
    for d in door_secs:
        between = d.array("between")
        if len(between) != 2 or not all(isinstance(x, str) for x in between):
            raise d.fail("between", "two room ids", between)
        doors.append(Door(_id(d, "id", "door id"), (between[0], between[1])))
        d.done()
    node_secs = top.sections("nodes")
    nodes = [_node(n) for n in node_secs]
    rules = _rules(top.section("rules"))
    b = top.section("broker")
    broker = BrokerConf(b.text("host", "127.0.0.1"), b.integer("port", 1883, lo=1, hi=65535),
                        b.flag("tls", False), b.text("ca_file", ""),
                        b.integer("keepalive_s", 5, lo=1, hi=600))
    b.done()
    sv = top.section("supervisor")
    sup = SupervisorConf(sv.text("db", "var/supervisor.db"),
                         sv.text("checkpoint_file", "var/checkpoint.json"),
                         sv.integer("checkpoint_interval_s", 60, lo=1, hi=60),
                         sv.text("keys_file", ""),
                         sv.integer("max_clock_skew_s", 120, lo=1, hi=86400),
                         sv.integer("max_event_age_s", 7 * 86400, lo=60, hi=365 * 86400),
                         sv.text("checkpoint_key_file", ""),
                         sv.integer("snapshot_every", 20_000, lo=1, hi=1_000_000_000))
    sv.done()
    bureau = _bureau(top.section("bureau")) if "bureau" in data else None
    top.done()

    # Cross-references: every id unique, every reference resolves.
    room_ids = [r.id for r in rooms]
    _unique(path, "rooms", room_ids)
    _unique(path, "doors", [d.id for d in doors])
    _unique(path, "nodes", [n.id for n in nodes])
    for i, door in enumerate(doors):
        for room in door.between:
            if room not in room_ids:
                raise ConfigError(path, f"doors[{i}].between", "ids of rooms listed in [[rooms]]",
                                  room)
    door_ids = {d.id for d in doors}
    for i, n in enumerate(nodes):
        if n.room not in room_ids:
            raise ConfigError(path, f"nodes[{i}].room", "the id of a room in [[rooms]]", n.room)
        _unique(path, f"nodes[{i}].readers", [r.id for r in n.readers])
        for j, rd in enumerate(n.readers):
            if rd.door is not None and rd.door not in door_ids:
                raise ConfigError(path, f"nodes[{i}].readers[{j}].door", "a door id", rd.door)
            if rd.side is not None and rd.side not in room_ids:
                raise ConfigError(path, f"nodes[{i}].readers[{j}].side", "a room id", rd.side)
        for j, di in enumerate(n.doors):
            if di.door not in door_ids:
                raise ConfigError(path, f"nodes[{i}].doors[{j}].door", "a door id", di.door)
    return Site(site_id, name, prefix, tuple(rooms), tuple(doors), tuple(nodes), rules, broker,
                sup, str(path), timezone, bureau)


def _check_timezone(name: str) -> None:
    """Raise ValueError unless `name` is a time zone this machine knows (e.g. Asia/Shanghai)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"an IANA time zone name such as Asia/Shanghai, got {name!r}") from None


def _position(s: Section) -> tuple[int, int] | None:
    """A room's optional desk tile position: `position = [column, row]`, both from 1."""
    v = s.array("position", [])
    if not v:
        return None
    if len(v) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 64
                              for x in v):
        raise s.fail("position", "[column, row], two integers in [1, 64]", v)
    return (v[0], v[1])


def _check_nats_url(url: str) -> None:
    m = re.fullmatch(r"(nats|tls)://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", url)
    if m is None or not 1 <= int(m.group(3)) <= 65535:
        raise ValueError("a NATS URL like nats://host:4222 (scheme nats or tls, host, port)")


def _check_stream(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ValueError("a JetStream stream name: 1-64 letters, digits, '-' or '_'")


def _bureau(s: Section) -> BureauConf:
    urls = s.array("urls")
    if not urls or not all(isinstance(u, str) for u in urls):
        raise s.fail("urls", "a non-empty array of NATS URLs", urls)
    for i, u in enumerate(urls):
        try:
            _check_nats_url(u)
        except ValueError as e:
            raise ConfigError(s.file, f"{s.key('urls')}[{i}]", str(e), u) from None
    stream = s.text("stream", "CUSTODY", check=_check_stream)
    b = BureauConf(tuple(urls), stream, s.integer("replicas", 1, lo=1, hi=5))
    s.done()
    return b


def _unique(path: str | Path, key: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, x in enumerate(ids):
        if x in seen:
            raise ConfigError(path, f"{key}[{i}].id", "an id not used before in this list", x)
        seen.add(x)


def load_site(path: str | Path) -> Site:
    """Load and validate a site file."""
    return parse_site(read_toml(path), path)


DEMO_SITE = Path(__file__).resolve().parent.parent / "sites" / "demo-centre.toml"
