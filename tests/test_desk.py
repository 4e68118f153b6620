"""The desk in Debian's Chromium (Playwright) against a real supervisor and a real Mosquitto.

One broker, supervisor, desk and browser for the module; each test signs in on its own
browser context. Screenshots of every view go to the test's tmp directory.
"""

import dataclasses
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from custody.broker import BrokerConfig, Mosquitto
from protocol.transport import LinkConf
from supervisor.accounts import Directory, hash_password
from supervisor.desk import Desk
from tests.supervisor_support import KEYS, ROOM_NODE, Driver, make_site, sped_up

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "desk-test-password-1"
ACCOUNTS = {"sup1": ("Duty Supervisor Li", "f", ["custody-supervisor"]),
            "off1": ("Officer Wang", "m", ["officer"]),
            "legal1": ("Inspector Zhao", "f", ["legal-officer"])}


@dataclasses.dataclass
class World:
    """The module's running pieces."""

    sup: Any
    desk: Desk
    driver: Driver
    browser: Browser
    shots: Path
    contexts: list[Any]
    errors: list[str] = dataclasses.field(default_factory=list)  # the pages' script errors


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Broker, supervisor (with real staff accounts), desk, MQTT driver, one Chromium."""
    from supervisor.service import Supervisor

    tmp = tmp_path_factory.mktemp("desk")
    broker = Mosquitto(BrokerConfig())
    broker.start()
    site = dataclasses.replace(make_site(), timezone="Asia/Shanghai")
    clock = sped_up(20)
    directory = Directory.from_records({
        user: {"name": name, "sex": sex, "roles": roles, "enabled": True,
               "hash": hash_password(PASSWORD)}
        for user, (name, sex, roles) in ACCOUNTS.items()})
    sup = Supervisor(site, KEYS, tmp / "journal.db", tmp / "cp.json",
                     LinkConf(broker.host, broker.port), clock, accounts=directory)
    desk = Desk(sup, "127.0.0.1", 0)
    desk.start()
    thread = threading.Thread(target=sup.run, daemon=True)
    thread.start()
    assert sup.subscribed.wait(10)
    driver = Driver(broker.host, broker.port, site, clock)
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
    w = World(sup, desk, driver, browser, tmp, [])
    try:
        yield w
    finally:
        for ctx in w.contexts:
            ctx.close()
        browser.close()
        pw.stop()
        driver.close()
        w.desk.stop()
        sup.stop_event.set()
        thread.join(10)
        broker.close()


def sign_in(w: World, user: str) -> Page:
    """A fresh browser context signed in as `user` through the form."""
    ctx = w.browser.new_context(viewport={"width": 1280, "height": 800})
    w.contexts.append(ctx)
    page = ctx.new_page()
    page.on("pageerror", lambda err: w.errors.append(f"{user}: {err}"))
    page.goto(w.desk.url + "/")
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/floor")
    return page


def as_worker(w: World, fn: Any) -> Any:
    """Run on the supervisor's worker (the only thread that reads the journal)."""
    return w.sup.submit(fn)


def register(w: World, detainee: str, band: str, by: str = "off1") -> None:
    """Register a detainee as `by` through the same path the desk and MQTT use (once: tests
    of this module may run in any order, or spread over workers)."""
    if detainee in as_worker(w, lambda: list(w.sup.state.detainees)):
        return
    r = as_worker(w, lambda: w.sup.staff.execute(by, "register-detainee", {
        "detainee": detainee, "band": band, "case": f"case-{detainee}", "sex": "m",
        "custody_type": "short", "observation": "level1"}, f"reg-{detainee}"))
    assert r["ok"], r


def staff_command(w: World, user: str, command: str, args: dict[str, Any]) -> Any:
    """A staff command as `user` through the path the desk and MQTT use."""
    return as_worker(w, lambda: w.sup.staff.execute(user, command, args,
                                                    f"test-{command}-{time.monotonic_ns()}"))


def test_sign_in_floor_and_every_view(world: World) -> None:
    """Sign in; the floor has a tile per room; each view renders; screenshots saved."""
    w = world
    page = sign_in(w, "sup1")
    rooms = [r.id for r in w.sup.site.rooms]
    tiles = page.locator("section.tile")
    assert tiles.count() == len(rooms)
    assert [tiles.nth(i).get_attribute("data-room") for i in range(len(rooms))] == rooms
    page.screenshot(path=str(w.shots / "floor.png"), full_page=True)
    for view in ("alerts", "detainees", "record", "approvals", "inspection"):
        page.goto(f"{w.desk.url}/{view}")
        assert page.get_by_role("heading", level=1).count() == 1
        page.screenshot(path=str(w.shots / f"{view}.png"), full_page=True)
    # A wrong password is refused and says so.
    other = w.browser.new_page()
    other.goto(w.desk.url + "/signin")
    other.get_by_label("User").fill("sup1")
    other.get_by_label("Password").fill("wrong")
    other.get_by_role("button", name="Sign in").click()
    assert other.get_by_role("alert").is_visible()
    assert other.context.cookies() == []


def test_floor_shows_visitors_and_lawyers_by_name_and_role(world: World) -> None:
    """A lawyer and a family visitor, registered to see a detainee, appear on their rooms'
    tiles by name and role, apart from officers and detainees; live, without a reload."""
    w = world
    register(w, "d5", "00000000d5")
    page = sign_in(w, "off1")
    page.locator("body[data-count]").wait_for(state="attached")
    for who, band, kind, name in (("law-d5", "00000000c1", "lawyer", "Lawyer Chen"),
                                  ("vis-d5", "00000000c2", "visitor", None)):
        if who in as_worker(w, lambda: list(w.sup.state.visitors)):
            continue
        args = {"visitor": who, "band": band, "kind": kind, "detainee": "d5"}
        if name:
            args["name"] = name
        assert staff_command(w, "off1", "register-visitor", args)["ok"]
    for band, room in (("00000000c1", "interview-1"), ("00000000c2", "corridor")):
        w.driver.event(ROOM_NODE[room], "presence.enter",
                       {"band": band, "room": room, "reader": f"{room}-uhf"})
    lawyer = page.locator("section.tile[data-room=interview-1] li.vis.lawyer")
    lawyer.wait_for(timeout=10_000)
    assert lawyer.inner_text().split() == ["Lawyer", "Chen", "(law-d5)", "lawyer", "for", "d5"]
    visitor = page.locator("section.tile[data-room=corridor] li.vis.visitor")
    visitor.wait_for(timeout=10_000)
    assert visitor.inner_text().split() == ["vis-d5", "visitor", "for", "d5"]
    # Neither is counted as an officer, a detainee or an unknown band.
    for room in ("interview-1", "corridor"):
        tile = page.locator(f"section.tile[data-room={room}]")
        assert tile.locator("li.off, li.det, li.unk").filter(has_text="-d5").count() == 0
    page.screenshot(path=str(w.shots / "floor-visitors.png"), full_page=True)
    assert w.errors == []


def test_alert_live_then_acknowledged_by_signed_in_account(world: World) -> None:
    """An alert raised over MQTT shows without reload; Acknowledge is journaled as sup1."""
    w = world
    page = sign_in(w, "sup1")
    page.goto(w.desk.url + "/alerts")
    page.locator("body[data-count]").wait_for(state="attached")  # stream is up
    w.driver.enter("o3", "medical")  # an unregistered band in a room: unknown-band
    row = page.get_by_role("row").filter(has_text="unknown-band").filter(has_text="medical")
    row.wait_for(timeout=10_000)
    alert_id = row.get_attribute("data-alert")
    row.get_by_label("What was done").fill("checked the band at the desk")
    row.get_by_role("button", name="Acknowledge").click()
    row.get_by_text("acknowledged by Duty Supervisor Li").wait_for(timeout=10_000)
    assert row.get_by_role("button", name="Acknowledge").count() == 0
    page.screenshot(path=str(w.shots / "alerts-acknowledged.png"), full_page=True)

    def journaled() -> list[dict[str, Any]]:
        return [e.json() for e in w.sup.journal.entries() if e.kind in ("staff", "alert")]

    entries = as_worker(w, journaled)
    staff = [e for e in entries if e.get("command") == "ack-alert"
             and e["args"]["alert"] == alert_id]
    assert [(e["user"], e["args"]["action"]) for e in staff] == [
        ("sup1", "checked the band at the desk")]
    acked = [e for e in entries if e.get("id") == alert_id and e["state"] == "acknowledged"]
    assert [e["by"] for e in acked] == ["sup1"]
    assert w.errors == []  # the row patched in place, its age written, no script error
    assert page.locator(f'tr[data-alert="{alert_id}"] .age').inner_text().endswith("s")


def test_resolved_alert_leaves_the_open_page_and_joins_recently_closed(world: World) -> None:
    """The open queue follows an alert's whole life without a reload: its row comes, goes
    when resolved, and the closed list gains it (patched rows, no script error)."""
    w = world
    page = sign_in(w, "sup1")
    page.goto(w.desk.url + "/alerts")
    page.locator("body[data-count]").wait_for(state="attached")
    w.driver.event(ROOM_NODE["search"], "presence.enter",
                   {"band": "00000000e7", "room": "search", "reader": "search-uhf"})
    row = page.locator("tr[data-alert]").filter(has_text="00000000e7")
    row.wait_for(timeout=10_000)
    alert_id = row.get_attribute("data-alert")
    assert staff_command(w, "sup1", "resolve-alert", {"alert": alert_id, "note": "found"})["ok"]
    page.locator(f'tr[data-alert="{alert_id}"]').wait_for(state="detached", timeout=10_000)
    page.locator(f'ul.closed li[data-key="{alert_id}"]').wait_for(timeout=10_000)
    assert w.errors == []
    # It left the live state's memory (a tombstone stays); the report, built from the
    # journal, still counts it.
    assert as_worker(w, lambda: (alert_id in w.sup.state.alerts,
                                 alert_id in w.sup.state.closed_alerts)) == (False, True)
    n = len(as_worker(w, lambda: [e for e in w.sup.journal.entries() if e.kind == "alert"
                                  and e.json()["rule"] == "unknown-band"
                                  and e.json()["state"] == "raised"]))
    report = page.request.get(w.desk.url + "/report")
    assert report.status == 200
    assert f"<tr><td>unknown-band</td><td>{n}</td>" in report.text()


def test_officer_sees_no_approval_and_forged_approval_refused(world: World) -> None:
    """No approve button for an officer; a forged approve from the session is refused."""
    w = world
    register(w, "d2", "00000000d2")
    page = sign_in(w, "off1")
    page.goto(w.desk.url + "/approvals")
    page.get_by_role("row").filter(has_text="d2").wait_for()
    assert page.get_by_role("button", name="Approve disposition").count() == 0
    assert page.get_by_role("button", name="Approve extension").count() == 0
    csrf = page.locator("meta[name=csrf]").get_attribute("content")
    r = page.request.post(w.desk.url + "/action", headers={"Accept": "application/json"},
                          form={"csrf": csrf or "", "command": "approve-disposition",
                                "detainee": "d2", "disposition": "release"})
    result = r.json()
    assert result["ok"] is False and "may not" in result["error"], result
    # Without the CSRF token nothing is even tried.
    r2 = page.request.post(w.desk.url + "/action", headers={"Accept": "application/json"},
                           form={"command": "approve-disposition", "detainee": "d2",
                                 "disposition": "release"})
    assert r2.status == 403
    # Nor from a page of another site, even with the token.
    r3 = page.request.post(w.desk.url + "/action", headers={
        "Accept": "application/json", "Origin": "http://elsewhere.example"},
        form={"csrf": csrf or "", "command": "ack-alert", "alert": "x", "action": "y"})
    assert r3.status == 403
    refused = as_worker(w, lambda: [e.json() for e in w.sup.journal.entries()
                                    if e.kind == "refused"])
    assert any(x["user"] == "off1" and x["command"] == "approve-disposition" for x in refused)
    assert as_worker(w, lambda: w.sup.state.detainees["d2"].disposition) is None
    # The duty supervisor (not on d2's team) does see the button, and it works.
    sup_page = sign_in(w, "sup1")
    sup_page.goto(w.desk.url + "/approvals")
    row = sup_page.get_by_role("row").filter(has_text="d2")
    row.get_by_role("button", name="Approve disposition").click()
    sup_page.locator("#result.ok").wait_for()
    assert as_worker(w, lambda: w.sup.state.detainees["d2"].disposition["by"]) == "sup1"


def test_chinese_switch_and_record(world: World) -> None:
    """中文 switches the page language (html lang too); the record view lists the timeline."""
    w = world
    register(w, "d3", "00000000d1")
    page = sign_in(w, "legal1")
    # The legal officer records a finding on d3's record: journaled under that account.
    page.goto(w.desk.url + "/inspection")
    page.get_by_label("Alert or detainee").fill("d3")
    page.get_by_label("Finding").fill("search room door left open during intake")
    page.get_by_role("button", name="Record finding").click()
    page.get_by_role("listitem").filter(has_text="search room door left open").wait_for()
    found = as_worker(w, lambda: [e.json() for e in w.sup.journal.entries()
                                  if e.kind == "staff" and b"record-finding" in e.payload])
    assert [(f["user"], f["args"]["detainee"]) for f in found] == [("legal1", "d3")]
    page.goto(w.desk.url + "/floor")
    page.get_by_role("link", name="中文").click()
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert page.get_by_role("link", name="楼层").count() == 1
    page.screenshot(path=str(w.shots / "floor-zh.png"), full_page=True)
    page.goto(w.desk.url + "/record/d3")
    assert page.get_by_role("cell", name="registered by off1", exact=False).count() == 1
    page.screenshot(path=str(w.shots / "record-zh.png"), full_page=True)
    page.get_by_role("link", name="English").click()
    page.wait_for_function("document.documentElement.lang === 'en'")


def _session_cookie(url: str, user: str) -> str:
    u = urlsplit(url)
    c = http.client.HTTPConnection("127.0.0.1", u.port, timeout=10)
    c.request("POST", "/signin", urlencode({"user": user, "password": PASSWORD}),
              {"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    cookie = r.getheader("Set-Cookie") or ""
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    return cookie.split(";", 1)[0]


def test_reconnect_gets_missed_alerts(world: World) -> None:
    """A stream resumed with Last-Event-ID gets every alert message journaled since."""
    w = world
    cookie = _session_cookie(w.desk.url, "off1")
    before = as_worker(w, lambda: w.sup.state.count)
    w.driver.enter("o3", "interview-1")  # while "disconnected": a new unknown-band alert
    deadline = time.monotonic() + 10
    while not any(a["room"] == "interview-1" for a in as_worker(
            w, lambda: list(w.sup.state.alerts.values()))):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # A desk that just restarted has no recent alerts in memory: they come from the journal.
    w.desk.ring.clear()
    w.desk.ring_start = as_worker(w, lambda: w.sup.state.count)
    u = urlsplit(w.desk.url)
    c = http.client.HTTPConnection("127.0.0.1", u.port, timeout=10)
    c.request("GET", "/events?view=floor", headers={"Cookie": cookie,
                                                    "Last-Event-ID": str(before)})
    r = c.getresponse()
    assert r.status == 200
    seen: list[dict[str, Any]] = []
    event, views = "", 0
    # The feed sends what the snapshot it goes with reflects: an alert journaled a few ms
    # after the newest snapshot comes with the next one (a changed alert reaches the pages
    # ALERT_DEFER_S after its MQTT message), so read until it is there (10 s at most).
    while not (views and any("unknown-band interview-1 raised" in s["text"] for s in seen)):
        raw = r.fp.readline()
        assert raw, f"the stream ended; alert messages so far: {seen}"
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "alert":
            seen.append(json.loads(line[6:]))
        elif line.startswith("data: ") and event == "view":
            views += 1
    c.close()
    assert any("unknown-band interview-1 raised" in s["text"] for s in seen), seen
    # Without a session the stream is refused.
    c = http.client.HTTPConnection("127.0.0.1", u.port, timeout=10)
    c.request("GET", "/events?view=floor")
    assert c.getresponse().status == 401


def test_browser_reconnects_and_misses_no_alert(world: World) -> None:
    """The desk goes away (a network drop), an alert is raised meanwhile; when the desk is
    back the open page reconnects by itself and shows the alert, in the queue and the feed."""
    w = world
    page = sign_in(w, "sup1")
    page.goto(w.desk.url + "/alerts")
    page.locator("body[data-count]").wait_for(state="attached")
    port = w.desk.port
    w.desk.stop()
    page.locator("#banner").wait_for(state="visible")  # the page says it lost the desk
    w.driver.enter("o3", "holding-1")
    deadline = time.monotonic() + 10
    while not any(a["room"] == "holding-1" and a["rule"] == "unknown-band"
                  for a in as_worker(w, lambda: list(w.sup.state.alerts.values()))):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    w.desk = Desk(w.sup, "127.0.0.1", port)  # what was missed is only in the journal now
    w.desk.start()
    page.get_by_role("row").filter(has_text="unknown-band").filter(
        has_text="holding-1").wait_for(timeout=15_000)
    page.locator("#feed li").filter(has_text="unknown-band holding-1 raised").wait_for()
    assert page.locator("#banner").is_hidden()


def test_critical_alert_sounds_until_acknowledged(world: World) -> None:
    """A detainee left alone raises a critical alert: its tile turns red and the page sounds
    (body.tone) until someone acknowledges it."""
    w = world
    register(w, "d2", "00000000d2")
    page = sign_in(w, "sup1")
    page.locator("body[data-count]").wait_for(state="attached")
    w.driver.enter("d2", "medical")  # no officer with them: never-alone, critical
    page.locator("section.tile.critical[data-room=medical]").wait_for(timeout=15_000)
    page.locator("body.tone").wait_for(state="attached")
    page.screenshot(path=str(w.shots / "floor-critical.png"), full_page=True)
    page.goto(w.desk.url + "/alerts")
    row = page.get_by_role("row").filter(has_text="never-alone").filter(has_text="medical")
    row.wait_for()
    # Every critical alert this raised (never-alone; search-first too: d2 was never searched)
    # sounds until someone takes it on.
    while page.locator("tr.sev-critical:not(.acked)").count():
        crit = page.locator("tr.sev-critical:not(.acked)").first
        crit.get_by_label("What was done").fill("officer sent to the medical room")
        crit.get_by_role("button", name="Acknowledge").click()
        page.locator("#result.ok").wait_for()
        page.locator("#result").evaluate("e => e.className = ''")
        page.wait_for_timeout(300)
    page.locator("body:not(.tone)").wait_for(state="attached")
    assert w.errors == []


class NodeServingEvidence:
    """node-holding's evidence side: its real EvidenceKeeper answering signed requests."""

    def __init__(self, w: World, keeper: Any) -> None:
        from protocol.transport import make_client

        self.w, self.keeper = w, keeper
        self.topics = w.sup.topics
        host, port = w.driver.client._host, w.driver.client._port  # the same broker
        self.client = make_client("evidence-node", LinkConf(host, port))
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(host, port, 5)
        self.client.loop_start()
        self.client.subscribe(self.topics.node("node-holding", "evidence-request"), 1)
        assert ready.wait(5)

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        from protocol.evidence import open_request, seal_response

        req = open_request(bytes(msg.payload), KEYS["node-holding"], "node-holding")
        self.client.publish(self.topics.node("node-holding", "evidence-data"),
                            seal_response(KEYS["node-holding"], "node-holding",
                                          self.w.sup.clock.now_ms(), self.keeper.serve(req)),
                            qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_view_evidence_shows_the_masked_clip_and_journals_the_view(world: World) -> None:
    """A fall with an evidence clip: the duty supervisor's "View evidence" fetches the masked
    clip, checked against the journal, and shows it (a still frame: Chromium does not play
    mp4v) with the view's journal entry; an officer has no button, a forged request from the
    officer's session is refused, and the officer cannot load the file."""
    import cv2

    from edge_agent.recording import EvidenceKeeper, SegmentRecorder, blur_people, sha256_file
    from edge_agent.recording.evidence import Evidence
    from tests.conftest import SHARED_DATA

    clip = SHARED_DATA / "gmdcsa24" / "Subject-3" / "Fall" / "20.mp4"
    if not clip.is_file():
        pytest.skip(f"real clip not present at {clip} (set CUSTODY_SHARED_DATA)")
    w = world
    eid = f"cam-holding-1-fall-1-{w.sup.clock.now_ms()}"
    ev_dir = w.shots / "node-evidence"
    keeper = EvidenceKeeper("cam-holding-1", "holding-1",
                            SegmentRecorder("cam-holding-1", "holding-1", w.shots / "rec",
                                            lambda *a: None), ev_dir, lambda *a: None)
    # The smallest real path to a kept clip: real footage, masked by the node's own blur.
    cap = cv2.VideoCapture(str(clip))
    files = {k: ev_dir / f"{eid}.{k}.mp4" for k in ("masked", "clear")}
    writers = {k: cv2.VideoWriter(str(p), cv2.VideoWriter.fourcc(*"mp4v"), 15, (640, 480))
               for k, p in files.items()}
    for _ in range(20):
        ok, img = cap.read()
        assert ok
        img = cv2.resize(img, (640, 480))
        writers["masked"].write(blur_people(img, None))
        writers["clear"].write(img)
    cap.release()
    for vw in writers.values():
        vw.release()
    kept = Evidence(eid, eid, 1, 2, 20, files["masked"].name, sha256_file(files["masked"]),
                    files["clear"].name, sha256_file(files["clear"]))
    keeper.kept[eid] = kept
    node = NodeServingEvidence(w, keeper)
    try:
        w.driver.event("node-holding", "behaviour", {
            "id": eid, "phase": "new", "camera": "cam-holding-1", "room": "holding-1",
            "cls": "fall", "score_pct": 90, "evidence": eid})
        w.driver.event("node-holding", "evidence", kept.body("cam-holding-1", "holding-1"))
        officer = sign_in(w, "off1")
        officer.goto(w.desk.url + "/alerts")
        row = officer.get_by_role("row").filter(has_text="fall").filter(has_text="holding-1")
        row.wait_for(timeout=15_000)
        alert_id = row.get_attribute("data-alert")
        assert row.get_by_role("button", name="View evidence").count() == 0
        csrf = officer.locator("meta[name=csrf]").get_attribute("content")
        forged = officer.request.post(w.desk.url + "/action",
                                      headers={"Accept": "application/json"},
                                      form={"csrf": csrf or "", "command": "view-evidence",
                                            "alert": alert_id or ""}).json()
        assert forged["ok"] is False and "may not" in forged["error"], forged

        page = sign_in(w, "sup1")
        page.goto(w.desk.url + "/alerts")
        row = page.get_by_role("row").filter(has_text="fall").filter(has_text="holding-1")
        row.get_by_role("button", name="View evidence").click()
        shown = page.locator("#evidence img.evidence-media")
        shown.wait_for(timeout=20_000)
        page.wait_for_function(
            "document.querySelector('#evidence img.evidence-media').naturalWidth > 0")
        assert "journaled" in page.locator("#evidence p.journaled").inner_text()
        page.screenshot(path=str(w.shots / "alerts-evidence.png"), full_page=True)
        views = as_worker(w, lambda: [e.json() for e in w.sup.journal.entries()
                                      if e.kind == "staff" and b"view-evidence" in e.payload])
        assert [(v["user"], v["args"]["evidence"], v["args"]["clear"]) for v in views] == [
            ("sup1", eid, False)]  # the officer's forged request: refused, not a view
        # The still frame and the clip are the signed-in supervisor's; not the officer's.
        src = page.locator("#evidence img.evidence-media").get_attribute("src") or ""
        assert officer.request.get(w.desk.url + src).status == 403
        assert page.request.get(w.desk.url + src).status == 200
        # The compliance report follows the page's language; not for an officer.
        page.context.add_cookies([{"name": "desk_lang", "value": "zh", "url": w.desk.url}])
        report = page.request.get(w.desk.url + "/report")
        assert report.status == 200 and "各规则告警数" in report.text()
        assert officer.request.get(w.desk.url + "/report").status == 403
    finally:
        node.close()
        w.driver.event("node-holding", "behaviour", {
            "id": eid, "phase": "end", "camera": "cam-holding-1", "room": "holding-1",
            "cls": "fall", "score_pct": 90})
