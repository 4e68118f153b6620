"""Staff commands: prove who acts, check their right and the whole request, journal, answer.

The actor is the account the broker authenticated (the `<user>` of `request/<user>/<cmd>`,
which the ACL binds to the login) or the desk's logged-in account; `Staff.execute` is the one
path both take. Before anything changes it checks, in order: the account exists and is
enabled; the arguments (protocol.staff); the transaction id; the role (roles.permitted); four
eyes for approvals; the state. A refused command changes nothing, is journaled as `refused`
(who, what, why) and answered `ok: false` with the reason. An accepted one is journaled
(kind "staff", with the account) and folded into the state.

Four eyes: the detainee's *team* is every account that registered them, recorded their
search or was named in it or present at it, logged their belongings, logged a welfare check
on them, or was present with them in an interview room (all read from the custody record).
Account ids and officer ids are one namespace: an officer's band is registered under their
account id. A team member may not approve that detainee's temporary exit, extension or
disposition, whatever their roles.
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.staff import StaffError, check_args, check_txn, parse_request, response_payload

from .accounts import Account, Directory
from .alerts import AlertError, AlertManager
from .budget import Bucket
from .evidence import resolve as resolve_evidence
from .journal import Journal
from .process import Custody
from .roles import FOUR_EYES, may_see_clear, permitted
from .state import State

ALERT_COMMANDS = ("ack-alert", "resolve-alert", "false-alarm")
log = logging.getLogger(__name__)
MAX_REFUSED_DETAIL = 300  # characters of a refused request's text kept in the journal
# What one account may send (MQTT requests and desk actions together). A person clicks a few
# times a minute; a script with a stolen password sends thousands a second, each a journal
# entry, and staff requests go before node events. Over it, the account is throttled until
# its bucket is half full: answered, not journaled one by one, and a staff-throttled alert.
STAFF_RATE, STAFF_BURST = 10.0, 300.0
SUMMARY_EVERY_S = 10.0  # while throttled, the requests refused unjournaled are journaled as
                        # a count this often (and when it ends)


@dataclass
class Episode:
    """An account over its request budget: since when its count was last journaled, and
    how many of its requests were refused since, unjournaled."""

    summarised: float
    unjournaled: int = 0


def team(c: Custody) -> set[str]:
    """Accounts on a detainee's own team (see the module docstring)."""
    out = {c.registered_by}
    if c.search is not None:
        out.add(c.search["by"])
        out.update(c.search.get("officers_claimed", []))
        out.update(c.search.get("officers", []))
    out.update(b["by"] for b in c.belongings)
    out.update(w["officer"] for w in c.welfare)
    for v in c.visits:
        if v.kind == "interview":
            out.update(v.officers)
    return out


def check(state: State, command: str, user: str, a: dict[str, Any], now_ms: int) -> None:
    """Raise StaffError when the command cannot apply to the state as it is."""
    def detainee_in_custody() -> None:
        c = state.detainees.get(a["detainee"])
        if c is None and a["detainee"] in state.left_custody:  # released, left memory
            raise StaffError(f"{command}: detainee {a['detainee']!r} has already left custody")
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
    elif command == "register-visitor":
        if a["band"] in state.bands:
            p = state.bands[a["band"]]
            raise StaffError(f"register-visitor: band {a['band']} is in use by {p.role} "
                             f"{p.person}")
        if a["visitor"] in state.visitors:
            raise StaffError(f"register-visitor: {a['visitor']!r} is already inside (band "
                             f"{state.visitors[a['visitor']].band})")
        detainee_in_custody()
    elif command in ("log-case-property",):
        if a["item"] in state.property:
            raise StaffError(f"log-case-property: item {a['item']!r} is already logged")
        if "detainee" in a and not state.detainee_known(a["detainee"]):
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
    elif command == "unlock-account":
        pass  # checked by execute (the account must exist)
    elif command == "record-finding":
        if "detainee" in a and not state.detainee_known(a["detainee"]):
            raise StaffError(f"record-finding: detainee {a['detainee']!r} is not registered")
        if "room" in a and a["room"] not in state.rooms:
            raise StaffError(f"record-finding: room {a['room']!r} is not on this site")
    elif command == "view-evidence":
        if "evidence" in a and "alert" in a:
            raise StaffError("view-evidence: give 'evidence' or 'alert', not both")
        if a.get("clear") and not a.get("reason", "").strip():
            raise StaffError("view-evidence: clear (unmasked) video needs a reason")
        resolve_evidence(state, a)
    else:
        detainee_in_custody()
        c = state.detainees[a["detainee"]]
        if command in ("approve-temporary-exit", "record-emergency-exit"):
            if c.temp_out is not None:
                raise StaffError(f"{command}: {c.id} is already out")
            if a["return_by_ts"] <= now_ms:
                raise StaffError(f"{command}: return_by_ts must be in the future")
            if command == "record-emergency-exit" and not a["reason"].strip():
                raise StaffError("record-emergency-exit: a reason is required")
        elif command == "approve-extension":
            allowed = state.rules.custody_type(c.custody_type).extended_h
            if a["hours"] not in allowed:
                raise StaffError(f"approve-extension: hours must be one of "
                                 f"{list(allowed) or 'none (no extension for this type)'}")
        elif command == "approve-disposition" and c.disposition is not None:
            raise StaffError(f"approve-disposition: {c.id} already has disposition "
                             f"{c.disposition['disposition']}")


class Staff:
    """Executes staff commands for proven accounts; answers with response dicts/payloads."""

    def __init__(self, state: State, journal: Journal, alerts: AlertManager,
                 now_ms: Callable[[], int], accounts: Directory | None = None) -> None:
        self.state, self.journal, self.alerts, self.now_ms = state, journal, alerts, now_ms
        self.accounts = accounts if accounts is not None else Directory.from_records({})
        self.refused = 0
        self.evidence_refused = 0  # view-evidence refused (role, unknown id, no reason...)
        self.buckets: dict[str, Bucket] = {}  # per account (real seconds)
        self.throttled: dict[str, Episode] = {}  # accounts over their budget now
        self.throttled_total = 0  # requests refused unjournaled over the budget (health)

    def _admit(self, actor: str, command: str, txn: str) -> dict[str, Any] | None:
        """Charge one request to `actor`'s budget: None to go on, else the answer to send
        (refused, not journaled: the count is, see housekeeping())."""
        mono = time.monotonic()
        key = actor[:64]
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = Bucket(STAFF_RATE, STAFF_BURST, STAFF_BURST)
        held = None if self._ended(key, b, mono) else self.throttled.get(key)
        # A flood that goes on keeps itself throttled; the debt is bounded so that once it
        # stops the account is served again within 1.5 bursts' worth of refill.
        b.tokens = max(-b.burst, b.tokens - 1)
        if held is None and b.tokens >= 0:
            return None
        if held is None:  # this request starts an episode: journaled once, raises an alert
            held = self.throttled[key] = Episode(mono)
            entry = self.journal.append_own("security", {
                "ts": self.now_ms(), "user": key, "reason": "staff_throttled",
                "detail": f"over its budget of {STAFF_RATE:g} requests/s (burst "
                          f"{STAFF_BURST:g}); its requests are refused until it slows down"})
            self.state.apply(entry)
            log.error("account %s is over its request budget: throttled", key)
        held.unjournaled += 1
        self.throttled_total += 1
        self.refused += 1
        return {"txn": txn, "ok": False, "result": {},
                "error": f"{command[:64]}: account {key!r} sent more than {STAFF_BURST:g} "
                         f"requests at over {STAFF_RATE:g}/s and is throttled; nothing was "
                         "done (send fewer, then try again)"}

    def _ended(self, key: str, b: Bucket, mono: float) -> bool:
        """Refill `key`'s bucket; end its episode (journaling the count) once half full."""
        b.refill(mono)
        if key not in self.throttled or b.tokens < b.burst / 2:
            return False
        self._summary(key, mono)
        del self.throttled[key]
        return True

    def _summary(self, key: str, mono: float) -> None:
        held = self.throttled[key]
        if held.unjournaled:
            n = held.unjournaled
            entry = self.journal.append_own("refused", {
                "ts": self.now_ms(), "user": key, "command": "*", "txn": "-", "count": n,
                "reason": f"{n} requests refused unjournaled while throttled"})
            self.state.apply(entry)
        held.unjournaled, held.summarised = 0, mono

    def housekeeping(self) -> None:
        """Journal the counts of throttled accounts' refused requests (call now and then)."""
        mono = time.monotonic()
        for key, held in list(self.throttled.items()):
            if not self._ended(key, self.buckets[key], mono) and (
                    mono - held.summarised >= SUMMARY_EVERY_S):
                self._summary(key, mono)

    def _refuse(self, actor: str, command: str, txn: str, reason: str) -> dict[str, Any]:
        self.refused += 1
        if command == "view-evidence":
            self.evidence_refused += 1
        # Also in the process log, where whoever runs the supervisor (or a simulation) looks.
        log.warning("refused %s by %s (txn %s): %s", command[:64], actor[:64], txn[:64], reason)
        entry = self.journal.append_own("refused", {"ts": self.now_ms(), "user": actor[:64],
                                                    "command": command[:64], "txn": txn[:64],
                                                    "reason": reason[:MAX_REFUSED_DETAIL]})
        self.state.apply(entry)
        return {"txn": txn, "ok": False, "error": reason, "result": {}}

    def execute(self, actor: str, command: str, args: dict[str, Any], txn: str
                ) -> dict[str, Any]:
        """Run one command as the proven account `actor`; return {txn, ok, error, result}.

        Must run on the supervisor's worker thread (it changes the journal and the state).
        """
        over = self._admit(actor, command, txn if isinstance(txn, str) else "?")
        return over if over is not None else self._execute(actor, command, args, txn)

    def _execute(self, actor: str, command: str, args: dict[str, Any], txn: str
                 ) -> dict[str, Any]:
        try:
            account = self.accounts.get(actor)
            if account is None:
                raise StaffError(f"unknown account {actor!r}")
            if not account.enabled:
                raise StaffError(f"account {actor!r} is disabled")
            check_txn(txn)
            args = check_args(command, args)
            done = self.state.txns.get(txn)
            if done is not None:
                first = self.state.txn_commands.get(txn)
                if first != (actor, command):
                    raise StaffError(f"txn {txn!r} was already used for another command")
                # The same request again (a retry after a lost answer) applies once.
                return {"txn": txn, "ok": True, "error": None,
                        "result": {"journal": done, "duplicate": True}}
            if not permitted(account, command):
                raise StaffError(f"{command}: account {actor!r} (roles "
                                 f"{', '.join(sorted(account.roles))}) may not do this")
            now = self.now_ms()
            self._four_eyes(account, command, args)
            if command == "view-evidence" and args.get("clear") and not may_see_clear(account):
                raise StaffError(f"view-evidence: account {actor!r} may see masked evidence "
                                 "only; clear video is for legal officers")
            check(self.state, command, actor, args, now)
            if command in ALERT_COMMANDS:
                self.alerts.check_action(command, args["alert"])
            if command == "unlock-account" and self.accounts.get(args["account"]) is None:
                raise StaffError(f"unlock-account: no account {args['account']!r}")
        except (StaffError, AlertError) as e:
            return self._refuse(actor, command, txn if isinstance(txn, str) else "?", str(e))
        fetch = None
        if command == "view-evidence":
            # Journaled with the clip it resolves to, masked or clear, before any video moves.
            rec = resolve_evidence(self.state, args)
            clear = bool(args.get("clear", False))
            args = {**args, "evidence": rec["id"], "clear": clear}
            fetch = {"evidence": rec["id"], "node": rec["node"], "clear": clear,
                     "sha256": rec["clear_sha256"] if clear else rec["sha256"]}
        entry = self.journal.append_own("staff", {"command": command, "txn": txn,
                                                  "user": actor, "args": args, "ts": now})
        self.state.apply(entry)
        result: dict[str, Any] = {"journal": entry.idx}
        if command in ALERT_COMMANDS:
            text = args.get("action") or args.get("note") or ""
            a = self.alerts.staff_action(command, args["alert"], actor, text, now)
            result["alert"] = {k: a.get(k) for k in ("id", "rule", "state", "by", "action")}
        elif command == "unlock-account":
            self.accounts.unlock(args["account"])
        elif fetch is not None:
            result["fetch"] = fetch  # the caller fetches it (supervisor/evidence.py)
        return {"txn": txn, "ok": True, "error": None, "result": result}

    def _four_eyes(self, account: Account, command: str, a: dict[str, Any]) -> None:
        if command not in FOUR_EYES:
            return
        c = self.state.detainees.get(a["detainee"])
        if c is not None and account.id in team(c):
            raise StaffError(f"{command}: {account.id} is on {c.id}'s own team (four eyes: "
                             "an approval must come from a supervisor not involved in the case)")

    def handle(self, user: str, command: str, payload: bytes, retained: bool = False) -> bytes:
        """A request that came on `request/<user>/<command>`; return the response payload."""
        txn = "?"
        try:
            try:
                raw = json.loads(payload.decode("utf-8"))
                if isinstance(raw, dict) and isinstance(raw.get("txn"), str):
                    txn = raw["txn"][:64]
            except (UnicodeDecodeError, ValueError, RecursionError):
                pass
            over = self._admit(user, command, txn)
            if over is not None:
                return response_payload(over["txn"], False, over["error"])
            if retained:
                raise StaffError("a retained request is refused: staff requests are never "
                                 "retained (send it again, not retained)")
            req = parse_request(command, payload)
            if req.user is not None and req.user != user:
                raise StaffError(f"request from login {user!r} names user {req.user!r}: an "
                                 "account acts only as itself")
        except StaffError as e:
            r = self._refuse(user, command, txn, str(e))
            return response_payload(r["txn"], False, r["error"])
        r = self._execute(user, command, req.args, req.txn)
        return response_payload(r["txn"], r["ok"], r["error"], r["result"])

    def sync_accounts(self) -> int:
        """Journal the account directory's history records the journal lacks; how many."""
        n = 0
        for h in self.accounts.history_after(self.state.account_seq):
            entry = self.journal.append_own("account", {**h, "ts": self.now_ms(),
                                                        "changed_ts": h["ts"]})
            self.state.apply(entry)
            n += 1
        return n
