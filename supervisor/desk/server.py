"""The desk's HTTP server: sign-in, pages, actions and one server-sent-event stream per page.

Standard library only (http.server, ssl, hmac): each browser request gets a thread; the
supervisor's worker alone touches the journal and the state, so the server reads snapshots
the worker builds (Desk.refresh) and hands actions to the worker (Supervisor.submit), where
they take the same Staff.execute path as an MQTT staff command.
"""

import base64
import hashlib
import hmac
import json
import logging
import secrets
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from protocol.config import ConfigError
from protocol.staff import COMMANDS

from .. import history
from ..journal import read_kinds
from . import render
from .i18n import fmt_time, t
from .snapshot import build

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")
IDLE_S = 30 * 60  # a session not used for this long expires
MAX_S = 12 * 3600  # and none outlives a shift
SNAPSHOT_EVERY_S = 1.0  # clocks on the pages move at least this often
SNAPSHOT_MIN_GAP_S = 0.05  # and under load snapshots are built at most this often
# A changed alert reaches the pages this long after its MQTT message was handed to paho: the
# build and the pages' renders would otherwise hold the interpreter while paho's thread
# sends the message itself, and MQTT is what the other desks, watchers and the bureau read.
# The worker waits on its inbox meanwhile, which lets paho's thread run. 10 ms cost the
# desk's stream 14 ms at p50 and bought nothing more than 2 ms (RESULTS.md).
ALERT_DEFER_S = 0.002
KEEPALIVE_S = 15.0
RING = 2000  # recent alert messages kept for streams that fell behind
ROUTINE_S = 0.5  # a page's routine updates (no alert changed) at most this often
TICK_S = 1.0  # with nothing else to send, a page's clock (alert ages) moves this often
FEED_START = 20  # alert messages a freshly opened page's activity feed starts with
# Failed sign-ins in a row from one address, whatever the accounts (one password tried on
# every account stays under each account's own lockout): then that address is refused.
ADDRESS_FAILURES = 10
ADDRESS_LOCK_S = 300.0
ADDRESSES_KEPT = 1000  # addresses with failures remembered at most (the oldest go)
MISSED_MAX = 500  # alert messages read back from the journal for a page that reconnects
INSPECTION_KEEP = 200  # findings and refusals the inspection page lists (the newest)
ACTIONS = ("ack-alert", "resolve-alert", "false-alarm", "approve-disposition",
           "approve-temporary-exit", "approve-extension", "record-finding", "view-evidence")
EVIDENCE_WAIT_S = 120.0  # an HTTP request waits this long at most for a clip's fetch
MEDIA = {"webm": "video/webm", "mp4": "video/mp4", "avi": "video/x-msvideo",
         "video": "application/octet-stream", "jpg": "image/jpeg"}


@dataclass(frozen=True)
class Session:
    """A signed-in browser: account, token nonce, issue and expiry (wall-clock s)."""

    user: str
    nonce: str
    issued: int
    expires: int


class Desk:
    """Serves the desk for one Supervisor; fed by it on the worker thread."""

    def __init__(self, sup: Any, host: str = "127.0.0.1", port: int = 8080,
                 certfile: str | None = None, keyfile: str | None = None,
                 idle_s: int = IDLE_S) -> None:
        if certfile is None and host not in LOCAL_HOSTS:
            raise ConfigError("--desk-host", "desk", "127.0.0.1 for plain HTTP (give "
                              "--desk-cert/--desk-key to serve HTTPS elsewhere)", host)
        self.sup, self.site = sup, sup.site
        self.tz = ZoneInfo(self.site.timezone)
        self.idle_s = idle_s
        self.tls = certfile is not None
        self.secret = hmac.new(sup.key, b"custody-desk-session", hashlib.sha256).digest()
        self.revoked: set[str] = set()
        self.cond = threading.Condition()
        self.snap: dict[str, Any] | None = None
        self.version = 0
        self.ring: deque[tuple[int, dict[str, Any]]] = deque(maxlen=RING)
        # Alert messages journaled after this entry are all in the ring (older: the journal).
        self.ring_start = sup.state.count
        self._built_at = 0.0
        self._built_count = -1
        self._alerts_changed = False  # an alert message went out since the last build
        self._alert_at = 0.0  # (monotonic) when the first of those went out
        self._alert_prefix = f"{sup.topics.base}/alert/"
        self._scanned = 0  # journal entries scanned for findings and refusals
        self._scan_lock = threading.Lock()  # (two inspection pages at once)
        self.findings: list[dict[str, Any]] = []
        # Evidence files each account fetched through the desk (a journaled view): the only
        # ones /evidence/ serves it.
        self.granted: dict[str, set[str]] = {}
        self.refusals: list[dict[str, Any]] = []
        self.streams = 0
        self._addr_lock = threading.Lock()
        self._addr_failures: dict[str, list[str]] = {}  # address -> accounts tried, in a row
        self._addr_locked: dict[str, float] = {}  # address -> refused until (monotonic)
        self.closing = threading.Event()
        self.httpd = _Server((host, port), _handler(self))
        if certfile is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(certfile, keyfile)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.url = f"{'https' if self.tls else 'http'}://{host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="desk",
                                       daemon=True)
        sup.desk = self

    def start(self) -> None:
        """Serve in a background thread."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving; open streams end."""
        self.closing.set()
        with self.cond:
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- fed by the supervisor's worker ------------------------------------------------

    def published(self, topic: str, payload: bytes, count: int) -> None:
        """Every MQTT publish of the supervisor: alert messages go to the streams' feed."""
        if topic.startswith(self._alert_prefix):
            try:
                msg = json.loads(payload)
            except ValueError:
                log.warning("desk: unreadable alert message on %s", topic)
                return
            if not self._alerts_changed:
                self._alerts_changed, self._alert_at = True, time.monotonic()
            with self.cond:
                if len(self.ring) == RING:
                    self.ring_start = self.ring[0][0]
                self.ring.append((count, msg))

    def due_in(self) -> float:
        """Seconds until refresh() has an alert change to show (inf: nothing waiting)."""
        if not (self._alerts_changed and self.streams > 0):
            return float("inf")
        mono = time.monotonic()
        return max(0.0, self._alert_at + ALERT_DEFER_S - mono,
                   self._built_at + SNAPSHOT_MIN_GAP_S - mono)

    def refresh(self, now: int) -> None:
        """Build a new snapshot (worker thread): ALERT_DEFER_S after an alert message went
        out when a page is open (the worker calls when due_in() says); otherwise when the
        journal grew, at most every ROUTINE_S (what a page's routine updates wait anyway), and
        at least every SNAPSHOT_EVERY_S (clocks). With no page open, at most every
        SNAPSHOT_EVERY_S: a page being opened gets one at most that old, then its stream what
        changed. A build costs the worker milliseconds (5 ms with 150 open alerts on a busy
        machine); at every 0.1 s rule tick it added up."""
        count = self.sup.state.count
        mono = time.monotonic()
        since = mono - self._built_at
        if since < SNAPSHOT_MIN_GAP_S:
            return
        if self.due_in() > 0:  # no alert change for the pages yet: the routine pace
            if since < (ROUTINE_S if self.streams > 0 else SNAPSHOT_EVERY_S):
                return
            if count == self._built_count and since < SNAPSHOT_EVERY_S:
                return
        self._alerts_changed = False
        snap = build(self.sup.state, now, count, self._names())
        self._built_at, self._built_count = mono, count
        with self.cond:
            self.snap = snap
            self.version += 1
            self.cond.notify_all()

    def _names(self) -> dict[str, str]:
        accounts = getattr(self.sup, "accounts", None)
        if accounts is None:
            return {}
        try:
            return {a.id: a.name for a in accounts.accounts()}
        except Exception:  # a directory being reloaded: names are a nicety
            return {}

    def wait(self, version: int, timeout: float) -> tuple[dict[str, Any] | None, int]:
        """The newest snapshot once it is newer than `version` (or after `timeout`)."""
        with self.cond:
            if self.version == version and not self.closing.is_set():
                self.cond.wait(timeout)
            return self.snap, self.version

    def alerts_after(self, idx: int) -> list[tuple[int, dict[str, Any]]] | None:
        """Alert messages journaled after entry `idx`, or None if the ring lost some."""
        with self.cond:
            if idx < self.ring_start:
                return None
            return [(i, m) for i, m in self.ring if i > idx]

    def alerts_from_journal(self, idx: int) -> list[tuple[int, dict[str, Any]]]:
        """Alert messages journaled after entry `idx` (the last MISSED_MAX of them), read in
        the calling thread: a page asking from #1 must not stall the worker on a scan."""
        return [(e.idx, e.json()) for e in read_kinds(self.sup.journal.path, ("alert",),
                                                      after=idx, last=MISSED_MAX)]

    def inspection_data(self) -> dict[str, Any]:
        """Findings and refused actions read from the journal (incrementally, in the calling
        thread; the first page after a start reads the whole journal)."""
        with self._scan_lock:
            for e in read_kinds(self.sup.journal.path, ("staff", "refused"),
                                after=self._scanned):
                self._scanned = e.idx
                if e.kind == "staff":
                    obj = e.json()
                    if obj.get("command") == "record-finding":
                        self.findings.append({"ts": obj["ts"], "by": obj["user"],
                                              **obj["args"]})
                elif e.kind == "refused":
                    self.refusals.append(e.json())
            # (bounded: the page shows the last 200; the report has them all)
            del self.findings[:-INSPECTION_KEEP], self.refusals[:-INSPECTION_KEEP]
            return {"findings": list(self.findings), "refused": list(self.refusals),
                    "finding_command": "record-finding" in COMMANDS}

    def record_data(self, detainee: str) -> tuple[str | None, list[tuple[int, str]]]:
        """One detainee's record header and lines (on the worker)."""
        from ..record import header, record_lines

        state = self.sup.state

        def live() -> tuple[str | None, list[tuple[int, str]]] | None:
            if detainee not in state.detainees and detainee in state.left_custody:
                return None  # released, and the record left memory: the journal has it
            return header(state, detainee), record_lines(state, detainee)
        result: tuple[str | None, list[tuple[int, str]]] | None = self.sup.submit(live)
        if result is not None:
            return result
        # An archive replay of the journal in a child process, off the worker.
        try:
            head, lines = history.run(self.site, self.sup.journal.path, "record",
                                      detainee=detainee)
        except history.HistoryError as e:
            return (f"{detainee}: the record could not be read from the journal ({e}); "
                    f"`custody record {detainee}` prints it", [])
        return head, [(int(ts), str(text)) for ts, text in lines]

    # ---- accounts and sessions ---------------------------------------------------------

    def sign_in(self, user: str, password: str, address: str = "?") -> Session | None:
        """Check the password against the staff directory; a new session or None. An address
        with ADDRESS_FAILURES failures in a row is refused for ADDRESS_LOCK_S."""
        accounts = getattr(self.sup, "accounts", None)
        if accounts is None or not user or not password:
            return None
        with self._addr_lock:
            until = self._addr_locked.get(address)
            if until is not None and time.monotonic() < until:
                log.warning("desk sign-in as %s from %s refused: address locked", user[:64],
                            address)
                return None
            self._addr_locked.pop(address, None)
        account = accounts.verify_password(user, password)
        ok = account is not None and account.enabled
        locked: list[str] | None = None
        with self._addr_lock:
            if ok:
                self._addr_failures.pop(address, None)
            else:
                tried = self._addr_failures.pop(address, [])  # (re-inserted: newest last)
                tried.append(user[:64])
                if len(tried) >= ADDRESS_FAILURES:
                    self._addr_locked[address] = time.monotonic() + ADDRESS_LOCK_S
                    locked = tried
                else:
                    self._addr_failures[address] = tried
                    while len(self._addr_failures) > ADDRESSES_KEPT:
                        del self._addr_failures[next(iter(self._addr_failures))]
        if locked is not None:
            log.error("desk: %d failed sign-ins in a row from %s: refused for %g s",
                      len(locked), address, ADDRESS_LOCK_S)
            lockout = getattr(self.sup, "address_lockout", None)
            if lockout is not None:
                lockout(address, locked)
        if account is None or not ok:
            return None
        now = int(time.time())
        return Session(account.id, secrets.token_hex(12), now, now + self.idle_s)

    def cookie(self, s: Session) -> str:
        """The signed cookie value for a session."""
        body = base64.urlsafe_b64encode(json.dumps(
            [s.user, s.nonce, s.issued, s.expires]).encode()).decode().rstrip("=")
        mac = hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def session(self, value: str | None) -> Session | None:
        """The valid, unexpired session a cookie carries, or None."""
        if not value or "." not in value:
            return None
        body, mac = value.rsplit(".", 1)
        good = hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, good):
            return None
        try:
            user, nonce, issued, expires = json.loads(base64.urlsafe_b64decode(
                body + "=" * (-len(body) % 4)))
        except (ValueError, TypeError):
            return None
        now = time.time()
        if nonce in self.revoked or now >= expires or now >= issued + MAX_S:
            return None
        account = self.account(user)
        if account is None or not account.enabled:
            return None
        return Session(user, nonce, issued, expires)

    def renewed(self, s: Session) -> Session:
        """The session with its idle expiry moved on (never past the shift limit)."""
        return Session(s.user, s.nonce, s.issued,
                       min(int(time.time()) + self.idle_s, s.issued + MAX_S))

    def csrf(self, s: Session) -> str:
        """The session's CSRF token."""
        return hmac.new(self.secret, f"csrf:{s.nonce}".encode(), hashlib.sha256).hexdigest()

    def account(self, user: str) -> Any:
        """The account, or None."""
        accounts = getattr(self.sup, "accounts", None)
        return accounts.get(user) if accounts is not None else None

    def can(self, user: str) -> Any:
        """A predicate: may this account issue a command (hides buttons only)."""
        from ..roles import permitted

        account = self.account(user)
        return lambda command: account is not None and command in COMMANDS and \
            permitted(account, command)

    # ---- actions -----------------------------------------------------------------------

    def execute(self, user: str, command: str, form: dict[str, str]) -> dict[str, Any]:
        """Turn a form into a staff command and run it as `user` on the worker."""
        if command not in ACTIONS or command not in COMMANDS:
            return {"ok": False, "error": f"the desk does not send {command!r}"}
        try:
            args = self._args(command, form)
        except ValueError as e:
            return {"ok": False, "error": str(e)}
        txn = f"desk-{secrets.token_hex(8)}"
        staff = self.sup.staff
        if command == "view-evidence":
            return self._view_evidence(user, args, txn)
        try:
            result: dict[str, Any] = self.sup.submit(
                lambda: staff.execute(user, command, args, txn))
        except TimeoutError as e:
            return {"ok": False, "error": str(e)}
        return result

    def _view_evidence(self, user: str, args: dict[str, Any], txn: str) -> dict[str, Any]:
        """The staff command (journaled on the worker), then this thread waits for the fetch;
        the files it brought are granted to the account."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def reply(final: dict[str, Any]) -> None:
            box.update(final)
            done.set()

        def run() -> dict[str, Any]:
            r: dict[str, Any] = self.sup.staff.execute(user, "view-evidence", args, txn)
            if r["ok"] and "fetch" in r["result"]:
                self.sup.evidence.start(user, r, reply)
            else:
                reply(r)
            return r

        try:
            self.sup.submit(run)
        except TimeoutError as e:
            return {"ok": False, "error": str(e)}
        if not done.wait(EVIDENCE_WAIT_S):
            return {"ok": False, "error": "the evidence fetch did not finish in time"}
        res = box.get("result") or {}
        if box.get("ok"):
            names = {res["name"]} | ({res["still"]} if res.get("still") else set())
            with self.cond:
                self.granted.setdefault(user, set()).update(names)
            res["url"] = f"/evidence/{res['name']}"
            res["still_url"] = f"/evidence/{res['still']}" if res.get("still") else None
            res.pop("file", None)  # the supervisor's own path is not the browser's business
        return box

    def evidence_file(self, user: str, name: str) -> Path | None:
        """A cached evidence file this account fetched and may still see, else None."""
        from ..roles import may_see_clear, permitted

        account = self.account(user)
        with self.cond:
            granted = name in self.granted.get(user, set())
        if account is None or not granted or not permitted(account, "view-evidence"):
            return None
        if ".clear." in name and not may_see_clear(account):
            return None
        path: Path | None = self.sup.evidence.cache.path(name)
        return path

    def _args(self, command: str, f: dict[str, str]) -> dict[str, Any]:
        def need(key: str, what: str) -> str:
            v = f.get(key, "").strip()
            if not v:
                raise ValueError(f"{command}: {what} is required")
            return v

        if command == "ack-alert":
            return {"alert": need("alert", "the alert"), "action": need("action", "what was done")}
        if command == "view-evidence":  # the masked clip: clear video is asked for by command
            return {"alert": need("alert", "the alert")}
        if command == "resolve-alert":
            a = {"alert": need("alert", "the alert")}
            if f.get("note", "").strip():
                a["note"] = f["note"].strip()
            return a
        if command == "false-alarm":
            return {"alert": need("alert", "the alert"), "note": need("note", "a reason")}
        if command == "approve-disposition":
            return {"detainee": need("detainee", "the detainee"),
                    "disposition": need("disposition", "the disposition")}
        if command == "approve-temporary-exit":
            try:
                minutes = int(need("return_in_min", "the return time"))
            except ValueError:
                raise ValueError(f"{command}: the return time must be whole minutes") from None
            if not 1 <= minutes <= 24 * 60:
                raise ValueError(f"{command}: the return time must be 1 to 1440 minutes")
            return {"detainee": need("detainee", "the detainee"),
                    "reason": need("reason", "a reason"),
                    "return_by_ts": self.sup.clock.now_ms() + minutes * 60_000}
        if command == "approve-extension":
            try:
                hours = int(need("hours", "the hours"))
            except ValueError:
                raise ValueError(f"{command}: hours must be a whole number") from None
            return {"detainee": need("detainee", "the detainee"), "hours": hours}
        a = {"finding": need("finding", "the finding")}
        for k in ("detainee", "room", "severity"):
            if f.get(k, "").strip():
                a[k] = f[k].strip()
        return a

    # ---- rendering ---------------------------------------------------------------------

    def ctx(self, s: Session, lang: str) -> render.Ctx:
        """The render context of a session."""
        account = self.account(s.user)
        return render.Ctx(lang, self.tz, s.user, account.name if account else s.user,
                          self.csrf(s), self.can(s.user))

    def view(self, view: str, extra: str, snap: dict[str, Any], ctx: render.Ctx,
             memo: dict[Any, str] | None = None) -> render.View:
        """One view's markup, with its keyed lists (what a stream patches); `memo`: a
        stream's rendered alert rows, reused while their alerts do not change."""
        if view == "floor":
            return render.floor_view(snap, ctx)
        if view == "alerts":
            return render.alerts_view(snap, ctx, memo)
        if view == "detainees":
            return render.detainees_view(snap, ctx)
        if view == "record":
            return render.View(render.record(snap, ctx, extra, self.record_data(extra)
                                             if extra else None))
        if view == "approvals":
            return render.View(render.approvals(snap, ctx))
        return render.View(render.inspection(snap, ctx, self.inspection_data()))

    def view_html(self, view: str, extra: str, snap: dict[str, Any], ctx: render.Ctx) -> str:
        """One view's fragment."""
        return self.view(view, extra, snap, ctx).html()

    def feed_item(self, idx: int, m: dict[str, Any], lang: str) -> dict[str, Any]:
        """One line of the alert activity feed."""
        who = f" {t(lang, 'by')} {m['by']}" if m.get("by") else ""
        subject = m.get("detainee") or m.get("room") or ""
        return {"idx": idx, "id": m.get("id"), "severity": m.get("severity"),
                "state": m.get("state"),
                "text": f"{fmt_time(m.get('ts'), self.tz)} {m.get('rule')} {subject} "
                        f"{m.get('state')}{who}"}


def alerts_signature(snap: dict[str, Any]) -> tuple[tuple[Any, ...], ...]:
    """What about the open alerts a person must see at once (raised, changed, acknowledged)."""
    return tuple((a["id"], a["state"], a["severity"], a.get("acked_ts"))
                 for a in snap["alerts"])


def changed_items(old: render.View, new: render.View) -> dict[str, Any] | None:
    """The items of `new`'s lists that differ from `old`'s, with each list's order (the page
    keeps every other item as it is); None when the shell changed (send the whole view)."""
    if old.shell != new.shell or old.lists.keys() != new.lists.keys():
        return None
    out: dict[str, Any] = {}
    for name, items in new.lists.items():
        before = dict(old.lists[name])
        rows = {k: h for k, h in items if before.get(k) != h}
        order = [k for k, _h in items]
        if rows or order != [k for k, _h in old.lists[name]]:
            out[name] = {"order": order, "rows": rows}
    return out


def tone(snap: dict[str, Any]) -> bool:
    """Whether a critical alert is open and not yet acknowledged (the desk sounds a tone)."""
    return any(a["severity"] == "critical" and not a.get("acked_ts") for a in snap["alerts"])


class _Server(ThreadingHTTPServer):
    """The HTTP server; a browser that went away mid-answer is not an error worth a trace."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log dropped connections quietly, anything else with its traceback."""
        import sys

        err = sys.exc_info()[1]
        if isinstance(err, (BrokenPipeError, ConnectionResetError, TimeoutError, ssl.SSLError)):
            log.debug("desk: %s dropped the connection: %s", client_address, err)
            return
        log.exception("desk: error answering %s", client_address)


def _handler(desk: Desk) -> type[BaseHTTPRequestHandler]:
    class Handler(DeskHandler):
        pass
    Handler.desk = desk
    return Handler


class DeskHandler(BaseHTTPRequestHandler):
    """One HTTP request to the desk."""

    desk: Desk
    server_version = "custody-desk"
    sys_version = ""

    def setup(self) -> None:
        """Finish the TLS handshake here, in the request's thread, not the accept loop."""
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Requests go to the debug log, not stderr."""
        log.debug("desk %s " + format, self.address_string(), *args)

    # ---- helpers -----------------------------------------------------------------------

    def _cookies(self) -> dict[str, str]:
        out = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            if "=" in part:
                k, v = part.strip().split("=", 1)
                out[k] = v
        return out

    def _lang(self) -> str:
        lang = self._cookies().get("desk_lang", "en")
        return lang if lang in ("en", "zh") else "en"

    def _session(self) -> Session | None:
        return self.desk.session(self._cookies().get("desk_session"))

    def _set_cookie(self, name: str, value: str, max_age: int) -> None:
        attrs = f"{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
        if self.desk.tls:
            attrs += "; Secure"
        self.send_header("Set-Cookie", attrs)

    def _security_headers(self) -> None:
        self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'self'; "
                         "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        if self.desk.tls:
            self.send_header("Strict-Transport-Security", "max-age=31536000")

    def _send(self, status: int, body: str | bytes, ctype: str = "text/html; charset=utf-8",
              session: Session | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self._security_headers()
        if session is not None:
            self._set_cookie("desk_session", self.desk.cookie(session), self.desk.idle_s)
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, to: str, session: Session | None = None,
                  clear: bool = False, lang: str | None = None) -> None:
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self._security_headers()
        if session is not None:
            self._set_cookie("desk_session", self.desk.cookie(session), self.desk.idle_s)
        if clear:
            self._set_cookie("desk_session", "", 0)
        if lang is not None:
            self._set_cookie("desk_lang", lang, 365 * 24 * 3600)
        self.end_headers()

    def _form(self) -> dict[str, str]:
        n = int(self.headers.get("Content-Length") or 0)
        if n > 16384:
            raise ValueError("form too large")
        raw = self.rfile.read(n).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    # ---- GET ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        """Pages, static files, the event stream, the language switch."""
        url = urlsplit(self.path)
        path = url.path
        if path == "/favicon.ico":
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path == "/signin":
            return self._send(HTTPStatus.OK, render.signin_page(
                self._lang(), "failed" in parse_qs(url.query)))
        if path == "/lang":
            to = parse_qs(url.query).get("to", ["en"])[0]
            back = urlsplit(self.headers.get("Referer") or "/floor").path or "/floor"
            return self._redirect(back if back.startswith("/") and not back.startswith("//")
                                  else "/floor", lang=to if to in ("en", "zh") else "en")
        s = self._session()
        if path == "/events":
            if s is None:
                return self._send(HTTPStatus.UNAUTHORIZED, "sign in", "text/plain")
            return self._stream(s, parse_qs(url.query))
        if s is None:
            return self._redirect("/signin")
        if path == "/":
            return self._redirect("/floor")
        if path == "/report":
            return self._report(s)
        if path.startswith("/evidence/"):
            f = self.desk.evidence_file(s.user, path[len("/evidence/"):])
            if f is None:
                return self._send(HTTPStatus.FORBIDDEN, "not yours to see: view it first "
                                  "(journaled), with a role that may", "text/plain")
            ext = f.name.rsplit(".", 1)[-1]
            return self._send(HTTPStatus.OK, f.read_bytes(),
                              MEDIA.get(ext, "application/octet-stream"))
        parts = path.strip("/").split("/")
        view = parts[0]
        extra = parts[1] if len(parts) > 1 and view == "record" else ""
        if view not in render.VIEWS or len(parts) > (2 if view == "record" else 1):
            return self._send(HTTPStatus.NOT_FOUND, "no such page", "text/plain")
        snap, _ = self.desk.wait(-1, 0)
        if snap is None:
            snap, _ = self.desk.wait(0, 5.0)
        if snap is None:
            return self._send(HTTPStatus.SERVICE_UNAVAILABLE, "the supervisor is starting",
                              "text/plain")
        s = self.desk.renewed(s)
        ctx = self.desk.ctx(s, self._lang())
        body = self.desk.view_html(view, extra, snap, ctx)
        self._send(HTTPStatus.OK, render.page(ctx, view, body, snap["site"]["name"], extra,
                                              snap["now"]), session=s)

    def _report(self, s: Session) -> None:
        """The compliance report (supervisor/report.py) of everything journaled so far, in
        the page's language: for the duty supervisor and the legal officer."""
        from ..report import report_html
        from ..roles import REPORT_ROLES

        account = self.desk.account(s.user)
        if account is None or not account.enabled or not account.roles & REPORT_ROLES:
            return self._send(HTTPStatus.FORBIDDEN, "the report is for custody supervisors "
                              "and legal officers", "text/plain")
        sup = self.desk.sup
        end = sup.clock.now_ms() + 1
        # From the journal (archive replay in a child): the live state has let closed alerts
        # and released custody records go.
        try:
            figures = history.run(sup.site, sup.journal.path, "report", start=0, end=end)
        except history.HistoryError as e:
            return self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"the report could not be "
                              f"built from the journal: {e}", "text/plain")
        self._send(HTTPStatus.OK, report_html(sup.site.name, figures, 0, end, self._lang(),
                                              charts=False), session=self.desk.renewed(s))

    def _static(self, name: str) -> None:
        types = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
        ext = name.rsplit(".", 1)[-1]
        f = STATIC / name
        if "/" in name or ext not in types or not f.is_file():
            return self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")
        self._send(HTTPStatus.OK, f.read_bytes(), types[ext])

    def _stream(self, s: Session, q: dict[str, list[str]]) -> None:
        """Server-sent events: the view's fragment on every change, alert messages as a feed.

        The event id is the journal count the page reflects; a browser reconnecting sends it
        back (Last-Event-ID) and first gets every alert message it missed, from the journal.
        """
        desk = self.desk
        view = q.get("view", ["floor"])[0]
        extra = q.get("d", [""])[0]
        if view not in render.VIEWS:
            return self._send(HTTPStatus.NOT_FOUND, "no such view", "text/plain")
        lang = self._lang()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self._security_headers()
        self.end_headers()
        self.close_connection = True
        last_id = self.headers.get("Last-Event-ID")
        last_idx = int(last_id) if last_id and last_id.isdigit() else None
        desk.streams += 1
        try:
            self.wfile.write(b"retry: 1000\n\n")
            self.wfile.flush()
            version, last_count, last_at, last_tick = -1, -1, 0.0, 0.0
            last_view: render.View | None = None
            memo: dict[Any, str] = {}
            last_sig: tuple[tuple[Any, ...], ...] = ()
            while not desk.closing.is_set():
                snap, version2 = desk.wait(version, KEEPALIVE_S)
                if desk.session(self._cookies().get("desk_session")) is None:
                    self._event("expired", {})
                    return
                if snap is None or version2 == version:
                    version = version2  # (no snapshot yet: wait for the first, do not spin)
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    continue
                version = version2
                if last_idx is None:  # a fresh page: the feed starts with the latest few
                    recent = desk.alerts_after(desk.ring_start) or []
                    last_idx = recent[-FEED_START][0] - 1 if len(recent) >= FEED_START else (
                        desk.ring_start)
                missed = desk.alerts_after(last_idx)
                if missed is None:
                    missed = desk.alerts_from_journal(last_idx)
                for idx, m in missed:
                    if idx <= snap["count"]:
                        self._event("alert", desk.feed_item(idx, m, lang))
                last_idx = max(last_idx, snap["count"])
                ctx = desk.ctx(s, lang)
                mono = time.monotonic()
                if view in ("record", "inspection") and (
                        snap["count"] == last_count or mono - last_at < 1.0):
                    continue  # these read the journal: when it grew, at most once a second
                # An alert raised, acknowledged or closed goes out at once; the rest (people
                # moving, doors, clocks) at most ROUTINE_S apart, which keeps a busy floor
                # from costing the supervisor and the browsers a re-render every tick.
                sig = alerts_signature(snap)
                if sig == last_sig and mono - last_at < ROUTINE_S:
                    continue
                last_count, last_at, last_sig = snap["count"], mono, sig
                # The first time the whole view; after that only the alert rows, room tiles
                # or detainee rows that changed (the whole view again if anything around
                # them did), so neither side re-renders a long queue for one new row.
                v = desk.view(view, extra, snap, ctx, memo)
                base = {"tone": tone(snap), "count": snap["count"], "now": snap["now"]}
                patch = changed_items(last_view, v) if last_view is not None else None
                if patch is None:
                    self._event("view", {"html": v.html(), **base}, snap["count"])
                elif patch:
                    self._event("rows", {"lists": patch, **base}, snap["count"])
                elif mono - last_tick >= TICK_S:  # ages, tone and count move on
                    self._event("tick", base, snap["count"])
                else:
                    continue
                last_view, last_tick = v, mono
        except (BrokenPipeError, ConnectionResetError, TimeoutError, ssl.SSLError):
            pass
        finally:
            desk.streams -= 1

    def _event(self, name: str, data: dict[str, Any], eid: int | None = None) -> None:
        out = f"event: {name}\n"
        if eid is not None:
            out += f"id: {eid}\n"
        out += f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
        self.wfile.write(out.encode())
        self.wfile.flush()

    # ---- POST --------------------------------------------------------------------------

    def do_POST(self) -> None:
        """Sign in, sign out, actions."""
        path = urlsplit(self.path).path
        origin = self.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != self.headers.get("Host"):
            # A form posted from another site (sign-in included): refused before reading it.
            return self._send(HTTPStatus.FORBIDDEN, "cross-site request refused", "text/plain")
        try:
            form = self._form()
        except ValueError as e:
            return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(e), "text/plain")
        if path == "/signin":
            s = self.desk.sign_in(form.get("user", "").strip(), form.get("password", ""),
                                  self.client_address[0])
            if s is None:
                return self._redirect("/signin?failed=1")
            return self._redirect("/floor", session=s)
        s = self._session()
        wants_json = "application/json" in (self.headers.get("Accept") or "")
        if s is None:
            return self._send(HTTPStatus.FORBIDDEN, json.dumps(
                {"ok": False, "error": "signed out: sign in again"}), "application/json")
        if not hmac.compare_digest(form.get("csrf", ""), self.desk.csrf(s)):
            return self._send(HTTPStatus.FORBIDDEN, json.dumps(
                {"ok": False, "error": "the form's CSRF token is missing or wrong"}),
                "application/json")
        if path == "/signout":
            self.desk.revoked.add(s.nonce)
            return self._redirect("/signin", clear=True)
        if path != "/action":
            return self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")
        result = self.desk.execute(s.user, form.get("command", ""), form)
        if result.get("ok") and form.get("command") == "view-evidence":
            r = result["result"]
            r["shown"] = t(self._lang(), "evidence_journaled").format(
                evidence=r.get("evidence"), idx=r.get("journal"), user=s.user)
            r["still_text"] = t(self._lang(), "evidence_still")
            r["download_text"] = t(self._lang(), "download_clip")
        s = self.desk.renewed(s)
        if wants_json:
            return self._send(HTTPStatus.OK, json.dumps(result), "application/json", session=s)
        back = urlsplit(self.headers.get("Referer") or "/alerts").path or "/alerts"
        self._redirect(back if back.startswith("/") and not back.startswith("//") else "/alerts",
                       session=s)
