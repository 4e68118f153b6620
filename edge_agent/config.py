"""The agent's config file (`custody agent --config FILE`), validated at load."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.config import ConfigError, Section, read_toml
from protocol.ids import check_id
from protocol.keys import parse_key
from protocol.site import Camera, Node, Reader, Site, load_site
from protocol.transport import LinkConf

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class DoorSource:
    """Where one door contact is read: `gpio:<pin>` or `line:<path>`."""

    door: str
    source: str
    active_low: bool
    debounce_s: float


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent process needs, resolved against the site file."""

    node: Node
    site: Site
    key: bytes
    outbox: Path
    outbox_max_events: int
    health_interval_s: float
    vision: bool
    camera_heartbeat_s: float  # custody seconds between "recording" heartbeats per camera
    retransmit_s: float
    crossing_window_s: float
    tap_rearm_s: float
    log_level: str
    mqtt: LinkConf
    readers: tuple[Reader, ...]  # the node's readers with overrides applied
    start_inventory: dict[str, bool]
    doors: tuple[DoorSource, ...]  # only the doors this agent reads (not sensor-node doors)
    cameras: tuple[Camera, ...]
    # [recording]: camera options for edge_agent.recording (empty: not recording)
    recording: dict[str, Any] = dataclasses.field(default_factory=dict)


def _path(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base / p


def _door_source(s: Section, name: str, value: str) -> str:
    kind, _, arg = value.partition(":")
    if not ((kind == "gpio" and arg.isdigit()) or (kind == "line" and arg)):
        raise s.fail(name, "gpio:<pin> or line:<path>", value)
    return value


def load_agent_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent config; raise ConfigError naming file and key."""
    path = Path(path)
    base = path.resolve().parent
    top = Section(path, "", read_toml(path))
    a = top.section("agent", required=True)
    node_id = a.text("node", check=lambda v: check_id(v, "node id"))
    site_path = _path(base, a.text("site"))
    site = load_site(site_path)
    try:
        node = site.node(node_id)
    except KeyError:
        raise a.fail("node", f"a node of {site_path}", node_id) from None
    if node.kind != "room":
        raise a.fail("node", "a node of kind 'room' (sensor nodes run the firmware)", node_id)
    if "key" in a.data and "key_file" in a.data:
        raise a.fail("key", "either key or key_file, not both")
    if "key" in a.data:
        key = parse_key(path, a.key("key"), a.text("key"))
    else:
        kf = _path(base, a.text("key_file"))
        try:
            key = parse_key(kf, "(key file)", kf.read_text().strip())
        except OSError as e:
            raise a.fail("key_file", f"a readable key file ({e.strerror})", str(kf)) from None
    outbox = _path(base, a.text("outbox"))
    max_events = a.integer("outbox_max_events", 0, lo=0, hi=100_000_000)
    health = a.number("health_interval_s", 30, lo=0.1, hi=3600)
    vision = a.flag("vision", True)
    gap = site.rules.recording_gap_s
    # Below the site's recording gap, or every heartbeat would already be a gap.
    heartbeat = a.number("camera_heartbeat_s", gap / 2, lo=0.1, hi=gap * 0.9)
    retransmit = a.number("retransmit_s", 10, lo=0.1, hi=3600)
    crossing = a.number("crossing_window_s", 10, lo=0.1, hi=600)
    rearm = a.number("tap_rearm_s", 0.5, lo=0.0, hi=60)
    level = a.text("log_level", "info", choices=LOG_LEVELS)
    a.done()

    m = top.section("mqtt")
    pw: str | None = m.text("password", "") or None
    if "password_file" in m.data:
        pf = _path(base, m.text("password_file"))
        try:
            pw = pf.read_text().strip()
        except OSError as e:
            raise m.fail("password_file", f"a readable file ({e.strerror})", str(pf)) from None
    ca = m.text("ca_file", site.broker.ca_file)
    cert, ckey = m.text("cert_file", ""), m.text("key_file", "")
    mqtt = LinkConf(
        host=m.text("host", site.broker.host),
        port=m.integer("port", site.broker.port, lo=1, hi=65535),
        username=m.text("username", "") or None,
        password=pw,
        ca_file=str(_path(base, ca)) if ca else None,
        cert_file=str(_path(base, cert)) if cert else None,
        key_file=str(_path(base, ckey)) if ckey else None,
        keepalive_s=m.integer("keepalive_s", site.broker.keepalive_s, lo=1, hi=600),
    )
    m.done()

    readers = {r.id: r for r in node.readers}
    inventory: dict[str, bool] = {r.id: True for r in node.readers}
    rs = top.section("readers")
    for rid in rs.data:
        if rid not in readers:
            raise rs.fail(rid, f"a reader of node {node_id}", rid)
        o = rs.section(rid)
        r = readers[rid]
        readers[rid] = dataclasses.replace(r, port=o.text("port", r.port),
                                           baud=o.integer("baud", r.baud, lo=1200, hi=921600))
        inventory[rid] = o.flag("start_inventory", True)
        o.done()
    rs.done()

    doors: dict[str, DoorSource] = {}
    for d in node.doors:
        if d.type == "gpio":
            doors[d.door] = DoorSource(d.door, f"gpio:{d.pin}", d.active_low, 0.03)
    ds = top.section("doors")
    node_doors = {d.door: d for d in node.doors}
    for did in ds.data:
        if did not in node_doors:
            raise ds.fail(did, f"a door wired to node {node_id}", did)
        o = ds.section(did)
        src = o.text("source")
        _door_source(o, "source", src)
        debounce = o.integer("debounce_ms", 30, lo=0, hi=5000) / 1000
        doors[did] = DoorSource(did, src, node_doors[did].active_low, debounce)
        o.done()
    ds.done()

    cams = {c.id: c for c in node.cameras}
    cs = top.section("cameras")
    for cid in cs.data:
        if cid not in cams:
            raise cs.fail(cid, f"a camera of node {node_id}", cid)
        o = cs.section(cid)
        cams[cid] = dataclasses.replace(cams[cid], source=o.text("source"))
        o.done()
    cs.done()
    rs_ = top.section("recording")
    recording: dict[str, Any] = {}
    if rs_.data:
        recording["record_dir"] = str(_path(base, rs_.text("dir")))
        recording["segment_s"] = rs_.number("segment_s", 60, lo=1, hi=3600)
        recording["ring_hours"] = rs_.number("ring_hours", 24, lo=0.01, hi=24 * 90)
        recording["record_fps"] = rs_.number("fps", 15, lo=1, hi=60)
        recording["record_codec"] = rs_.text("codec", "auto",
                                             choices=("auto", "avc1", "mp4v", "MJPG"))
        ev = rs_.text("evidence_dir", "")
        if ev:
            recording["evidence_dir"] = str(_path(base, ev))
            recording["evidence_before_s"] = rs_.number("evidence_before_s", 15, lo=0, hi=300)
            recording["evidence_after_s"] = rs_.number("evidence_after_s", 15, lo=0, hi=300)
        rs_.done()
    top.done()

    return AgentConfig(node, site, key, outbox, max_events, health, vision, heartbeat,
                       retransmit, crossing, rearm, level, mqtt, tuple(readers.values()),
                       inventory, tuple(doors.values()), tuple(cams.values()), recording)


__all__ = ["AgentConfig", "ConfigError", "DoorSource", "load_agent_config"]
