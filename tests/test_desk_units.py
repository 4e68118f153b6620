"""Desk pieces without a browser: site keys, sessions, rendering, the Chinese page."""

import time
import tomllib
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from protocol.config import ConfigError
from protocol.site import parse_site
from supervisor.desk import render
from supervisor.desk.server import Desk, Session
from tests.supervisor_support import SITE_TOML


def site_with(site_extra: str = "", room_extra: str = "") -> Any:
    """The test site with lines added to [site] and to its first room."""
    text = SITE_TOML.replace('id = "test-centre"\n', f'id = "test-centre"\n{site_extra}\n', 1)
    text = text.replace('id = "entry"\nkind = "entry"\n',
                        f'id = "entry"\nkind = "entry"\n{room_extra}\n', 1)
    return parse_site(tomllib.loads(text), "t.toml")


def test_site_timezone_and_position_keys() -> None:
    """timezone defaults to UTC and must be a known zone; position is [column, row] or absent."""
    assert site_with().timezone == "UTC"
    assert site_with('timezone = "Asia/Shanghai"').timezone == "Asia/Shanghai"
    with pytest.raises(ConfigError, match=r"site\.timezone.*Mars/Olympus"):
        site_with('timezone = "Mars/Olympus"')
    s = site_with(room_extra="position = [3, 2]")
    assert s.rooms[0].position == (3, 2) and s.rooms[1].position is None
    for bad in ("[0, 1]", "[1]", '["a", 1]', "[1, 2, 3]"):
        with pytest.raises(ConfigError, match=r"rooms\[0\]\.position"):
            site_with(room_extra=f"position = {bad}")


class Accounts:
    """A stand-in directory for the session unit tests only (the shipped desk uses 13's)."""

    def __init__(self) -> None:
        self.enabled = True

    def get(self, user: str) -> Any:
        return SimpleNamespace(id=user, name="N", enabled=self.enabled, roles=frozenset())


def desk_for_sessions() -> tuple[Desk, Accounts]:
    """A Desk object without a server, enough to sign and check cookies."""
    d = Desk.__new__(Desk)
    acc = Accounts()
    d.sup = SimpleNamespace(accounts=acc)
    d.secret, d.revoked, d.idle_s = b"k" * 32, set(), 60
    return d, acc


def test_session_cookie_signed_expires_and_revokes() -> None:
    """A forged, expired, revoked or disabled session is refused; CSRF is per session."""
    d, acc = desk_for_sessions()
    now = int(time.time())
    s = Session("sup1", "n1", now, now + 60)
    cookie = d.cookie(s)
    assert d.session(cookie) == s
    body, mac = cookie.rsplit(".", 1)
    assert d.session(body + "." + "0" * len(mac)) is None
    assert d.session(d.cookie(Session("sup1", "n1", now, now - 1))) is None  # idle expiry
    assert d.session(d.cookie(Session("sup1", "n1", now - 13 * 3600, now + 60))) is None
    assert d.csrf(s) != d.csrf(Session("sup1", "n2", now, now + 60))
    acc.enabled = False
    assert d.session(cookie) is None
    acc.enabled = True
    d.revoked.add("n1")
    assert d.session(cookie) is None


def snap() -> dict[str, Any]:
    """A small snapshot as the worker builds it."""
    alert = {"id": "never-alone-1", "rule": "never-alone", "state": "raised",
             "severity": "critical", "detainee": "d1", "room": "corridor",
             "raised_ts": 1_700_000_000_000, "ts": 1_700_000_000_000,
             "message": "d1 alone <b>", "acked_by": None, "acked_ts": None, "action": None,
             "by": None, "closed_ts": None, "escalations": 1}
    return {"count": 5, "now": 1_700_000_060_000, "site": {"id": "s", "name": "S"},
            "rooms": [{"id": "corridor", "name": "Corridor", "kind": "corridor",
                       "position": (2, 1), "officers": [], "detainees": ["d1"],
                       "unregistered": 0, "camera": None, "doors": [("d-1", "closed")],
                       "alerts": [alert]}],
            "alerts": [alert], "closed": [], "detainees": [], "custody_types": {},
            "false_alarms": {}, "names": {}}


def test_render_alert_row_floor_and_chinese() -> None:
    """Rule id and Acknowledge in the row, escaped text, site time zone, zh-CN page."""
    tz = ZoneInfo("Asia/Shanghai")
    ctx = render.Ctx("en", tz, "o1", "Officer", "tok", lambda c: c == "ack-alert")
    html = render.alerts(snap(), ctx)
    assert 'class="rule">never-alone<' in html and ">Acknowledge</button>" in html
    assert "Resolve</button>" not in html  # not permitted: no button
    assert "&lt;b&gt;" in html and "<b>" not in html.split("small>")[1]
    assert "06:13:20" in html  # 1_700_000_000 s is 22:13:20 UTC, 06:13:20 in Shanghai
    floor = render.floor(snap(), ctx)
    assert "grid-column:2;grid-row:1" in floor and 'class="tile critical"' in floor
    zh = render.Ctx("zh", tz, "o1", "Officer", "tok", lambda c: True)
    page = render.page(zh, "alerts", render.alerts(snap(), zh), "S")
    assert page.startswith('<!doctype html>\n<html lang="zh-CN">')
    assert ">确认</button>" in page and "告警队列" in page
    signin = render.signin_page("en", False)
    assert '<label for="user">User</label>' in signin
    assert '<label for="password">Password</label>' in signin
    assert ">Sign in</button>" in signin


def test_https_desk_with_site_ca_and_plain_http_only_on_loopback(tmp_path: Any) -> None:
    """HTTPS with a certificate from the site CA: the sign-in cookie is Secure; plain HTTP
    on any address but loopback is refused at start."""
    import http.client
    import ssl
    from urllib.parse import urlencode

    from custody.provisioning import pki
    from protocol.clock import simulated
    from protocol.passwords import hash_password
    from protocol.transport import LinkConf
    from supervisor.accounts import Directory
    from supervisor.service import Supervisor
    from tests.supervisor_support import KEYS, make_site

    ca = pki.make_ca("test-centre")
    server = pki.make_server_cert(ca, "test-centre", ["127.0.0.1", "localhost"])
    (tmp_path / "ca.pem").write_bytes(pki.cert_pem(ca.cert))
    (tmp_path / "desk.pem").write_bytes(pki.cert_pem(server.cert))
    (tmp_path / "desk.key").write_bytes(pki.key_pem(server.key))
    accounts = Directory.from_records({"sup1": {
        "name": "S", "sex": "f", "roles": ["custody-supervisor"], "enabled": True,
        "hash": hash_password("pw-123456789")}})
    sup = Supervisor(make_site(), KEYS, tmp_path / "j.db", tmp_path / "cp.json",
                     LinkConf("127.0.0.1", 1), simulated(1.0, time.time()), accounts=accounts)
    try:
        with pytest.raises(ConfigError, match=r"127\.0\.0\.1 for plain HTTP"):
            Desk(sup, "0.0.0.0", 0)
        desk = Desk(sup, "127.0.0.1", 0, str(tmp_path / "desk.pem"), str(tmp_path / "desk.key"))
        desk.start()
        try:
            assert desk.url.startswith("https://")
            ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
            c = http.client.HTTPSConnection("127.0.0.1", desk.port, context=ctx, timeout=10)
            c.request("GET", "/signin")
            r = c.getresponse()
            assert r.status == 200 and b'<label for="user">User</label>' in r.read()
            assert r.getheader("Strict-Transport-Security")
            c.request("POST", "/signin", urlencode({"user": "sup1", "password": "pw-123456789"}),
                      {"Content-Type": "application/x-www-form-urlencoded"})
            r = c.getresponse()
            r.read()
            cookie = r.getheader("Set-Cookie") or ""
            assert r.status == 303 and "Secure" in cookie and "HttpOnly" in cookie, cookie
            # A client that does not trust the site CA is refused by the TLS handshake.
            bare = http.client.HTTPSConnection("127.0.0.1", desk.port, timeout=10,
                                               context=ssl.create_default_context())
            with pytest.raises(ssl.SSLError):
                bare.request("GET", "/signin")
        finally:
            desk.stop()
    finally:
        sup.journal.close()


def test_stream_sends_only_changed_rows_and_the_whole_view_when_the_shell_changes() -> None:
    """A new alert is one row plus the queue's order; an unchanged snapshot nothing; the
    ages are not in the rows (the page writes them), so time passing changes no row; the
    first alert or the last one closing changes the shell: the whole view."""
    from supervisor.desk.server import changed_items

    tz = ZoneInfo("Asia/Shanghai")
    ctx = render.Ctx("en", tz, "o1", "Officer", "tok", lambda c: True)
    one = snap()
    later = {**one, "now": one["now"] + 5_000}
    assert changed_items(render.alerts_view(one, ctx), render.alerts_view(later, ctx)) == {}
    second = {**one["alerts"][0], "id": "never-alone-2", "raised_ts": one["now"]}
    two = {**one, "alerts": [*one["alerts"], second]}
    patch = changed_items(render.alerts_view(one, ctx), render.alerts_view(two, ctx))
    assert patch is not None and list(patch) == ["queue"]
    assert patch["queue"]["order"] == ["never-alone-1", "never-alone-2"]
    assert list(patch["queue"]["rows"]) == ["never-alone-2"]
    assert 'data-key="never-alone-2"' in patch["queue"]["rows"]["never-alone-2"]
    none = {**one, "alerts": []}
    assert changed_items(render.alerts_view(two, ctx), render.alerts_view(none, ctx)) is None
    whole = render.alerts_view(two, ctx).html()
    assert whole.count('data-key="never-alone') == 2
    assert "\x00" not in whole and f'data-since="{one["alerts"][0]["raised_ts"]}"' in whole


def test_floor_tile_lists_visitors_and_lawyers_apart() -> None:
    """Visitors and lawyers: by name (id when none), role and whom they see, own class."""
    tz = ZoneInfo("Asia/Shanghai")
    s = snap()
    s["rooms"][0]["visitors"] = [
        {"id": "law-1", "name": "Lawyer <Chen>", "role": "lawyer", "client": "d1"},
        {"id": "vis-1", "name": None, "role": "visitor", "client": "d1"}]
    en = render.floor(s, render.Ctx("en", tz, "o1", "O", "tok", lambda c: True))
    assert ('<li class="vis lawyer" data-role="lawyer">Lawyer &lt;Chen&gt; (law-1) '
            "<small>lawyer for d1</small></li>") in en
    assert '<li class="vis visitor" data-role="visitor">vis-1 <small>visitor for d1' in en
    zh = render.floor(s, render.Ctx("zh", tz, "o1", "O", "tok", lambda c: True))
    assert "<small>律师 会见 d1</small>" in zh and "<small>访客 会见 d1</small>" in zh


def test_stream_memo_renders_only_changed_alert_rows(monkeypatch: Any) -> None:
    """With a stream's memo the queue is the same markup, and only an alert that changed
    (or whose viewer's permissions did) is rendered again."""
    tz = ZoneInfo("Asia/Shanghai")
    ctx = render.Ctx("en", tz, "o1", "Officer", "tok", lambda c: True)
    s = snap()
    a0 = s["alerts"][0]
    s["alerts"] = [{**a0, "id": f"a-{i}", "raised_ts": a0["raised_ts"] + i} for i in range(5)]
    memo: dict[Any, str] = {}
    assert render.alerts_view(s, ctx, memo).html() == render.alerts(s, ctx)
    calls: list[str] = []
    real = render._alert_row
    monkeypatch.setattr(render, "_alert_row",
                        lambda sn, c, a: calls.append(a["id"]) or real(sn, c, a))
    render.alerts_view(s, ctx, memo)
    assert calls == []
    s["alerts"][2] = {**s["alerts"][2], "acked_ts": a0["raised_ts"] + 9, "acked_by": "o1"}
    acked = render.alerts_view(s, ctx, memo)
    assert calls == ["a-2"]
    assert acked.html() == render.alerts(s, ctx)
    calls.clear()
    officer = render.Ctx("en", tz, "o1", "Officer", "tok", lambda c: c == "ack-alert")
    render.alerts_view(s, officer, memo)
    assert len(calls) == 5


def test_a_changed_alert_reaches_the_pages_after_its_mqtt_message(tmp_path: Any,
                                                                   monkeypatch: Any) -> None:
    """With a page open, the snapshot for a changed alert is built ALERT_DEFER_S after its
    message went to paho (so paho's thread sends it first), then at once; without a page the
    worker is not asked to wake for it."""
    from protocol.clock import simulated
    from protocol.transport import LinkConf
    from supervisor.desk import server
    from supervisor.service import Supervisor
    from tests.supervisor_support import KEYS, make_site

    assert 0 < server.ALERT_DEFER_S < server.SNAPSHOT_MIN_GAP_S
    monkeypatch.setattr(server, "ALERT_DEFER_S", 0.3)  # (a busy machine may take 2 ms here)

    sup = Supervisor(make_site(), KEYS, tmp_path / "j.db", tmp_path / "cp.json",
                     LinkConf("127.0.0.1", 1), simulated(1.0, time.time()))
    try:
        desk = Desk(sup, "127.0.0.1", 0)
        topic = sup.topics.alert("critical", "fall")
        desk.published(topic, b'{"id": "a1", "state": "raised"}', 1)
        assert desk.due_in() == float("inf")  # nobody is watching
        desk.streams = 1
        desk.refresh(sup.clock.now_ms())
        built = desk.version
        assert built == 1  # a page being opened may get an older one, at most 1 s old
        time.sleep(server.SNAPSHOT_MIN_GAP_S)  # (builds are at least that far apart)
        desk.published(topic, b'{"id": "a2", "state": "raised"}', 2)
        wait = desk.due_in()
        assert 0.2 < wait <= server.ALERT_DEFER_S
        assert desk.ring[-1][1]["id"] == "a2"  # the feed has it already
        desk.refresh(sup.clock.now_ms())
        assert desk.version == built  # not yet
        time.sleep(wait + 0.01)
        assert desk.due_in() == 0
        desk.refresh(sup.clock.now_ms())
        assert desk.version == built + 1
        assert desk.due_in() == float("inf")
        desk.httpd.server_close()
    finally:
        sup.journal.close()


def test_journal_reads_for_pages_do_not_need_the_worker(tmp_path: Any) -> None:
    """A page reconnecting from entry #1, or the first inspection page, reads the journal in
    its own thread: with no worker running at all (before: a task for the worker, which a
    crafted Last-Event-ID could make scan a long journal) they still answer, bounded."""
    from protocol.clock import simulated
    from protocol.transport import LinkConf
    from supervisor.desk import server
    from supervisor.journal import read_kinds
    from supervisor.service import Supervisor
    from tests.supervisor_support import KEYS, make_site

    sup = Supervisor(make_site(), KEYS, tmp_path / "j.db", tmp_path / "cp.json",
                     LinkConf("127.0.0.1", 1), simulated(1.0, time.time()))
    try:
        j = sup.journal
        j.begin()
        for i in range(server.MISSED_MAX + 20):
            j.append_own("alert", {"id": f"a{i}", "state": "raised"})
            j.append_own("staff", {"command": "record-finding", "txn": f"t{i}", "user": "lo",
                                   "args": {"text": f"finding {i}"}, "ts": i})
        j.append_own("refused", {"user": "o1", "command": "approve-exit", "why": "role"})
        j.commit()
        desk = Desk(sup, "127.0.0.1", 0)
        missed = desk.alerts_from_journal(0)
        assert len(missed) == server.MISSED_MAX  # the newest ones, in order
        assert missed[-1][1]["id"] == f"a{server.MISSED_MAX + 19}"
        assert [i for i, _ in missed] == sorted(i for i, _ in missed)
        data = desk.inspection_data()
        assert len(data["findings"]) == server.INSPECTION_KEEP
        assert data["findings"][-1]["text"] == f"finding {server.MISSED_MAX + 19}"
        assert data["refused"] == [{"user": "o1", "command": "approve-exit", "why": "role"}]
        assert [e.kind for e in read_kinds(j.path, ("refused",), after=0)] == ["refused"]
        desk.httpd.server_close()
    finally:
        sup.journal.close()


def test_one_password_tried_on_many_accounts_locks_the_address(tmp_path: Any) -> None:
    """Password spraying: one failure per account stays under each account's lockout, so
    ADDRESS_FAILURES failures in a row from one address refuse it (even the right password)
    for a while and journal a login entry raising login-locked; other addresses go on."""
    from protocol.clock import simulated
    from protocol.passwords import hash_password
    from protocol.transport import LinkConf
    from supervisor.accounts import Directory
    from supervisor.desk import server
    from supervisor.service import Supervisor
    from tests.supervisor_support import KEYS, make_site

    accounts = Directory.from_records({f"u{i}": {
        "name": f"U{i}", "sex": "f", "roles": ["officer"], "enabled": True,
        "hash": hash_password(f"right-{i}-password")} for i in range(server.ADDRESS_FAILURES)})
    accounts.fail_delay_s = 0
    sup = Supervisor(make_site(), KEYS, tmp_path / "j.db", tmp_path / "cp.json",
                     LinkConf("127.0.0.1", 1), simulated(1.0, time.time()), accounts=accounts)
    try:
        desk = Desk(sup, "127.0.0.1", 0)
        for i in range(server.ADDRESS_FAILURES - 1):
            assert desk.sign_in(f"u{i}", "Spring2026!", "10.0.0.9") is None
        assert desk.sign_in("u0", "right-0-password", "10.0.0.9") is not None  # resets
        for i in range(server.ADDRESS_FAILURES):
            assert desk.sign_in(f"u{i}", "Spring2026!", "10.0.0.9") is None
        assert desk.sign_in("u1", "right-1-password", "10.0.0.9") is None  # address locked
        assert desk.sign_in("u1", "right-1-password", "10.0.0.10") is not None  # not u1 locked
        sup._run_tasks()  # (the worker's job: journal the lockout)
        sup.alerts.reconcile(sup.clock.now_ms())
        locked = [a for a in sup.state.alerts.values() if a["rule"] == "login-locked"]
        assert len(locked) == 1, locked
        assert "10.0.0.9" in locked[0]["message"] and "u9" in locked[0]["message"]
        desk._addr_locked["10.0.0.9"] = time.monotonic()  # its time is up
        assert desk.sign_in("u1", "right-1-password", "10.0.0.9") is not None
        desk.httpd.server_close()
    finally:
        sup.journal.close()


def test_a_desk_action_runs_on_the_worker_at_once_not_at_the_next_tick(tmp_path: Any,
                                                                      monkeypatch: Any) -> None:
    """Desk actions are tasks for the worker; they wake it, so they do not wait for the
    next rule tick (here made a minute long: before, the task timed out)."""
    import threading

    from protocol.clock import simulated
    from protocol.transport import LinkConf
    from supervisor import service
    from supervisor.service import Supervisor
    from tests.supervisor_support import KEYS, make_site

    monkeypatch.setattr(service, "RULE_TICK_S", 60.0)
    sup = Supervisor(make_site(), KEYS, tmp_path / "j.db", tmp_path / "cp.json",
                     LinkConf("127.0.0.1", 1), simulated(1.0, time.time()))
    worker = threading.Thread(target=sup.run, daemon=True)
    worker.start()
    try:
        time.sleep(0.5)  # past its first tick
        assert sup.submit(lambda: threading.current_thread() is worker, timeout=5.0) is True
    finally:
        sup.stop_event.set()
        sup.inbox.put(("", b""))  # (wakes it to see the stop)
        worker.join(10)
