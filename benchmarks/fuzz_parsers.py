"""Long fuzz run of every parser: >= 100,000 inputs each, seeded, counts into RESULTS.md.

Inputs are random data and seeded mutations (benchmarks/mutators.py) of valid samples.
For each parser it counts inputs tried, inputs accepted, rejections by reason, and crashes:
an exception other than the parser's own error type, or a broken invariant (a mutated
payload accepted as a different event, a replayed (node, epoch, seq) accepted, a canonical
encoding that does not round-trip, a reader buffer growing past one frame). Crashes must be 0.

    .venv/bin/python -m benchmarks.fuzz_parsers [--inputs 100000] [--seed 1] [--only NAME]
"""

import argparse
import json
import random
import re
import sys
import time
import tomllib
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.mutators import mutate_bytes, mutate_tree, random_value
from benchmarks.results import command_line, write_section
from protocol.canonical import CanonicalError, dumps
from protocol.config import ConfigError
from protocol.envelope import VerifyError, mac_hex, seal, verify
from protocol.replay import ReplayWindow
from protocol.site import DEMO_SITE, parse_site
from protocol.staff import COMMANDS, StaffError, parse_request, request_payload
from protocol.topics import TopicError, Topics


class Broken(AssertionError):
    """An invariant the parser must keep was broken (counted as a crash)."""


@dataclass
class Tally:
    """What one parser did with its inputs."""

    name: str
    tried: int = 0
    accepted: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _reason(text: str) -> str:
    """A short, stable reason from an error message (ids, numbers and quotes removed)."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", text)
    text = re.sub(r"\[\d+\]", "[]", text)
    text = re.sub(r"\d+", "N", text)
    return text[:60]


# ---- samples ---------------------------------------------------------------------------

KEY = bytes(range(32))
KEYS = {"node-a": KEY}
TOPICS = Topics("demo-centre")
SAMPLE_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("presence.enter", {"band": "00000000d1", "room": "holding-1", "reader": "uhf-1",
                        "rssi": -52}),
    ("tap", {"band": "00000000a1", "reader": "desk", "room": "entry"}),
    ("door", {"door": "d-exit", "state": "open"}),
    ("local_alert", {"id": "na-1", "phase": "new", "rule": "never-alone", "room": "holding-1",
                     "bands": ["00000000d1"], "detail": "alone"}),
    ("behaviour", {"id": "b-1", "phase": "new", "camera": "cam-1", "room": "holding-1",
                   "cls": "fall", "score_pct": 91}),
    ("camera", {"camera": "cam-1", "room": "holding-1", "live": True, "fps_x10": 150}),
    ("health", {"uptime_s": 100, "queue": 0, "obj": {"cpu_pct": 12}}),
]


def _sealed(rng: random.Random) -> tuple[bytes, tuple[Any, ...]]:
    etype, body = rng.choice(SAMPLE_BODIES)
    seq = rng.randint(0, 10**6)
    return seal(KEY, "node-a", 1, seq, 1_700_000_000_000, etype, body), (seq, etype, body)


def _random_tree(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 20 or r < 0.45:
        return random_value(rng) if rng.random() < 0.3 else rng.choice(
            [None, True, 1, -7, 2**70, "x", "é", "\U0001f600", "\\", '"', "\x00"])
    if r < 0.75:
        return [_random_tree(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = [rng.choice(["a", "b", "é", "", "z" * 5]) for _ in range(rng.randint(0, 3))]
    d: dict[Any, Any] = {k: _random_tree(rng, depth + 1) for k in keys}
    if rng.random() < 0.05:
        d[rng.choice([1, None, (1,)])] = 0
    return d


# ---- targets: each returns "accepted" or raises its own error; Broken for invariants ----


def t_canonical(rng: random.Random) -> str:
    value = _random_tree(rng) if rng.random() < 0.6 else mutate_tree(
        {"type": rng.choice(SAMPLE_BODIES)[0], "body": rng.choice(SAMPLE_BODIES)[1]}, rng)[0]
    text = dumps(value)
    if not text.isascii() or json.loads(text) != value:
        raise Broken(f"round trip failed for {value!r}")
    if dumps(json.loads(text)) != text:
        raise Broken(f"not one encoding for {value!r}")
    return "accepted"


def t_envelope(rng: random.Random) -> str:
    payload, (seq, etype, body) = _sealed(rng)
    r = rng.random()
    if r < 0.45:
        bad = mutate_bytes(payload, rng)
    elif r < 0.6:
        bad = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    elif r < 0.8:
        # A key holder sending a wrong envelope: correctly signed, wrong fields.
        env = json.loads(json.loads(payload)["env"])
        env, _ = mutate_tree(env, rng)
        try:
            text = dumps(env)
        except CanonicalError:
            text = json.dumps(env, default=str)
        bad = dumps({"env": text, "mac": mac_hex(KEY, text.encode("utf-8", "replace"))}).encode()
    else:
        outer, _ = mutate_tree(json.loads(payload), rng)
        bad = json.dumps(outer, default=str).encode()
    ev = verify(bad, KEYS)
    if r < 0.6 and (ev.seq, ev.type, ev.body) != (seq, etype, body):
        raise Broken(f"mutated payload accepted as a different event: {bad!r}")
    return "accepted"


class ReplayTarget:
    """One admit per input over a stream of mostly fresh, some repeated, some stale triples."""

    def __init__(self) -> None:
        self.window = ReplayWindow(256)
        self.accepted: set[tuple[str, int, int]] = set()
        self.next: dict[str, tuple[int, int]] = {}

    def __call__(self, rng: random.Random) -> str:
        node = rng.choice(["n1", "n2", "n3"])
        epoch, seq = self.next.get(node, (1, 1))
        r = rng.random()
        if r < 0.6:
            self.next[node] = (epoch, seq + 1)
        elif r < 0.7:
            seq += rng.randint(1, 50)  # a gap
            self.next[node] = (epoch, seq + 1)
        elif r < 0.85:
            seq = max(0, seq - rng.randint(1, 600))  # a replay, late or out of window
        elif r < 0.9:
            epoch, seq = epoch + 1, 1  # a reboot
            self.next[node] = (epoch, 2)
        else:
            epoch = max(1, epoch - rng.randint(0, 2))
            seq = rng.randint(0, seq + 5)
        self.window.admit(node, epoch, seq)
        if (node, epoch, seq) in self.accepted:
            raise Broken(f"{(node, epoch, seq)} accepted twice")
        self.accepted.add((node, epoch, seq))
        return "accepted"


def t_topics(rng: random.Random) -> str:
    good = rng.choice([TOPICS.node("node-a", "event"), TOPICS.alert("critical", "never-alone"),
                       TOPICS.state("room", "holding-1"), TOPICS.request("o1", "ack-alert"),
                       TOPICS.supervisor("checkpoint"), TOPICS.state("alerts")])
    topic = mutate_bytes(good.encode(), rng).decode("utf-8", "replace")
    p = TOPICS.parse(topic)
    if p.kind == "node" and (p.node is None or TOPICS.node(p.node, p.channel) != topic):
        raise Broken(f"{topic!r} parsed as {p}")
    return "accepted"


DEMO_TEXT = DEMO_SITE.read_text()
DEMO_DATA = tomllib.loads(DEMO_TEXT)
SMALL_SITE = """[site]
id = "s"
[[rooms]]
id = "a"
kind = "holding"
[[rooms]]
id = "c"
kind = "corridor"
[[doors]]
id = "d"
between = ["a", "c"]
[[nodes]]
id = "n"
room = "a"
[[nodes.readers]]
id = "u"
type = "uhf"
role = "presence"
port = "/dev/ttyUSB0"
[[nodes.doors]]
door = "d"
type = "gpio"
pin = 17
[rules]
never_alone_grace_s = 10
"""


def t_site(rng: random.Random) -> str:
    if rng.random() < 0.7:
        data = DEMO_DATA
        for _ in range(rng.randint(1, 3)):
            data, _ = mutate_tree(data, rng)
    else:
        # The byte level, as read_toml reads a file (a small site keeps TOML parsing cheap).
        raw = mutate_bytes(SMALL_SITE.encode(), rng)
        try:
            data = tomllib.loads(raw.decode())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("site.toml", "(syntax)", f"valid TOML ({e})") from None
        except UnicodeDecodeError:
            raise ConfigError("site.toml", "(syntax)", "UTF-8 text") from None
        except RecursionError:
            raise ConfigError("site.toml", "(syntax)", "valid TOML (nested too deeply)") from None
    parse_site(data, "site.toml")
    return "accepted"


def _staff_sample(rng: random.Random) -> tuple[str, dict[str, Any]]:
    command = rng.choice(sorted(COMMANDS))
    values = {"id": "x-1", "band": "00000000d1", "str": "note", "int": 1_700_000_000_000,
              "ids": ["officer-1", "officer-2"], "strs": ["phone", "wallet"]}
    enums = {"sex": "f", "observation": "level1", "disposition": "release", "result": "completed"}
    args = {k: enums.get(k, values[kind]) for k, (kind, _) in COMMANDS[command].items()}
    return command, args


def t_staff(rng: random.Random) -> str:
    command, args = _staff_sample(rng)
    good = {"txn": "t-1", "user": "officer-1", "args": args}
    if rng.random() < 0.5:
        raw = mutate_bytes(request_payload("t-1", "officer-1", args), rng)
    else:
        raw = json.dumps(mutate_tree(good, rng)[0], default=str).encode()
    parse_request(command if rng.random() < 0.95 else "no-such-command", raw)
    return "accepted"


def _stream_target(name: str) -> Callable[[random.Random], str]:
    from edge_agent.drivers import rdm6300, uhf_m100

    def run(rng: random.Random) -> str:
        if name == "rdm6300":
            parser: Any = rdm6300.Rdm6300Parser()
            frames = [rdm6300.encode(f"{rng.getrandbits(40):010x}") for _ in range(3)]
            bound = rdm6300.FRAME_LEN
        else:
            parser = uhf_m100.M100Parser()
            frames = [uhf_m100.inventory_notice(rng.randbytes(rng.choice([12, 12, 4, 62])),
                                                rng.randint(-90, -20)),
                      uhf_m100.error_frame(rng.choice([0x15, 0x09])),
                      uhf_m100.inventory_notice(bytes(7) + rng.randbytes(5))]
            bound = 5 + uhf_m100.MAX_PAYLOAD + 2
        stream = b"".join(frames)
        stream = (mutate_bytes(stream, rng) if rng.random() < 0.85
                  else rng.randbytes(rng.randint(0, 200)))
        i, reads = 0, 0
        while i < len(stream):
            n = rng.randint(1, 40)
            reads += len(parser.feed(stream[i:i + n]))
            i += n
            if len(parser.buf) >= bound:
                raise Broken(f"{name} buffer holds {len(parser.buf)} bytes")
        c = parser.counts
        if reads:
            return "accepted"
        # A stream parser never raises: report what it made of an input with no read.
        raise _StreamReject("checksum" if c["checksum"] else "error frame" if c["errors"] or
                            c["no_tag"] else "noise only" if c["noise"] else "incomplete")

    return run


class _StreamReject(ValueError):
    pass


def _kp_target() -> Callable[[random.Random], str]:
    from edge_agent.vision.capture import parse_kp_line
    from protocol.clock import from_env

    clock = from_env()
    person = [[round(0.3 + i / 100, 3), round(0.2 + i / 50, 3), 0.9] for i in range(33)]

    def run(rng: random.Random) -> str:
        good = {"ts": 1_764_000_000_000, "persons": [person] * rng.randint(0, 2)}
        if rng.random() < 0.5:
            line = mutate_bytes(json.dumps(good).encode(), rng).decode("utf-8", "replace")
        else:
            line = json.dumps(mutate_tree(good, rng)[0], default=str)
        parse_kp_line(line, clock)
        return "accepted"

    return run


TARGETS: dict[str, tuple[Callable[[], Callable[[random.Random], str]], tuple[type, ...]]] = {
    "canonical JSON": (lambda: t_canonical, (CanonicalError,)),
    "envelope verify": (lambda: t_envelope, (VerifyError,)),
    "replay window": (ReplayTarget, (VerifyError,)),
    "topic parse": (lambda: t_topics, (TopicError,)),
    "site file": (lambda: t_site, (ConfigError,)),
    "staff commands": (lambda: t_staff, (StaffError,)),
    "rdm6300 frames": (lambda: _stream_target("rdm6300"), (_StreamReject,)),
    "uhf m100 frames": (lambda: _stream_target("uhf"), (_StreamReject,)),
    "vision kp: lines": (_kp_target, (ValueError,)),
}


def _reason_of(e: Exception) -> str:
    if isinstance(e, VerifyError):
        return e.reason
    if isinstance(e, ConfigError):
        return _reason(e.expected.split(" (")[0] if e.key != "(syntax)" else "(syntax) " +
                       e.expected.split(" (")[0])
    return _reason(str(e).split(": ", 1)[-1] if isinstance(e, StaffError) else str(e))


def fuzz(name: str, inputs: int, seed: int) -> Tally:
    """Run one target for `inputs` seeded inputs."""
    make, expected = TARGETS[name]
    target, rng, tally = make(), random.Random(f"{seed}:{name}"), Tally(name)
    start = time.perf_counter()
    for _ in range(inputs):
        tally.tried += 1
        try:
            target(rng)
            tally.accepted += 1
        except expected as e:
            tally.reasons[_reason_of(e)] += 1
        except Exception as e:
            kind = "broken invariant" if isinstance(e, Broken) else type(e).__name__
            tally.crashes[kind] += 1
            if len(tally.examples) < 3:
                tally.examples.append("".join(traceback.format_exception_only(e)).strip()[:300])
    tally.seconds = time.perf_counter() - start
    return tally


def markdown(tallies: list[Tally], seed: int) -> str:
    """The RESULTS.md section."""
    rows = ["| parser | inputs tried | accepted | rejected | crashes | s |",
            "|---|---:|---:|---:|---:|---:|"]
    for t in tallies:
        rows.append(f"| {t.name} | {t.tried:,} | {t.accepted:,} | {sum(t.reasons.values()):,} | "
                    f"**{sum(t.crashes.values())}** | {t.seconds:.0f} |")
    out = ["Seeded random inputs and mutations of valid samples "
           f"(seed {seed}; `benchmarks/mutators.py`). A crash is any exception other than the "
           "parser's own error, or a broken invariant. Stream parsers (readers) never raise: "
           "an input counts as rejected when it yields no read, by what the parser counted.",
           "", *rows, "", "Rejections by reason (top 8 per parser):", ""]
    for t in tallies:
        top = ", ".join(f"{r} {n:,}" for r, n in t.reasons.most_common(8))
        out.append(f"- **{t.name}**: {top}")
        for ex in t.examples:
            out.append(f"  - crash: `{ex}`")
    return "\n".join(out)


def main() -> int:
    """Fuzz every parser and write the RESULTS.md section."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=100_000, help="inputs per parser")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=sorted(TARGETS), help="one parser (no RESULTS.md write)")
    args = ap.parse_args()
    names = [args.only] if args.only else list(TARGETS)
    tallies = []
    for name in names:
        t = fuzz(name, args.inputs, args.seed)
        tallies.append(t)
        print(f"{name}: {t.tried:,} tried, {t.accepted:,} accepted, "
              f"{sum(t.crashes.values())} crashes, {t.seconds:.1f}s", flush=True)
    if not args.only:
        write_section("Parser fuzzing", command_line(), markdown(tallies, args.seed))
    return 1 if any(t.crashes for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
