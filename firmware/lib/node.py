# The sensor node's main loop: inputs -> signed events in the flash outbox -> MQTT, with
# the supervisor's verified acks clearing the outbox. Everything runs in one loop that
# feeds the watchdog; nothing in it blocks for long except a broker that stops answering,
# which the watchdog turns into a reset (the outbox survives it).
import time

import envelope
import fwclock
import fwconfig
from inputs import Button, Door
from link import Link, tls_context
from flash_outbox import Outbox

INFLIGHT_MAX = 16  # events published but not yet acked, resent after resend_s
READER_RECOVERED_MS = 30000  # no checksum error for this long (real ms): the reader fault ends


class Node:
    def __init__(self, cfg, wdt=None):
        self.cfg = cfg
        self.wdt = wdt
        base = "%s/%s/node/%s/" % (cfg.topic_prefix, cfg.site, cfg.node)
        self.base = "%s/%s" % (cfg.topic_prefix, cfg.site)
        self.topics = {ch: base + ch for ch in ("event", "ack", "roster", "availability",
                                                "health")}
        self.keys = {cfg.node: cfg.key}
        self.outbox = Outbox(cfg.outbox_dir, cfg.key, cfg.node, cfg.epoch, cfg.outbox_max)
        self.doors = [Door(d, p, al, db) for d, p, al, db in cfg.doors]
        self.buttons = [Button(b, k, p, al) for b, k, p, al in cfg.buttons]
        self.reader = None
        if cfg.reader is not None:
            from machine import UART
            from rdm6300 import Reader
            rid, uart_id, rx, tx, door, repeat_ms = cfg.reader
            self.reader_id, self.reader_door = rid, door
            self.reader = Reader(UART(uart_id, baudrate=9600, rx=rx, tx=tx), repeat_ms)
        tls = None
        if cfg.ca_der:
            tls = tls_context(_read(cfg.ca_der), _read(cfg.cert_der) if cfg.cert_der else None,
                              _read(cfg.key_der) if cfg.key_der else None)
        self.link = Link(cfg, self.topics, self._on_message, tls)
        self.sent = {}  # (epoch, seq) -> ticks of last publish
        self.started = time.ticks_ms()
        self.next_health = time.ticks_ms()
        self.counts = {"acked": 0, "bad_ack": 0, "bad_roster": 0, "published": 0,
                       "resent": 0, "reader_errors": 0}
        self.roster_version = -1
        self.roster_bands = 0
        self._reader_fault_at = None
        self._reader_err_at = time.ticks_ms()

    # --- incoming -------------------------------------------------------------------
    def _on_message(self, topic, msg):
        topic = topic.decode() if isinstance(topic, bytes) else topic
        if topic == self.topics["ack"]:
            try:
                env = envelope.verify(msg, self.keys, self.cfg.node)
                if env["type"] != "ack":
                    raise envelope.VerifyError("bad_field", "not an ack")
            except envelope.VerifyError as e:
                self.counts["bad_ack"] += 1
                print("ack refused: %s" % e)
                return
            body = env["body"]
            n = self.outbox.ack(body["epoch"], body["seqs"])
            self.counts["acked"] += n
            for s in body["seqs"]:
                self.sent.pop((body["epoch"], s), None)
        elif topic == self.topics["roster"]:
            try:
                env = envelope.verify(msg, self.keys, self.cfg.node)
                if env["type"] != "roster":
                    raise envelope.VerifyError("bad_field", "not a roster")
            except envelope.VerifyError as e:
                self.counts["bad_roster"] += 1
                print("roster refused: %s" % e)
                return
            if env["body"]["version"] >= self.roster_version:
                self.roster_version = env["body"]["version"]
                self.roster_bands = len(env["body"]["bands"])

    # --- outgoing -------------------------------------------------------------------
    def emit(self, event_type, body, must_keep=False):
        """Commit one event to the outbox (it is published from there)."""
        key = self.outbox.append(event_type, body, must_keep)
        print("event %s %r -> %r" % (event_type, body, key))
        return key

    def poll_inputs(self):
        for d in self.doors:
            s = d.poll()
            if s is not None:
                self.emit("door", {"door": d.id, "state": s})
        for b in self.buttons:
            for _ in range(b.poll()):
                # A panic press is kept even when the outbox is full: it is never muted.
                self.emit("button", {"button": b.id, "kind": b.kind, "room": self.cfg.room},
                          must_keep=True)
        if self.reader is not None:
            for band in self.reader.poll():
                body = {"band": band, "reader": self.reader_id, "room": self.cfg.room}
                if self.reader_door:
                    body["door"] = self.reader_door
                self.emit("tap", body)
            now = time.ticks_ms()
            if self.reader.errors != self.counts["reader_errors"]:
                self.counts["reader_errors"] = self.reader.errors
                self._reader_err_at = now
                if self._reader_fault_at is None or time.ticks_diff(now, self._reader_fault_at) > 60000:
                    phase = "new" if self._reader_fault_at is None else "update"
                    self._reader_fault_at = now
                    self.emit("fault", {"id": self.reader_id + "-frames", "phase": phase,
                                        "device": self.reader_id, "kind": "checksum",
                                        "count": self.reader.errors})
            elif (self._reader_fault_at is not None
                  and time.ticks_diff(now, self._reader_err_at) > READER_RECOVERED_MS):
                # Clean frames for a while: the reader recovered, so the fault ends (an open
                # fault that never ends would keep its alert, and its id, for ever).
                self._reader_fault_at = None
                self.emit("fault", {"id": self.reader_id + "-frames", "phase": "end",
                                    "device": self.reader_id, "kind": "checksum",
                                    "count": self.reader.errors})

    def send_pending(self):
        now = time.ticks_ms()
        resend_ms = self.cfg.resend_s * 1000
        for key in list(self.outbox.pending):
            if key not in self.outbox.pending:
                continue  # acked (and deleted) while an earlier publish waited for its PUBACK
            last = self.sent.get(key)
            if last is not None and time.ticks_diff(now, last) < resend_ms:
                continue
            if last is None and len(self.sent) >= INFLIGHT_MAX:
                break
            if self.wdt is not None:
                self.wdt.feed()
            self.link.publish(self.topics["event"], self.outbox.read(key[0], key[1]))
            if last is None:
                self.counts["published"] += 1
            else:
                self.counts["resent"] += 1
            self.sent[key] = time.ticks_ms()
            if key not in self.outbox.pending:  # acked while we waited for the PUBACK
                self.sent.pop(key, None)

    def health(self):
        body = {"uptime_s": time.ticks_diff(time.ticks_ms(), self.started) // 1000,
                "queue": len(self.outbox.pending),
                "obj": {"epoch": self.outbox.epoch, "seq": self.outbox.seq,
                        "dropped": self.outbox.dropped, "connects": self.link.connects,
                        "connect_failures": self.link.failures,
                        "nodelay": self.link.nodelay, "roster_version": self.roster_version,
                        "roster_bands": self.roster_bands}}
        for k in self.counts:
            body["obj"][k] = self.counts[k]
        payload = envelope.seal(self.cfg.key, self.cfg.node, self.outbox.epoch, 0,
                                fwclock.now_ms(), "health", body)
        self.link.publish(self.topics["health"], payload, True)

    def step(self):
        """One pass of the main loop."""
        if self.wdt is not None:
            self.wdt.feed()
        self.poll_inputs()
        if self.link.due():
            if self.wdt is not None:
                self.wdt.feed()
            if self.link.connect():
                self.sent = {}  # the new connection gets everything unacked again
                self.next_health = time.ticks_ms()
        if not self.link.up:
            return
        try:
            self.send_pending()
            self.link.service()
            if time.ticks_diff(time.ticks_ms(), self.next_health) >= 0:
                self.health()
                self.next_health = time.ticks_add(time.ticks_ms(),
                                                  self.cfg.health_interval_s * 1000)
        except Exception as e:  # a broken link shows up as OSError or MQTTException
            self.link.fail(e)

    def run(self):
        while True:
            self.step()
            time.sleep_ms(self.cfg.poll_ms)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def main(config_path="config.json"):
    """Load config, start the watchdog and run forever."""
    cfg = fwconfig.load(config_path)
    wdt = None
    if cfg.watchdog_ms > 0:
        from machine import WDT
        wdt = WDT(timeout=cfg.watchdog_ms)
    Node(cfg, wdt).run()
