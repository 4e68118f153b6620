"""Proof that the incremental rule evaluator raises exactly the alerts the full one does.

Every shipped scenario's journal (recorded once with `custody sim run NAME --workdir DIR`) is
replayed twice through the real `State` and `AlertManager`, deterministically, with no clock
and no broker: once with every rule over the whole site at every step (`evaluate`, the
reference), once with the incremental evaluator (supervisor/rules/incremental.py). Both see
the same steps: each journaled entry at its own time (an event at its stamp, a supervisor
entry at its `ts`), followed by the rules as `react` runs them, and a rule tick every
`--tick-ms` of custody time in between and for `--tail-s` after the last entry, as `tick`
runs them. The alerts each replay raised are compared message by message (id = rule, key and
since; state; severity; time; text); the incremental replay also checks, at every step, that
its wanted alerts equal `evaluate`'s. Staff actions on alerts (acknowledge, resolve, false
alarm) are replayed from the recorded alert messages that carry a `by`, when the alert
exists in the replay. Heartbeats that are not journaled (node health) are not replayed, so
the nodes' clocks move only with events and silence: the replay is not the recorded run, but
both evaluators get the very same one.

    .venv/bin/python -m benchmarks.compare_rule_eval [--runs DIR] [--record] [--write]
        [--fixtures NAME ...]

`--record` first runs every scenario missing from DIR (one at a time) with
`custody sim run NAME --workdir DIR/NAME/work`; without it the journals already in DIR are
used. `--fixtures` copies the named recorded journals (and their sites) into
tests/data/rule_eval/ for tests/test_rule_eval.py.
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.results import command_line, write_section
from protocol.envelope import open_payload
from protocol.site import Site, load_site
from protocol.topics import Topics
from supervisor.alerts import AlertManager
from supervisor.journal import Entry, Journal, read_entries
from supervisor.rules import evaluate
from supervisor.state import State

STAFF_ACTIONS = {"acknowledged": "ack-alert", "resolved": "resolve-alert",
                 "false_alarm": "false-alarm"}


def entry_time(e: Entry) -> int:
    """The time an entry speaks for: an event's stamp, a supervisor entry's `ts`."""
    if e.kind == "event":
        return int(json.loads(open_payload(e.payload).env_text)["ts"])
    return int(e.json().get("ts", 0))


@dataclass
class Replay:
    """What one replay raised and how long its rules took."""

    messages: list[tuple[Any, ...]] = field(default_factory=list)  # alert messages, in order
    rule_s: float = 0.0  # CPU seconds spent deciding what is wanted
    steps: int = 0  # rule evaluations (reacts and ticks)
    mismatches: int = 0  # steps where incremental != evaluate (checked replays only)
    first_mismatch: str = ""
    # What the state held at the end: alerts kept whole, closed ones that left memory
    # (live mode), custody records in memory and released ones that left it.
    held: tuple[int, int, int, int] = (0, 0, 0, 0)


def replay(site: Site, entries: Iterable[Entry], *, incremental: bool, tick_ms: int = 500,
           tail_s: int = 600, check: bool = False, archive: bool = False) -> Replay:
    """Replay journal entries through State + AlertManager with one evaluator (see above);
    the state in live mode (as the supervisor runs) unless `archive`."""
    out = Replay()
    with tempfile.TemporaryDirectory(prefix="rule-eval-", dir=_tmp_dir()) as tmp:
        state = State(site, archive)
        journal = Journal(Path(tmp) / "replay.db")

        def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
            m = json.loads(payload)
            if not retain and "id" in m:
                out.messages.append((m["ts"], m["id"], m["state"], m["severity"],
                                     m["message"], m["by"]))

        am = AlertManager(state, journal, Topics(site.id, site.topic_prefix), publish,
                          evaluate_all=not incremental)
        ev = am.evaluator
        if ev is not None:
            inner = ev.wanted

            def wanted(now_ms: int) -> dict[str, Any]:
                t0 = time.process_time()
                got = inner(now_ms)
                out.rule_s += time.process_time() - t0
                if check:
                    full = evaluate(state, now_ms)
                    if got != full:
                        out.mismatches += 1
                        if not out.first_mismatch:
                            out.first_mismatch = (
                                f"at {now_ms}: only incremental {sorted(set(got) - set(full))}, "
                                f"only full {sorted(set(full) - set(got))}, differing "
                                f"{sorted(k for k in set(got) & set(full) if got[k] != full[k])}")
                return got

            ev.wanted = wanted  # type: ignore[method-assign]

        def rules_at(now_ms: int) -> None:
            state.advance_marks(now_ms)
            t0 = time.process_time()
            am.reconcile(now_ms)
            if ev is None:
                out.rule_s += time.process_time() - t0
            out.steps += 1

        now, next_tick = None, None
        for e in entries:
            t = entry_time(e)
            if now is None:
                now = next_tick = t
            assert next_tick is not None
            while next_tick <= t:  # the ticks that fall before this entry
                now = next_tick
                rules_at(now)
                next_tick += tick_ms
            now = max(now, t)
            if e.kind == "alert":
                _staff_action(am, e.json(), now)
            else:
                if e.kind == "event":
                    state.arrived(e.node, now)
                state.apply(e)
            rules_at(now)  # react
        if now is not None and next_tick is not None:
            end = now + tail_s * 1000
            while next_tick <= end:
                rules_at(next_tick)
                next_tick += tick_ms
        journal.close()
        out.held = (len(state.alerts), len(state.closed_alerts), len(state.detainees),
                    len(state.left_custody))
    return out


def _staff_action(am: AlertManager, msg: dict[str, Any], now: int) -> None:
    command = STAFF_ACTIONS.get(msg["state"])
    if command is None or not msg.get("by"):
        return  # the rules' own changes: the replay makes its own
    try:
        am.check_action(command, msg["id"])
    except ValueError:
        return  # not raised (or already closed) in this replay
    am.staff_action(command, msg["id"], msg["by"], msg.get("action") or "", now)


def _tmp_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


@dataclass
class Comparison:
    """One journal compared."""

    name: str
    entries: int
    full: Replay
    incr: Replay

    @property
    def same(self) -> bool:
        """Identical alert messages, and no step where the evaluators differed."""
        return sorted(self.full.messages) == sorted(self.incr.messages) and \
            self.incr.mismatches == 0

    def alerts(self) -> int:
        """Distinct alerts raised (by the reference)."""
        return len({m[1] for m in self.full.messages})

    def difference(self) -> str:
        """The first messages one replay has and the other has not."""
        a, b = set(self.full.messages), set(self.incr.messages)
        return (f"only full: {sorted(a - b)[:3]}; only incremental: {sorted(b - a)[:3]}; "
                f"{self.incr.first_mismatch}")


def compare(name: str, site: Site, entries: list[Entry], tick_ms: int = 500,
            tail_s: int = 600) -> Comparison:
    """Replay `entries` with both evaluators and compare."""
    full = replay(site, entries, incremental=False, tick_ms=tick_ms, tail_s=tail_s)
    incr = replay(site, entries, incremental=True, tick_ms=tick_ms, tail_s=tail_s, check=True)
    return Comparison(name, len(entries), full, incr)


# ---- journals: recorded runs and the small checked-in ones ---------------------------------

def run_journal(workdir: Path) -> tuple[Site, list[Entry]]:
    """The site and journal a `custody sim run --workdir` left."""
    return load_site(workdir / "site.toml"), list(read_entries(workdir / "supervisor.db"))


def dump_entries(entries: Iterable[Entry], path: Path) -> None:
    """Write entries as gzipped JSON lines (the test's small checked-in journals)."""
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps([e.idx, e.node, e.epoch, e.seq, e.kind,
                                e.payload.decode("utf-8")]) + "\n")


def load_entries(path: Path) -> Iterator[Entry]:
    """Read what dump_entries wrote."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            idx, node, epoch, seq, kind, payload = json.loads(line)
            yield Entry(idx, node, epoch, seq, kind, payload.encode("utf-8"), "")


FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "data" / "rule_eval"


def write_fixture(name: str, workdir: Path) -> None:
    """A recorded journal and its site, as tests/test_rule_eval.py reads them."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    _site, entries = run_journal(workdir)
    dump_entries(entries, FIXTURES / f"{name}.jsonl.gz")
    site_text = (workdir / "site.toml").read_text().replace(str(workdir), "var")
    (FIXTURES / f"{name}.site.toml").write_text(site_text)


def record(names: list[str], runs: Path) -> None:
    """Run each scenario missing from `runs`, one at a time, keeping its workdir."""
    for name in names:
        work = runs / name / "work"
        if (work / "supervisor.db").exists():
            continue
        (runs / name).mkdir(parents=True, exist_ok=True)
        print(f"recording {name} ...", flush=True)
        subprocess.run([sys.executable, "-m", "custody", "sim", "run", name, "--workdir",
                        str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)


def scenario_names() -> list[str]:
    """Every shipped scenario."""
    return sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "sim" /
                                   "scenarios").glob("*.toml"))


def main() -> None:
    """Compare every recorded scenario journal; print (and with --write record) the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("/dev/shm/rule-eval-runs"),
                    help="one DIR/NAME/work per scenario (custody sim run --workdir)")
    ap.add_argument("--record", action="store_true", help="run the scenarios missing first")
    ap.add_argument("--tick-ms", type=int, default=500, help="custody ms between rule ticks")
    ap.add_argument("--tail-s", type=int, default=600, help="ticks after the last entry")
    ap.add_argument("--write", action="store_true", help="write the RESULTS.md section")
    ap.add_argument("--fixtures", nargs="+", metavar="NAME",
                    help="copy these recorded journals into tests/data/rule_eval/ and stop")
    args = ap.parse_args()
    if args.fixtures:
        for name in args.fixtures:
            write_fixture(name, args.runs / name / "work")
        return
    names = scenario_names()
    if args.record:
        record(names, args.runs)
    rows, failed = [], []
    for name in names:
        work = args.runs / name / "work"
        if not (work / "supervisor.db").exists():
            rows.append(f"| {name} | not recorded | | | | | |")
            failed.append(name)
            continue
        site, entries = run_journal(work)
        c = compare(name, site, entries, args.tick_ms, args.tail_s)
        verdict = "**identical**" if c.same else "DIFFERENT"
        if not c.same:
            failed.append(name)
            print(f"{name}: {c.difference()}", file=sys.stderr)
        ratio = c.full.rule_s / c.incr.rule_s if c.incr.rule_s else float("inf")
        rows.append(f"| {name} | {c.entries:,} | {c.full.steps:,} | {c.alerts()} | "
                    f"{len(c.full.messages)} | {verdict} | {c.full.rule_s:.2f} / "
                    f"{c.incr.rule_s:.2f} s ({ratio:.1f}x) |")
        print(rows[-1], flush=True)
    table = ["| scenario | journal entries | rule steps | alerts | alert messages | "
             "full vs incremental | rule CPU full / incremental |",
             "|---|---:|---:|---:|---:|---|---|", *rows]
    body = (
        f"Every shipped scenario's journal (recorded with `custody sim run NAME --workdir`, "
        f"one at a time) replayed through `State` and `AlertManager` with each evaluator: the "
        f"rules after every entry (as `react`) and every {args.tick_ms} ms of custody time "
        f"(as `tick`), and for {args.tail_s} s after the last entry. Identical = the same alert "
        f"messages (id, state, severity, time, text, by) and, at every one of the steps, the "
        f"incremental evaluator's wanted alerts equal to `evaluate`'s. "
        f"{len(names) - len(failed)} of {len(names)} identical.\n\n" + "\n".join(table))
    print(body)
    if args.write:
        write_section("Rule evaluation: incremental vs full, alert for alert",
                      command_line(), body)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
