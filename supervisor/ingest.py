"""Ingest: verify node messages, journal them (dedupe in the same transaction), then ack.

A batch of messages is appended in one SQLite transaction; only after its commit are the
entries folded into the state and the signed acks published, so an ack always means
"journaled". A duplicate (node, epoch, seq) is acked again (the node's earlier ack may have
been lost) and never journaled twice. A rejected message becomes a `security` entry with the
reason and never reaches the state as an event.
"""

import contextlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol import PROTOCOL_VERSION
from protocol.envelope import VerifyError, mac_hex, open_payload, verify
from protocol.events import Event
from protocol.ids import ID_RE
from protocol.replay import NODE_EVENT_WINDOW, ReplayWindow
from protocol.topics import TopicError, Topics
from protocol.verifier import ack_payload

from .journal import Entry, Journal
from .state import State

log = logging.getLogger(__name__)
Publish = Callable[[str, bytes, int, bool], Any]
MAX_KEPT_PAYLOAD = 1024  # bytes of a rejected payload kept in the journal for forensics
HEALTHY = {"roster_refused": False, "roster_error": "", "outbox_high_water": False}


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
    env = json.dumps({"v": PROTOCOL_VERSION, "node": node, "epoch": 1, "seq": ack_seq,
                      "ts": ts_ms, "type": "ack", "body": {"epoch": epoch, "seqs": sorted(seqs)}},
                     sort_keys=True, separators=(",", ":"))
    return json.dumps({"env": env, "mac": mac_hex(key, env.encode("ascii"))},
                      sort_keys=True, separators=(",", ":")).encode("ascii")


class Ingest:
    """Node message path: topic -> verify -> journal -> state -> ack."""

    def __init__(self, journal: Journal, state: State, topics: Topics, keys: dict[str, bytes],
                 publish: Publish, now_ms: Callable[[], int]) -> None:
        self.journal, self.state, self.topics, self.keys = journal, state, topics, keys
        self.publish, self.now_ms = publish, now_ms
        self.window = ReplayWindow(NODE_EVENT_WINDOW)
        self.stats = IngestCounts()
        self._ack_seq: dict[str, int] = {}
        self.events: dict[int, Event] = {}  # entry idx -> verified event, to spare a re-parse
        self.max_lag_ms = 0  # longest (arrival - node stamp) of a new event, custody ms
        for e in journal.entries():  # the replay window as the journal left it
            if e.kind == "event":
                with contextlib.suppress(VerifyError):
                    self.window.admit(e.node, e.epoch, e.seq)

    def process(self, items: list[tuple[str, bytes]]) -> list[Entry]:
        """Handle a batch of (topic, payload); return the entries journaled."""
        now = self.now_ms()
        acks: dict[tuple[str, int], list[int]] = defaultdict(list)
        entries: list[Entry] = []
        availability: dict[str, str] = {}
        self.journal.begin()
        try:
            for topic, payload in items:
                try:
                    parsed = self.topics.parse(topic)
                except TopicError as err:
                    entries.append(self._reject(topic, payload, "bad_topic", str(err), None,
                                                now))
                    continue
                if parsed.kind != "node" or parsed.node is None:
                    continue
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
            self.journal.commit()
        except BaseException:
            self.journal.rollback()
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
        except VerifyError as e:
            entries.append(self._reject(topic, payload, e.reason, e.detail, node, now))
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
            entries.append(self._reject(topic, payload, reason, detail, node, now))
            return
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
            entries.append(self._reject(topic, payload, e.reason, e.detail, node, now))
            return
        obj = ev.body.get("obj") or {}
        # The watermark of the node's rooms: health says up to when we have its events.
        self.state.heard(node, int(obj.get("through_ts", ev.ts_ms)))
        # What staff must act on is journaled when it changes (so replay rebuilds it).
        flags = {"roster_refused": bool(obj.get("roster_refused")),
                 "roster_error": str(obj.get("roster_error", ""))[:200],
                 "outbox_high_water": bool(obj.get("outbox_high_water"))}
        if (self.state.health_flags(node) or HEALTHY) != flags:
            entries.append(self.journal.append_own("health", {"node": node, "ts": now,
                                                              **flags}))
            self.state.set_health_flags(node, flags, now)  # the fold after commit agrees

    def _reject(self, topic: str, payload: bytes, reason: str, detail: str,
                topic_node: str | None, now: int) -> Entry:
        self.stats.add(f"rejected_{reason}")
        claimed = topic_node
        with contextlib.suppress(VerifyError):
            claimed = open_payload(payload).claimed_node
        if claimed not in self.state.node_room and topic_node is not None:
            claimed = topic_node
        log.warning("rejected message on %s: %s: %s", topic, reason, detail)
        record: dict[str, Any] = {"ts": now, "topic": topic, "reason": reason,
                                  "detail": detail[:512], "node": claimed,
                                  "payload_hex": payload[:MAX_KEPT_PAYLOAD].hex()}
        return self.journal.append_own("security", record)

    def _ack(self, node: str, epoch: int, seqs: list[int], now: int) -> None:
        key = self.keys.get(node)
        if key is None:
            return
        ack_seq = max(self._ack_seq.get(node, 0) + 1, now)
        self._ack_seq[node] = ack_seq
        for i in range(0, len(seqs), 500):  # stay well under the 8 KiB payload limit
            self.publish(self.topics.node(node, "ack"),
                         fast_ack_payload(key, node, ack_seq, now, epoch, seqs[i:i + 500]), 1,
                         False)
        self.stats.add("acks")
