"""A PostgreSQL harness for tests, the region demo and benchmarks.

PostgreSQL refuses to run as root, so when we are root the cluster is initialised and run as
the `postgres` system user (Debian's package makes it), else `nobody`, through `runuser`.
The data directory lives in a temp dir owned by that user; the server listens on a free
loopback port with trust authentication (loopback only) and is stopped with `pg_ctl stop`.
"""

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .broker import BrokerError, free_port

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin",
               "/usr/lib/postgresql/17/bin")


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (initdb, pg_ctl), or BrokerError."""
    for d in PG_BIN_DIRS:
        p = Path(d) / name
        if p.exists():
            return str(p)
    exe = shutil.which(name)
    if exe is None:
        raise BrokerError(f"{name} not found: install the Debian package 'postgresql'")
    return exe


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(user)
    raise BrokerError("running as root and neither 'postgres' nor 'nobody' exists")


@dataclass
class PgServer:
    """One throw-away PostgreSQL cluster; `dsn` is the libpq connection string."""

    port: int = 0
    dbname: str = "custody"
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _user: pwd.struct_passwd | None = None
    data: Path | None = None

    @property
    def dsn(self) -> str:
        """Connection string for psycopg."""
        user = self._user.pw_name if self._user is not None else pwd.getpwuid(os.geteuid()).pw_name
        return f"host=127.0.0.1 port={self.port} user={user} dbname={self.dbname}"

    def _cmd(self, argv: list[str], timeout: float = 60.0) -> None:
        if self._user is not None:
            argv = ["runuser", "-u", self._user.pw_name, "--", *argv]
        r = subprocess.run(argv, capture_output=True, timeout=timeout, cwd="/")
        if r.returncode != 0:
            raise BrokerError(f"{' '.join(argv)} failed ({r.returncode}): "
                              f"{(r.stdout + r.stderr).decode(errors='replace')[-800:]}")

    def start(self) -> "PgServer":
        """initdb, start on a free port, create the database."""
        self._user = _run_as()
        self._tmp = tempfile.TemporaryDirectory(prefix="custody-pg-")
        root = Path(self._tmp.name)
        os.chmod(root, 0o755)  # the server user must reach its data dir
        self.data = root / "data"
        self.data.mkdir(mode=0o700)
        sock = root / "run"  # socket and server log: written by the server user
        sock.mkdir()
        if self._user is not None:
            for p in (self.data, sock):
                os.chown(p, self._user.pw_uid, self._user.pw_gid)
        self.port = self.port or free_port()
        self._cmd([pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-E", "UTF8",
                   "--no-sync", "-U", self._user.pw_name if self._user else
                   pwd.getpwuid(os.geteuid()).pw_name])
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {sock} -c fsync=on "
                "-c max_connections=200 -c shared_buffers=64MB")
        self._cmd([pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                   str(sock / "server.log"), "-w", "-t", "60", "start"], timeout=90)
        import psycopg
        with psycopg.connect(self.dsn.replace(f"dbname={self.dbname}", "dbname=postgres"),
                             autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{self.dbname}"')
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its files."""
        if self.data is not None and (self.data / "postmaster.pid").exists():
            with contextlib.suppress(BrokerError, subprocess.TimeoutExpired):
                self._cmd([pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "PgServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
