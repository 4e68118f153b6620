"""Staff accounts, roles, four eyes, refusals, lockout: Staff and Directory called directly,
then the lockout alert and a retained request through a real supervisor and Mosquitto."""

import json
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from protocol.staff import request_payload
from protocol.transport import LinkConf
from supervisor.accounts import AccountError, AccountFile, Directory
from supervisor.roles import COMMAND_ROLES, may_see_clear, permitted
from supervisor.staff import team
from tests.supervisor_support import (
    ACCOUNT_PASSWORD,
    Driver,
    InProcess,
    make_directory,
    make_site,
    sped_up,
)
from tests.test_supervisor_units import T0, World


@pytest.fixture
def w(tmp_path):
    world = World(tmp_path)
    world.people()
    yield world
    world.journal.close()


def test_roles_per_command():
    d = make_directory()
    acct = {u: d.get(u) for u in ("o1", "sup", "insp", "adm")}
    assert all(a is not None for a in acct.values())
    assert permitted(acct["o1"], "record-search") and not permitted(acct["o1"], "approve-extension")
    assert permitted(acct["sup"], "approve-disposition")
    assert permitted(acct["insp"], "record-finding")
    assert not any(permitted(acct["insp"], c) for c in COMMAND_ROLES
                   if c not in ("record-finding", "view-evidence"))
    # Evidence video: the duty supervisor and the inspector, never an officer; clear video
    # for the inspector only.
    assert permitted(acct["sup"], "view-evidence") and permitted(acct["insp"], "view-evidence")
    assert not permitted(acct["o1"], "view-evidence")
    assert may_see_clear(acct["insp"]) and not may_see_clear(acct["sup"])
    assert [c for c in COMMAND_ROLES if permitted(acct["adm"], c)] == ["unlock-account"]


def test_team_and_four_eyes(w):
    w.at(10).staff("record-search", {"detainee": "d1", "officers": ["o2", "o3"],
                                     "result": "completed"}, user="o2")
    assert team(w.state.detainees["d1"]) == {"o1", "o2", "o3"}
    r = w.staff("approve-extension", {"detainee": "d1", "hours": 2}, user="o3")
    assert not r["ok"] and "own team" in r["error"]
    assert w.staff("approve-extension", {"detainee": "d1", "hours": 2}, user="sup")["ok"]
    assert w.state.refused[-1]["user"] == "o3"


def test_admin_and_legal_officer_change_no_custody(w):
    for user in ("adm", "insp"):
        r = w.staff("set-observation", {"detainee": "d1", "observation": "high"}, user=user)
        assert not r["ok"] and "may not do this" in r["error"]
    assert w.staff("record-finding", {"finding": "cell 1 light broken"}, user="insp")["ok"]
    assert w.staff("unlock-account", {"account": "o1"}, user="adm")["ok"]
    assert w.state.detainees["d1"].observation == "level1"


def test_unknown_and_disabled_accounts_and_bad_payloads_are_refused_and_journaled(w):
    before = w.journal.count
    assert "unknown account" in w.staff("record-welfare-check", {"detainee": "d1"},
                                        user="ghost")["error"]
    w.staff_h.accounts._records["o2"]["enabled"] = False
    assert "disabled" in w.staff("record-welfare-check", {"detainee": "d1"}, user="o2")["error"]
    r = json.loads(w.staff_h.handle("o1", "record-welfare-check",
                                    request_payload("z1", "o2", {"detainee": "d1"})))
    assert not r["ok"] and "names user 'o2'" in r["error"]
    r = json.loads(w.staff_h.handle("o1", "record-welfare-check",
                                    request_payload("z2", None, {"detainee": "d1"}),
                                    retained=True))
    assert not r["ok"] and "retained" in r["error"]
    assert w.journal.count == before + 4
    assert [x["user"] for x in w.state.refused] == ["ghost", "o2", "o1", "o1"]


def test_emergency_exit_by_an_officer_raises_a_critical_alert(w):
    r = w.at(20).staff("record-emergency-exit", {"detainee": "d1", "reason": "chest pain",
                                                 "return_by_ts": T0 + 3_600_000})
    assert r["ok"], r
    w.alerts.reconcile(w.at(21).now)
    a = [a for a in w.state.alerts.values() if a["rule"] == "emergency-exit"]
    assert len(a) == 1 and a[0]["severity"] == "critical" and "chest pain" in a[0]["message"]
    assert w.state.detainees["d1"].temp_approval["emergency"] is True
    r = w.staff("record-emergency-exit", {"detainee": "d1", "reason": " ",
                                          "return_by_ts": T0 + 3_600_000}, user="o2")
    assert not r["ok"]


def test_account_file_keeps_history_and_never_a_hash_in_it(tmp_path):
    f = AccountFile(tmp_path / "accounts.json")
    f.add("admin", "anna", "Anna", "f", ["officer"], "a-long-password")
    with pytest.raises(AccountError, match="at least"):
        f.add("admin", "bob", "Bob", "m", ["officer"], "short")
    with pytest.raises(AccountError, match="role 'boss' unknown"):
        f.add("admin", "bob", "Bob", "m", ["boss"], "a-long-password")
    f.set("admin", "anna", roles=["officer", "custody-supervisor"], password="another-password")
    f.set_enabled("admin", "anna", False)
    f.save()
    g = AccountFile(tmp_path / "accounts.json")
    assert [(h["action"], h["seq"]) for h in g.data["history"]] == \
        [("create", 1), ("change", 2), ("disable", 3)]
    hist = json.dumps(g.data["history"])
    assert "scrypt$" not in hist and "$7$" not in hist and "another-password" not in hist
    assert g.get("anna") is not None and not g.get("anna").enabled  # type: ignore[union-attr]
    assert "hash" not in repr(g.get("anna"))
    assert (tmp_path / "accounts.json").stat().st_mode & 0o077 == 0


def test_lockout_after_five_failures_in_a_row():
    now = [100.0]
    locked: list[tuple[str, int]] = []
    d = Directory.from_records(json.loads(json.dumps(make_directory()._records)),
                               fail_delay_s=0.05, lock_s=60, clock=lambda: now[0])
    d.on_lockout = lambda u, n: locked.append((u, n))
    assert d.verify_password("o1", ACCOUNT_PASSWORD) is not None
    t = time.monotonic()
    for _ in range(4):
        assert d.verify_password("o1", "wrong") is None
    assert time.monotonic() - t >= 4 * 0.05  # every failure answers late
    assert d.verify_password("o1", ACCOUNT_PASSWORD) is not None  # not 5 in a row: reset
    for _ in range(5):
        assert d.verify_password("o1", "wrong") is None
    assert locked == [("o1", 5)] and d.locked("o1")
    assert d.verify_password("o1", ACCOUNT_PASSWORD) is None  # locked: even the right one
    now[0] += 61
    assert d.verify_password("o1", ACCOUNT_PASSWORD) is not None


def test_lockout_raises_a_security_alert_and_retained_request_is_refused(broker, tmp_path):
    site, clock = make_site(), sped_up(30)
    d = Driver(broker.host, broker.port, site, clock)
    # Published retained while the supervisor is down: the broker would replay it at start.
    d.client.publish(d.topics.request("o1", "register-officer"),
                     request_payload("kept-1", None, {"officer": "o1", "band": "00000000a1",
                                                      "sex": "m"}), qos=1,
                     retain=True).wait_for_publish(5)
    sup = InProcess(site, tmp_path, broker.host, broker.port, clock)
    try:
        r = _response(d, "kept-1")
        assert not r["ok"] and "retained" in r["error"]
        assert "o1" not in sup.sup.state.officers
        sup.sup.accounts.fail_delay_s = 0
        for _ in range(5):
            assert sup.sup.accounts.verify_password("o2", "not-it") is None
        alert = d.wait_for("login-locked")
        assert alert["severity"] == "critical" and "o2" in alert["message"]
        assert sup.sup.accounts.verify_password("o2", ACCOUNT_PASSWORD) is None
        # The cleared retained request is not replayed to a new subscriber.
        probe = Driver(broker.host, broker.port, site, clock)
        got: list[Any] = []
        probe.client.on_message = lambda c, u, m: got.append(m.payload)
        probe.client.subscribe(d.topics.request("o1", "register-officer"), qos=1)
        time.sleep(1.0)
        probe.close()
        assert not [p for p in got if p]
    finally:
        d.close()
        sup.stop()


def _response(d: Driver, txn: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = d.responses.get(timeout=max(0.01, deadline - time.monotonic()))
        if r["txn"] == txn:
            return dict(r)
    raise AssertionError(f"no response to {txn}")


def test_link_conf_repr_hides_the_password():
    assert "s3cret" not in repr(LinkConf("h", 1, "u", "s3cret"))


def test_refused_broker_logins_counted_per_address_from_mosquittos_log(tmp_path):
    from custody.broker import BrokerConfig, Mosquitto
    from supervisor.broker_log import BrokerLogWatch

    def login(b: Mosquitto, password: str) -> bool:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.username_pw_set("o1", password)
        try:
            c.connect(b.host, b.port, 5)
        except OSError:
            return False
        got: list[Any] = []
        c.on_connect = lambda *a: got.append(a[3])
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            c.loop(0.1)
        c.disconnect()
        return bool(got) and not got[0].is_failure

    with Mosquitto(BrokerConfig(users={"o1": "right-password"})) as b:
        watch = BrokerLogWatch(b.log_path)
        for _ in range(4):
            assert not login(b, "wrong")
        assert login(b, "right-password")  # a success from the address resets the count
        for _ in range(5):
            assert not login(b, "wrong")
        deadline = time.monotonic() + 5
        crossed: list[tuple[str, int]] = []
        while not crossed and time.monotonic() < deadline:
            crossed = watch.poll()
            time.sleep(0.1)
        assert crossed == [("127.0.0.1", 5)] and watch.refused_total == 9


def test_broker_login_entry_raises_login_locked_naming_the_address(w):
    entry = w.journal.append_own("login", {"ts": w.now, "user": None, "address": "10.0.0.9",
                                           "failures": 5, "where": "broker"})
    w.state.apply(entry)
    w.alerts.reconcile(w.at(1).now)
    a = [a for a in w.state.alerts.values() if a["rule"] == "login-locked"]
    assert len(a) == 1 and "10.0.0.9" in a[0]["message"] and a[0]["severity"] == "critical"


def test_an_account_flooding_requests_is_throttled_not_journaled_one_by_one(w, monkeypatch):
    """A script with one staff password: past the account's burst its requests are refused
    without a journal entry each, one staff-throttled alert names it, other accounts go on;
    once it slows down, the count is journaled and it is served again."""
    from supervisor import staff as staff_module

    monkeypatch.setattr(staff_module, "STAFF_RATE", 50.0)
    monkeypatch.setattr(staff_module, "STAFF_BURST", 20.0)
    w.staff_h.buckets.clear()
    before, refused_before = w.journal.count, len(w.state.refused)
    answers = [w.staff("record-welfare-check", {"detainee": "nobody"}) for _ in range(200)]
    throttled = [a for a in answers if "is throttled" in (a["error"] or "")]
    assert len(throttled) >= 150 and not any(a["ok"] for a in answers)
    # Only the requests within the burst (and the few the refill allowed) are journaled,
    # plus the one security entry that opened the episode.
    journaled = w.journal.count - before
    assert journaled == len(answers) - len(throttled) + 1, journaled
    assert len(w.state.refused) - refused_before == journaled - 1
    w.alerts.reconcile(w.at(30).now)
    alerts = [a for a in w.state.alerts.values() if a["rule"] == "staff-throttled"]
    assert len(alerts) == 1 and alerts[0]["severity"] == "critical"
    assert "account o1" in alerts[0]["message"] and alerts[0]["state"] == "raised"
    assert w.staff("record-welfare-check", {"detainee": "d1"}, user="o2")["ok"]  # not o2
    assert sorted(w.staff_h.throttled) == ["o1"]
    time.sleep(1.5 * 20.0 / 50.0 + 0.1)  # the debt (at most a burst) paid, half refilled
    w.staff_h.housekeeping()
    summary = w.state.refused[-1]
    assert summary["user"] == "o1" and summary["count"] == len(throttled)
    assert w.staff_h.throttled == {}
    assert w.staff("record-welfare-check", {"detainee": "d1"})["ok"]
    w.alerts.reconcile(w.at(31).now)  # still one alert: latched until staff close it
    assert len([a for a in w.state.alerts.values() if a["rule"] == "staff-throttled"]) == 1


def test_a_request_flood_over_mqtt_raises_staff_throttled_and_nodes_still_get_in(
        broker, tmp_path):
    """Through a real Mosquitto and supervisor: 1,000 requests from one account at once
    raise staff-throttled, are answered, and cost the journal at most the burst."""
    from supervisor.staff import STAFF_BURST

    site, clock = make_site(), sped_up(30)
    d = Driver(broker.host, broker.port, site, clock)
    sup = InProcess(site, tmp_path, broker.host, broker.port, clock)
    try:
        before = sup.sup.journal.count
        topic = d.topics.request("o1", "record-welfare-check")
        for i in range(1000):
            d.client.publish(topic, request_payload(f"flood-{i}", None, {"detainee": "nobody"}),
                             qos=0)
        alert = d.wait_for("staff-throttled", timeout=30)
        assert "account o1" in alert["message"] and alert["severity"] == "critical"
        r = _response(d, "flood-999", timeout=30)
        assert not r["ok"] and "is throttled" in r["error"]
        assert sup.sup.journal.count - before <= STAFF_BURST + 20
        # The supervisor still takes node events: a camera report is journaled.
        n = sup.sup.journal.count
        d.camera("holding-1")
        deadline = time.monotonic() + 10
        while sup.sup.journal.count == n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sup.sup.journal.count > n
    finally:
        d.close()
        sup.stop()


def test_the_report_counts_a_throttled_accounts_refusals_by_their_number(w, monkeypatch):
    """The compliance report's refusals per account add a throttled episode's count."""
    from supervisor import staff as staff_module
    from supervisor.history import archive_state
    from supervisor.report import collect

    monkeypatch.setattr(staff_module, "STAFF_RATE", 50.0)
    monkeypatch.setattr(staff_module, "STAFF_BURST", 10.0)
    w.staff_h.buckets.clear()
    for _ in range(40):
        w.staff("record-welfare-check", {"detainee": "nobody"})
    time.sleep(1.5 * 10.0 / 50.0 + 0.1)
    w.staff_h.housekeeping()
    rows = {r["reason"]: r["count"] for r in collect(archive_state(w.site, w.journal.path), 0,
                                                     2**62)["refused"]
            if r["account"] == "o1"}
    throttled = rows["over the request budget (throttled)"]
    assert throttled >= 25 and throttled + rows["record-welfare-check: detainee 'nobody' "
                                               "is not registered"] == 40
