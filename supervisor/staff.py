"""Staff commands: check the whole request against the state, journal it, answer.

A request is parsed (protocol.staff) and checked against the current state before anything
changes; a refused command gets `ok: false` with an error naming the problem and changes
nothing. An accepted one is journaled (kind "staff", with the user who did it) and folded into
the state; alert commands then journal the alert's lifecycle change.
"""

from collections.abc import Callable
from typing import Any

from protocol.staff import StaffError, parse_request, response_payload

from .alerts import AlertError, AlertManager
from .journal import Journal
from .state import State

ALERT_COMMANDS = ("ack-alert", "resolve-alert", "false-alarm")


def check(state: State, command: str, user: str, a: dict[str, Any], now_ms: int) -> None:
    """Raise StaffError when the command cannot apply to the state as it is."""
    def detainee_in_custody() -> None:
        c = state.detainees.get(a["detainee"])
        if c is None:
            raise StaffError(f"{command}: detainee {a['detainee']!r} is not registered")
        if not c.in_custody:
            raise StaffError(f"{command}: detainee {a['detainee']!r} has already left custody")

    if command == "register-detainee":
        c = state.detainees.get(a["detainee"])
        if c is not None and c.in_custody:
            raise StaffError(f"register-detainee: detainee {a['detainee']!r} is already in "
                             "custody")
        if a["band"] in state.bands:
            p = state.bands[a["band"]]
            raise StaffError(f"register-detainee: band {a['band']} is in use by {p.role} "
                             f"{p.person}")
        try:
            state.rules.custody_type(a["custody_type"])
        except KeyError:
            known = ", ".join(t.id for t in state.rules.custody_types)
            raise StaffError(f"register-detainee: custody_type {a['custody_type']!r} unknown "
                             f"(one of {known})") from None
        if "arrived_ts" in a and a["arrived_ts"] > now_ms:
            raise StaffError("register-detainee: arrived_ts is in the future")
    elif command == "register-officer":
        holder = state.bands.get(a["band"])
        if holder is not None and holder.person != a["officer"]:
            raise StaffError(f"register-officer: band {a['band']} is in use by {holder.role} "
                             f"{holder.person}")
    elif command in ("log-case-property",):
        if a["item"] in state.property:
            raise StaffError(f"log-case-property: item {a['item']!r} is already logged")
        if "detainee" in a and a["detainee"] not in state.detainees:
            raise StaffError(f"log-case-property: detainee {a['detainee']!r} is not registered")
    elif command in ("property-out", "property-in"):
        item = state.property.get(a["item"])
        if item is None:
            raise StaffError(f"{command}: item {a['item']!r} is not logged")
        if command == "property-out" and item["out"] is not None:
            raise StaffError(f"property-out: item {a['item']!r} is already out")
        if command == "property-in" and item["out"] is None:
            raise StaffError(f"property-in: item {a['item']!r} is not out")
        if command == "property-out" and a["due_ts"] <= now_ms:
            raise StaffError("property-out: due_ts must be in the future")
    elif command in ALERT_COMMANDS:
        pass  # checked by the alert manager
    elif command == "view-evidence":
        # The node side and the protocol exist (edge_agent/recording, protocol/evidence.py);
        # the role check and the fetch from the node belong with staff identity (issue 13).
        raise StaffError("view-evidence: not served by this supervisor yet")
    else:
        detainee_in_custody()
        c = state.detainees[a["detainee"]]
        if command == "approve-temporary-exit":
            if c.temp_out is not None:
                raise StaffError(f"approve-temporary-exit: {c.id} is already out")
            if a["return_by_ts"] <= now_ms:
                raise StaffError("approve-temporary-exit: return_by_ts must be in the future")
        elif command == "approve-extension":
            allowed = state.rules.custody_type(c.custody_type).extended_h
            if a["hours"] not in allowed:
                raise StaffError(f"approve-extension: hours must be one of "
                                 f"{list(allowed) or 'none (no extension for this type)'}")
        elif command == "approve-disposition" and c.disposition is not None:
            raise StaffError(f"approve-disposition: {c.id} already has disposition "
                             f"{c.disposition['disposition']}")


class Staff:
    """Handles request/<command> payloads and produces response payloads."""

    def __init__(self, state: State, journal: Journal, alerts: AlertManager,
                 now_ms: Callable[[], int]) -> None:
        self.state, self.journal, self.alerts, self.now_ms = state, journal, alerts, now_ms
        self.refused = 0

    def handle(self, command: str, payload: bytes) -> bytes:
        """Apply one request; return the response payload."""
        txn = "?"
        try:
            req = parse_request(command, payload)
            txn = req.txn
            if txn in self.state.txns:  # a retried request applies once, across restarts too
                return response_payload(txn, True, None, {"journal": self.state.txns[txn],
                                                          "duplicate": True})
            now = self.now_ms()
            check(self.state, command, req.user, req.args, now)
            if command in ALERT_COMMANDS:
                self.alerts.check_action(command, req.args["alert"])
        except (StaffError, AlertError) as e:
            self.refused += 1
            return response_payload(txn if isinstance(txn, str) else "?", False, str(e))
        entry = self.journal.append_own("staff", {"command": command, "txn": req.txn,
                                                  "user": req.user, "args": req.args, "ts": now})
        self.state.apply(entry)
        result: dict[str, Any] = {"journal": entry.idx}
        if command in ALERT_COMMANDS:
            text = req.args.get("action") or req.args.get("note") or ""
            a = self.alerts.staff_action(command, req.args["alert"], req.user, text, now)
            result["alert"] = {k: a.get(k) for k in ("id", "rule", "state", "by", "action")}
        return response_payload(req.txn, True, None, result)
