"""Alert lifecycle: raise, update, escalate, acknowledge, resolve, false alarm.

Every change is journaled first (kind "alert", the message itself), folded into the state,
then published on alert/<severity>/<rule> (QoS 1, not retained); the retained state/alerts
snapshot follows. Because the state knows every alert id ever raised (rebuilt by replay: the
alert itself, or in live mode the tombstone a closed one leaves), an id is never raised twice,
across restarts too.
"""

import time
from collections.abc import Callable
from typing import Any

from paho.mqtt.enums import MQTTErrorCode

from protocol.canonical import dumpb
from protocol.topics import SEVERITIES, Topics

from .journal import Journal
from .rules import Desired, evaluate
from .rules.incremental import Evaluator
from .state import State

Publish = Callable[[str, bytes, int, bool], Any]  # may return a paho MQTTMessageInfo
CLOSED = ("resolved", "false_alarm")
# A retained state/alerts still unconfirmed after this long no longer holds back a newer one
# (paho re-sends it after a reconnect; this only bounds how stale the retained view can get).
SNAPSHOT_WAIT_S = 30.0


class AlertError(ValueError):
    """A staff action on an alert that does not exist or is in the wrong state."""


def rank(severity: str) -> int:
    """0 info, 1 warning, 2 critical."""
    return SEVERITIES.index(severity)


def delivery(info: Any) -> str:
    """'delivered', 'waiting' or 'refused' (paho did not queue it: publish it again)."""
    if info is None:
        return "delivered"
    if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
        # Published while offline: paho keeps it queued and sends it on reconnect, but
        # is_published() raises for it forever; its own flag still turns True on the PUBACK.
        # Re-publishing it ourselves would put the alert on the wire twice.
        with info._condition:
            return "delivered" if info._published else "waiting"
    try:
        return "delivered" if info.is_published() else "waiting"
    except (RuntimeError, ValueError):
        return "refused"


class AlertManager:
    """Turns the rules' wanted alerts into lifecycle changes, journaled then published."""

    def __init__(self, state: State, journal: Journal, topics: Topics, publish: Publish,
                 evaluate_all: bool = False) -> None:
        self.state, self.journal, self.topics, self.publish = state, journal, topics, publish
        # The rules where something changed or a deadline came (rules/incremental.py), or,
        # with evaluate_all, every rule over the whole site each time (the reference).
        self.evaluator = None if evaluate_all else Evaluator(state)
        self.snapshot_dirty = True
        # The last retained state/alerts until the broker's PUBACK, and when it went out.
        self.snapshot_sent: tuple[Any, float] | None = None
        self.published = 0
        # (pending id, topic, payload, MQTTMessageInfo or None) until the broker's PUBACK.
        self.unconfirmed: list[tuple[int, str, bytes, Any]] = []

    def _change(self, alert: dict[str, Any], new_state: str, ts: int, **fields: Any) -> None:
        msg = {"id": alert["id"], "rule": alert["rule"], "state": new_state,
               "severity": alert["severity"], "detainee": alert["detainee"],
               "room": alert["room"], "raised_ts": alert["raised_ts"], "ts": ts,
               "message": alert["message"], "by": None, "action": None}
        if alert.get("evidence"):  # the node's clip around it (staff `view-evidence`)
            msg["evidence"] = alert["evidence"]
        msg.update(fields)
        topic, payload = self.topics.alert(msg["severity"], msg["rule"]), dumpb(msg)
        self.journal.begin()
        try:
            entry = self.journal.append_own("alert", msg)
            pid = self.journal.add_pending(topic, payload)
            self.journal.commit()
        except BaseException:
            self.journal.rollback()
            raise
        self.state.apply(entry)
        self.unconfirmed.append((pid, topic, payload, self.publish(topic, payload, 1, False)))
        self.published += 1
        self.snapshot_dirty = True

    def reconcile(self, now_ms: int) -> int:
        """Bring the alerts in line with the rules at `now_ms`; return changes made."""
        before = self.published
        wanted = (evaluate(self.state, now_ms) if self.evaluator is None
                  else self.evaluator.wanted(now_ms))
        alerts = self.state.alerts
        for d in wanted.values():
            a = alerts.get(d.id)
            if a is None:
                if d.id not in self.state.closed_alerts:  # closed and left memory: done
                    self._raise(d, now_ms)
            elif a["state"] not in CLOSED:
                if rank(d.severity) > rank(a["severity"]):
                    self._change(a, "escalated", now_ms, severity=d.severity, message=d.message)
                elif d.message != a["message"]:
                    self._change(a, "updated", now_ms, message=d.message)
        limit = self.state.rules.alert_escalate_after_s * 1000
        for a in self.state.open_alerts():
            if a["id"] not in wanted:
                self._change(a, "resolved", now_ms)
            elif (a.get("acked_ts") is None and not a.get("timer_escalated")
                  and now_ms - a["raised_ts"] >= limit):
                sev = SEVERITIES[min(rank(a["severity"]) + 1, len(SEVERITIES) - 1)]
                self._change(a, "escalated", now_ms, severity=sev, timer_escalated=True)
        return self.published - before

    def _raise(self, d: Desired, now_ms: int) -> None:
        alert = {"id": d.id, "rule": d.rule, "severity": d.severity, "detainee": d.detainee,
                 "room": d.room, "raised_ts": now_ms, "message": d.message}
        if d.evidence is not None:
            alert["evidence"] = d.evidence
        self._change(alert, "raised", now_ms)

    def resend_pending(self) -> int:
        """After a restart: publish alert messages journaled but never confirmed."""
        items = self.journal.pending()
        for pid, topic, payload in items:
            self.unconfirmed.append((pid, topic, payload, self.publish(topic, payload, 1, False)))
        return len(items)

    def confirm(self, connected: bool = True) -> None:
        """Forget messages the broker has acknowledged; re-send those paho refused to queue."""
        done: list[int] = []
        keep: list[tuple[int, str, bytes, Any]] = []
        for pid, topic, payload, info in self.unconfirmed:
            status = delivery(info)
            if status == "delivered":
                done.append(pid)
            elif status == "refused" and connected:
                keep.append((pid, topic, payload, self.publish(topic, payload, 1, False)))
            else:
                keep.append((pid, topic, payload, info))
        if done:
            self.journal.sent(done)
        self.unconfirmed = keep

    def staff_action(self, command: str, alert_id: str, user: str, text: str,
                     now_ms: int) -> dict[str, Any]:
        """ack-alert / resolve-alert / false-alarm by `user`; raise AlertError when refused."""
        self.check_action(command, alert_id)
        a = self.state.alerts[alert_id]
        new = {"ack-alert": "acknowledged", "resolve-alert": "resolved",
               "false-alarm": "false_alarm"}[command]
        self._change(a, new, now_ms, by=user, action=text or None)
        after = self.state.alert_record(alert_id)  # closed: may have left `alerts` (live)
        assert after is not None
        return dict(after)

    def check_action(self, command: str, alert_id: str) -> None:
        """Refuse an action on an unknown, closed or (for ack) already acknowledged alert."""
        a = self.state.alerts.get(alert_id)
        if a is None and alert_id in self.state.closed_alerts:
            closed = self.state.closed_alerts[alert_id]
            raise AlertError(f"alert {alert_id!r} is already {closed[0]}")
        if a is None:
            raise AlertError(f"alert {alert_id!r} does not exist")
        if a["state"] in CLOSED:
            raise AlertError(f"alert {alert_id!r} is already {a['state']}")
        if command == "ack-alert" and a.get("acked_ts") is not None:
            raise AlertError(f"alert {alert_id!r} was already acknowledged by {a['acked_by']}")

    def snapshot(self, now_ms: int) -> bytes:
        """The retained state/alerts payload."""
        active = [{k: a.get(k) for k in ("id", "rule", "state", "severity", "detainee", "room",
                                          "raised_ts", "ts", "message", "by", "action",
                                          "evidence")
                   if k != "evidence" or a.get(k)}
                  for a in self.state.open_alerts()]
        return dumpb({"ts": now_ms, "active": active})

    def publish_snapshot(self, now_ms: int) -> None:
        """Publish state/alerts (retained) if anything changed since the last one, one at a
        time: while the last is unconfirmed, the newer one waits (only the newest matters).

        Each is the whole list of open alerts (170 KB at 600 open). Under a backlog paho's
        network thread reads no PUBACK for a while, and a new copy every tick piled up in
        its queue: 69 copies, 12 MB, in 8 minutes of a 1,000-room run (tracemalloc)."""
        if not self.snapshot_dirty:
            return
        if self.snapshot_sent is not None:
            info, at = self.snapshot_sent
            if delivery(info) == "waiting" and time.monotonic() - at < SNAPSHOT_WAIT_S:
                return
        info = self.publish(self.topics.state("alerts"), self.snapshot(now_ms), 1, True)
        self.snapshot_sent = (info, time.monotonic())
        self.snapshot_dirty = False
