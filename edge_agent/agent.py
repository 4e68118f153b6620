"""The room node process: one main loop that owns presence, rules, outbox and publishing.

Reader, door and vision threads and paho's thread only put items on one queue; the loop
handles them, ticks presence and the local rules against the custody clock, publishes the
outbox in sequence order, retransmits what the supervisor has not acked, sends health, and
pings the systemd watchdog.
"""

import importlib
import json
import logging
import queue
import signal
import threading
import time
from collections import Counter, OrderedDict, deque
from types import FrameType
from typing import Any

from protocol.canonical import CanonicalError, dumps
from protocol.clock import Clock, from_env
from protocol.envelope import VerifyError, seal, verify
from protocol.events import BodyError, validate_body
from protocol.evidence import (
    DATA_CHANNEL,
    REQUEST_CHANNEL,
    EvidenceError,
    open_request,
    seal_response,
)
from protocol.evidence import response as evidence_response
from protocol.heldclock import hold_while
from protocol.topics import TopicError, Topics

from .config import AgentConfig
from .doors import DoorInput, make_door
from .drivers import Read
from .drivers.serial_reader import SerialReader
from .health import HostStats
from .link import Link
from .local_rules import Inputs, LocalRules
from .outbox import Outbox, OutboxFull, OutboxUnwritable, Stored
from .presence import Presence, PresentBand, ReaderRole
from .roster import Roster, RosterError, load_json, verify_roster
from .sdnotify import Notifier

log = logging.getLogger(__name__)

BROKER_WINDOW = 200  # events handed to paho and not yet PUBACKed by the broker
# Events sent and not yet acked by the supervisor, counted from the oldest of them: a backlog
# (a 72 h outbox after an outage) waits in the outbox, not in the broker's queue for the
# supervisor, which drops silently past max_queued_messages (provisioned at 1,200 per node:
# custody/provisioning QUEUE_PER_NODE must stay above this); and a go-back resends at most this.
ACK_WINDOW = 1000
RETRANSMIT_MAX_S = 300.0  # retransmit interval cap while no ack comes back at all
# An event sent before one the supervisor acked, and not acked itself, was lost on the way
# (MQTT keeps one connection's messages in order; the supervisor acks in arrival order): it is
# sent again at once, at most this many times, then left to the retransmit timer. The timer
# alone runs in real seconds and the supervisor's gap grace in custody seconds.
FAST_RESENDS_MAX = 2
SYSTEM_EVENTS = ("local_alert", "fault")  # may use the outbox reserve
# new/update/end events whose open ids are kept in the outbox, so a restart can end them
DURATION_EVENTS = ("fault", "tamper", "behaviour")
BEAT_MIN_REAL_S = 0.1  # real seconds between watermark beats at most speed-ups
HOLD_ITEMS = 50  # queued items (reads, door changes, vision events) that mean the loop is behind
HELD_MAX = 10_000  # events kept in memory while the outbox's disk refuses commits
HELD_RETRY_S = 0.5


class Agent:
    """One room node."""

    def __init__(self, conf: AgentConfig, clock: Clock | None = None) -> None:
        self.conf = conf
        self.clock = clock or from_env()
        self.node = conf.node.id
        self.room = conf.site.room(conf.node.room)
        self.topics = Topics(conf.site.id, conf.site.topic_prefix)
        self.items: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.stopping = threading.Event()
        self.started_mono = time.monotonic()
        self.counts: Counter[str] = Counter()
        self.outbox = Outbox(conf.outbox, self.node, conf.key, self.clock, conf.outbox_max_events)
        self.roster: Roster | None = None
        saved = self.outbox.get("roster")
        if saved is not None:
            try:
                self.roster = load_json(saved)
            except (RosterError, ValueError):
                log.warning("stored roster unreadable; waiting for the supervisor's")
        roles = {}
        for r in conf.readers:
            side = r.side if r.role == "door" and r.side else self.room.id
            roles[r.id] = ReaderRole(r.id, r.role, side, r.door)
        self.presence = Presence(self.room.id, roles, conf.site.rules.presence_ttl_s,
                                 conf.crossing_window_s, conf.tap_rearm_s)
        # Presence survives a restart: bands present before it stay until their TTL runs out.
        now = self.clock.now()
        for band, reader in (self.outbox.get_json("present", {}) or {}).items():
            self.presence.present[band] = PresentBand(reader, now, now)
        self._present_saved = set(self.presence.present)
        # Band flags survive a restart, so a tamper that cleared while we were down ends.
        for band, flags in (self.outbox.get_json("band_status", {}) or {}).items():
            self.presence.status[band] = (bool(flags[0]), bool(flags[1]))
        self._status_saved = dict(self.presence.status)
        # Durations (fault, tamper, behaviour) open when the node last stopped: ended in run().
        self.open_durations: dict[str, dict[str, Any]] = \
            self.outbox.get_json("open_durations", {}) or {}
        self._host_obj: dict[str, int] = {}
        self.roster_error: str | None = None  # why the newest roster was refused
        self.rules = LocalRules(self.room, conf.site.rules,
                                self.room.id in conf.site.doorway_rooms())
        self.readers = [SerialReader(r.id, r.type, r.port, r.baud, self._on_reads,
                                     self._on_port, conf.start_inventory.get(r.id, True),
                                     on_silent=self._on_silent)
                        for r in conf.readers]
        self.doors: list[DoorInput] = [make_door(d.door, d.source, d.active_low, d.debounce_s)
                                       for d in conf.doors]
        self.cameras: dict[str, Any] = {}
        self.link = Link(self.node, self.topics, conf.mqtt, self.items.put)
        self.notifier = Notifier()
        self.host = HostStats()
        self.online = False  # the loop's view: set when it has handled ("connected",)
        self.cursor = 0  # highest seq published since the last (re)connect / go-back
        # seq -> monotonic time last published, for events sent and not acked, in send order
        self.sent: OrderedDict[int, float] = OrderedDict()
        self.pubq: deque[Any] = deque()  # paho MQTTMessageInfo of publishes not yet PUBACKed
        self.retransmit_s = conf.retransmit_s  # doubles while no ack comes back
        self.acked_mono = 0.0  # when an ack last deleted events
        self.supervisor_online: bool | None = None  # from its retained availability
        self.fast_resends: dict[int, int] = {}  # seq -> times re-sent for a later seq's ack
        self.faults: dict[str, str] = {}  # active fault key -> fault id
        self._fault_n = 0
        self._checksum_seen: dict[str, int] = {}
        # Events the disk refused, in order, with their own time: committed (and only then
        # given a sequence number) when it takes writes again. See _hold / _flush_held.
        self.held: deque[tuple[str, dict[str, Any], bool, dict[str, str] | None, int]] = deque()
        self.held_dropped = 0
        self._held_retry = 0.0

    # ---- items from other threads -------------------------------------------------------

    def _on_reads(self, reader_id: str, reads: list[Read]) -> None:
        self.items.put(("reads", reader_id, reads, self.clock.now()))

    def _on_port(self, reader_id: str, ok: bool, detail: str) -> None:
        self.items.put(("port", reader_id, ok, detail))

    def _on_silent(self, reader_id: str, ok: bool, detail: str) -> None:
        self.items.put(("silent", reader_id, ok, detail))

    def _on_door(self, door: str, state: str) -> None:
        self.items.put(("emit", "door", {"door": door, "state": state}, self.clock.now_ms()))

    def emit_threadsafe(self, event_type: str, body: dict[str, Any]) -> None:
        """What vision workers call: queue an event for the loop to commit and publish.

        Stamped now, when it happened: a loop held up (a slow fsync of the outbox) must not
        make a camera heartbeat look late, in node time, to the supervisor's absence rules."""
        self.items.put(("emit", event_type, body, self.clock.now_ms()))

    # ---- events ---------------------------------------------------------------------------

    def emit(self, event_type: str, body: dict[str, Any], ts_ms: int | None = None
             ) -> int | None:
        """Validate, commit to the outbox, publish; return the seq (None if refused).
        `ts_ms`: when it happened (default now).

        Presence events commit the room's present set in the same transaction, so a restart
        (even kill -9) resumes exactly the presence the published events describe.
        """
        try:
            validate_body(event_type, body)
            dumps(body)  # floats and other values canonical JSON cannot carry
        except (BodyError, CanonicalError) as e:
            self.counts["bad_events"] += 1
            log.error("refused a malformed %s event: %s", event_type, e)
            return None
        meta: dict[str, str] | None = None
        if event_type in ("presence.enter", "presence.leave"):
            meta = {"present": json.dumps({b: p.reader
                                           for b, p in self.presence.present.items()})}
            self._present_saved = set(self.presence.present)
        opened = self._durations_after(event_type, body)
        if opened is not None:  # committed with the event: a restart knows what is open
            meta = {**(meta or {}), "open_durations": json.dumps(opened)}
        reserved = event_type in SYSTEM_EVENTS
        if self.held:  # nothing overtakes what the disk refused
            self._hold(event_type, body, reserved, meta, None, ts_ms)
            if opened is not None:
                self.open_durations = opened
            return None
        try:
            stored = self.outbox.append(event_type, body, reserved=reserved, meta=meta,
                                        ts_ms=ts_ms)
        except OutboxUnwritable as e:
            self._hold(event_type, body, reserved, meta, e, ts_ms)
            if opened is not None:
                self.open_durations = opened
            return None
        except OutboxFull as e:
            if self.outbox.rejected == 1 or self.outbox.rejected % 1000 == 0:
                log.error("%s; %d events rejected so far", e, self.outbox.rejected)
            return None
        if opened is not None:
            self.open_durations = opened
        self.pump()
        return stored.seq

    def _durations_after(self, event_type: str, body: dict[str, Any]
                         ) -> dict[str, dict[str, Any]] | None:
        """The open durations once this event is committed (None: unchanged)."""
        if event_type not in DURATION_EVENTS or "id" not in body:
            return None
        key = f"{event_type}/{body['id']}"
        if body.get("phase") == "end":
            if key not in self.open_durations:
                return None
            return {k: v for k, v in self.open_durations.items() if k != key}
        if key in self.open_durations:
            return None
        return {**self.open_durations, key: body}

    def end_forgotten_durations(self) -> None:
        """End every duration open when the node last stopped (its id is gone with the
        process; a condition that still holds is detected again, under a new id)."""
        for key, body in sorted(self.open_durations.items()):
            event_type = key.split("/", 1)[0]
            end = {**body, "phase": "end"}
            if event_type == "fault":
                end["detail"] = "ended at node restart"
            self.emit(event_type, end)

    def _hold(self, event_type: str, body: dict[str, Any], reserved: bool,
              meta: dict[str, str] | None, err: Exception | None,
              ts_ms: int | None = None) -> None:
        """Keep an event the disk refused; on the first, raise the storage fault at once."""
        first = not self.held
        if len(self.held) >= HELD_MAX:
            self.held_dropped += 1  # counted, reported in the fault and in health
        else:
            self.held.append((event_type, body, reserved, meta,
                              self.clock.now_ms() if ts_ms is None else ts_ms))
        if first and err is not None:
            log.error("%s; holding events in memory (up to %d) until it can", err, HELD_MAX)
            self.fault("outbox-storage", "new", "outbox", "unwritable", str(err)[:300])
            self.publish_health()  # seq 0, never stored: reaches the supervisor right now
            self._held_retry = time.monotonic() + HELD_RETRY_S

    def _flush_held(self) -> None:
        """Commit held events in order once the disk takes writes again."""
        if not self.held or time.monotonic() < self._held_retry:
            return
        self._held_retry = time.monotonic() + HELD_RETRY_S
        n = len(self.held)
        while self.held:
            event_type, body, reserved, meta, ts = self.held[0]
            try:
                self.outbox.append(event_type, body, reserved=reserved, meta=meta, ts_ms=ts)
            except OutboxUnwritable:
                return
            except OutboxFull:
                self.held_dropped += 1
                log.error("outbox full: a held %s event dropped", event_type)
            self.held.popleft()
        log.warning("outbox writable again: %d held event(s) committed, %d dropped", n,
                    self.held_dropped)
        self.fault("outbox-storage", "end", "outbox", "unwritable",
                   f"{n} held event(s) committed, {self.held_dropped} dropped",
                   self.held_dropped)
        self.publish_health()
        self.pump()

    def fault(self, key: str, phase: str, device: str, kind: str, detail: str = "",
              count: int | None = None) -> None:
        """Publish a fault lifecycle event under a stable id per key."""
        if phase == "new":
            if key in self.faults:
                phase = "update"
            else:
                self._fault_n += 1
                self.faults[key] = f"{kind}-{int(self.clock.now()):x}-{self._fault_n}"[:64]
        fid = self.faults.get(key)
        if fid is None:
            return
        if phase == "end":
            del self.faults[key]
        body: dict[str, Any] = {"id": fid, "phase": phase, "device": device, "kind": kind}
        if detail:
            body["detail"] = detail[:500]
        if count is not None:
            body["count"] = count
        self.emit("fault", body)

    # ---- publishing -----------------------------------------------------------------------

    def pump(self) -> None:
        """Publish unacked events in sequence order, as fast as the broker PUBACKs them and
        the supervisor acks them (ACK_WINDOW)."""
        if not self.online:
            return
        while self.pubq and self.pubq[0].is_published():
            self.pubq.popleft()
        room = BROKER_WINDOW - len(self.pubq)
        if self.sent:  # in send order, so the first is the oldest unacked sent
            room = min(room, ACK_WINDOW - (self.cursor - next(iter(self.sent)) + 1))
        if room <= 0 or self.cursor >= self.outbox.next_seq - 1:
            return
        now = time.monotonic()
        for ev in self.outbox.after(self.cursor, room):
            if not self._send(ev, now):
                return  # the link went down; ("disconnected",) is on its way
            self.cursor = ev.seq

    def _send(self, ev: Stored, now: float) -> bool:
        """Publish one stored event and note it as the newest sent; False if the link is down."""
        info = self.link.publish(self.topics.node(self.node, "event"), ev.payload)
        if info is None:
            return False
        self.pubq.append(info)
        self.sent.pop(ev.seq, None)  # re-inserted: `sent` is in send order
        self.sent[ev.seq] = now
        return True

    def _retransmit_due(self) -> None:
        """Go back to the oldest unacked event when the supervisor has not acked in time."""
        if not self.sent or not self.online or self.supervisor_online is False:
            return  # a supervisor known to be offline gets everything when it comes back
        # Due when the oldest unacked has waited a whole interval and no ack came meanwhile:
        # while acks come, a long wait is a queue ahead of it, not a loss (a lost one stops the
        # acks within ACK_WINDOW). Resending then would double the queue it waits in.
        since = max(next(iter(self.sent.values())), self.acked_mono)
        if time.monotonic() - since >= self.retransmit_s:
            self.counts["retransmits"] += 1
            # Nothing acked for a whole interval: back off so a long absence costs little.
            self.retransmit_s = min(self.retransmit_s * 2, RETRANSMIT_MAX_S)
            self._go_back()

    def _holes_before(self, acked: set[int]) -> list[int]:
        """Unacked events sent before the last-sent of `acked`: lost between here and the
        supervisor (acks come in arrival order, arrival is in send order)."""
        waiting = len(acked & self.sent.keys())
        holes: list[int] = []
        for seq in self.sent:  # send order; normally the acked ones lead, so this stops early
            if waiting == 0:
                break
            if seq in acked:
                waiting -= 1
            else:
                holes.append(seq)
        return holes

    def _resend(self, holes: list[int]) -> None:
        """Publish again the events a later ack showed lost, now, in order."""
        now = time.monotonic()
        for seq in holes:
            if self.fast_resends.get(seq, 0) >= FAST_RESENDS_MAX:
                continue  # the retransmit timer takes it from here
            stored = self.outbox.after(seq - 1, 1)
            if not stored or stored[0].seq != seq:
                continue
            # Now the newest sent: a hole again only behind a newer ack.
            if not self._send(stored[0], now):
                return
            self.fast_resends[seq] = self.fast_resends.get(seq, 0) + 1
            self.counts["fast_resends"] += 1

    def _go_back(self) -> None:
        """Send again from the oldest unacked event, in order."""
        self.fast_resends.clear()
        self.sent.clear()
        self.pubq.clear()
        first = self.outbox.oldest()
        self.cursor = 0 if first is None else first - 1
        self.pump()

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            parsed = self.topics.parse(topic)
        except TopicError:
            self.counts["bad_topic"] += 1
            return
        if parsed.kind == "supervisor" and parsed.channel == "availability":
            self._on_supervisor(payload)
            return
        if parsed.kind != "node" or parsed.node != self.node:
            return
        if parsed.channel == "ack":
            self._on_ack(payload)
        elif parsed.channel == "roster":
            self._on_roster(payload)
        elif parsed.channel == REQUEST_CHANNEL:
            self._on_evidence_request(payload)

    def _on_evidence_request(self, payload: bytes) -> None:
        """Serve one chunk of a kept evidence clip to the supervisor (signed both ways)."""
        try:
            req = open_request(payload, self.conf.key, self.node)
        except EvidenceError as e:
            self.counts["evidence_rejected"] += 1
            log.warning("%s", e)
            return
        keepers = [w.evidence for w in self.cameras.values()
                   if getattr(w, "evidence", None) is not None]
        keeper = next((k for k in keepers if req.evidence in k.kept), None)
        if keeper is not None:
            resp = keeper.serve(req)
        else:
            resp = evidence_response(req, ok=False, error=(
                f"no evidence {req.evidence!r} on node {self.node}" if keepers else
                f"node {self.node} keeps no evidence (no [recording] evidence_dir)"))
        self.counts["evidence_served" if resp["ok"] else "evidence_refused"] += 1
        self.link.publish(self.topics.node(self.node, DATA_CHANNEL),
                          seal_response(self.conf.key, self.node, self.clock.now_ms(), resp))

    def _on_ack(self, payload: bytes) -> None:
        try:
            ev = verify(payload, {self.node: self.conf.key}, topic_node=self.node)
            if ev.type != "ack":
                raise VerifyError("bad_field", f"type {ev.type!r} on the ack topic")
        except VerifyError as e:
            self.counts["ack_rejected"] += 1
            log.warning("ack refused: %s", e)
            return
        epoch, seqs = ev.body["epoch"], ev.body["seqs"]
        if epoch != self.outbox.epoch:
            self.counts["ack_other_epoch"] += 1
            return
        deleted = self.outbox.ack(epoch, seqs)
        holes = self._holes_before(set(deleted))
        for s in deleted:
            self.sent.pop(s, None)
            self.fast_resends.pop(s, None)
        if deleted:
            self.retransmit_s = self.conf.retransmit_s
            self.acked_mono = time.monotonic()
        if holes and self.online:
            self._resend(holes)
        self.pump()

    def _on_supervisor(self, payload: bytes) -> None:
        online = payload == b"online"
        came_back = online and self.supervisor_online is not True
        self.supervisor_online = online
        if came_back and self.outbox.depth:
            self.retransmit_s = self.conf.retransmit_s
            self._go_back()  # it may have missed what we sent while it was away

    def _on_roster(self, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained roster: keep the one we have
        try:
            roster = verify_roster(payload, self.node, self.conf.key)
        except (VerifyError, RosterError) as e:
            self.counts["roster_rejected"] += 1
            self.roster_error = str(e)[:200]  # told to the supervisor in every health
            log.warning("roster refused: %s", e)
            return
        if self.roster is not None and roster.version < self.roster.version:
            self.counts["roster_rejected"] += 1
            log.warning("roster version %d older than %d: refused", roster.version,
                        self.roster.version)
            return
        self.roster, self.roster_error = roster, None
        self.outbox.put("roster", roster.to_json())
        log.info("roster version %d: %d bands", roster.version, len(roster.bands))

    # ---- loop -----------------------------------------------------------------------------

    def handle(self, item: tuple[Any, ...]) -> None:
        """Act on one queued item."""
        kind = item[0]
        if kind == "reads":
            # The reads' own time (when the reader thread queued them), not the loop's.
            now = item[3] if len(item) > 3 else self.clock.now()
            mono = time.monotonic()
            for read in item[2]:
                for etype, body in self.presence.on_read(item[1], read, now, mono):
                    self.emit(etype, body, int(now * 1000))
            if self.presence.status != self._status_saved:
                self._status_saved = dict(self.presence.status)
                self.outbox.put_json("band_status", {b: list(f) for b, f in
                                                     self._status_saved.items()})
        elif kind == "emit":
            self.emit(item[1], item[2], item[3] if len(item) > 3 else None)
        elif kind == "port":
            _, rid, ok, detail = item
            self.fault(f"port-{rid}", "end" if ok else "new", rid, "port-lost", detail)
        elif kind == "silent":
            _, rid, ok, detail = item
            self.fault(f"silent-{rid}", "end" if ok else "new", rid, "silent", detail)
        elif kind == "connected":
            self.online = True
            self._go_back()  # replay every unacked event in order
        elif kind == "disconnected":
            self.online = False
            self.pubq.clear()
            # What the supervisor saw while we were away is unknown (a restarted broker loses
            # its sessions): its next "online" replays what is unacked, even if we never
            # saw it go offline.
            self.supervisor_online = None
        elif kind == "message":
            self._on_message(item[1], item[2])
        elif kind == "stop":
            self.stopping.set()

    def _save_presence(self) -> None:
        if set(self.presence.present) != self._present_saved:
            self._present_saved = set(self.presence.present)
            self.outbox.put_json("present", {b: p.reader
                                             for b, p in self.presence.present.items()})

    def tick(self) -> None:
        """Presence TTL and the local rules, against the custody clock."""
        now, mono = self.clock.now(), time.monotonic()
        for etype, body in self.presence.tick(now, mono):
            self.emit(etype, body)
        self._save_presence()
        inputs = Inputs(frozenset(self.presence.present), frozenset(self.presence.recently_seen()),
                        dict(self.presence.status), self.roster, self.outbox.high_water)
        if self.outbox.high_water != ("outbox" in self.faults):
            self.fault("outbox", "new" if self.outbox.high_water else "end", "outbox",
                       "high-water", f"{self.outbox.depth} of {self.outbox.capacity} events",
                       self.outbox.depth)
        events = self.rules.evaluate(now, inputs)
        for etype, body in events:
            self.emit(etype, body)
        if events:
            self.outbox.put_json("local_alerts", self.rules.saved())

    def _checksum_faults(self) -> None:
        for r in self.readers:
            n = r.parser.counts["checksum"]
            seen = self._checksum_seen.get(r.id, 0)
            key = f"checksum-{r.id}"
            if n > seen:
                self.fault(key, "new", r.id, "checksum", f"{n - seen} bad frame(s)", n)
            elif key in self.faults:
                self.fault(key, "end", r.id, "checksum", "no bad frames this interval", n)
            self._checksum_seen[r.id] = n

    def through_ts(self) -> int:
        """Up to when the supervisor has, or is being sent, every event: the watermark it may
        judge our rooms' silence against. Events already handed to the link go out before
        this health on the same connection, in order; one not handed over yet (a backlog, a
        replay after a reconnect) holds the watermark just before its own time."""
        now = self.clock.now_ms()
        if not self.online:
            return 0
        if self.held:  # events the disk refused, not even in the outbox yet
            return min(now, self.held[0][4] - 1)
        if self.cursor >= self.outbox.next_seq - 1:
            return now
        row = self.outbox.db.execute("SELECT MIN(ts) FROM events WHERE seq > ?",
                                     (self.cursor,)).fetchone()
        return now if row[0] is None else min(now, int(row[0]) - 1)

    def health_body(self, sample: bool = True) -> dict[str, Any]:
        """The health message body (`sample`: read the host figures again)."""
        obj: dict[str, Any] = {
            "readers": {r.id: r.stats() for r in self.readers},
            "doors": {d.door: d.stats() for d in self.doors},
            "outbox": {"capacity": self.outbox.capacity, "rejected": self.outbox.rejected,
                       "epoch": self.outbox.epoch, "next_seq": self.outbox.next_seq,
                       "unwritable": self.outbox.unwritable or "",
                       "commit_failures": self.outbox.commit_failures,
                       "held": len(self.held), "held_dropped": self.held_dropped},
            "ack_rejected": self.counts["ack_rejected"],
            "roster_rejected": self.counts["roster_rejected"],
            "evidence_served": self.counts["evidence_served"],
            "evidence_refused": self.counts["evidence_refused"],
            "roster_version": -1 if self.roster is None else self.roster.version,
            "callback_errors": sum(self.link.errors.counts.values()),
            "retransmits": self.counts["retransmits"],
            "fast_resends": self.counts["fast_resends"],
            "bad_events": self.counts["bad_events"],
            "loop_errors": self.counts["loop_errors"],
            "connects": self.link.connects,
            "through_ts": self.through_ts(),
            "roster_refused": int(self.roster_error is not None),
            "outbox_high_water": int(self.outbox.high_water),
        }
        if self.roster_error is not None:
            obj["roster_error"] = self.roster_error
        if sample or not self._host_obj:
            self._host_obj = self.host.sample()
        obj.update(self._host_obj)
        if self.cameras:
            cams = {}
            for cid, w in self.cameras.items():
                try:
                    cams[cid] = {k: int(v) for k, v in w.health().items()}
                except Exception:  # a broken worker must not stop health
                    log.exception("camera %s health failed", cid)
            obj["cameras"] = cams
        return {"uptime_s": int(time.monotonic() - self.started_mono),
                "queue": self.outbox.depth, "obj": obj}

    def publish_health(self, sample: bool = True) -> None:
        """Seal health (seq 0) and publish it retained (`sample`: a full one; otherwise a
        beat that mainly moves the supervisor's watermark of this node)."""
        try:
            payload = seal(self.conf.key, self.node, self.outbox.epoch, 0, self.clock.now_ms(),
                           "health", self.health_body(sample))
        except Exception:
            log.exception("health not built")
            return
        self.link.publish(self.topics.node(self.node, "health"), payload, retain=True)

    def _start_vision(self) -> None:
        if not (self.conf.vision and self.conf.cameras):
            return
        try:
            vision = importlib.import_module("edge_agent.vision")  # the vision part's package
        except Exception as e:  # missing or broken vision: run on, and say so
            for cam in self.conf.cameras:
                self.fault(f"vision-{cam.id}", "new", cam.id, "vision-unavailable", str(e))
            return
        for cam in self.conf.cameras:
            try:
                w = vision.open_camera(cam, self.room.id, self.emit_threadsafe, self.clock,
                                       self.conf.site.rules,
                                       heartbeat_s=self.conf.camera_heartbeat_s,
                                       **self.conf.recording)
                w.start()
                self.cameras[cam.id] = w
            except Exception as e:
                log.exception("camera %s did not start", cam.id)
                self.fault(f"vision-{cam.id}", "new", cam.id, "camera-start", str(e))

    def run(self) -> int:
        """Run until stop(); return the exit status."""
        for etype, body in self.rules.ended_after_restart(self.outbox.get_json("local_alerts",
                                                                                [])):
            self.emit(etype, body)
        self.outbox.put_json("local_alerts", [])
        self.end_forgotten_durations()
        self.link.start()
        for r in self.readers:
            r.start()
        for d in self.doors:
            d.start(self._on_door)
        self._start_vision()
        # In a simulated run, custody time waits while this node is behind with its input.
        hold_while(lambda: self.items.qsize() < HOLD_ITEMS)
        for r in self.readers:
            hold_while(r.caught_up)
        for w in self.cameras.values():
            caught_up = getattr(w, "caught_up", None)  # optional in the vision plug interface
            if callable(caught_up):
                hold_while(caught_up)
        self.notifier.notify("READY=1")
        log.info("agent %s up: room %s, epoch %d, %d unacked", self.node, self.room.id,
                 self.outbox.epoch, self.outbox.depth)
        idle_wait = 0.2  # real seconds: the loop also wakes for every queued item
        next_health = time.monotonic() + 1.0
        # Beats: often enough that the supervisor's watermark of this node trails the custody
        # clock by about half a presence TTL, never more often than BEAT_MIN_REAL_S.
        beat_s = max(BEAT_MIN_REAL_S, self.conf.site.rules.presence_ttl_s / 2 / self.clock.speed)
        next_beat = time.monotonic() + beat_s
        wd = self.notifier.watchdog_interval()
        next_wd = time.monotonic()
        try:
            while not self.stopping.is_set():
                try:
                    item = self.items.get(timeout=self._wait(idle_wait))
                    self.handle(item)
                    for _ in range(500):  # drain a burst without starving the tick
                        self.handle(self.items.get_nowait())
                except queue.Empty:
                    pass
                except Exception:  # one bad item must not stop the node
                    self.counts["loop_errors"] += 1
                    log.exception("main loop error (kept running)")
                try:
                    self._flush_held()
                    self.tick()
                    self._retransmit_due()
                    self.pump()
                    mono = time.monotonic()
                    if mono >= next_health:
                        next_health = mono + self.conf.health_interval_s
                        next_beat = mono + beat_s
                        self._checksum_faults()
                        self.publish_health()
                    elif mono >= next_beat and self.online:
                        next_beat = mono + beat_s
                        self.publish_health(sample=False)
                except Exception:
                    self.counts["loop_errors"] += 1
                    log.exception("main loop error (kept running)")
                if wd and time.monotonic() >= next_wd:
                    next_wd = time.monotonic() + wd
                    self.notifier.notify("WATCHDOG=1")
        finally:
            self._shutdown()
        return 0

    def _wait(self, idle: float) -> float:
        """Real seconds the loop may sleep: until the next presence expiry or rule deadline
        (custody time, so a sped-up clock wakes it sooner), at most `idle`."""
        due = [t for t in (self.presence.next_change(), self.rules.next_deadline())
               if t is not None]
        if not due:
            return idle
        # A little past the deadline, so that one wake-up finds it due.
        left = (min(due) - self.clock.now()) / self.clock.speed + 0.002
        return min(idle, max(0.001, left))

    def stop(self) -> None:
        """Ask the loop to stop (safe from a signal handler or another thread)."""
        self.stopping.set()

    def _shutdown(self) -> None:
        self.notifier.notify("STOPPING=1")
        for w in self.cameras.values():
            try:
                w.stop()
            except Exception:
                log.exception("camera stop failed")
        for d in self.doors:
            d.stop()
        for r in self.readers:
            r.stop()
        self.link.stop()
        self.outbox.close()
        log.info("agent %s stopped", self.node)


def run_agent(conf: AgentConfig) -> int:
    """Run an agent in this process with SIGTERM/SIGINT as a clean stop."""
    agent = Agent(conf)

    def _stop(signum: int, frame: FrameType | None) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return agent.run()
