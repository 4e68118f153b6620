"""Staff identity end to end: a site provisioned from scratch, Mosquitto on its generated
config, accounts made with `custody accounts`, and the supervisor started exactly as
hardware/systemd/custody-supervisor.service's ExecStart says (paths and port mapped to a
temporary install). Staff log in over the TLS listener with the site CA."""

import itertools
import json
import os
import pwd
import shlex
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from custody.broker import free_port, wait_port
from custody.cli import main as custody_main
from custody.provisioning import Options, provision
from protocol.staff import request_payload
from protocol.topics import Topics
from protocol.transport import LinkConf
from supervisor.accounts import AccountFile
from supervisor.journal import read_entries
from supervisor.staff_cli import send
from tests.supervisor_support import BANDS, SITE_TOML

UNIT = Path(__file__).resolve().parents[1] / "hardware" / "systemd" / "custody-supervisor.service"
T = Topics("test-centre")
# account -> (sex, roles); sup2 is a custody supervisor who also works the floor.
PEOPLE = {"o1": ("m", "officer"), "o2": ("f", "officer"),
          "sup1": ("f", "custody-supervisor"), "sup2": ("m", "officer,custody-supervisor"),
          "insp": ("f", "legal-officer")}


def unit_argv(etc: Path, data: Path, port: int) -> list[str]:
    """The unit's ExecStart with /etc/custody, /var/lib/custody and the port mapped."""
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart="))
    words = shlex.split(line[len("ExecStart="):])
    assert words[0] == "/opt/custody-edge/.venv/bin/custody", words[0]
    out = [sys.executable, "-m", "custody"]
    for prev, w in itertools.pairwise(words):
        if w.startswith("/etc/custody/"):
            w = str(etc / w[len("/etc/custody/"):])
        elif w.startswith("/var/lib/custody/"):
            w = str(data / w[len("/var/lib/custody/"):])
        elif prev == "--port":
            w = str(port)
        else:
            assert not w.startswith("/"), f"unmapped path in ExecStart: {w}"
        out.append(w)
    return out


class Site:
    """Provisioned site, its broker, accounts and the supervisor as its unit starts it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="custody-staff-"))
        self.root.chmod(0o755)  # Mosquitto drops to its own user: it must reach the files
        site = self.root / "site.toml"
        site.write_text(SITE_TOML)
        self.out = self.root / "out"
        self.tls_port, self.local_port = free_port(), free_port()
        provision(site, self.out, Options(
            hosts=["localhost", "127.0.0.1"], tls_port=self.tls_port, bind="127.0.0.1",
            local_port=self.local_port, broker_dir=str(self.out / "broker"),
            data_dir=str(self.root / "mq"), log_file=str(self.root / "mq" / "mosquitto.log")))
        self.admin_pw = self.out / "staff" / "admin.password"
        self.pw: dict[str, Path] = {}
        for user, (sex, roles) in PEOPLE.items():
            self.pw[user] = self.root / f"{user}.pw"
            self.pw[user].write_text(f"pass-{user}-{uuid.uuid4().hex[:8]}\n")
            assert self.accounts("add", "--id", user, "--name", user.upper(), "--sex", sex,
                                 "--roles", roles, "--password-file", str(self.pw[user])) == 0
        (self.root / "mq").mkdir()
        self._hand_over()
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.broker = subprocess.Popen([exe, "-c", str(self.out / "broker" / "mosquitto.conf")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       start_new_session=True)
        try:
            wait_port("127.0.0.1", self.tls_port, 10, self.broker)
        except Exception:
            assert self.broker.stderr is not None
            raise AssertionError(self.broker.stderr.read().decode(errors="replace")) from None
        # The install the unit expects: /etc/custody/{site.toml,supervisor/} and its state dir.
        self.etc, self.data = self.root / "etc", self.root / "var"
        (self.etc).mkdir()
        self.data.mkdir()
        shutil.copy(site, self.etc / "site.toml")
        (self.etc / "supervisor").symlink_to(self.out / "supervisor")
        self.log = (self.root / "supervisor.log").open("wb")
        self.sup = subprocess.Popen(unit_argv(self.etc, self.data, self.local_port),
                                    cwd=self.data, stdout=self.log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.db = self.data / "supervisor.db"
        deadline = time.monotonic() + 20
        while self.retained_availability() != b"online":
            assert self.sup.poll() is None, self.sup_log()
            assert time.monotonic() < deadline, "supervisor never came online\n" + self.sup_log()
            time.sleep(0.2)

    def accounts(self, action: str, *args: str) -> int:
        return custody_main(["accounts", action, "--out", str(self.out), "--by", "admin",
                             "--by-password-file", str(self.admin_pw), *args])

    def _hand_over(self) -> None:
        if os.geteuid() != 0:
            return
        user = pwd.getpwnam("mosquitto")
        for d in (self.out / "broker", self.root / "mq"):
            for p in [d, *d.rglob("*")]:
                os.chown(p, user.pw_uid, user.pw_gid)

    def reload_broker(self) -> None:
        """What `systemctl reload mosquitto` does after installing passwords and ACL."""
        self._hand_over()
        self.broker.send_signal(signal.SIGHUP)
        time.sleep(1.0)

    def sup_log(self) -> str:
        return (self.root / "supervisor.log").read_text(errors="replace")[-3000:]

    def link(self, user: str, password: str | None = None) -> LinkConf:
        pw = password if password is not None else self.pw[user].read_text().strip()
        return LinkConf("127.0.0.1", self.tls_port, user, pw,
                        str(self.out / "staff" / "ca.crt"))

    def retained_availability(self) -> bytes | None:
        c = Client(self.link("o1"))
        try:
            if not c.ok:
                return None
            c.c.subscribe(T.supervisor("availability"), qos=1)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and not c.messages:
                time.sleep(0.05)
            return c.messages[0][1] if c.messages else None
        finally:
            c.close()

    def do(self, user: str, command: str, args: dict[str, Any]) -> dict[str, Any]:
        return send(T, self.link(user), command, user, args, timeout=10)

    def entries(self, kind: str) -> list[dict[str, Any]]:
        return [e.json() for e in read_entries(self.db) if e.kind == kind]

    def close(self) -> None:
        for p in (self.sup, self.broker):
            if p.poll() is None:
                p.terminate()
                p.wait(15)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


class Client:
    """A paho client over TLS that records CONNACK and messages."""

    def __init__(self, link: LinkConf) -> None:
        self.done = threading.Event()
        self.rc: Any = None
        self.messages: list[tuple[str, bytes]] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uuid.uuid4().hex[:12])
        self.c.username_pw_set(link.username, link.password)
        self.c.tls_set_context(ssl.create_default_context(cafile=link.ca_file))
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.c.connect(link.host, link.port, keepalive=10)
        self.c.loop_start()
        assert self.done.wait(10), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.rc = rc
        self.done.set()

    @property
    def ok(self) -> bool:
        return not self.rc.is_failure

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def detainee(site: Site) -> str:
    """d1 registered by o1 and searched by o2 with sup2: team {o1, o2, sup2}."""
    for o in ("o1", "o2"):
        assert site.do("o1", "register-officer", {"officer": o, "band": BANDS[o],
                                                  "sex": PEOPLE[o][0]})["ok"]
    r = site.do("o1", "register-detainee", {"detainee": "d1", "band": BANDS["d1"], "case": "c1",
                                            "sex": "m", "custody_type": "short",
                                            "observation": "level1"})
    assert r["ok"], r
    r = site.do("o2", "record-search", {"detainee": "d1", "officers": ["o2", "sup2"],
                                        "result": "completed"})
    assert r["ok"], r
    return "d1"


def test_approval_needs_a_supervisor_off_the_team_and_the_journal_names_them(site, detainee):
    args = {"detainee": detainee, "disposition": "release"}
    r = site.do("o1", "approve-disposition", args)
    assert not r["ok"] and "may not do this" in r["error"], r
    r = site.do("sup2", "approve-disposition", args)
    assert not r["ok"] and "own team" in r["error"], r
    r = site.do("sup1", "approve-disposition", args)
    assert r["ok"], r
    staff = [e for e in site.entries("staff") if e["command"] == "approve-disposition"]
    assert [e["user"] for e in staff] == ["sup1"]
    refused = [(e["user"], e["command"]) for e in site.entries("refused")]
    assert ("o1", "approve-disposition") in refused and ("sup2", "approve-disposition") in refused


def test_payload_naming_another_user_and_reused_txn_are_refused(site, detainee):
    c = Client(site.link("o1"))
    try:
        assert c.ok
        c.c.subscribe(T.response_filter("o1"), qos=1)
        time.sleep(0.5)

        def ask(command: str, payload: bytes) -> dict[str, Any]:
            txn = json.loads(payload)["txn"]
            c.c.publish(T.request("o1", command), payload, qos=1)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                for _t, p in list(c.messages):
                    d = json.loads(p)
                    if d["txn"] == txn:
                        c.messages.clear()
                        return dict(d)
                time.sleep(0.05)
            raise AssertionError(f"no answer to {command}")

        r = ask("record-welfare-check", request_payload("x1", "sup1", {"detainee": detainee}))
        assert not r["ok"] and "names user 'sup1'" in r["error"], r
        r = ask("record-welfare-check", request_payload("x2", None, {"detainee": detainee}))
        assert r["ok"], r
        r = ask("record-welfare-check", request_payload("x2", None, {"detainee": detainee}))
        assert r["ok"] and r["result"]["duplicate"], r  # a retry applies once
        r = ask("set-observation", request_payload("x2", None, {"detainee": detainee,
                                                                "observation": "high"}))
        assert not r["ok"] and "already used" in r["error"], r
    finally:
        c.close()


def test_node_credentials_cannot_publish_a_staff_request(site, detainee):
    node_pw = (site.out / "nodes" / "node-entry" / "mqtt.password").read_text().strip()
    n = Client(site.link("node-entry", node_pw))
    try:
        assert n.ok
        for user in ("o1", "node-entry"):
            n.c.publish(T.request(user, "set-observation"),
                        request_payload(f"from-node-{user}", None,
                                        {"detainee": detainee, "observation": "high"}),
                        qos=1).wait_for_publish(5)
        time.sleep(2.0)
    finally:
        n.close()
    txns = {e.get("txn") for k in ("staff", "refused") for e in site.entries(k)}
    assert not {"from-node-o1", "from-node-node-entry"} & txns  # the broker dropped them


def test_unknown_and_disabled_accounts_cannot_log_in(site):
    c = Client(site.link("nobody", "whatever-password"))
    assert not c.ok
    c.close()
    c = Client(site.link("insp"))
    assert c.ok
    c.close()
    assert site.accounts("disable", "--id", "insp") == 0
    site.reload_broker()
    c = Client(site.link("insp"))
    assert not c.ok
    c.close()
    # The supervisor re-read the directory and journaled every change, hashes never.
    deadline = time.monotonic() + 10
    while not any(e["action"] == "disable" for e in site.entries("account")):
        assert time.monotonic() < deadline, site.sup_log()
        time.sleep(0.2)
    acc = site.entries("account")
    assert [(e["account"], e["action"]) for e in acc][-1] == ("insp", "disable")
    assert {e["by"] for e in acc} == {"provision", "admin"}
    assert "scrypt$" not in json.dumps(acc) and "$7$" not in json.dumps(acc)


def test_legal_officer_records_findings_but_changes_no_custody(site, detainee):
    insp = AccountFile(site.out / "supervisor" / "accounts.json").get("insp")
    if insp is not None and not insp.enabled:  # the test above disabled it
        assert site.accounts("enable", "--id", "insp") == 0
        site.reload_broker()
    r = site.do("insp", "record-finding", {"detainee": detainee, "finding": "search log late",
                                           "severity": "concern"})
    assert r["ok"], r
    r = site.do("insp", "set-observation", {"detainee": detainee, "observation": "high"})
    assert not r["ok"] and "may not do this" in r["error"], r


def test_report_lists_refused_actions_by_account_and_reason(site, detainee, tmp_path):
    # Its own refusals, so the test holds whichever tests ran before it on this worker.
    args = {"detainee": detainee, "disposition": "release"}
    assert "may not do this" in site.do("o1", "approve-disposition", args)["error"]
    assert "own team" in site.do("sup2", "approve-disposition", args)["error"]
    four_eyes = [e for e in site.entries("refused")
                 if e["user"] == "sup2" and "four eyes" in e["reason"]]
    assert four_eyes, site.entries("refused")
    r = subprocess.run([sys.executable, "-m", "custody", "report", "--config",
                        str(site.etc / "site.toml"), "--db", str(site.db), "--out",
                        str(tmp_path / "rep")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "refused: o1: role does not allow it" in r.stdout, r.stdout
    assert "refused: sup2: four eyes: approver on the detainee's team" in r.stdout, r.stdout
    rows = (tmp_path / "rep" / "refused_by_account.csv").read_text()
    assert f"sup2,four eyes: approver on the detainee's team,{len(four_eyes)}" in rows, rows


def test_secret_and_database_files_have_no_group_or_other_read_bit(site, detainee):
    secrets = [site.out / p for p in (
        "provision.json", "ca/ca.key", "broker/server.key", "broker/passwords",
        "supervisor/keys.toml", "supervisor/mqtt.password", "supervisor/accounts.json",
        "staff/admin.password", "nodes/node-entry/node.key", "nodes/node-entry/mqtt.password")]
    made = [p for p in site.data.iterdir() if p.is_file()]
    names = {p.name for p in made}
    assert {"supervisor.db", "supervisor.db-wal", "supervisor.db-shm",
            "checkpoint.json"} <= names, names
    for p in secrets + made:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, f"{p}: {oct(mode)}"
    assert not (site.out / "staff" / "mqtt.password").exists()  # no shared staff login


def test_agent_outbox_and_its_wal_are_owner_only(tmp_path):
    from edge_agent.outbox import Outbox
    from protocol.clock import simulated

    old = os.umask(0o022)  # as a careless service manager would leave it
    try:
        ob = Outbox(tmp_path / "outbox.db", "node-entry", bytes(32),
                    simulated(1.0, time.time()))
        ob.append("door", {"door": "d1", "state": "open"})
        for suffix in ("", "-wal", "-shm"):
            p = Path(f"{tmp_path / 'outbox.db'}{suffix}")
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p
        ob.close()
    finally:
        os.umask(old)


def test_staff_tools_over_tls_with_the_site_ca(site, detainee):
    conn = ["--config", str(site.etc / "site.toml"), "--ca-file",
            str(site.out / "staff" / "ca.crt"), "--host", "127.0.0.1", "--port",
            str(site.tls_port)]
    base = [sys.executable, "-m", "custody"]
    ok = subprocess.run([*base, "staff", "record-welfare-check", *conn, "--user", "o2",
                         "--password-file", str(site.pw["o2"]), "--detainee", detainee],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    wrong = site.root / "wrong.pw"
    wrong.write_text("not-the-password\n")
    bad = subprocess.run([*base, "staff", "record-welfare-check", *conn, "--user", "o2",
                          "--password-file", str(wrong), "--detainee", detainee],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "refused login 'o2'" in bad.stderr, bad.stderr
    watch = subprocess.run([*base, "alerts", "watch", *conn, "--user", "sup1",
                            "--password-file", str(site.pw["sup1"]), "--seconds", "1"],
                           capture_output=True, text=True, timeout=60)
    assert watch.returncode == 0 and "Active alerts" in watch.stdout, watch.stderr
