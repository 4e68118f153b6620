# HMAC-SHA256 (RFC 2104) on hashlib.sha256, which every MicroPython port has.
import hashlib
import binascii

_BLOCK = 64


def digest(key, data):
    """HMAC-SHA256 of data under key (bytes)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(data)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def hexdigest(key, data):
    """Lower-case hex HMAC-SHA256."""
    return binascii.hexlify(digest(key, data)).decode()


def equal(a, b):
    """Compare two strings in time independent of where they differ."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= ord(a[i]) ^ ord(b[i])
    return r == 0
