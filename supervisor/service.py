"""The supervisor process: MQTT in, one worker thread doing ingest, rules, alerts, staff.

paho's network thread only queues messages; the worker owns the journal and the state, so
everything that changes them happens in one thread, in arrival order.
"""

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from protocol.canonical import dumpb
from protocol.clock import Clock
from protocol.envelope import seal
from protocol.heldclock import hold_while
from protocol.site import Site
from protocol.topics import TopicError, Topics
from protocol.transport import CallbackErrors, LinkConf, make_client

from .accounts import AccountError, Directory
from .alerts import AlertManager, delivery
from .broker_log import BrokerLogWatch
from .degraded import Degraded, is_storage_error, refusal
from .evidence import CACHE_BYTES, FETCH_TIMEOUT_S, EvidenceService
from .health import HealthPublisher, health_body
from .ingest import Ingest
from .journal import (
    SUPERVISOR_NODE,
    Journal,
    append_checkpoint,
    checkpoint,
    read_checkpoints,
    start_problem,
    supervisor_key,
)
from .snapshot import Snapshots
from .staff import Staff
from .uplink import Uplink
from .views import RoomViews

log = logging.getLogger(__name__)
BATCH = 200  # messages per journal transaction at most (bounds the wait of an urgent one)
# Messages waiting for the worker at most. Beyond it paho's network thread waits, stops
# reading the socket and so the broker keeps (and does not yet PUBACK) the rest: memory stays
# bounded and nothing is dropped by us. Several seconds of the busiest site's traffic.
INBOX_MAX = 10_000
# How long one wait for room lasts before the network thread sends what the worker queued
# meanwhile (acks, alerts) and checks for a stop.
INBOX_WAIT_S = 0.02
RULE_TICK_S = 0.1  # real seconds between full ticks (views, time-based rules, checkpoint)


def default_key_file(site: Site, checkpoint_file: Path, given: str | Path | None,
                     db: str | Path) -> Path:
    """Where the checkpoint key is read: given, the site's, else a one-time key whose
    legacy `<db>.key` copy (beside the journal, where it must not stay) is moved there."""
    path = Path(given or site.supervisor.checkpoint_key_file or
                checkpoint_file.parent / "checkpoint.key")
    legacy = Path(str(db) + ".key")
    if legacy.exists() and not path.exists() and legacy.resolve() != path.resolve():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(legacy, path)
        log.warning("moved the checkpoint key from %s (beside the journal) to %s", legacy, path)
    return path


class Supervisor:
    """One site's supervisor: journal, state, ingest, alerts, staff commands, roster."""

    def __init__(self, site: Site, keys: dict[str, bytes], db: str | Path,
                 checkpoint_file: str | Path, link: LinkConf, clock: Clock,
                 checkpoint_interval_s: float | None = None,
                 checkpoint_key: str | Path | None = None,
                 accounts: Directory | str | Path | None = None,
                 broker_log: str | Path | None = None,
                 evidence_cache: str | Path | None = None,
                 evidence_cache_bytes: int = CACHE_BYTES,
                 evidence_timeout_s: float = FETCH_TIMEOUT_S) -> None:
        self.site, self.clock, self.link = site, clock, link
        self.topics = Topics(site.id, site.topic_prefix)
        self.node_keys = {n: k for n, k in keys.items() if n != SUPERVISOR_NODE}
        self.journal = Journal(db)
        # The bureau uplink reads the journal and checkpoint file on its own connection.
        self.uplink = (Uplink(site.id, db, checkpoint_file, site.bureau)
                       if site.bureau is not None else None)
        self.checkpoint_file = Path(checkpoint_file)
        self.key = supervisor_key(keys, default_key_file(site, self.checkpoint_file,
                                                         checkpoint_key, db), db)
        # A journal shorter than, or not extending, what was signed before is not continued.
        self.refusal = start_problem(self.journal, self.key,
                                     read_checkpoints(self.checkpoint_file))
        self.checkpoint_interval_s = float(checkpoint_interval_s or
                                           site.supervisor.checkpoint_interval_s)
        # State (and the ingest replay window) is a pure function of the journal: the newest
        # good snapshot plus the entries after it, in one pass (supervisor/snapshot.py).
        self.snapshots = Snapshots(site, db, self.checkpoint_file, self.key,
                                   site.supervisor.snapshot_every)
        rebuilt = self.snapshots.load(self.journal)
        self.state = rebuilt.state
        self.state.grace_all(clock.now_ms())  # arrival times are not journaled
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(INBOX_MAX)
        self.inbox_full = 0  # times the network thread had to wait for room (back-pressure)
        self.dropped_at_stop = 0  # not taken because we were stopping (never acked: resent)
        self.requests: queue.Queue[tuple[str, bytes]] = queue.Queue()  # staff, ahead of nodes
        self.errors = CallbackErrors()
        self.client = make_client(f"custody-supervisor-{site.id}", link, clean_start=False,
                                  will=(self.topics.supervisor("availability"), b"offline", True))
        # No cap on QoS 1 messages in flight: an ack per node per batch is hundreds at once
        # for a large site, and under a cap paho re-scans every queued message on each PUBACK
        # (10 % of the supervisor's CPU at 1,000 rooms). They are held in memory until their
        # PUBACK either way; the journal is what makes them durable.
        self.client.max_inflight_messages_set(0)
        self.client.on_connect = self.errors.guard(self._on_connect)
        self.client.on_message = self.errors.guard(self._on_message)
        self.client.on_subscribe = self.errors.guard(self._on_subscribe)
        self.connected = threading.Event()
        # Set once the broker has acknowledged our subscriptions: before that a staff request
        # or an event published on another connection has nobody to go to.
        self.subscribed = threading.Event()
        self.ingest = Ingest(self.journal, self.state, self.topics, self.node_keys, self.publish,
                             clock.now_ms, window=rebuilt.window)
        self.alerts = AlertManager(self.state, self.journal, self.topics, self.publish)
        # The staff directory (supervisor/accounts.py): MQTT requests and the desk both act
        # through it; without one every staff request is refused (no account is known).
        self.accounts = (accounts if isinstance(accounts, Directory) else
                         Directory(accounts) if accounts is not None else
                         Directory.from_records({}))
        self.accounts.on_lockout = self._lockout
        self.staff = Staff(self.state, self.journal, self.alerts, clock.now_ms, self.accounts)
        # Work other threads hand to the worker (the desk's commands, lockout alerts).
        self.tasks: queue.Queue[Callable[[], None]] = queue.Queue()
        self.retained_requests: queue.Queue[tuple[str, bytes]] = queue.Queue()
        # Evidence clips fetched from nodes for views staff made (supervisor/evidence.py),
        # cached in the supervisor's data directory, beside the journal.
        self.evidence = EvidenceService(
            self.state, self.journal, self.topics, self.node_keys, self.publish, clock.now_ms,
            self.tasks.put, evidence_cache or Path(db).parent / "evidence-cache",
            evidence_cache_bytes, evidence_timeout_s)
        self._accounts_checked = 0.0
        self.degraded = Degraded(self.topics, self.publish)
        self.health = HealthPublisher()
        self.last_checkpoint: dict[str, Any] | None = None
        # Mosquitto's log, for refused broker logins (it tells nobody else about them).
        self.broker_log = BrokerLogWatch(broker_log) if broker_log is not None else None
        self._roster_published = -1
        self.room_views = RoomViews(self.state, self.topics, self.publish)
        self._detainees_published: dict[str, Any] = {}
        self._last_checkpoint = 0.0
        self.stop_event = threading.Event()
        self.desk: Any = None  # supervisor.desk.Desk when serving one; fed from tick/publish

    # ---- MQTT ----------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        t = self.topics
        self.subscribed.clear()
        client.subscribe([(t.node_filter("event"), 1), (t.node_filter("availability"), 1),
                          (t.node_filter("health"), 1), (t.node_filter("evidence-data"), 1),
                          # QoS 0: the persistent session must not keep staff requests while
                          # we are down, or a command the tool gave up on would apply later.
                          (t.request_filter(), 0)])
        client.publish(t.supervisor("availability"), b"online", qos=1, retain=True)
        self.connected.set()
        log.info("connected to %s:%d", self.link.host, self.link.port)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/evidence-data"):  # video for a fetch, never journaled
            self.evidence.on_data(msg.topic, bytes(msg.payload))
            return
        if msg.retain and msg.topic.startswith(f"{self.topics.base}/request/"):
            # A retained request would be replayed by the broker at every (re)subscribe.
            self.retained_requests.put((msg.topic, bytes(msg.payload)))
            return
        if "/request/" in msg.topic and self.inbox.qsize() > BATCH:
            # Behind a backlog (a flood, a fleet catching up) staff go first: a person's
            # request must not wait for it. Otherwise arrival order holds, so a request sees
            # the events sent before it. The empty item only wakes the worker.
            self.requests.put((msg.topic, bytes(msg.payload)))
            with contextlib.suppress(queue.Full):  # a full inbox wakes the worker anyway
                self.inbox.put_nowait(("", b""))
            return
        self._enqueue((msg.topic, bytes(msg.payload)))

    def _enqueue(self, item: tuple[str, bytes]) -> None:
        """Queue a message for the worker, waiting while the inbox is full (back-pressure).

        The wait is on paho's network thread, the only one that writes to the socket, so
        while waiting it sends what the worker published meanwhile. Otherwise acks and
        alerts pile up unsent (an alert waits seconds), and so do their PUBACKs: paho keeps
        each QoS 1 message until its PUBACK and reads one packet per message it keeps
        before it next writes, so the pile fed itself (+15 MB/min at 1,000 rooms).
        """
        try:
            self.inbox.put_nowait(item)
            return
        except queue.Full:
            self.inbox_full += 1
        while True:
            self.client.loop_write()  # on the network thread, as paho's own loop calls it
            try:
                self.inbox.put(item, timeout=INBOX_WAIT_S)
                return
            except queue.Full:
                if self.stop_event.is_set():  # the worker has stopped taking: never acked,
                    self.dropped_at_stop += 1  # so the node's outbox sends it again
                    return

    # ---- other threads' work for the worker ------------------------------------------------

    def submit(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run `fn` on the worker thread and return its result (for the desk's threads)."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def task() -> None:
            try:
                box["value"] = fn()
            except BaseException as e:  # handed back to the caller's thread
                box["error"] = e
            finally:
                done.set()

        self.tasks.put(task)
        with contextlib.suppress(queue.Full):  # wake the worker (a full inbox wakes it anyway)
            self.inbox.put_nowait(("", b""))
        if not done.wait(timeout):
            raise TimeoutError("the supervisor's worker did not run the task in time")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _watch_broker_log(self) -> None:
        if self.broker_log is None:
            return
        for address, failures in self.broker_log.poll():
            entry = self.journal.append_own("login", {"ts": self.clock.now_ms(), "user": None,
                                                      "address": address,
                                                      "failures": failures, "where": "broker"})
            self.state.apply(entry)

    def _lockout(self, user: str, failures: int, where: str = "desk") -> None:
        """An account was locked (called on any thread): journal it on the worker."""
        def task() -> None:
            entry = self.journal.append_own("login", {"ts": self.clock.now_ms(), "user": user,
                                                      "failures": failures, "where": where})
            self.state.apply(entry)
        self.tasks.put(task)

    def address_lockout(self, address: str, accounts: list[str]) -> None:
        """The desk refused sign-ins from `address` for a while (any thread): journal it on
        the worker, which raises login-locked naming the address and the accounts tried."""
        def task() -> None:
            entry = self.journal.append_own("login", {
                "ts": self.clock.now_ms(), "user": None, "address": address[:64],
                "failures": len(accounts), "where": "desk",
                "accounts": sorted({a[:64] for a in accounts})[:20]})
            self.state.apply(entry)
        self.tasks.put(task)

    def _tasks_now(self) -> None:
        """Other threads' tasks between ticks (a failed journal write: degraded, as tick())."""
        try:
            self._run_tasks()
        except Exception as e:
            if not is_storage_error(e):
                raise
            self.degraded.failed(e, self.clock.now_ms())

    def _run_tasks(self) -> None:
        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                break
            task()
        while True:
            try:
                topic, payload = self.retained_requests.get_nowait()
            except queue.Empty:
                break
            try:
                parsed = self.topics.parse(topic)
            except TopicError:
                self.publish(topic, b"", 1, True)
                continue
            user = parsed.subject or "?"
            resp = self.staff.handle(user, parsed.channel, payload, retained=True)
            self.publish(self.topics.response(user, parsed.channel), resp, 1, False)
            self.publish(topic, b"", 1, True)  # clear it from the broker's store

    def _sync_accounts(self) -> None:
        """Re-read the account directory when its file changed; journal new history."""
        if time.monotonic() - self._accounts_checked < 1.0:
            return
        self._accounts_checked = time.monotonic()
        try:
            self.accounts.reload()
        except (AccountError, OSError) as e:
            log.error("account directory not reloaded (keeping the last good one): %s", e)
        self.staff.sync_accounts()
        self._watch_broker_log()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool
                ) -> mqtt.MQTTMessageInfo:
        """Publish through the supervisor's client (queued by paho while disconnected)."""
        if self.desk is not None:  # the desk pushes the same changes to its browsers
            self.desk.published(topic, payload, self.state.count)
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    # ---- the worker ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background."""
        # In a simulated run, custody time waits while the inbox holds more than one batch.
        hold_while(lambda: self.inbox.qsize() < BATCH)
        self.client.connect_async(self.link.host, self.link.port, self.link.keepalive_s)
        self.client.loop_start()

    def run(self) -> None:
        """Work until stop_event is set, then stop cleanly."""
        if self.refusal is not None:
            self._refuse()
            return
        self.start()
        if self.uplink is not None:
            self.uplink.start()
        try:
            resent = self.alerts.resend_pending()
            if resent:
                log.warning("re-sending %d alert message(s) journaled before a crash", resent)
            self.alerts.snapshot_dirty = True
            last_tick = 0.0
            while not self.stop_event.is_set():
                # Whatever has arrived is handled at once as one group (one transaction, one
                # fsync, then acks) and the rules run on it straight away: an urgent event
                # never waits for a batch to fill or for the next tick. Views, time-based
                # rules, checkpoints and the rest run every RULE_TICK_S.
                wait = max(0.0, last_tick + RULE_TICK_S - time.monotonic())
                if self.desk is not None:  # a changed alert for the desk's pages
                    wait = min(wait, self.desk.due_in())
                if self.step(timeout=wait) > 0:
                    self.react()
                if not self.tasks.empty():  # a desk action: at once, not at the next tick
                    self._tasks_now()
                if time.monotonic() - last_tick >= RULE_TICK_S:
                    self.tick()
                    last_tick = time.monotonic()
                elif self.desk is not None and self.desk.due_in() == 0:
                    self.desk.refresh(self.clock.now_ms())
        finally:
            self.close()

    def _refuse(self) -> None:
        """Say on MQTT why we will not run, then stop: staff must see it, not a silence."""
        log.critical("refusing to continue over this journal: %s", self.refusal)
        self.start()
        self.connected.wait(5.0)
        now = self.clock.now_ms()
        msg = {"id": f"security-journal-{now}", "rule": "security", "state": "raised",
               "severity": "critical", "detainee": None, "room": None, "raised_ts": now,
               "ts": now, "by": None, "action": None,
               "message": f"supervisor refuses to start: {self.refusal}"}
        infos = [self.publish(self.topics.alert("critical", "security"), dumpb(msg), 1, False),
                 self.publish(self.topics.supervisor("availability"), b"refused", 1, True)]
        for info in infos:
            if self.connected.is_set():
                info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()
        self.journal.close()

    def step(self, timeout: float = 0.05) -> int:
        """Take up to BATCH queued messages and handle them; return how many."""
        items: list[tuple[str, bytes]] = []
        with contextlib.suppress(queue.Empty):
            while True:
                items.append(self.requests.get_nowait())
        try:
            items.append(self.inbox.get(timeout=timeout) if timeout > 0 and not items else
                         self.inbox.get_nowait())
            while len(items) < BATCH:
                items.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        node_items = []
        for topic, payload in items:
            if not topic:
                continue
            try:
                parsed = self.topics.parse(topic)
            except TopicError:
                node_items.append((topic, payload))
                continue
            if parsed.kind == "request":
                if node_items:
                    self._ingest(node_items)
                    node_items = []
                user = parsed.subject or "?"  # the login the broker's ACL bound in the topic
                resp = self._staff(user, parsed.channel, payload)
                rtopic = self.topics.response(user, parsed.channel)
                if parsed.channel == "view-evidence" and self.evidence.defer(
                        user, resp, self._responder(rtopic)):
                    continue  # answered when the clip is fetched and checked
                self.publish(rtopic, resp, 1, False)
            elif parsed.kind == "node":
                node_items.append((topic, payload))
        if node_items:
            self._ingest(node_items)
        return len(items)

    def _responder(self, topic: str) -> Callable[[bytes], Any]:
        """Publishes a later answer on `topic` (a view-evidence answered after its fetch)."""
        return lambda payload: self.publish(topic, payload, 1, False)

    # ---- a journal that cannot be written (supervisor/degraded.py) ------------------------

    def _ingest(self, items: list[tuple[str, bytes]]) -> None:
        try:
            self.ingest.process(items)
        except Exception as e:
            if not is_storage_error(e):
                raise
            self.degraded.dropped += len(items)  # unacked: the nodes' outboxes resend them
            self.degraded.failed(e, self.clock.now_ms())

    def _staff(self, user: str, command: str, payload: bytes) -> bytes:
        try:
            return self.staff.handle(user, command, payload)
        except Exception as e:
            if not is_storage_error(e):
                raise
            self.degraded.refused += 1
            self.degraded.failed(e, self.clock.now_ms())
            return refusal(payload, f"supervisor degraded: its journal cannot be written ({e})"
                           "; nothing was done, try again when it recovers")

    def _storage_probe(self) -> None:
        """While degraded: journal the outage; the first write that succeeds ends it."""
        now = self.clock.now_ms()
        try:
            entry = self.journal.append_own("security", self.degraded.record(now))
        except Exception as e:
            if not is_storage_error(e):
                raise
            self.degraded.failed(e, now)
            return
        self.state.apply(entry)
        self.degraded.recovered(now)

    def react(self) -> None:
        """The rules over what a batch just journaled (its alerts journaled, then published)."""
        if self.degraded.active:
            return  # tick() probes the storage; nothing new was journaled meanwhile
        now = self.clock.now_ms()
        try:
            # Alert messages the broker has confirmed leave `pending` first: the sooner they
            # do, the smaller the window in which a crash makes a restart send one again.
            self.alerts.confirm(self.connected.is_set())
            self.state.advance_marks(now)  # as tick() does: the rules judge the same marks
            self.alerts.reconcile(now)  # (the desk hears of what changed through publish())
        except Exception as e:
            if not is_storage_error(e):
                raise
            self.degraded.failed(e, self.clock.now_ms())
            return

    def tick(self) -> None:
        """Rules, alerts, retained snapshots, roster and checkpoint (degraded: see _tick)."""
        try:
            if self.degraded.active:
                self._storage_probe()
            self._tick()
        except Exception as e:
            if not is_storage_error(e):
                raise
            self.degraded.failed(e, self.clock.now_ms())
        if self.health.due():  # degraded or not: this is how an operator sees it
            self.publish(self.topics.supervisor("health"),
                         dumpb(health_body(self, self.clock.now_ms())), 1, True)

    def _tick(self) -> None:
        self._run_tasks()
        self._sync_accounts()
        now = self.clock.now_ms()
        self.ingest.housekeeping()  # journal the counts of repeated rejections
        self.staff.housekeeping()  # and of throttled accounts' requests
        self.state.advance_marks(now)
        self.alerts.reconcile(now)
        self.alerts.confirm(self.connected.is_set())
        self.alerts.publish_snapshot(now)
        self.room_views.publish_changed(now)
        self._publish_detainees(now)
        self._publish_roster(now)
        if self.desk is not None:
            self.desk.refresh(now)
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_interval_s:
            self.write_checkpoint()

    def write_checkpoint(self) -> bytes:
        """Sign (count, head), file it and publish it retained."""
        data = checkpoint(self.key, self.journal.count, self.journal.head, self.clock.now_ms())
        append_checkpoint(self.checkpoint_file, data)
        self.last_checkpoint = {"count": self.journal.count, "head": self.journal.head.hex(),
                                "ts": self.clock.now_ms()}
        self.publish(self.topics.supervisor("checkpoint"), data, 1, True)
        self._last_checkpoint = time.monotonic()
        self.snapshots.checkpointed(self.journal, self.state, self.clock.now_ms())
        return data

    def _publish_detainees(self, now: int) -> None:
        for c in self.state.detainees.values():
            status = ("exited" if c.exit_ms is not None else
                      "temporary-exit" if c.temp_out is not None else "in-custody")
            view = {"detainee": c.id, "case": c.case, "status": status,
                    "room": c.visit.room if c.visit is not None else None,
                    "custody_type": c.custody_type, "observation": c.observation,
                    "arrived_ts": c.arrived_ms, "registered_ts": c.registered_ms,
                    "searched": c.search is not None and c.search["result"] == "completed",
                    "belongings_logged": bool(c.belongings),
                    "last_welfare_ts": c.last_verified_ms or None,
                    "disposition": c.disposition["disposition"] if c.disposition else None,
                    "exit_ts": c.exit_ms}
            if self._detainees_published.get(c.id) != view:
                self._detainees_published[c.id] = view
                self.publish(self.topics.state("detainee", c.id), dumpb({**view, "ts": now}), 1,
                             True)
        if len(self._detainees_published) > len(self.state.detainees):
            # Records that left memory (live mode): their last view ("exited") stays retained
            # at the broker; only our copy goes.
            for gone in [d for d in self._detainees_published if d not in self.state.detainees]:
                del self._detainees_published[gone]

    def roster_body(self) -> dict[str, Any]:
        """The band roster every node gets."""
        bands: dict[str, Any] = {}
        for band, p in sorted(self.state.bands.items()):
            entry = {"role": p.role, "sex": p.sex, "person": p.person}
            if p.case is not None:
                entry["case"] = p.case
            bands[band] = entry
        return {"version": self.state.roster_version, "bands": bands}

    def _publish_roster(self, now: int) -> None:
        version = self.state.roster_version
        if version == self._roster_published or version == 0:
            return
        body = self.roster_body()
        for node in sorted(self.node_keys):
            try:
                topic = self.topics.node(node, "roster")
            except TopicError:
                continue
            self.publish(topic, seal(self.node_keys[node], node, 1, version, now, "roster",
                                     body), 1, True)
        self._roster_published = version

    def close(self) -> None:
        """Final checkpoint, 'offline', disconnect, close the journal."""
        log.info("longest transport lag: %d ms custody time (node stamp to journal)",
                 self.ingest.max_lag_ms)
        self.snapshots.close()
        try:
            if self.connected.is_set():  # let in-flight alert messages be confirmed
                deadline = time.monotonic() + 2.0
                self.alerts.confirm()  # re-sends what paho refused to queue
                for _pid, _topic, _payload, pinfo in self.alerts.unconfirmed:
                    if delivery(pinfo) == "waiting":
                        pinfo.wait_for_publish(max(0.0, deadline - time.monotonic()))
            self.alerts.confirm(self.connected.is_set())
            try:
                self.write_checkpoint()
            except Exception as e:  # a full disk must not keep us from saying `offline`
                if not is_storage_error(e):
                    raise
                log.error("final checkpoint not written: %s", e)
            info = self.client.publish(self.topics.supervisor("availability"), b"offline", qos=1,
                                       retain=True)
            if self.connected.is_set():
                info.wait_for_publish(timeout=2.0)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            if self.uplink is not None:
                self.uplink.stop()
            self.journal.close()
