"""Ingest: verify node messages, journal them (dedupe in the same transaction), then ack.

A batch of messages is appended in one SQLite transaction; only after its commit are the
entries folded into the state and the signed acks published, so an ack always means
"journaled". A duplicate (node, epoch, seq) is acked again (the node's earlier ack may have
been lost) and never journaled twice. A rejected message becomes a `security` entry with the
reason and never reaches the state as an event.

Trust stops at the key: a correctly signed event must also stay within its node's scope
(supervisor/scope.py), its clock, a sane sequence and physical ranges, or it is refused the
same way (and not acked: the node's outbox holds it). Each node has a budget: a node over
its message or rejection rate is throttled (its messages dropped unread, not acked) and
raises one alert. Rejections are journaled in full once per (node, reason), then as a count
with the digest of the latest payload at most every REJECT_SUMMARY_S.
"""

import contextlib
import hashlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol import PROTOCOL_VERSION
from protocol.envelope import (
    CANONICAL_ENCODER,
    Reason,
    VerifyError,
    mac_hex,
    open_payload,
    verify,
)
from protocol.events import Event
from protocol.ids import ID_RE
from protocol.replay import NODE_EVENT_WINDOW, ReplayWindow
from protocol.topics import TopicError, Topics
from protocol.verifier import ack_payload

from .budget import Budget
from .journal import Entry, Journal
from .scope import out_of_range, out_of_scope, site_scopes
from .state import State

log = logging.getLogger(__name__)
Publish = Callable[[str, bytes, int, bool], Any]
MAX_KEPT_PAYLOAD = 1024  # bytes of a rejected payload kept in the journal for forensics
HEALTHY = {"roster_refused": False, "roster_error": "", "outbox_high_water": False}
REJECT_SUMMARY_S = 10.0  # real seconds between journaled counts of one (node, reason)
MAX_EPOCH_AHEAD_S = 86400  # epochs are the outbox's creation time in real Unix seconds


@dataclass
class Repeats:
    """Rejections of one (node, reason) since its last journaled entry."""

    flushed_mono: float
    topic: str = ""
    count: int = 0
    digest: str = ""
    detail: str = ""


@dataclass
class IngestCounts:
    """What ingest has seen since start."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, n: int = 1) -> None:
        """Count `n` of `name`."""
        self.counts[name] += n


def fast_ack_payload(key: bytes, node: str, ack_seq: int, ts_ms: int, epoch: int,
                     seqs: list[int]) -> bytes:
    """Byte for byte protocol.verifier.ack_payload, built with the C JSON encoder.

    An ack holds only integers and a [a-z0-9-] node id, for which sorted-key, compact,
    ASCII json.dumps is exactly canonical JSON; the pure-Python encoder was the hot spot.
    """
    if not ID_RE.match(node):
        return ack_payload(key, node, ack_seq, ts_ms, epoch, seqs)
    env = CANONICAL_ENCODER.encode(
        {"v": PROTOCOL_VERSION, "node": node, "epoch": 1, "seq": ack_seq, "ts": ts_ms,
         "type": "ack", "body": {"epoch": epoch, "seqs": sorted(seqs)}})
    return CANONICAL_ENCODER.encode(
        {"env": env, "mac": mac_hex(key, env.encode("ascii"))}).encode("ascii")


def admit_journaled(window: ReplayWindow, e: Entry, now_s: float) -> None:
    """Fold one journal entry into the replay window (start-up, snapshots)."""
    # An absurd epoch journaled before epochs were checked must not lock a node out.
    if e.kind == "event" and e.epoch <= now_s + MAX_EPOCH_AHEAD_S:
        with contextlib.suppress(VerifyError):
            window.admit(e.node, e.epoch, e.seq)


class Ingest:
    """Node message path: topic -> verify -> journal -> state -> ack."""

    def __init__(self, journal: Journal, state: State, topics: Topics, keys: dict[str, bytes],
                 publish: Publish, now_ms: Callable[[], int],
                 window: ReplayWindow | None = None) -> None:
        self.journal, self.state, self.topics, self.keys = journal, state, topics, keys
        self.publish, self.now_ms = publish, now_ms
        # The replay window as the journal left it: given by the start-up pass that folds the
        # state too (supervisor/snapshot.py), else rebuilt here from the whole journal.
        if window is None:
            window = ReplayWindow(NODE_EVENT_WINDOW)
            now_s = time.time()
            for e in journal.entries():
                admit_journaled(window, e, now_s)
        self.window = window
        self.stats = IngestCounts()
        self._ack_seq: dict[str, int] = {}
        self.events: dict[int, Event] = {}  # entry idx -> verified event, to spare a re-parse
        self.max_lag_ms = 0  # longest (arrival - node stamp) of a new event, custody ms
        self.scopes = site_scopes(state.site)
        conf = state.site.supervisor
        self.max_skew_ms = conf.max_clock_skew_s * 1000
        self.max_age_ms = conf.max_event_age_s * 1000
        self.budget = Budget()
        self.repeats: dict[tuple[str, str, str], Repeats] = {}
        self.rejected_by_reason: Counter[str] = Counter()
        self.storage_failing: set[str] = set()  # nodes whose health says the outbox fails
        self._admitted: list[tuple[str, int, int]] = []  # this batch's, undone on rollback
        self._new_repeats: list[tuple[str, str, str]] = []

    def process(self, items: list[tuple[str, bytes]]) -> list[Entry]:
        """Handle a batch of (topic, payload); return the entries journaled."""
        now = self.now_ms()
        acks: dict[tuple[str, int], list[int]] = defaultdict(list)
        entries: list[Entry] = []
        availability: dict[str, str] = {}
        self._admitted, self._new_repeats = [], []
        self.journal.begin()
        try:
            for topic, payload in items:
                try:
                    parsed = self.topics.parse(topic)
                except TopicError as err:
                    self._reject(topic, payload, "bad_topic", str(err), None, now, entries)
                    continue
                if parsed.kind != "node" or parsed.node is None:
                    continue
                if self.budget.throttled(parsed.node, time.monotonic()):
                    # Dropped unread and unacked: a genuine event stays in the node's outbox.
                    self._throttled(topic, parsed.node, payload, now, entries)
                    continue
                self.budget.message(parsed.node, time.monotonic())
                if parsed.channel == "event":
                    self._event(topic, parsed.node, payload, now, acks, entries)
                elif parsed.channel == "availability":
                    status = payload.decode("ascii", "replace")
                    known = availability.get(parsed.node) or (
                        self.state.nodes[parsed.node].availability
                        if parsed.node in self.state.nodes else "unknown")
                    if status in ("online", "offline") and status != known:
                        availability[parsed.node] = status
                        entries.append(self.journal.append_own(
                            "availability", {"node": parsed.node, "status": status, "ts": now}))
                elif parsed.channel == "health":
                    self._health(topic, parsed.node, payload, now, entries)
            self._flush_repeats(now, entries, force=False)
            self.journal.commit()
        except BaseException:
            self.journal.rollback()
            # Nothing of the batch was journaled: it may all come again (nothing was acked).
            for node, epoch, seq in self._admitted:
                self.window.forget(node, epoch, seq)
            for key in self._new_repeats:
                self.repeats.pop(key, None)
            self.events.clear()
            raise
        for entry in entries:
            self.state.apply(entry, self.events.pop(entry.idx, None))
        self.events.clear()
        for (node, epoch), seqs in acks.items():
            self._ack(node, epoch, seqs, now)
        return entries

    def _event(self, topic: str, node: str, payload: bytes, now: int,
               acks: dict[tuple[str, int], list[int]], entries: list[Entry]) -> None:
        try:
            ev = verify(payload, self.keys, topic_node=node)
            self._sane(ev, now)
        except VerifyError as e:
            self._reject(topic, payload, e.reason, e.detail, node, now, entries)
            return
        try:  # the window answers from memory; the journal is asked only when it objects
            self.window.admit(ev.node, ev.epoch, ev.seq)
        except VerifyError as e:
            earlier = self.journal.payload_of(ev.node, ev.epoch, ev.seq)
            if earlier == payload:  # a retransmission: the node's ack may have been lost
                self.stats.add("duplicates")
                acks[(ev.node, ev.epoch)].append(ev.seq)
                return
            reason, detail = e.reason, e.detail
            if earlier is not None:  # same sequence, other content: not a retransmission
                reason, detail = "replay", (f"{ev.node} epoch {ev.epoch} seq {ev.seq} already "
                                            "journaled with other content")
            self._reject(topic, payload, reason, detail, node, now, entries)
            return
        self.state.arrived(ev.node, now)
        self._admitted.append((ev.node, ev.epoch, ev.seq))
        entry = self.journal.append(ev.node, ev.epoch, ev.seq, "event", payload)
        if entry is None:  # only if the window and the journal disagree; the journal wins
            self.stats.add("duplicates")
        else:
            entries.append(entry)
            self.events[entry.idx] = ev
            self.stats.add("events")
            self.max_lag_ms = max(self.max_lag_ms, now - ev.ts_ms)
        acks[(ev.node, ev.epoch)].append(ev.seq)

    def _health(self, topic: str, node: str, payload: bytes, now: int,
                entries: list[Entry]) -> None:
        try:
            ev = verify(payload, self.keys, topic_node=node)
            self.stats.add("health")
        except VerifyError as e:
            self._reject(topic, payload, e.reason, e.detail, node, now, entries)
            return
        obj = ev.body.get("obj")
        if not isinstance(obj, dict):
            obj = {}
        self.state.arrived(node, now)
        # The watermark of the node's rooms: health says up to when we have its events.
        through = obj.get("through_ts", ev.ts_ms)
        self.state.heard(node, through if isinstance(through, int) else ev.ts_ms)
        # What staff must act on is journaled when it changes (so replay rebuilds it).
        flags = {"roster_refused": bool(obj.get("roster_refused")),
                 "roster_error": str(obj.get("roster_error", ""))[:200],
                 "outbox_high_water": bool(obj.get("outbox_high_water"))}
        if (self.state.health_flags(node) or HEALTHY) != flags:
            entries.append(self.journal.append_own("health", {"node": node, "ts": now,
                                                              **flags}))
            self.state.set_health_flags(node, flags, now)  # the fold after commit agrees
        # A node whose outbox cannot commit says so in its health (seq 0, never stored), the
        # only way it can speak at once: journal the transition so staff are alerted.
        outbox = obj.get("outbox")
        if not isinstance(outbox, dict):
            outbox = {}
        failing = str(outbox.get("unwritable") or "")
        if failing and node not in self.storage_failing:
            entries.append(self.journal.append_own("security", {
                "ts": now, "topic": topic, "reason": "node_storage", "node": node,
                "payload_hex": "", "detail": f"{node} cannot commit events to its outbox "
                f"({failing[:200]}); it holds {outbox.get('held', '?')} in memory"}))
            self.storage_failing.add(node)
        elif not failing:
            self.storage_failing.discard(node)

    def _sane(self, ev: Event, now: int) -> None:
        """Refuse a signed event outside its node's scope, clock, epoch or ranges."""
        wrong = out_of_scope(self.scopes.get(ev.node), ev)
        if wrong is not None:
            raise VerifyError(Reason.OUT_OF_SCOPE, wrong)
        wrong = out_of_range(ev)
        if wrong is not None:
            raise VerifyError(Reason.OUT_OF_RANGE, f"{ev.node}: {wrong}")
        if ev.ts_ms > now + self.max_skew_ms or ev.ts_ms < now - self.max_age_ms:
            raise VerifyError(Reason.CLOCK_SKEW,
                              f"{ev.node}'s clock is {(ev.ts_ms - now) / 1000:+.0f} s off the "
                              f"supervisor's (event ts {ev.ts_ms}, now {now})")
        if ev.epoch > time.time() + MAX_EPOCH_AHEAD_S:
            raise VerifyError(Reason.FUTURE_EPOCH,
                              f"{ev.node}: epoch {ev.epoch} is a time in the future")

    def _throttled(self, topic: str, node: str, payload: bytes, now: int,
                   entries: list[Entry]) -> None:
        self.stats.add("throttled")
        self._reject(topic, payload, Reason.THROTTLED,
                     f"{node} is over its message budget ({self.budget.describe(node)}); its "
                     "messages are dropped unread and unacked until it slows down", node, now,
                     entries, budget=False)

    def _reject(self, topic: str, payload: bytes, reason: str, detail: str,
                topic_node: str | None, now: int, entries: list[Entry],
                budget: bool = True) -> None:
        """Count a rejection; journal it in full the first time for its (node, reason)."""
        self.stats.add(f"rejected_{reason}")
        self.rejected_by_reason[reason] += 1
        mono = time.monotonic()
        if budget and topic_node is not None:
            self.budget.rejected(topic_node, mono)
        claimed = topic_node
        if budget:  # a throttled node's messages are not even parsed
            with contextlib.suppress(VerifyError):
                claimed = open_payload(payload).claimed_node
        if claimed not in self.state.node_room and topic_node is not None:
            claimed = topic_node
        # What a node claimed beyond its scope is worth keeping per claim (the detail names
        # it, and the rejection budget bounds how many); other reasons per (node, reason).
        key = (claimed or "unknown", reason,
               detail[:200] if reason in (Reason.OUT_OF_SCOPE, Reason.OUT_OF_RANGE) else "")
        rep = self.repeats.get(key)
        if rep is not None:  # seen before: count it, journal the count later (and log less)
            rep.count += 1
            rep.topic, rep.detail = topic, detail[:512]
            rep.digest = hashlib.sha256(payload).hexdigest()
            if mono - rep.flushed_mono >= REJECT_SUMMARY_S:
                self._flush_one(key, rep, now, entries)
            return
        self.repeats[key] = Repeats(mono)
        self._new_repeats.append(key)
        log.warning("rejected message on %s: %s: %s", topic, reason, detail[:512])
        record: dict[str, Any] = {"ts": now, "topic": topic, "reason": reason,
                                  "detail": detail[:512], "node": claimed,
                                  "payload_hex": payload[:MAX_KEPT_PAYLOAD].hex(),
                                  "sha256": hashlib.sha256(payload).hexdigest()}
        entries.append(self.journal.append_own("security", record))

    def _flush_one(self, key: tuple[str, str, str], rep: Repeats, now: int,
                   entries: list[Entry]) -> None:
        log.warning("%d more rejected message(s) from %s (%s), latest on %s: %s", rep.count,
                    key[0], key[1], rep.topic, rep.detail)
        entries.append(self.journal.append_own(
            "security", {"ts": now, "topic": rep.topic, "reason": key[1], "node": key[0],
                         "detail": rep.detail, "payload_hex": "", "repeats": rep.count,
                         "sha256": rep.digest}))
        rep.count, rep.flushed_mono = 0, time.monotonic()

    def _flush_repeats(self, now: int, entries: list[Entry], force: bool) -> None:
        mono = time.monotonic()
        for key, rep in self.repeats.items():
            if rep.count and (force or mono - rep.flushed_mono >= REJECT_SUMMARY_S):
                self._flush_one(key, rep, now, entries)

    def housekeeping(self) -> list[Entry]:
        """Journal the counts of rejections still held in memory (call now and then)."""
        if not any(r.count for r in self.repeats.values()):
            return []
        return self.process([])

    def _ack(self, node: str, epoch: int, seqs: list[int], now: int) -> None:
        key = self.keys.get(node)
        if key is None:
            return
        ack_seq = max(self._ack_seq.get(node, 0) + 1, now)
        self._ack_seq[node] = ack_seq
        # QoS 0: an ack is idempotent and a node retransmits what is not acked in time (the
        # duplicate is acked again). At QoS 1 paho kept every ack, about one per event, until
        # the broker's PUBACK: whenever the broker lagged, the supervisor's memory grew with it.
        for i in range(0, len(seqs), 500):  # stay well under the 8 KiB payload limit
            self.publish(self.topics.node(node, "ack"),
                         fast_ack_payload(key, node, ack_seq, now, epoch, seqs[i:i + 500]), 0,
                         False)
        self.stats.add("acks")
