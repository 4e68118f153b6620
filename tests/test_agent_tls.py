"""The agent over TLS with its own credentials, under an ACL that confines it to its topics."""

import datetime
import ipaddress
import shutil
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from custody.broker import BrokerConfig, Mosquitto, TlsFiles
from protocol.transport import LinkConf
from tests.agent_support import (
    NODE,
    SITE_ID,
    Acker,
    AgentProcess,
    Observer,
    Rig,
    assert_in_order_without_gaps,
    read_bands,
    wait_for,
    wait_up,
    write_config,
    write_site,
)


def _cert(subject: str, key, issuer_name, issuer_key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                   subject)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pki(d: Path) -> TlsFiles:
    d.mkdir(mode=0o755)
    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = _cert("custody test CA", ca_key, None, ca_key, True)
    srv = _cert("127.0.0.1", srv_key, ca.subject, ca_key, False)
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(srv.public_bytes(pem))
    (d / "server.key").write_bytes(srv_key.private_bytes(
        pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    return TlsFiles(str(d / "ca.pem"), str(d / "server.pem"), str(d / "server.key"))


@pytest.fixture
def tls_broker():
    # Not under pytest's 0700 tmp: Mosquitto runs as its own user and must reach the files.
    base = Path(tempfile.mkdtemp(prefix="custody-tls-"))
    base.chmod(0o755)
    tls = _pki(base / "pki")
    prefix = f"custody/v1/{SITE_ID}"
    # The node part of the provisioned ACL: a node writes and reads only under its own id
    # (%u). It is not granted supervisor/availability here: the agent must cope without it.
    acl = (f"pattern write {prefix}/node/%u/event\n"
           f"pattern write {prefix}/node/%u/availability\n"
           f"pattern write {prefix}/node/%u/health\n"
           f"pattern read {prefix}/node/%u/ack\n"
           f"pattern read {prefix}/node/%u/roster\n"
           "user supervisor\ntopic readwrite #\n")
    b = Mosquitto(BrokerConfig(users={NODE: "node-secret", "supervisor": "sup-secret"},
                               acl=acl, tls=tls), base / "broker")
    b.start()
    try:
        yield b, tls
    finally:
        b.close()
        shutil.rmtree(base, ignore_errors=True)


def test_agent_over_tls_with_per_node_credentials(tls_broker, tmp_path):
    broker, tls = tls_broker
    rig = Rig()
    cfg = write_config(tmp_path, broker, rig, write_site(tmp_path))
    (tmp_path / "mqtt.pw").write_text("node-secret\n")
    cfg.write_text(cfg.read_text().replace(
        "[mqtt]", f'[mqtt]\nusername = "{NODE}"\npassword_file = "mqtt.pw"\n'
                  f'ca_file = "{tls.cafile}"'))
    sup = LinkConf(broker.host, broker.port, "supervisor", "sup-secret", tls.cafile)
    obs = Observer(broker, conf=sup)
    acker = Acker(broker, conf=sup)
    agent = AgentProcess(cfg).start()
    try:
        wait_up(obs, agent)
        read_bands(rig, range(5))
        wait_for(lambda: len(acker.first) >= 10, 15, "events over TLS", agent.log_text)
        assert_in_order_without_gaps(acker)
        wait_for(lambda: obs.health[-1]["queue"] == 0, 10, "acks over TLS", agent.log_text)
        assert obs.availability[-1] == "online"
        assert agent.terminate() == 0
    finally:
        agent.close()
        acker.close()
        obs.close()
        rig.close()
