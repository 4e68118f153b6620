"""Password hashes and the staff directory file's writer, shared by everything that makes it.

scrypt (salted, slow) for the supervisor's and desk's checks; Mosquitto 2's own PBKDF2-SHA512
format for the broker's password file. The directory's format is described in
supervisor/accounts.py.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

# scrypt cost: n=2**14, r=8 takes ~40 ms and 16 MiB here; enough to make guessing slow.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# Mosquitto 2.0's own password format: $7$<iterations>$<salt b64>$<PBKDF2-SHA512 b64>.
MOSQ_ITERATIONS = 101


def hash_password(password: str) -> str:
    """A salted scrypt hash: scrypt$n$r$p$salt-hex$hash-hex."""
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                       dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${h.hex()}"


def check_password(stored: str, password: str) -> bool:
    """True when `password` matches a hash_password() result (constant-time compare)."""
    try:
        kind, n, r, p, salt, want = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(want) // 2, maxmem=64 * 1024 * 1024)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), want)


def mosquitto_hash(password: str) -> str:
    """The password in Mosquitto 2's password-file format (what mosquitto_passwd writes)."""
    salt = secrets.token_bytes(12)
    h = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQ_ITERATIONS)
    return (f"$7${MOSQ_ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(h).decode()}")


def write_file(path: str | Path, data: dict[str, Any]) -> None:
    """Write a staff directory atomically, readable by its owner only."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    tmp.replace(p)
