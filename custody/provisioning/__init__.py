"""`custody provision`: a site's credentials, broker configuration and per-node files.

Everything lands under one output directory (secret: keep it on the provisioning machine):

    ca/            site CA (ca.key never leaves this directory), ca.crt, ca.der
    broker/        mosquitto.conf, ca.crt, server.crt, server.key, passwords, acl
    supervisor/    keys.toml (every node's HMAC key), checkpoint.key, mqtt.password, ca.crt,
                   accounts.json (the staff directory: roles, scrypt and broker hashes)
    staff/         admin.password (the bootstrap admin's first password), ca.crt
    nodes/<id>/    room node: agent.toml, site.toml, node.key, mqtt.password, ca.crt
                   sensor board: config.json, ca.der (copy onto the board's flash)
    provision.json what was provisioned with which options, and who is revoked

Re-running keeps every existing secret (CA, broker key, node keys and passwords) and only
adds what is new; revoking removes a node's broker password and HMAC key in one command.
Staff log in to the broker with their own accounts (`custody accounts`), never a shared
login; the first run creates one account, `admin`, with a random password in
staff/admin.password. Every secret file is written 0600.
"""

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from protocol.ids import check_id
from protocol.keys import dump_keys
from protocol.site import Node, Site, load_site
from supervisor.accounts import AccountError, AccountFile

from . import pki
from .files import acl_text, agent_toml, board_config, mosquitto_conf

SUPERVISOR_USER = "supervisor"
ADMIN_USER = "admin"
STATE_FILE = "provision.json"
ACCOUNTS_FILE = "supervisor/accounts.json"


class ProvisionError(RuntimeError):
    """Provisioning cannot go on (bad state directory, missing tool, unknown node)."""


@dataclass
class Options:
    """How the site's broker is reached and where its files will be installed."""

    hosts: list[str] = field(default_factory=list)  # broker names/addresses for its cert
    tls_port: int = 8883
    bind: str = ""  # TLS listener address; "" = every interface
    local_port: int = 1883  # plain listener on 127.0.0.1 for the supervisor; 0 = none
    broker_dir: str = "/etc/mosquitto/custody"  # where broker/ is installed
    data_dir: str = "/var/lib/mosquitto"
    log_file: str = ""  # "" = syslog
    wifi_ssid: str = "CHANGE-ME"
    wifi_password: str = field(default="CHANGE-ME", repr=False)  # a secret: never in a repr


@dataclass
class Report:
    """What a run did."""

    added: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped_revoked: list[str] = field(default_factory=list)


def _write(path: Path, data: str | bytes, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def _secret(path: Path, make: str) -> str:
    """The secret stored at `path`, created from `make` the first time."""
    if path.exists():
        return path.read_text().strip()
    _write(path, make + "\n", secret=True)
    return make


def _state(out: Path) -> dict[str, object]:
    p = out / STATE_FILE
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text())
    except ValueError as e:
        raise ProvisionError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ProvisionError(f"{p}: expected an object")
    return data


def _ca(out: Path, site: Site) -> pki.Issued:
    crt, key = out / "ca" / "ca.crt", out / "ca" / "ca.key"
    if crt.exists() and key.exists():
        return pki.load(crt, key)
    ca = pki.make_ca(site.id)
    _write(key, pki.key_pem(ca.key), secret=True)
    _write(crt, pki.cert_pem(ca.cert))
    _write(out / "ca" / "ca.der", pki.cert_der(ca.cert))
    return ca


def _server(out: Path, ca: pki.Issued, site: Site, hosts: list[str]) -> None:
    crt, key = out / "broker" / "server.crt", out / "broker" / "server.key"
    if crt.exists() and key.exists():
        have = pki.load(crt, key).cert
        try:
            san = have.extensions.get_extension_for_class(pki.x509.SubjectAlternativeName)
            names = set(san.value.get_values_for_type(pki.x509.DNSName))
        except pki.x509.ExtensionNotFound:
            names = set()
        if set(hosts) <= names:
            return  # keep it: nodes keep trusting the same CA either way
    server = pki.make_server_cert(ca, site.id, hosts)
    _write(key, pki.key_pem(server.key), secret=True)
    _write(crt, pki.cert_pem(server.cert))


def _new_password() -> str:
    """A random broker password that never starts with "-" (command lines would take it for
    an option)."""
    while True:
        pw = secrets.token_urlsafe(24)
        if pw[0] not in "-_":
            return pw


def _render_shared(out: Path, site_id: str, prefix: str, nodes: list[str], revoked: list[str],
                   opts: Options) -> None:
    """Rewrite the broker's password file, ACL and config and the supervisor's key table."""
    live = [n for n in sorted(nodes) if n not in revoked]
    users = {n: (out / "nodes" / n / "mqtt.password").read_text().strip() for n in live}
    users[SUPERVISOR_USER] = _secret(out / "supervisor" / "mqtt.password",
                                     _new_password())
    (out / "staff" / "mqtt.password").unlink(missing_ok=True)  # the old shared staff login
    staff = _accounts(out).broker_hashes()
    clash = sorted(set(staff) & set(nodes))
    if clash:
        raise ProvisionError(f"staff account(s) {', '.join(clash)} have a node's id: rename "
                             "them (a broker login must be one or the other)")
    _hash_passwords(out / "broker" / "passwords", users, staff)
    _write(out / "broker" / "acl", acl_text(f"{prefix}/{site_id}", SUPERVISOR_USER, live,
                                            sorted(staff)))
    _write(out / "broker" / "mosquitto.conf",
           mosquitto_conf(site_id, opts.broker_dir, opts.data_dir, opts.tls_port, opts.bind,
                          opts.local_port, opts.log_file, len(live)))
    keys = {n: bytes.fromhex((out / "nodes" / n / "node.key").read_text().strip()) for n in live}
    _write(out / "supervisor" / "keys.toml", dump_keys(keys), secret=True)
    # The journal's checkpoint key: installed with keys.toml, never beside the journal.
    _secret(out / "supervisor" / "checkpoint.key", secrets.token_hex(32))
    shutil.copy(out / "ca" / "ca.crt", out / "broker" / "ca.crt")
    shutil.copy(out / "ca" / "ca.crt", out / "supervisor" / "ca.crt")
    shutil.copy(out / "ca" / "ca.crt", out / "staff" / "ca.crt")


def _accounts(out: Path) -> AccountFile:
    try:
        return AccountFile(out / ACCOUNTS_FILE)
    except AccountError as e:
        raise ProvisionError(str(e)) from None


def _bootstrap_admin(out: Path) -> bool:
    """Create the first admin account (password in staff/admin.password) if none exists."""
    f = _accounts(out)
    if f.data["accounts"]:
        return False
    password = _secret(out / "staff" / "admin.password", _new_password())
    f.add("provision", ADMIN_USER, "Site administrator", "x", ["admin"], password)
    f.save()
    return True


def render_staff(out: str | Path) -> None:
    """Re-render the broker's password file and ACL after a staff account changed."""
    outp = Path(out)
    state = _state(outp)
    if not state:
        raise ProvisionError(f"{outp} has no {STATE_FILE}: provision the site first")
    nodes = [str(n) for n in state.get("nodes", [])]  # type: ignore[attr-defined]
    revoked = [str(n) for n in state.get("revoked", [])]  # type: ignore[attr-defined]
    _render_shared(outp, str(state["site"]), str(state["topic_prefix"]), nodes, revoked,
                   Options(**state["options"]))  # type: ignore[arg-type]


def _hash_passwords(path: Path, users: dict[str, str], hashed: dict[str, str]) -> None:
    """A Mosquitto password file (hashed by mosquitto_passwd, never stored in clear);
    `hashed`: lines already in Mosquitto's format (the staff accounts)."""
    exe = shutil.which("mosquitto_passwd")
    if exe is None:
        raise ProvisionError("mosquitto_passwd not found (apt-get install mosquitto)")
    tmp = path.with_name(path.name + ".clear")
    _write(tmp, "".join(f"{u}:{p}\n" for u, p in sorted(users.items())), secret=True)
    try:
        r = subprocess.run([exe, "-U", str(tmp)], capture_output=True, text=True)
        if r.returncode != 0:
            raise ProvisionError(f"mosquitto_passwd -U failed: {r.stderr.strip()}")
        text = tmp.read_text() + "".join(f"{u}:{h}\n" for u, h in sorted(hashed.items()))
    finally:
        tmp.unlink(missing_ok=True)
    _write(path, text, secret=True)


def _node_files(out: Path, site: Site, node: Node, opts: Options, site_path: Path) -> bool:
    """Write one node's files; return True if it was new."""
    d = out / "nodes" / node.id
    new = not (d / "node.key").exists()
    key = _secret(d / "node.key", secrets.token_hex(32))
    password = _secret(d / "mqtt.password", _new_password())
    host = opts.hosts[0]
    if node.kind == "sensor":
        cfg = board_config(site, node, key, host, opts.tls_port, password, opts.wifi_ssid,
                           opts.wifi_password)
        _write(d / "config.json", json.dumps(cfg, indent=1, sort_keys=True) + "\n", secret=True)
        shutil.copy(out / "ca" / "ca.der", d / "ca.der")
    else:
        _write(d / "agent.toml", agent_toml(node, host, opts.tls_port))
        shutil.copy(site_path, d / "site.toml")
        shutil.copy(out / "ca" / "ca.crt", d / "ca.crt")
    return new


def provision(site_path: str | Path, out: str | Path, opts: Options | None = None) -> Report:
    """Create or extend a site's credentials and configuration under `out`."""
    site = load_site(site_path)
    outp = Path(out)
    state = _state(outp)
    if state and state.get("site") != site.id:
        raise ProvisionError(f"{outp} holds site {state.get('site')!r}, not {site.id!r}")
    opts = opts or Options()
    if not opts.hosts:
        opts.hosts = [site.broker.host] + [h for h in ("localhost", "127.0.0.1")
                                           if h != site.broker.host]
    revoked = [str(x) for x in state.get("revoked", [])]  # type: ignore[attr-defined]
    ca = _ca(outp, site)
    _server(outp, ca, site, opts.hosts)
    report = Report()
    for node in site.nodes:
        if node.id in revoked:
            report.skipped_revoked.append(node.id)
            continue
        (report.added if _node_files(outp, site, node, opts, Path(site_path)) else
         report.kept).append(node.id)
    known = sorted({p.name for p in (outp / "nodes").iterdir() if p.is_dir()})
    _bootstrap_admin(outp)
    _render_shared(outp, site.id, site.topic_prefix, known, revoked, opts)
    _save_state(outp, site.id, site.topic_prefix, known, revoked, opts)
    return report


def _save_state(out: Path, site_id: str, prefix: str, nodes: list[str], revoked: list[str],
                opts: Options) -> None:
    _write(out / STATE_FILE, json.dumps({"site": site_id, "topic_prefix": prefix,
                                         "nodes": nodes, "revoked": sorted(set(revoked)),
                                         "options": asdict(opts)}, indent=1) + "\n",
           secret=True)  # options hold the Wi-Fi password


def revoke(out: str | Path, node: str) -> None:
    """Revoke a node: its broker password and HMAC key are removed, its files retired."""
    check_id(node, "node id")
    outp = Path(out)
    state = _state(outp)
    if not state:
        raise ProvisionError(f"{outp} has no {STATE_FILE}: provision the site first")
    nodes = [str(n) for n in state.get("nodes", [])]  # type: ignore[attr-defined]
    if node not in nodes:
        raise ProvisionError(f"node {node!r} was never provisioned in {outp}")
    revoked = [str(n) for n in state.get("revoked", [])] + [node]  # type: ignore[attr-defined]
    opts = Options(**state["options"])  # type: ignore[arg-type]
    d = outp / "nodes" / node
    for name in ("node.key", "mqtt.password"):
        # The secrets are destroyed, not kept: a reinstated node gets new ones.
        (d / name).unlink(missing_ok=True)
    _render_shared(outp, str(state["site"]), str(state["topic_prefix"]), nodes, revoked, opts)
    _save_state(outp, str(state["site"]), str(state["topic_prefix"]), nodes, revoked, opts)


def reinstate(out: str | Path, node: str) -> None:
    """Let a revoked node be provisioned again (with new secrets) on the next run."""
    outp = Path(out)
    state = _state(outp)
    revoked = [str(n) for n in state.get("revoked", []) if n != node]  # type: ignore[attr-defined]
    state["revoked"] = revoked
    _write(outp / STATE_FILE, json.dumps(state, indent=1) + "\n", secret=True)

