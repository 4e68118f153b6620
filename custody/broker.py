"""A Mosquitto harness for tests, the demo and docs; an embedded amqtt fallback.

Writes a config (loopback listener on a free port, persistence, `set_tcp_nodelay true`,
optional password file + ACL, optional TLS), starts `mosquitto -c` as a child, waits until
it accepts connections and stops it cleanly. Run as root, Mosquitto drops to the
`mosquitto` user, so every file it reads or writes is handed to that user.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


class BrokerError(RuntimeError):
    """The broker could not be started or did not come up."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
              ) -> None:
    """Wait until host:port accepts TCP connections (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise BrokerError(f"broker did not accept connections on {host}:{port} within {timeout}s")


@dataclass
class TlsFiles:
    """Server-side TLS material (PEM paths); `require_certificate` asks clients for certs."""

    cafile: str
    certfile: str
    keyfile: str
    require_certificate: bool = False


@dataclass
class BrokerConfig:
    """What the harness writes into mosquitto.conf."""

    port: int = 0  # 0: pick a free port
    host: str = "127.0.0.1"
    users: dict[str, str] = field(default_factory=dict)  # name -> password; empty: anonymous
    acl: str | None = None  # ACL file text; None: no ACL
    tls: TlsFiles | None = None
    max_queued_messages: int = 100000
    autosave_interval: int = 1
    extra: list[str] = field(default_factory=list)


def _mosquitto_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return None


def _check_traversable(d: Path) -> None:
    """Refuse a directory the `mosquitto` user could not reach (e.g. under a 0700 parent)."""
    for parent in d.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise BrokerError(f"{parent} is not searchable by the mosquitto user "
                              f"(mode {oct(mode & 0o777)}); put the broker directory elsewhere")


class Mosquitto:
    """One Mosquitto child process with its own directory, config and log."""

    kind = "mosquitto"

    def __init__(self, config: BrokerConfig | None = None, workdir: str | Path | None = None
                 ) -> None:
        self.config = config or BrokerConfig()
        if self.config.port == 0:
            self.config.port = free_port()
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="custody-mosq-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "mosquitto.log"

    @property
    def host(self) -> str:
        """Address clients connect to."""
        return self.config.host

    @property
    def port(self) -> int:
        """Port clients connect to."""
        return self.config.port

    def _write(self) -> Path:
        c, d = self.config, self.dir
        (d / "data").mkdir(parents=True, exist_ok=True)
        lines = [
            "per_listener_settings false",
            f"listener {c.port} {c.host}",
            "persistence true",
            f"persistence_location {d / 'data'}/",
            f"autosave_interval {c.autosave_interval}",
            f"max_queued_messages {c.max_queued_messages}",
            "max_inflight_messages 100",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
        ]
        if c.users:
            pw = d / "passwords"
            pw.write_text("")
            for name, password in c.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), name, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if c.acl is not None:
            (d / "acl").write_text(c.acl)
            lines.append(f"acl_file {d / 'acl'}")
        if c.tls is not None:
            lines += [f"cafile {c.tls.cafile}", f"certfile {c.tls.certfile}",
                      f"keyfile {c.tls.keyfile}",
                      f"require_certificate {'true' if c.tls.require_certificate else 'false'}"]
            if c.tls.require_certificate:
                lines.append("use_identity_as_username true")
        lines += c.extra
        conf = d / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        user = _mosquitto_user()
        if user is not None:
            _check_traversable(d)
            # Mosquitto drops to this user: it must read its files and write its store.
            for p in [d, *d.rglob("*")]:
                os.chown(p, user.pw_uid, user.pw_gid)
            for p in (d / "passwords", d / "acl"):
                if p.exists():
                    p.chmod(0o600)
            if c.tls is not None:
                for f in (c.tls.cafile, c.tls.certfile, c.tls.keyfile):
                    os.chown(f, user.pw_uid, user.pw_gid)
        return conf

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        """Write the config, start mosquitto and wait until it listens."""
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                             if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        conf = self._write()
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        try:
            wait_port(self.host, self.port, timeout, self.proc)
        except BrokerError as e:
            raise BrokerError(f"{e}; log: {self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the broker's log (and stderr if it died)."""
        text = ""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
        if self.proc is not None and self.proc.poll() is not None and self.proc.stderr:
            text += self.proc.stderr.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """Stop cleanly (SIGTERM, then SIGKILL after `timeout`)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def kill(self) -> None:
        """kill -9, as a fault would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self, timeout: float = 10.0) -> "Mosquitto":
        """Start again on the same port and store."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop and remove the broker's directory if the harness made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Mosquitto":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EmbeddedBroker(Mosquitto):
    """amqtt in a child process, for the zero-set-up demo where Mosquitto is absent.

    Anonymous, no TLS, no ACL: a demonstration broker, never a site's.
    """

    kind = "amqtt (embedded)"

    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        """Start amqtt on the configured port."""
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        exe = Path(sys.executable).with_name("amqtt")
        if not exe.exists():
            raise BrokerError("neither mosquitto nor amqtt is installed")
        self.proc = subprocess.Popen([str(exe), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        wait_port(self.host, self.port, timeout, self.proc)
        return self


def start_broker(config: BrokerConfig | None = None, workdir: str | Path | None = None,
                 allow_embedded: bool = True) -> Mosquitto:
    """Start Mosquitto, or amqtt where Mosquitto is absent (and the caller allows it)."""
    have_mosquitto = shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()
    if have_mosquitto or not allow_embedded:
        return Mosquitto(config, workdir).start()
    return EmbeddedBroker(config, workdir).start()
