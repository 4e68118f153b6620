"""Supervisor state as a pure function of the journal: `State.apply(entry)` folded in order.

Nothing here reads a clock: every time comes from the entries (event `ts`, or the `ts` the
supervisor wrote into its own entries), so replaying a journal rebuilds exactly the state the
live supervisor had. See PROCESS.md for what each event and command means.
"""

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from protocol.alerts import SECURITY_REASON_RULE
from protocol.events import Event
from protocol.site import Site

from .journal import Entry
from .process import Custody, Incident, Person, Visit, incident_id

# rooms where two officers with a detainee for the grace are an interview outside the rooms
INTERVIEW_ELSEWHERE = ("holding", "corridor", "toilet", "property")

log = logging.getLogger(__name__)
# A band unread this long, and read by no other room, is still in the room it was last in
# (measured at x60 on a loaded machine: unread spells of 7.5 and 11.7 s inside one search).
UNREAD_SPELL_MS = 60_000
# Events whose fold changes only their node and the rooms they name: the site-wide rules
# (custody records, incidents, behaviours, device activities) never read what they change.
ROOM_LOCAL_EVENTS = frozenset({"camera", "door", "person_count"})
# Non-event entries whose fold changes only the node they name.
NODE_LOCAL_KINDS = frozenset({"health", "availability"})


# Live mode (State(archive=False)): the closed alerts kept whole for the desk's "recently
# closed" list and evidence views; older ones leave a tombstone (ClosedAlert) only.
RECENT_CLOSED = 200
# Live mode: a released detainee's custody record stays this long (in the journal's own time,
# State.last_ts) after their exit, then leaves once no open alert names them. Long enough for
# the desk's list to show who just left and for the rules to have seen the record's last
# state (the supervisor evaluates them every tick); the journal keeps it for good.
RELEASED_KEEP_MS = 3600_000
# Live mode: a staff txn id is remembered (a retry answered `duplicate`) for this long of
# journal time; retries come within seconds. Refused actions kept: the newest (the report
# and the desk read them from the journal).
TXN_KEEP_MS = 24 * 3600_000
REFUSED_KEEP = 200
# The final states of an alert, as one shared string each (tombstones hold millions).
CLOSED_STATES = {"resolved": "resolved", "false_alarm": "false_alarm"}


# What live mode keeps of a closed alert that left memory (a tombstone): (final state,
# closed ts, evidence id or None): enough never to raise its id again, to refuse staff actions
# on it as today, and to find its evidence clip. A plain tuple (the snapshot codec's): with its
# id and dict slot ~180 bytes, ~260 with an evidence id (1.7 KB for the whole alert).
ClosedAlert = tuple[str, int, str | None]


# Node behaviour classes -> the rule that raises them while they last (rules/devices.py).
BEHAVIOUR_RULES = {"fall": "fall", "fight": "fight", "lying_still": "lying-still",
                   "agitated": "agitated"}

@dataclass
class RoomState:
    """Occupancy and devices of one room."""

    id: str
    kind: str
    bands: dict[str, int] = field(default_factory=dict)  # band -> entered (ms)
    officer_count: int = 0
    officers_zero_since: int = 0  # when officer count last fell to 0 (0: never had one)
    below_min_since: int = 0  # when officer count last fell below interview_min_officers
    min_since: int | None = None  # since when officer count >= interview_min_officers
    detainee_since: int | None = None  # since when at least one detainee is inside
    cam_last_live: int | None = None  # last heartbeat with live = true
    cam_dead_since: int | None = None  # first live = false heartbeat after a live one
    cam_last_rec: int | None = None  # last heartbeat with live and recording
    tamper: dict[str, int] = field(default_factory=dict)  # "node/id" -> since
    person_count: int = 0
    person_count_ts: int = 0
    officer_stay_max: dict[str, int] = field(default_factory=dict)  # band -> max count seen
    # band -> whether the camera proved itself live (a heartbeat or count stamped inside the
    # officer's stay): a count left over from a camera that has since died verifies nothing.
    officer_stay_live: dict[str, bool] = field(default_factory=dict)
    cam_node: str | None = None  # the node whose camera heartbeats describe this room
    # detainee -> when their last legal consultation in this room ended (the lawyer left, or
    # an officer came in)
    consulted: dict[str, int] = field(default_factory=dict)


@dataclass
class NodeState:
    """What one node has sent: its epoch, highest sequence and unfilled gaps."""

    room: str | None
    epoch: int = 0
    highest: int = 0
    gaps: list[list[int]] = field(default_factory=list)  # [from, to, first noticed ms]
    availability: str = "unknown"
    availability_since: int = 0
    events: int = 0
    heard: int = 0  # watermark: the newest node time heard from it (events, heartbeats, health)
    # Supervisor time of the last verified message from it: what tells a node that lags
    # (still talking, in the past) from one that is silent. Not journaled: a restart starts
    # every node's grace afresh (grace_all).
    arrived: int = 0
    # The watermark as last judged (advance_marks): it never goes back, so a node that was
    # judged silent and then speaks again with old stamps does not make alerts flap.
    mark: int = 0
    health: dict[str, Any] = field(default_factory=dict)  # flags staff act on, and since when


@dataclass
class Touched:
    """What folding changed since the rule evaluator last looked (rules/incremental.py).

    Not state: the evaluator reads and clears it. Marking too much costs only time; every
    change a rule can see must mark its room, its node or the site (or everything).
    """

    rooms: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)  # their rooms' clocks moved too
    site: bool = False  # custody records, arrivals, incidents, behaviours, device activities
    everything: bool = True
    # The same rooms and nodes kept for the retained room views (supervisor/views.py), which
    # look less often than the rules: `clear` hands them on instead of dropping them.
    view_rooms: set[str] = field(default_factory=set)
    view_nodes: set[str] = field(default_factory=set)
    view_everything: bool = True

    def clear(self) -> None:
        """Start afresh after an evaluation."""
        self.view_rooms |= self.rooms
        self.view_nodes |= self.nodes
        self.view_everything |= self.everything
        self.rooms, self.nodes, self.site, self.everything = set(), set(), False, False

    def take_views(self) -> tuple[set[str], set[str], bool]:
        """(rooms, nodes, everything) touched since the views last looked; start afresh."""
        out = (self.view_rooms | self.rooms, self.view_nodes | self.nodes,
               self.view_everything or self.everything)
        self.view_rooms, self.view_nodes, self.view_everything = set(), set(), False
        return out


@dataclass
class Activity:
    """A duration event from a node (behaviour, tamper, fault, local alert) while open."""

    kind: str  # behaviour cls / tamper kind / fault kind / local rule
    room: str | None
    since: int
    detail: str = ""
    bands: tuple[str, ...] = ()


class State:
    """Everything the rules look at, rebuilt by folding journal entries."""

    def __init__(self, site: Site, archive: bool = False) -> None:
        self.site = site
        # archive: keep every alert, incident and custody record ever folded (the offline
        # tools that replay the whole journal). Live (False): closed alerts and released
        # custody records leave memory as part of the fold (see _alert, _evict_released), so
        # replay still equals live and a snapshot plus its tail still equals replay from #1.
        self.archive = archive
        self.rules = site.rules
        self.rooms = {r.id: RoomState(r.id, r.kind) for r in site.rooms}
        self.node_room = {n.id: n.room for n in site.nodes}
        self.room_nodes: dict[str, set[str]] = {}  # room -> nodes that report on it
        for n in site.nodes:
            self.room_nodes.setdefault(n.room, set()).add(n.id)
        self.band_ts: dict[str, int] = {}  # band -> evidence time of its newest move
        self.late_events = 0  # presence events older than the band's newest move
        self.nodes: dict[str, NodeState] = {}
        self.bands: dict[str, Person] = {}
        self.officers: dict[str, Person] = {}
        self.detainees: dict[str, Custody] = {}
        self.visitors: dict[str, Person] = {}  # visitors and lawyers with a band, by id
        self.arrivals: dict[str, tuple[int, str]] = {}  # unregistered band -> (first ms, room)
        self.seen_outside: dict[str, str] = {}  # unregistered band -> first non-entry room
        self.roster_version = 0
        self.property: dict[str, dict[str, Any]] = {}
        self.doors: dict[str, tuple[str, int]] = {}  # door -> (last reported state, since)
        self.behaviours: dict[str, Activity] = {}
        # Evidence clips nodes keep (journaled `evidence` events): id -> what the event says,
        # plus the node; behaviour key (node/id) -> the evidence id its `new` event named.
        self.evidence: dict[str, dict[str, Any]] = {}
        self.evidence_conflicts: set[str] = set()  # ids two nodes claimed: served to nobody
        self.behaviour_evidence: dict[str, str] = {}
        self.segment_end: dict[str, int] = {}  # camera -> end (node ms) of its newest segment
        self.tampers: dict[str, Activity] = {}
        self.faults: dict[str, Activity] = {}
        self.local_alerts: dict[str, Activity] = {}
        self.band_flags: dict[tuple[str, str], tuple[int, str | None]] = {}  # (band, flag)
        self.incidents: dict[str, Incident] = {}
        self.open_incident: dict[tuple[str, str], str] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        self.open_ids: set[str] = set()  # alerts neither resolved nor false (kept small)
        # The last RECENT_CLOSED closed alerts, whole, in fold order (both modes).
        self.recent_closed: dict[str, dict[str, Any]] = {}
        # Live mode: closed alerts that left `alerts` (tombstones); detainee -> ids of closed
        # alerts still kept in `alerts` for their custody record until the record leaves.
        self.closed_alerts: dict[str, ClosedAlert] = {}
        self.held_closed: dict[str, list[str]] = {}
        # room -> recording-gap alert id -> (raised_ts, closed_ts or None): what _segment asks
        # (both modes; grows with recording-gap alerts only, a few per camera outage)
        self.gap_alerts: dict[str, dict[str, tuple[int, int | None]]] = {}
        # Live mode: released detainee -> exit ms, in release order, until the record leaves;
        # those whose time came while an open alert named them; ids of records that left.
        self.released: dict[str, int] = {}
        self.release_waits: set[str] = set()
        self.left_custody: set[str] = set()
        self.false_alarms: dict[str, int] = {}
        self.security_count = 0
        self.txns: dict[str, int] = {}
        self.txn_commands: dict[str, tuple[str, str]] = {}  # txn -> (account, command)
        self.txn_ts: dict[str, int] = {}  # txn -> journal time, oldest first (live eviction)
        self.account_seq = 0  # newest account-directory history record journaled
        self.refused: list[dict[str, Any]] = []  # refused staff actions (who, what, why)
        self.fold_errors = 0
        self.count = 0
        self.last_ts = 0
        # Marks are judged lazily (advance_marks): the supervisor time they were last judged
        # at, and the nodes whose mark was settled at that time because their inputs moved.
        self.judged_at: int | None = None
        self.moved: set[str] = set()
        self.touched = Touched()
        self.door_rooms = {d.id: tuple(d.between) for d in site.doors}
        self.room_doors: dict[str, list[int]] = {}  # room -> indices in site.doors
        for i, d in enumerate(site.doors):
            for r in d.between:
                self.room_doors.setdefault(r, []).append(i)

    # ---- folding -------------------------------------------------------------------------

    def apply(self, e: Entry, event: Event | None = None) -> None:
        """Fold one journal entry into the state (`event`: the entry, already parsed).

        An entry the fold cannot use is counted and logged, never fatal: the same entry fails
        the same way on replay, so live and replayed state still agree.
        """
        self.count = e.idx
        if e.kind != "event" and e.kind != "alert" and e.kind not in NODE_LOCAL_KINDS:
            self.touched.everything = True  # staff, security, logins: rare, and may touch all
        try:
            self._apply(e, event)
            if self.released:
                self._evict_released()
        except Exception:
            self.touched.everything = True  # a fold that stopped half-way
            self.fold_errors += 1
            log.exception("journal entry #%d (%s) could not be folded into the state", e.idx,
                          e.kind)

    def _apply(self, e: Entry, event: Event | None) -> None:
        if e.kind == "event" and event is not None:
            self._event(event.node, event.epoch, event.seq, event.ts_ms, event.type, event.body)
            return
        if e.kind == "event":
            # Replay: the payload passed the strict parse and its MAC before it was journaled,
            # so the C decoder reads it the same (three times faster than open_payload).
            env = json.loads(json.loads(e.payload)["env"])
            self._event(env["node"], env["epoch"], env["seq"], env["ts"], env["type"],
                        env["body"])
            return
        obj = e.json()
        ts = int(obj.get("ts", 0))
        self.last_ts = max(self.last_ts, ts)
        if e.kind == "staff":
            self.txns[obj["txn"]] = e.idx
            self.txn_commands[obj["txn"]] = (obj["user"], obj["command"])
            if not self.archive:
                self._remember_txn(obj["txn"], ts)
            self._staff(obj["command"], obj["user"], obj["args"], ts)
        elif e.kind == "refused":
            self.refused.append(obj)
            if not self.archive and len(self.refused) > REFUSED_KEEP:
                del self.refused[:-REFUSED_KEEP]
        elif e.kind == "account":
            self.account_seq = max(self.account_seq, int(obj["seq"]))
        elif e.kind == "login" and obj.get("user"):
            self._incident("login-locked", obj["user"], ts, None, None,
                           f"account {obj['user']}: {obj['failures']} failed logins in a row "
                           f"({obj['where']}); locked")
        elif e.kind == "login" and obj.get("where") == "desk":  # many accounts, one address
            self._incident("login-locked", f"address-{obj['address']}", ts, None, None,
                           f"{obj['failures']} failed desk sign-ins in a row from "
                           f"{obj['address']} (accounts tried: "
                           f"{', '.join(obj.get('accounts') or []) or '-'}); that address is "
                           "refused for a while")
        elif e.kind == "login":  # the broker names no account, only the source address
            self._incident("login-locked", f"address-{obj['address']}", ts, None, None,
                           f"{obj['failures']} refused broker logins in a row from "
                           f"{obj['address']} (Mosquitto does not log which account)")
        elif e.kind == "alert":
            self._alert(obj)
        elif e.kind == "security" and obj.get("user"):  # an account, not a node
            self.security_count += 1
            rule = SECURITY_REASON_RULE.get(obj["reason"], "security")
            self._incident(rule, f"account-{obj['user']}/{obj['reason']}", ts, None, None,
                           f"account {obj['user']}: {obj['detail']}")
        elif e.kind == "security":
            self.security_count += 1
            node = obj.get("node") or "unknown"
            room = self.node_room.get(node)
            rule = SECURITY_REASON_RULE.get(obj["reason"], "security")
            self._incident(rule, f"{node}/{obj['reason']}", ts, None, room,
                           f"rejected message from {node}: {obj['reason']}: {obj['detail']}")
        elif e.kind == "health":
            flags = {k: v for k, v in obj.items() if k not in ("node", "ts")}
            self.set_health_flags(obj["node"], flags, ts)
        elif e.kind == "availability":
            self.touched.nodes.add(obj["node"])
            ns = self._node(obj["node"])
            if obj["status"] != ns.availability:
                ns.availability, ns.availability_since = obj["status"], ts

    def _node(self, node: str) -> NodeState:
        ns = self.nodes.get(node)
        if ns is None:
            ns = self.nodes[node] = NodeState(self.node_room.get(node))
            self.moved.add(node)  # not judged before: nothing to settle
        return ns

    def _sequence(self, node: str, epoch: int, seq: int, ts: int) -> None:
        ns = self._node(node)
        ns.events += 1
        if epoch > ns.epoch:
            if ns.epoch:
                self.touched.everything = True
                self._forget_durations(node)
            ns.epoch, ns.highest, ns.gaps = epoch, 0, []
        elif epoch < ns.epoch:
            return
        if seq > ns.highest + 1:
            # Noticed when it arrived (live), not when the later event was stamped: one that
            # waited in the broker's queue (a restart, a backlog) would otherwise open a gap
            # whose grace ran out before the node could learn of it and send it again.
            # Replay knows no arrival times and uses the stamp (grace_all then re-grants).
            ns.gaps.append([ns.highest + 1, seq - 1, max(ts, ns.arrived)])
        elif seq <= ns.highest:
            gaps = []
            for lo, hi, t in ns.gaps:
                if lo <= seq <= hi:
                    if lo < seq:
                        gaps.append([lo, seq - 1, t])
                    if seq < hi:
                        gaps.append([seq + 1, hi, t])
                else:
                    gaps.append([lo, hi, t])
            ns.gaps = gaps
        ns.highest = max(ns.highest, seq)

    def _event(self, node: str, epoch: int, seq: int, ts: int, etype: str,
               body: dict[str, Any]) -> None:
        touched = self.touched
        touched.nodes.add(node)
        if etype not in ROOM_LOCAL_EVENTS:
            touched.site = True
        for k in ("room", "from_room", "to_room"):
            if isinstance(body.get(k), str):
                touched.rooms.add(body[k])
        if etype == "door":  # the rooms on either side (door_open), whichever node reports it
            touched.rooms.update(self.door_rooms.get(str(body.get("door")), ()))
        self._sequence(node, epoch, seq, ts)
        self.last_ts = max(self.last_ts, ts)
        self.heard(node, ts)
        key = f"{node}/{body.get('id', '')}"
        if etype in ("presence.enter", "presence.leave", "crossing"):
            self._move(node, etype, body, ts)
        elif etype == "tap":
            self._sighting(body["band"], body["room"], ts)
        elif etype == "camera":
            self._camera(node, body, ts)
        elif etype == "door":
            last = self.doors.get(body["door"])
            if last is None or ts >= last[1]:  # an older, late event does not turn it back
                self.doors[body["door"]] = (body["state"], ts)
        elif etype == "person_count":
            room = self.rooms.get(body["room"])
            if room is not None and ts >= room.person_count_ts:
                room.person_count, room.person_count_ts = body["count"], ts
                for b in room.officer_stay_max:
                    if ts >= room.bands.get(b, ts + 1):  # counted during the officer's stay
                        room.officer_stay_max[b] = max(room.officer_stay_max[b], body["count"])
                        room.officer_stay_live[b] = True
        elif etype == "behaviour":
            if body["phase"] == "end":
                self._behaviour_ended(key)
            self._activity(self.behaviours, key, body["phase"], body["cls"], body["room"], ts)
            if body["phase"] == "new" and "evidence" in body:
                self.behaviour_evidence[key] = body["evidence"]
            elif body["phase"] == "end":  # read only while it is open (rules/devices.py)
                self.behaviour_evidence.pop(key, None)
        elif etype == "segment":
            self._segment(body)
        elif etype == "evidence":
            known = self.evidence.get(body["id"])
            if known is not None and known["node"] != node:
                self.evidence_conflicts.add(body["id"])
            elif known is None:
                self.evidence[body["id"]] = {**body, "node": node, "ts": ts}
        elif etype == "tamper":
            self._activity(self.tampers, key, body["phase"], body["kind"], body["room"], ts)
            room = self.rooms.get(body["room"])
            if room is not None:
                if body["phase"] == "end":
                    room.tamper.pop(key, None)
                else:
                    room.tamper.setdefault(key, ts)
        elif etype == "fault":
            self._activity(self.faults, key, body["phase"], body["kind"],
                           self.node_room.get(node), ts,
                           f"{body['device']}: {body['kind']} {body.get('detail', '')}".strip())
        elif etype == "local_alert":
            self._activity(self.local_alerts, key, body["phase"], body["rule"], body["room"], ts,
                           body.get("detail", ""), tuple(body.get("bands", ())))
        elif etype == "band.status":
            node_room = self.node_room.get(node)
            for flag in ("tamper", "battery_low"):
                if flag not in body:
                    continue
                if body[flag]:
                    self.band_flags.setdefault((body["band"], flag), (ts, node_room))
                else:
                    self.band_flags.pop((body["band"], flag), None)
        elif etype == "button" and body["kind"] == "panic":
            where = body.get("room") or self.node_room.get(node)
            self._incident("panic", body["button"], ts, self._only_detainee(where), where,
                           f"panic button {body['button']} pressed")

    def _segment(self, body: dict[str, Any]) -> None:
        """A closed video segment: a gap since the camera's previous one, while a detainee was
        in a room that must be filmed, is a recording gap (judged in node time, from the
        segments' own frame times). Once only: not when the heartbeat rule (rules/recording.py)
        already raised a recording-gap for that room over the same time."""
        cam, room_id = body["camera"], body["room"]
        last = self.segment_end.get(cam)
        self.segment_end[cam] = body["end_ms"] if last is None else max(last, body["end_ms"])
        start = body["start_ms"]
        gap_ms = self.rules.recording_gap_s * 1000
        if last is None or start - last <= gap_ms or room_id not in self.rooms:
            return
        if not self.site.room(room_id).camera_required:
            return
        inside = sorted(c.id for c in self.detainees.values() for v in c.visits
                        if v.room == room_id and v.enter_ms < start
                        and (v.leave_ms is None or v.leave_ms > last))
        if not inside:
            return
        if self.gap_told(room_id, start + gap_ms, last):
            return  # the heartbeats told of this gap already
        self._incident("recording-gap", f"{room_id}/segments", start,
                       inside[0] if len(inside) == 1 else None, room_id,
                       f"camera {cam} recorded nothing for {(start - last) // 1000} s "
                       f"(between its segments, node time {last} to {start}) while "
                       f"{', '.join(inside)} was in {room_id}")

    def gap_told(self, room_id: str, raised_by: int, open_at: int) -> bool:
        """Whether a recording-gap alert of the room was raised by `raised_by` and was still
        open at `open_at` (from a per-room index: closed alerts may have left `alerts`)."""
        return any(raised <= raised_by and (closed is None or closed >= open_at)
                   for raised, closed in self.gap_alerts.get(room_id, {}).values())

    def _forget_durations(self, node: str) -> None:
        """A node with a new epoch lost its outbox, and with it every duration it had open:
        they end here, so no alert stays open for something its node has forgotten."""
        prefix = f"{node}/"
        for table in (self.behaviours, self.tampers, self.faults, self.local_alerts,
                      self.behaviour_evidence):
            for key in [k for k in table if k.startswith(prefix)]:
                del table[key]
        for room in self.rooms.values():
            for key in [k for k in room.tamper if k.startswith(prefix)]:
                del room.tamper[key]

    def _activity(self, table: dict[str, Activity], key: str, phase: str, kind: str,
                  room: str | None, ts: int, detail: str = "", bands: tuple[str, ...] = ()
                  ) -> None:
        if phase == "end":
            table.pop(key, None)
        elif key not in table:
            table[key] = Activity(kind, room, ts, detail, bands)
        else:
            table[key].bands = bands or table[key].bands

    def _camera(self, node: str, body: dict[str, Any], ts: int) -> None:
        room = self.rooms.get(body["room"])
        if room is None:
            return
        room.cam_node = node
        if room.cam_last_live is not None and ts < room.cam_last_live:
            return  # an older heartbeat arriving late says nothing about now
        if body["live"]:
            for b, entered in room.bands.items():
                if b in room.officer_stay_live and ts >= entered:
                    room.officer_stay_live[b] = True
            room.cam_last_live, room.cam_dead_since = ts, None
            if body.get("recording", False):
                room.cam_last_rec = ts
        elif room.cam_dead_since is None:
            room.cam_dead_since = ts

    # ---- node time -----------------------------------------------------------------------

    def health_flags(self, node: str) -> dict[str, Any]:
        """The node's last journaled health flags (without their times)."""
        ns = self.nodes.get(node)
        return {} if ns is None else {k: v for k, v in ns.health.items()
                                      if not k.endswith("_since")}

    def set_health_flags(self, node: str, flags: dict[str, Any], ts: int = 0) -> None:
        """Fold a node's health flags; each raised flag remembers since when."""
        ns = self._node(node)
        old = ns.health
        new = dict(flags)
        self.touched.nodes.add(node)
        for k, v in flags.items():
            if isinstance(v, bool) and v:
                new[f"{k}_since"] = old.get(f"{k}_since", ts) if old.get(k) else ts
        ns.health = new

    def heard(self, node: str, ts: int) -> None:
        """Advance the node's watermark (also called by ingest for verified health)."""
        ns = self._node(node)
        if ts > ns.heard:
            self._settle(node, ns)
            ns.heard = ts
        self.touched.nodes.add(node)

    def arrived(self, node: str, now_ms: int) -> None:
        """Note that a verified message from `node` reached us at supervisor time `now_ms`."""
        ns = self._node(node)
        if now_ms > ns.arrived:
            self._settle(node, ns)
            ns.arrived = now_ms
        self.touched.nodes.add(node)

    def grace_all(self, now_ms: int) -> None:
        """After a restart: start every known node's silence grace at `now_ms`.

        Arrival times are not journaled, so every node gets its grace afresh; its watermark
        starts where a silent node's would stand (`device_offline_s` behind), so that what
        was judged before the restart is not judged back in time for the grace.
        """
        floor = now_ms - self.rules.device_offline_s * 1000
        self.touched.everything = True
        for node, ns in self.nodes.items():
            self._settle(node, ns)
            ns.arrived = max(ns.arrived, now_ms)
            ns.heard = max(ns.heard, floor)
            # A gap not yet due gets its grace afresh too: the node resends it only once it
            # hears we are back. One already due stays due (its alert must not flap).
            for gap in ns.gaps:
                if gap[2] > floor:
                    gap[2] = now_ms

    def advance_marks(self, now_ms: int) -> None:
        """Record every node's watermark as judged at `now_ms` (it never goes back).

        Lazily, in O(nodes that moved): a node's judged mark changes with time alone only
        as a function of (mark, heard, arrived, now) that never decreases in `now`, so the
        latest judgement holds every earlier one. It is settled into `mark` when `heard` or
        `arrived` is about to change (`_settle`), and read through `_node_mark` /
        `judged_mark` meanwhile: the same marks as judging every node each time.
        """
        if self.judged_at is not None and now_ms < self.judged_at:
            # A clock that stepped back: what was judged at the later time stays.
            for node, ns in self.nodes.items():
                if node not in self.moved:
                    ns.mark = max(ns.mark, self._node_mark(ns, self.judged_at))
        self.judged_at = now_ms
        self.moved.clear()

    def _settle(self, node: str, ns: NodeState) -> None:
        """Record the node's mark as last judged, before its inputs change (once each time)."""
        if self.judged_at is not None and node not in self.moved:
            ns.mark = max(ns.mark, self._node_mark(ns, self.judged_at))
        self.moved.add(node)

    def judged_mark(self, node: str, ns: NodeState) -> int:
        """The node's mark as advance_marks last judged it."""
        if self.judged_at is None or node in self.moved:
            return ns.mark
        return max(ns.mark, self._node_mark(ns, self.judged_at))

    def _node_mark(self, ns: NodeState, now_ms: int) -> int:
        floor = now_ms - self.rules.device_offline_s * 1000
        current = ns.heard if ns.arrived >= floor else max(ns.heard, floor)
        return min(now_ms, max(ns.mark, current))

    def _watermark(self, nodes: set[str] | list[str], now_ms: int) -> int:
        """Up to when `nodes` have told us everything, judged against `now_ms`.

        The newest time heard from any of them. A node that still talks, however late its
        stamps (a backlog, a slow link), is judged in its own time. One from which nothing has
        arrived for `device_offline_s` of the supervisor's clock is silent: that is itself the
        condition, its watermark is held at most that far behind, and the rooms it watches
        count as unobserved. An offline node (its last will) observes nothing.
        """
        mark = 0
        for n in nodes:
            ns = self.nodes.get(n)
            if ns is None:
                continue
            if ns.availability == "offline":
                return now_ms
            mark = max(mark, self._node_mark(ns, now_ms))
        if not nodes:
            return now_ms
        return mark if mark else now_ms - self.rules.device_offline_s * 1000

    def clock_reaches(self, nodes: set[str] | list[str], target: int | float, now_ms: int
                      ) -> int:
        """The earliest supervisor time (>= now_ms) at which `_watermark(nodes, t)` reaches
        `target` (> 0), if nothing more is heard or folded meanwhile (the rules' timer queue).

        Mirrors `_watermark`: a node whose newest time or held mark reaches `target` does so
        once the supervisor's clock does; otherwise only silence moves it, `device_offline_s`
        behind the supervisor's clock, once it has heard nothing for that long.
        """
        g = self.rules.device_offline_s * 1000
        at_target, after_silence = max(now_ms, math.ceil(target)), max(now_ms,
                                                                     math.ceil(target + g))
        known = [(self.nodes[n], self.judged_mark(n, self.nodes[n]))
                 for n in nodes if n in self.nodes]
        if not nodes or any(ns.availability == "offline" for ns, _ in known):
            return at_target  # the watermark is the supervisor's clock itself
        best = None
        for ns, mark in known:
            if max(mark, ns.heard) >= target:
                t = at_target
            else:
                t = max(after_silence, math.floor(ns.arrived + g) + 1)
            best = t if best is None else min(best, t)
        if all(mark == 0 and ns.heard == 0 for ns, mark in known):  # `now - grace` stands in
            best = after_silence if best is None else min(best, after_silence)
        assert best is not None
        return best

    def room_clock(self, room_id: str, now_ms: int) -> int:
        """The time up to which presence in the room is known (its nodes' watermark)."""
        return self._watermark(self.room_nodes.get(room_id, set()), now_ms)

    def camera_clock(self, room: RoomState, now_ms: int) -> int:
        """The time up to which the room's camera has reported (its node's watermark)."""
        if room.cam_node is not None:
            return self._watermark([room.cam_node], now_ms)
        return self.room_clock(room.id, now_ms)

    def camera_offline_since(self, room: RoomState) -> int | None:
        """Since when the node carrying the room's camera is offline (None: it is not)."""
        nodes = [room.cam_node] if room.cam_node else sorted(self.room_nodes.get(room.id, ()))
        since = [self.nodes[n].availability_since for n in nodes
                 if n in self.nodes and self.nodes[n].availability == "offline"]
        return min(since) if since else None

    # ---- occupancy -----------------------------------------------------------------------

    def role(self, band: str) -> str | None:
        """'officer', 'detainee' or None for an unregistered band."""
        p = self.bands.get(band)
        return None if p is None else p.role

    def counsel_in(self, room: RoomState, detainee: str) -> bool:
        """A lawyer of the detainee's with them in an interview room. With no officer there it
        is a legal consultation: the detainee is not alone, and it is no interview."""
        return room.kind == "interview" and any(
            p is not None and p.role == "lawyer" and p.client == detainee
            for p in (self.bands.get(b) for b in room.bands))

    def unescorted_since(self, room: RoomState, detainee: str, since: int) -> int:
        """`since`, or later when a legal consultation of the detainee's in the room ended
        after it (the consultation was not time alone)."""
        return max(since, room.consulted.get(detainee, 0))

    def officers_in(self, room: RoomState) -> list[str]:
        """Officer bands in a room."""
        return sorted(b for b in room.bands if self.role(b) == "officer")

    def visitors_in(self, room: RoomState) -> list[Person]:
        """Visitors and lawyers in a room (by id)."""
        return sorted((p for p in (self.bands.get(b) for b in room.bands)
                       if p is not None and p.role in ("visitor", "lawyer")),
                      key=lambda p: p.person)

    def detainees_in(self, room: RoomState) -> list[str]:
        """Detainee ids in a room."""
        return sorted(self.bands[b].person for b in room.bands if self.role(b) == "detainee")

    def _only_detainee(self, room_id: str | None) -> str | None:
        room = self.rooms.get(room_id or "")
        if room is None:
            return None
        ds = self.detainees_in(room)
        return ds[0] if len(ds) == 1 else None

    def _recount(self, room: RoomState, ts: int) -> None:
        self.touched.rooms.add(room.id)
        n, old = len(self.officers_in(room)), room.officer_count
        k = self.rules.interview_min_officers
        for band, entered in room.bands.items():  # a spell this change ends
            if n > 0 and old == 0:
                self._spell_ended(room, band, entered, ts, "never-alone")
                q = self.bands.get(band)
                if q is not None and q.role == "detainee" and self.counsel_in(room, q.person):
                    room.consulted[q.person] = ts  # an officer joins: the consultation ends
            if k <= n and old < k:
                self._spell_ended(room, band, entered, ts, "interview")
            if n < k <= old:
                self._spell_ended(room, band, entered, ts, "interview-elsewhere")
        if n == 0 and old != 0:
            room.officers_zero_since = ts
        if n < k <= old:
            room.below_min_since = ts
        if n >= k > old:
            room.min_since = ts
        if n < k:
            room.min_since = None
        room.officer_count = n
        has_detainee = bool(self.detainees_in(room))
        if has_detainee and room.detainee_since is None:
            room.detainee_since = ts
        elif not has_detainee:
            room.detainee_since = None

    def _move(self, node: str, etype: str, body: dict[str, Any], ts: int) -> None:
        """A presence change, folded in event time per band.

        Each move carries its evidence time: an enter its first read, a leave its last read
        (`seen_ts`; without it, the stamp). A move
        older than the band's newest one arrived late (outboxes replayed in another order
        after a reconnect): it is journaled and kept in the record, but never moves the person
        back.
        """
        band = body["band"]
        t = ts
        if etype == "presence.leave":
            t = min(int(body.get("seen_ts", ts)), ts)
        if t < self.band_ts.get(band, t):
            self.late_events += 1
            p = self.bands.get(band)
            if p is not None and p.role == "detainee":
                where = body.get("room") or f"{body.get('from_room')} -> {body.get('to_room')}"
                self.detainees[p.person].timeline.append(
                    (t, f"late {etype} in {where} (arrived after a newer one; not applied)"))
            return
        if etype == "presence.enter":  # enter first: an exit read may release the band
            self.band_ts[band] = t
            self._enter(band, body["room"], t)
            self._sighting(band, body["room"], t)
        elif etype == "presence.leave":
            room = self.rooms.get(body["room"])
            if room is not None and band in room.bands:
                self.band_ts[band] = t
                self._leave(band, body["room"], t)
        else:
            self.band_ts[band] = t
            self._leave(band, body["from_room"], t)
            self._enter(band, body["to_room"], t)
            self._sighting(band, body["to_room"], t)

    def _sighting(self, band: str, room_id: str, ts: int) -> None:
        room = self.rooms.get(room_id)
        if room is None:
            return
        p = self.bands.get(band)
        if p is None:
            if room.kind == "entry":
                self.arrivals.setdefault(band, (ts, room_id))
            elif room.kind != "exit":  # bands handed back at the exit are not arrivals
                self.seen_outside.setdefault(band, room_id)
            return
        if p.role in ("visitor", "lawyer") and room.kind == "exit":
            self._release_visitor(p, ts)
            return
        if p.role != "detainee":
            return
        c = self.detainees[p.person]
        if room.kind == "exit":
            self._exit_read(c, room_id, ts)
        elif c.temp_out is not None:
            c.timeline.append((ts, f"returned from temporary exit (seen in {room_id})"))
            c.temp_out["returned_ms"] = ts
            c.temp_exits.append(c.temp_out)
            c.temp_out = None

    def _exit_read(self, c: Custody, room_id: str, ts: int) -> None:
        if c.exit_ms is not None or c.temp_out is not None:
            return
        if c.disposition is not None:
            c.exit_ms = ts
            c.timeline.append((ts, f"exit ({c.disposition['disposition']}) at {room_id}"))
            self._release(c, ts)
        elif c.temp_approval is not None:
            c.temp_out = {**c.temp_approval, "out_ms": ts}
            c.temp_approval = None
            c.timeline.append((ts, f"out on temporary exit at {room_id}, return by "
                                   f"{c.temp_out['return_by_ts']}"))
        else:
            c.timeline.append((ts, f"EXIT READ without approval at {room_id}"))
            self._incident("exit", c.id, ts, c.id, room_id,
                           f"{c.id} at the exit without an approved disposition or temporary exit")

    def _release_visitor(self, p: Person, ts: int) -> None:
        """A visitor's band handed back at the exit: the visit is over."""
        c = self.detainees.get(p.client or "")
        if c is not None:
            c.timeline.append((ts, f"{p.role} {p.person} left"))
        for room in self.rooms.values():
            if p.band in room.bands:
                self._leave(p.band, room.id, ts)
        self.bands.pop(p.band, None)
        self.visitors.pop(p.person, None)
        self.roster_version += 1

    def _release(self, c: Custody, ts: int) -> None:
        if not self.archive:  # the record leaves memory later (_evict_released)
            self.released.pop(c.id, None)
            self.released[c.id] = ts
        self.bands.pop(c.band, None)
        self.roster_version += 1
        for room in self.rooms.values():
            if c.band in room.bands:
                del room.bands[c.band]
                self._recount(room, ts)
        self._close_visit(c, ts)

    def _enter(self, band: str, room_id: str, ts: int) -> None:
        room = self.rooms.get(room_id)
        if room is None or band in room.bands:
            return
        for other in self.rooms.values():
            if other.id != room_id and band in other.bands:
                self._leave(band, other.id, ts)
        p = self.bands.get(band)
        if (p is not None and p.role == "lawyer" and room.kind == "interview"
                and room.officer_count == 0):
            for b, entered in list(room.bands.items()):  # a spell alone this consultation ends
                q = self.bands.get(b)
                if q is not None and q.role == "detainee" and q.person == p.client:
                    for spell in ("never-alone", "interview"):
                        self._spell_ended(room, b, entered, ts, spell)
        room.bands[band] = ts
        if p is not None and p.role == "officer":
            room.officer_stay_max[band] = room.person_count
            room.officer_stay_live[band] = False
            for d in self.detainees_in(room):
                v = self.detainees[d].visit
                if v is not None:
                    v.officers.add(p.person)
                    v.officer_sexes.add(p.sex)
        elif p is not None and p.role == "detainee":
            c = self.detainees[p.person]
            self._close_visit(c, ts)
            c.visit = Visit(room_id, room.kind, ts)
            for ob in self.officers_in(room):
                c.visit.officers.add(self.bands[ob].person)
                c.visit.officer_sexes.add(self.bands[ob].sex)
            c.visits.append(c.visit)
            if room.kind == "holding":
                c.holding_since = ts
        self._recount(room, ts)

    def _close_visit(self, c: Custody, ts: int) -> None:
        if c.visit is not None:
            c.visit.leave_ms = ts
            c.visit = None
        c.holding_since = None

    def _leave(self, band: str, room_id: str, ts: int) -> None:
        room = self.rooms.get(room_id)
        if room is None or band not in room.bands:
            return
        entered = room.bands.pop(band)
        p = self.bands.get(band)
        if p is not None and p.role == "officer":
            top = room.officer_stay_max.pop(band, 0)
            live = room.officer_stay_live.pop(band, False)
            if (room.kind == "holding" and ts - entered >= self.rules.welfare_visit_min_s * 1000
                    and top >= 2 and live):
                for d in self.detainees_in(room):
                    c = self.detainees[d]
                    c.last_verified_ms = ts
                    c.welfare.append({"ts": ts, "officer": p.person, "room": room_id,
                                      "verified": True})
                    c.timeline.append((ts, f"welfare visit by {p.person} (sensor-verified)"))
        elif (p is not None and p.role == "lawyer" and p.client is not None
              and room.officer_count == 0 and room.kind == "interview"):
            room.consulted[p.client] = ts  # the consultation ends with the lawyer leaving
        elif p is not None and p.role == "detainee":
            for spell in ("never-alone", "interview", "interview-elsewhere"):
                self._spell_ended(room, band, entered, ts, spell)
            self._co_suspects_parted(room, band, entered, ts)
            self._close_visit(self.detainees[p.person], ts)
        self._recount(room, ts)

    def _spell_ended(self, room: RoomState, band: str, entered: int, ts: int, spell: str
                     ) -> None:
        """Latch a never-alone or interview alert the rules did not raise for a spell of
        `band`'s detainee in `room` that ends at `ts` (officers back, or the detainee leaves).

        The rules see a spell only while it lasts in the state they are evaluated on; one that
        passed its grace and ended between two evaluations (a sped-up clock: 2 custody s are
        50 ms at x40; a leave and the return delivered together) still happened, in the events'
        own time. The id is the rule's own: a spell the rule raised is not raised twice.
        """
        p = self.bands.get(band)
        if p is None or p.role != "detainee":
            return
        r, k = self.rules, self.rules.interview_min_officers
        if self.counsel_in(room, p.person) and room.officer_count == 0:
            return  # a legal consultation goes on: no spell has ended
        if spell == "never-alone":
            if room.kind == "holding" or room.officer_count > 0:
                return
            since = self.unescorted_since(room, p.person, max(entered, room.officers_zero_since))
            grace = (r.never_alone_doorway_grace_s if room.kind == "corridor"
                     else r.never_alone_grace_s)
            what = "alone (no officer band)"
        elif spell == "interview":
            if room.kind != "interview" or room.officer_count >= k:
                return
            since = self.unescorted_since(room, p.person, max(entered, room.below_min_since))
            grace = r.interview_grace_s
            what = f"with fewer than {k} officers"
        else:
            if room.kind not in INTERVIEW_ELSEWHERE or room.min_since is None:
                return
            since, grace = max(entered, room.min_since), r.interview_grace_s
            what = f"with {k} or more officers (interview outside an interview room)"
        rule, key = spell.removesuffix("-elsewhere"), f"{p.person}/{room.id}"
        if ts - since < grace * 1000 or self.known_alert(incident_id(rule, key, since)):
            return
        self._incident(rule, key, since, p.person, room.id,
                       f"{p.person} was {what} in {room.id} for {(ts - since) / 1000:g} s "
                       f"(seen once it had ended)")

    def _behaviour_ended(self, key: str) -> None:
        """Latch the alert of a behaviour (fall, fight, ...) that ends before the rules saw
        it open: its `new` and `end` folded in one batch (a backlog, a sped-up clock). Same
        id as the rule's, so one the rule raised is not raised twice (see _spell_ended)."""
        a = self.behaviours.get(key)
        rule = BEHAVIOUR_RULES.get(a.kind) if a is not None else None
        if a is None or rule is None or self.known_alert(incident_id(rule, key, a.since)):
            return
        self._incident(rule, key, a.since, self._only_detainee(a.room), a.room,
                       f"{a.kind.replace('_', ' ')} in {a.room} (seen once it had ended)")

    def _co_suspects_parted(self, room: RoomState, band: str, entered: int, ts: int) -> None:
        """Latch the co-suspects alert the rules did not raise for co-suspects together past
        the grace, parted at `ts` by `band` leaving (see _spell_ended: same reason, same id)."""
        p = self.bands.get(band)
        if p is None or p.role != "detainee":
            return
        case = self.detainees[p.person].case
        members = [(entered, p.person)] + [
            (t, self.bands[b].person) for b, t in room.bands.items()
            if self.role(b) == "detainee" and self.detainees[self.bands[b].person].case == case]
        if len(members) < 2:
            return
        since = sorted(members)[1][0]
        key = f"{room.id}/{case}"
        if (ts - since < self.rules.co_suspects_grace_s * 1000
                or self.known_alert(incident_id("co-suspects", key, since))):
            return
        ids = sorted(m[1] for m in members)
        self._incident("co-suspects", key, since, ids[0], room.id,
                       f"co-suspects of case {case} were together in {room.id} for "
                       f"{(ts - since) / 1000:g} s: {', '.join(ids)} (seen once they had parted)")

    # ---- staff commands ------------------------------------------------------------------

    def _staff(self, cmd: str, user: str, a: dict[str, Any], ts: int) -> None:
        if cmd == "register-officer":
            old = self.officers.get(a["officer"])
            if old is not None:
                self.bands.pop(old.band, None)
            p = Person("officer", a["officer"], a["sex"], a["band"], None)
            self.officers[p.person] = p
            self.bands[a["band"]] = p
            self.arrivals.pop(a["band"], None)
            self.seen_outside.pop(a["band"], None)
            self.roster_version += 1
            return
        if cmd == "register-detainee":
            self._register(user, a, ts)
            return
        if cmd == "register-visitor":
            self._register_visitor(user, a, ts)
            return
        if cmd in ("log-case-property", "property-out", "property-in"):
            self._property(cmd, user, a, ts)
            return
        c = self.detainees.get(a.get("detainee", ""))
        if c is None:
            return  # ack/resolve/false-alarm: the alert entries that follow carry the change
        if cmd == "set-observation":
            c.observation = a["observation"]
            c.timeline.append((ts, f"observation level {a['observation']} by {user}"))
        elif cmd == "record-search":
            self._search(c, user, a, ts)
        elif cmd == "log-belongings":
            c.belongings.append({"ts": ts, "by": user, "locker": a["locker"],
                                 "items": list(a["items"])})
            c.timeline.append((ts, f"belongings in locker {a['locker']} by {user}: "
                                   f"{', '.join(a['items'])}"))
        elif cmd == "record-finding":
            c.timeline.append((ts, f"inspection finding by {user}: {a['finding']}"))
        elif cmd == "record-emergency-exit":
            # Recorded by an officer without approval: the exit is allowed (like an approved
            # temporary exit) and a critical alert asks a custody supervisor to review it.
            c.temp_approval = {"approved_ms": ts, "by": user, "return_by_ts": a["return_by_ts"],
                               "reason": a["reason"], "emergency": True}
            c.timeline.append((ts, f"EMERGENCY exit recorded by {user}: {a['reason']}"))
            self._incident("emergency-exit", c.id, ts, c.id, None,
                           f"{c.id}: emergency exit recorded by {user} ({a['reason']}): a "
                           "custody supervisor must review it")
        elif cmd == "approve-temporary-exit":
            c.temp_approval = {"approved_ms": ts, "by": user, "return_by_ts": a["return_by_ts"],
                               "reason": a["reason"]}
            c.timeline.append((ts, f"temporary exit approved by {user} until "
                                   f"{a['return_by_ts']}: {a['reason']}"))
        elif cmd == "approve-extension":
            c.extension_h = a["hours"]
            c.timeline.append((ts, f"extension to {a['hours']} h approved by {user}"))
        elif cmd == "approve-disposition":
            c.disposition = {"ts": ts, "by": user, "disposition": a["disposition"],
                             "note": a.get("note", "")}
            c.timeline.append((ts, f"disposition {a['disposition']} approved by {user}"))
        elif cmd == "record-welfare-check":
            c.welfare.append({"ts": ts, "officer": user, "note": a.get("note", ""),
                              "verified": False})
            c.timeline.append((ts, f"welfare check logged by {user}"))

    def _register(self, user: str, a: dict[str, Any], ts: int) -> None:
        band = a["band"]
        first = self.arrivals.pop(band, None)
        outside = self.seen_outside.pop(band, None)
        arrived = a.get("arrived_ts") or (first[0] if first else ts)
        c = Custody(a["detainee"], band, a["case"], a["sex"], a["custody_type"],
                    a["observation"], arrived, ts, user)
        c.timeline.append((arrived, "arrival"))
        c.timeline.append((ts, f"registered by {user} (case {a['case']}, {a['custody_type']}, "
                               f"{a['observation']})"))
        self.detainees[c.id] = c
        self.release_waits.discard(c.id)  # a new custody: not the released record's wait
        self.bands[band] = Person("detainee", c.id, a["sex"], band, a["case"])
        self.roster_version += 1
        late = ts - arrived > self.rules.registration_limit_s * 1000
        if late or outside:
            why = []
            if late:
                why.append(f"registered {(ts - arrived) // 60000} min after arrival")
            if outside:
                why.append(f"band seen in {outside} before registration")
            self._incident("brought-straight-in", c.id, ts, c.id, outside,
                           f"{c.id}: {'; '.join(why)}")
        for room in self.rooms.values():
            if band in room.bands:  # already inside somewhere: start the visit now
                del room.bands[band]
                self._enter(band, room.id, ts)

    def _register_visitor(self, user: str, a: dict[str, Any], ts: int) -> None:
        band = a["band"]
        p = Person(a["kind"], a["visitor"], "", band, None, a["detainee"], a.get("name"))
        self.visitors[p.person] = p
        self.bands[band] = p
        self.arrivals.pop(band, None)
        self.seen_outside.pop(band, None)
        self.roster_version += 1
        c = self.detainees.get(a["detainee"])
        if c is not None:
            c.timeline.append((ts, f"{a['kind']} {p.person} registered by {user} to see them"))
        for room in self.rooms.values():
            if band in room.bands:  # already inside somewhere: enter again as who they are
                del room.bands[band]
                self._enter(band, room.id, ts)

    def _search(self, c: Custody, user: str, a: dict[str, Any], ts: int) -> None:
        visits = [v for v in c.visits if v.kind == "search"]
        v = visits[-1] if visits else None
        if v is not None:  # one stay, even if the band went unread for a moment in it
            v = self._whole_stay(c, v)
        c.search = {"ts": ts, "by": user, "result": a["result"],
                    "officers_claimed": list(a["officers"]),
                    "items_found": a.get("items_found", ""),
                    "room": v.room if v else None,
                    "officers": sorted(v.officers) if v else [],
                    "officer_sexes": sorted(s for s in v.officer_sexes if s) if v else [],
                    "duration_ms": ((v.leave_ms or ts) - v.enter_ms) if v else 0}
        c.timeline.append((ts, f"search recorded by {user}: {a['result']}; officers present "
                               f"{', '.join(c.search['officers']) or 'none'}"))

    def _whole_stay(self, c: Custody, last: Visit) -> Visit:
        """The visit `last` joined with the visits to the same room just before it, when
        nothing but an unread spell parts them (no other room read the band, for at most
        UNREAD_SPELL_MS): the band missed reads, the detainee never left."""
        i = c.visits.index(last)
        first, officers, sexes = last, set(last.officers), set(last.officer_sexes)
        while i > 0:
            prev = c.visits[i - 1]
            if (prev.room != last.room or prev.leave_ms is None
                    or first.enter_ms - prev.leave_ms > UNREAD_SPELL_MS):
                break
            first, i = prev, i - 1
            officers |= prev.officers
            sexes |= prev.officer_sexes
        if first is last:
            return last
        return Visit(last.room, last.kind, first.enter_ms, last.leave_ms, officers, sexes)

    def _property(self, cmd: str, user: str, a: dict[str, Any], ts: int) -> None:
        if cmd == "log-case-property":
            self.property[a["item"]] = {"case": a["case"], "description": a["description"],
                                        "detainee": a.get("detainee"), "out": None,
                                        "logged_ms": ts, "by": user}
        elif cmd == "property-out":
            self.property[a["item"]]["out"] = {"ts": ts, "by": user, "due_ts": a["due_ts"],
                                               "reason": a.get("reason", "")}
        else:
            self.property[a["item"]]["out"] = None

    # ---- incidents and alerts ------------------------------------------------------------

    def _remember_txn(self, txn: str, ts: int) -> None:
        """Live mode: remember a txn's time; forget txns older than TXN_KEEP_MS."""
        self.txn_ts.pop(txn, None)  # (re-inserted last: the dict stays oldest first)
        self.txn_ts[txn] = ts
        horizon = ts - TXN_KEEP_MS
        while self.txn_ts:
            first = next(iter(self.txn_ts))
            if self.txn_ts[first] >= horizon:
                break
            del self.txn_ts[first]
            self.txns.pop(first, None)
            self.txn_commands.pop(first, None)

    def _incident(self, rule: str, key: str, ts: int, detainee: str | None, room: str | None,
                  message: str) -> None:
        """Open a latched incident, or count into the one open for (rule, key)."""
        open_id = self.open_incident.get((rule, key))
        if open_id is not None:
            self.incidents[open_id].count += 1
            return
        iid = incident_id(rule, key, ts)
        self.incidents[iid] = Incident(iid, rule, key, ts, detainee, room, message)
        self.open_incident[(rule, key)] = iid

    def _alert(self, msg: dict[str, Any]) -> None:
        aid, st = msg["id"], msg["state"]
        prev = self.alerts.get(aid, {})
        rec = {**prev, **msg}
        if st == "raised":
            rec["raised_ts"] = msg["raised_ts"]
            self.open_ids.add(aid)
        if st == "acknowledged":
            rec["acked_ts"], rec["acked_by"] = msg["ts"], msg["by"]
        if st == "escalated":
            rec["escalations"] = prev.get("escalations", 0) + 1
        if st in ("resolved", "false_alarm"):
            self.open_ids.discard(aid)
            rec["closed_ts"] = msg["ts"]
            if st == "false_alarm":
                self.false_alarms[msg["rule"]] = self.false_alarms.get(msg["rule"], 0) + 1
            inc = self.incidents.get(aid)
            if inc is not None:
                self.touched.site = True  # the incident rule stops wanting it
                inc.open = False
                self.open_incident.pop((inc.rule, inc.key), None)
        if rec.get("rule") == "recording-gap" and rec.get("room"):
            self.gap_alerts.setdefault(rec["room"], {})[aid] = (rec["raised_ts"],
                                                                rec.get("closed_ts"))
        self.alerts[aid] = rec
        if st in ("resolved", "false_alarm"):
            self._closed(aid, rec)

    def _closed(self, aid: str, rec: dict[str, Any]) -> None:
        """A closed alert: into the recent ones; in live mode out of `alerts` and with its
        incident out of `incidents` (a tombstone stays), unless its detainee's custody record
        is still in memory: then it leaves with the record (their record lists it)."""
        self.recent_closed.pop(aid, None)
        self.recent_closed[aid] = rec
        if len(self.recent_closed) > RECENT_CLOSED:
            del self.recent_closed[next(iter(self.recent_closed))]
        if self.archive:
            return
        self.closed_alerts[aid] = (CLOSED_STATES[rec["state"]], rec["closed_ts"],
                                   rec.get("evidence") or None)
        who = rec.get("detainee")
        if who is not None and who in self.detainees:
            self.held_closed.setdefault(who, []).append(aid)
            if who in self.release_waits and not self._alerted(who):
                self._forget_detainee(who)
        else:
            self._forget_alert(aid)

    def _forget_alert(self, aid: str) -> None:
        self.alerts.pop(aid, None)
        self.incidents.pop(aid, None)

    def _alerted(self, detainee: str) -> bool:
        """Whether an open alert names the detainee (open alerts are few)."""
        return any(self.alerts[i].get("detainee") == detainee for i in self.open_ids)

    def _evict_released(self) -> None:
        """Live mode: custody records released RELEASED_KEEP_MS ago (journal time) leave
        memory, with the closed alerts kept for them; one an open alert still names waits
        for that alert to close (the real-search rule reads a released record's search)."""
        while self.released:
            who, exit_ms = next(iter(self.released.items()))
            if self.last_ts - exit_ms < RELEASED_KEEP_MS:
                return
            del self.released[who]
            c = self.detainees.get(who)
            if c is None or c.in_custody:
                continue  # registered again meanwhile: a new custody, kept
            if self._alerted(who):
                self.release_waits.add(who)
            else:
                self._forget_detainee(who)

    def _forget_detainee(self, who: str) -> None:
        self.touched.site = True
        self.release_waits.discard(who)
        self.detainees.pop(who, None)
        self.left_custody.add(who)
        for aid in self.held_closed.pop(who, []):
            self._forget_alert(aid)

    def known_alert(self, aid: str) -> bool:
        """Whether the alert id was ever raised (kept whole, or closed and left memory)."""
        return aid in self.alerts or aid in self.closed_alerts

    def alert_record(self, aid: str) -> dict[str, Any] | None:
        """The whole record of an alert still in memory (open, held or recently closed)."""
        return self.alerts.get(aid) or self.recent_closed.get(aid)

    def detainee_known(self, detainee: str) -> bool:
        """Registered at some time: in memory, or released and left memory (live mode)."""
        return detainee in self.detainees or detainee in self.left_custody

    def open_alerts(self) -> list[dict[str, Any]]:
        """Alerts not resolved nor marked false, oldest first."""
        return sorted((self.alerts[i] for i in self.open_ids),
                      key=lambda a: (a["raised_ts"], a["id"]))

    def snapshot(self) -> dict[str, Any]:
        """A comparable summary of the whole state (used to prove replay equals live)."""
        return {
            "count": self.count,
            "rooms": {r.id: sorted(r.bands.items()) for r in self.rooms.values()},
            "detainees": {d: c.summary() for d, c in sorted(self.detainees.items())},
            "alerts": {a: dict(sorted(v.items())) for a, v in sorted(self.alerts.items())},
            "closed_alerts": sorted(self.closed_alerts.items()),
            "recent_closed": list(self.recent_closed),
            "held_closed": sorted(self.held_closed.items()),
            "released": list(self.released.items()),
            "release_waits": sorted(self.release_waits),
            "left_custody": sorted(self.left_custody),
            "incidents": sorted((i.id, i.count, i.open) for i in self.incidents.values()),
            "nodes": {n: (s.epoch, s.highest, s.gaps, s.availability)
                      for n, s in sorted(self.nodes.items())},
            "roster_version": self.roster_version,
        }
