"""Staff accounts: who may log in, with which roles, and the login protection around it.

The directory is one JSON file (mode 0600) made by `custody provision` and changed only by
`custody accounts` (supervisor/accounts_cli.py):

    {"version": 1, "accounts": {id: {"name", "sex", "roles": [...], "enabled",
                                     "hash": scrypt hash, "broker_hash": Mosquitto $7$ hash}},
     "history": [{"seq", "ts", "by", "account", "action", "fields"}, ...]}

`history` is append-only: every create, change, disable and enable with who did it and the
public fields it set (never a hash). The supervisor re-reads the file when it changes and
journals each history record it has not journaled yet (kind "account"), so the hash-chained
journal holds every account change in order, once, across restarts. Passwords live only as
salted slow hashes: scrypt for the supervisor and desk, Mosquitto's PBKDF2-SHA512 format for
the broker's password file (rendered from `broker_hash` by the provisioning).
"""

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.ids import ID_RE
from protocol.passwords import check_password, hash_password, mosquitto_hash, write_file

__all__ = ["ROLES", "Account", "AccountError", "AccountFile", "Directory", "check_password",
           "hash_password", "mosquitto_hash", "write_file"]

ROLES = ("officer", "custody-supervisor", "legal-officer", "admin")
SEXES = ("f", "m", "x")  # x: not stated (an admin who never searches anyone)
RESERVED = ("supervisor", "staff")  # broker logins that are not people
LOCK_AFTER = 5  # failed logins in a row before the account is locked
LOCK_S = 300.0  # how long a lock lasts (real seconds)
FAIL_DELAY_S = 0.5  # every failed password check answers this much later (slows guessing)
MIN_PASSWORD = 10

class AccountError(ValueError):
    """A bad account, field or directory file; the message names what and where."""


@dataclass(frozen=True)
class Account:
    """One staff member's public record (no secret in it)."""

    id: str
    name: str
    sex: str
    roles: frozenset[str]
    enabled: bool


def check_new_password(password: str) -> str:
    """Refuse a password too short or with characters a file line cannot hold."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password must have at least {MIN_PASSWORD} characters")
    if any(ch in password for ch in "\r\n\x00"):
        raise AccountError("password may not contain a line break or NUL")
    return password


def check_fields(user: str, name: str, sex: str, roles: list[str] | frozenset[str]) -> None:
    """Raise AccountError naming the first bad field of an account."""
    if not isinstance(user, str) or not ID_RE.match(user) or len(user) > 32:
        raise AccountError(f"account id {user!r} must be 1-32 characters of [a-z0-9-]")
    if user in RESERVED:
        raise AccountError(f"account id {user!r} is reserved for a broker login")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise AccountError(f"{user}: name must be 1-100 characters")
    if sex not in SEXES:
        raise AccountError(f"{user}: sex must be one of {', '.join(SEXES)}")
    if not roles:
        raise AccountError(f"{user}: at least one role (of {', '.join(ROLES)})")
    for r in roles:
        if r not in ROLES:
            raise AccountError(f"{user}: role {r!r} unknown (one of {', '.join(ROLES)})")


def _public(rec: dict[str, Any], user: str) -> Account:
    return Account(user, rec["name"], rec["sex"], frozenset(rec["roles"]), bool(rec["enabled"]))


def read_file(path: str | Path) -> dict[str, Any]:
    """Load and check a directory file; AccountError names the file and the bad part."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise AccountError(f"{p}: cannot read the account directory ({e.strerror})") from None
    except ValueError as e:
        raise AccountError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("version") != 1:
        raise AccountError(f"{p}: expected an object with \"version\": 1")
    accounts, history = data.get("accounts"), data.get("history")
    if not isinstance(accounts, dict) or not isinstance(history, list):
        raise AccountError(f"{p}: \"accounts\" must be an object and \"history\" a list")
    for user, rec in accounts.items():
        if not isinstance(rec, dict):
            raise AccountError(f"{p}: accounts.{user} must be an object")
        for key in ("name", "sex", "roles", "enabled", "hash", "broker_hash"):
            if key not in rec:
                raise AccountError(f"{p}: accounts.{user}.{key} is missing")
        try:
            check_fields(user, rec["name"], rec["sex"], rec["roles"])
        except AccountError as e:
            raise AccountError(f"{p}: accounts.{e}") from None
    for i, h in enumerate(history):
        if not isinstance(h, dict) or h.get("seq") != i + 1:
            raise AccountError(f"{p}: history[{i}] must be an object with seq {i + 1}")
    return data


class AccountFile:
    """Edits a directory file: add, set, disable, enable; each appends a history record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = (read_file(self.path) if self.path.exists() else
                                     {"version": 1, "accounts": {}, "history": []})

    def accounts(self) -> list[Account]:
        """Every account, by id."""
        return [_public(r, u) for u, r in sorted(self.data["accounts"].items())]

    def get(self, user: str) -> Account | None:
        """One account, or None."""
        rec = self.data["accounts"].get(user)
        return _public(rec, user) if rec is not None else None

    def verify(self, user: str, password: str) -> Account | None:
        """The enabled account when the password is right (no lockout: offline tool)."""
        rec = self.data["accounts"].get(user)
        if rec is None or not rec["enabled"] or not check_password(rec["hash"], password):
            return None
        return _public(rec, user)

    def _log(self, by: str, user: str, action: str, fields: dict[str, Any]) -> None:
        h = self.data["history"]
        h.append({"seq": len(h) + 1, "ts": int(time.time() * 1000), "by": by,
                  "account": user, "action": action, "fields": fields})

    def add(self, by: str, user: str, name: str, sex: str, roles: list[str],
            password: str) -> Account:
        """Create an account."""
        check_fields(user, name, sex, roles)
        check_new_password(password)
        if user in self.data["accounts"]:
            raise AccountError(f"account {user!r} exists (use `set` to change it)")
        self.data["accounts"][user] = {"name": name, "sex": sex, "roles": sorted(set(roles)),
                                       "enabled": True, "hash": hash_password(password),
                                       "broker_hash": mosquitto_hash(password)}
        self._log(by, user, "create", {"name": name, "sex": sex, "roles": sorted(set(roles)),
                                       "enabled": True})
        return _public(self.data["accounts"][user], user)

    def set(self, by: str, user: str, name: str | None = None, sex: str | None = None,
            roles: list[str] | None = None, password: str | None = None) -> Account:
        """Change some fields of an account (a password change is logged without the hash)."""
        rec = self.data["accounts"].get(user)
        if rec is None:
            raise AccountError(f"no account {user!r}")
        new: dict[str, Any] = {"name": rec["name"] if name is None else name,
               "sex": rec["sex"] if sex is None else sex,
               "roles": rec["roles"] if roles is None else sorted(set(roles))}
        check_fields(user, new["name"], new["sex"], new["roles"])
        changed = {k: v for k, v in new.items() if v != rec[k]}
        if password is not None:
            check_new_password(password)
            rec["hash"], rec["broker_hash"] = hash_password(password), mosquitto_hash(password)
            changed["password"] = "changed"
        if not changed:
            raise AccountError(f"{user}: nothing to change")
        rec.update(new)
        self._log(by, user, "change", changed)
        return _public(rec, user)

    def set_enabled(self, by: str, user: str, enabled: bool) -> Account:
        """Disable or re-enable an account; it and its history are kept."""
        rec = self.data["accounts"].get(user)
        if rec is None:
            raise AccountError(f"no account {user!r}")
        if rec["enabled"] == enabled:
            raise AccountError(f"{user} is already {'enabled' if enabled else 'disabled'}")
        rec["enabled"] = enabled
        self._log(by, user, "enable" if enabled else "disable", {"enabled": enabled})
        return _public(rec, user)

    def broker_hashes(self) -> dict[str, str]:
        """Mosquitto password-file hashes of the enabled accounts (disabled cannot log in)."""
        return {u: r["broker_hash"] for u, r in sorted(self.data["accounts"].items())
                if r["enabled"]}

    def save(self) -> None:
        """Write the file (0600)."""
        write_file(self.path, self.data)


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class Directory:
    """The supervisor's view of the accounts: lookups, password checks, lockout.

    Thread-safe: the desk checks passwords on its own threads; `on_lockout(user, failures)`
    is called (outside the lock) when an account is locked, so the owner can journal it and
    raise the security alert on its worker.
    """

    def __init__(self, path: str | Path | None = None, *, lock_after: int = LOCK_AFTER,
                 lock_s: float = LOCK_S, fail_delay_s: float = FAIL_DELAY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path) if path is not None else None
        self.lock_after, self.lock_s, self.fail_delay_s = lock_after, lock_s, fail_delay_s
        self.clock = clock
        self.on_lockout: Callable[[str, int], None] | None = None
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self._history: list[dict[str, Any]] = []
        self._failures: dict[str, _Failures] = {}
        self._mtime: float | None = None
        self.failed_logins = 0
        if self.path is not None:
            self.reload(force=True)

    @classmethod
    def from_records(cls, records: dict[str, dict[str, Any]], **kw: Any) -> "Directory":
        """A directory held in memory (tests, the simulator): {id: {name, sex, roles,
        enabled, hash}}."""
        d = cls(None, **kw)
        for user, rec in records.items():
            check_fields(user, rec["name"], rec["sex"], rec["roles"])
        d._records = {u: dict(r) for u, r in records.items()}
        return d

    def reload(self, force: bool = False) -> bool:
        """Re-read the file when it changed; True when it did. A bad file keeps the old view
        and raises AccountError."""
        if self.path is None:
            return False
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError as e:
            raise AccountError(f"{self.path}: cannot read the account directory "
                               f"({e.strerror})") from None
        if not force and mtime == self._mtime:
            return False
        data = read_file(self.path)
        with self._lock:
            self._records = dict(data["accounts"])
            self._history = list(data["history"])
            self._mtime = mtime
        return True

    def history_after(self, seq: int) -> list[dict[str, Any]]:
        """History records newer than `seq` (what the journal does not hold yet)."""
        with self._lock:
            return [h for h in self._history if h["seq"] > seq]

    def get(self, user: str) -> Account | None:
        """The account (enabled or not), or None."""
        with self._lock:
            rec = self._records.get(user)
            return _public(rec, user) if rec is not None else None

    def accounts(self) -> list[Account]:
        """Every account, by id."""
        with self._lock:
            return [_public(r, u) for u, r in sorted(self._records.items())]

    def locked(self, user: str) -> bool:
        """Whether the account is locked out right now."""
        with self._lock:
            f = self._failures.get(user)
            return f is not None and f.locked_until > self.clock()

    def verify_password(self, user: str, password: str) -> Account | None:
        """The account when the password is right and the account enabled and not locked;
        else None. Failures are counted per id (unknown ids too); LOCK_AFTER in a row lock."""
        with self._lock:
            rec = self._records.get(user)
            f = self._failures.setdefault(user, _Failures())
            now = self.clock()
            if f.locked_until > now:
                ok = False  # not even checked: a locked account cannot be probed
                stored = None
            else:
                stored = rec["hash"] if rec is not None else None
        if stored is not None:
            ok = check_password(stored, password)
        else:
            # Unknown and locked ids cost as much as a real check, so timing tells nothing.
            check_password(_DUMMY, password)
            ok = False
        if ok and rec is not None and rec["enabled"]:
            with self._lock:
                f.count = 0
            return _public(rec, user)
        locked_now = 0
        with self._lock:
            self.failed_logins += 1
            if f.locked_until <= now:
                f.count += 1
                if f.count >= self.lock_after:
                    f.locked_until = now + self.lock_s
                    locked_now = f.count
                    f.count = 0
        if locked_now and self.on_lockout is not None:
            self.on_lockout(user, locked_now)
        if self.fail_delay_s > 0:
            time.sleep(self.fail_delay_s)
        return None

    def unlock(self, user: str) -> None:
        """Clear an account's failures and lock (an admin's decision)."""
        with self._lock:
            self._failures.pop(user, None)


_DUMMY = hash_password(secrets.token_hex(16))
