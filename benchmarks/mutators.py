"""Seeded mutators shared by the property tests and benchmarks/fuzz_parsers.py.

Tree mutations act on parsed TOML/JSON data (delete, retype, add unknown keys, duplicate,
swap); byte mutations act on raw input (replace, insert, delete, duplicate or cut a chunk,
splice in interesting tokens). Both take a `random.Random` so that a seed reproduces a run.
"""

import copy
import datetime
import random
from typing import Any

Path = tuple[Any, ...]

INTERESTING = [b"", b"0", b"-1", b"2147483648", b"9" * 30, b"1e999", b"NaN", b"\"", b"\\",
               b"\\u0000", b"\\ud800", b"{", b"}", b"[", b"]", b"[" * 200, b"\x00", b"\xff",
               b"\xc3\x28", b"true", b"null", b"=", b"\n", b"[[", b"]]", b"+", b"#", b"/"]


def paths(data: Any, prefix: Path = ()) -> list[Path]:
    """Every position in a nested dict/list value, containers included (root excluded)."""
    out: list[Path] = []
    items = (data.items() if isinstance(data, dict)
             else enumerate(data) if isinstance(data, list) else ())
    for k, v in items:
        p = (*prefix, k)
        out.append(p)
        out.extend(paths(v, p))
    return out


def _get(data: Any, path: Path) -> Any:
    for k in path:
        data = data[k]
    return data


def random_value(rng: random.Random) -> Any:
    """A value of some TOML type (plus a few that only JSON or Python would carry)."""
    return rng.choice([
        lambda: rng.randint(-(2**63), 2**63 - 1), lambda: rng.randint(-3, 70000),
        lambda: rng.random() * 1000, lambda: float("nan"), lambda: float("inf"),
        lambda: "", lambda: "x" * rng.randint(1, 300), lambda: "Bad Id!",
        lambda: rng.choice(["entry", "holding", "uhf", "rdm6300", "gpio", "room", "d-exit"]),
        lambda: rng.choice([True, False]), lambda: [], lambda: [rng.randint(0, 9)] * 4,
        lambda: ["a", 1], lambda: {}, lambda: {"zz": 1},
        lambda: datetime.datetime(1979, 5, 27, 7, 32), lambda: datetime.date(2026, 1, 1),
        lambda: datetime.time(7, 32),
    ])()


def mutate_tree(data: Any, rng: random.Random) -> tuple[Any, str]:
    """One random structural mutation of a copy of `data`; returns (mutant, description)."""
    out = copy.deepcopy(data)
    ps = paths(out)
    if not ps:
        return random_value(rng), "replaced root"
    path = rng.choice(ps)
    parent, key = _get(out, path[:-1]), path[-1]
    op = rng.choice(["delete", "retype", "retype", "unknown", "duplicate", "swap", "empty"])
    where = ".".join(str(k) for k in path)
    if op == "delete":
        del parent[key]
    elif op == "retype":
        parent[key] = random_value(rng)
    elif op == "unknown":
        target = parent if isinstance(parent, dict) else out
        target[f"unknown_{rng.randint(0, 99)}"] = random_value(rng)
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    elif op == "swap":
        other = rng.choice(ps)
        other_parent = _get(out, other[:-1])
        try:
            parent[key], other_parent[other[-1]] = (copy.deepcopy(other_parent[other[-1]]),
                                                    copy.deepcopy(parent[key]))
        except (KeyError, IndexError, TypeError):
            op = "swap(no-op)"
    elif op == "empty":
        parent[key] = type(parent[key])() if isinstance(parent[key], (dict, list, str)) else 0
    return out, f"{op} {where}"


def mutate_bytes(data: bytes, rng: random.Random, rounds: int = 0) -> bytes:
    """A few random byte-level edits of `data` (1-4 unless `rounds` is given)."""
    b = bytearray(data)
    for _ in range(rounds or rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randint(0, len(b)) if b else 0
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[i:i] = bytes([rng.randrange(256)])
        elif op == 2 and b:
            del b[i:i + rng.randint(1, 8)]
        elif op == 3 and b:
            j = rng.randint(0, len(b))
            b[j:j] = b[i:i + rng.randint(1, 16)]
        elif op == 4:
            del b[i:]
        elif op == 5:
            b[i:i] = rng.choice(INTERESTING)
        elif b:
            # flip one bit: the smallest change there is
            k = min(i, len(b) - 1)
            b[k] ^= 1 << rng.randrange(8)
    return bytes(b)
