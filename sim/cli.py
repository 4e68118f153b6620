"""`custody sim list` and `custody sim run SCENARIO|FILE [--seed N] [--json OUT] [--speed X]`."""

import argparse
import json
import sys
from pathlib import Path

from .runner import RunOptions, run_scenario
from .scenario import (
    MissingFootage,
    describe,
    describe_expected,
    find_scenario,
    list_scenarios,
    load_scenario,
)
from .score import Score
from .stopping import stop_on_sigterm


def _list(args: argparse.Namespace) -> int:
    for p in list_scenarios():
        try:
            sc = load_scenario(p)
            print(describe(sc))
            if len(sc.plan.expected) <= 20:  # the long days' lists say little
                for line in describe_expected(sc):
                    print(f"    {line}")
        except MissingFootage as exc:  # listed, not run: its real clips are not here
            print(f"{p.stem}: cannot run here: {exc}")
    return 0


def print_score(s: Score, out: "object" = sys.stdout) -> None:
    """The scorecard as text."""
    w = out.write  # type: ignore[attr-defined]
    w(f"scenario {s.scenario}: expected {len(s.expected)}, raised {len(s.raised)}, "
      f"matched {len(s.matched)}, missed {len(s.missed)}, false {len(s.false)}, "
      f"refused commands {len(s.refused)}"
      f" -> {'PASS' if s.passed else 'FAIL'}\n")
    for m in s.matched:
        e = m["expected"]
        w(f"  matched {e['rule']:<24} {e['detainee'] or e['room']:<14} "
          f"latency {m['latency_ms'] / 1000:.1f} s (custody)\n")
    for e in s.missed:
        w(f"  MISSED  {e['rule']:<24} {e['detainee'] or e['room']:<14} "
          f"from {e['from_s']:.0f} s within {e['within_s']:.0f} s\n")
    for r in s.false:
        w(f"  FALSE   {r['rule']:<24} {r['detainee'] or r['room'] or '-':<14} {r['message']}\n")
    for c in s.lifecycle:
        w(f"  {'step ok' if c['ok'] else 'STEP BAD':<7} {c['rule']:<24} {c['subject']:<14} "
          f"{c['step']}: want {c['want']!r}, got {c['got']!r}\n")
    for x in s.refused:
        w(f"  REFUSED {x}\n")
    for x in s.unused:
        w(f"  NOT DONE staff {x} (its alert never came)\n")
    if s.clock_stops:
        top = sorted(s.clock_held_by.items(), key=lambda kv: -kv[1])[:4]
        w(f"  custody time stood still {s.clock_stops} times, {s.clock_stopped_s:.1f} real s "
          f"in all, while a process was held up ({', '.join(f'{k} {v}' for k, v in top)})\n")
    if s.clock_gave_up:
        w(f"  stopped waiting for a process stale over 2 real s: "
          f"{', '.join(f'{k} {v}' for k, v in s.clock_gave_up.items())}\n")


def _run(args: argparse.Namespace) -> int:
    sc = load_scenario(find_scenario(args.scenario), seed=args.seed, speed=args.speed)
    opts = RunOptions(workdir=Path(args.workdir) if args.workdir else None,
                      keep=bool(args.workdir), vision=not args.no_vision)
    print(f"sim: {describe(sc)}", flush=True)
    stop_on_sigterm()  # a SIGTERM stops the broker, supervisor and agents too
    s = run_scenario(sc, opts)
    print_score(s)
    if args.json:
        Path(args.json).write_text(json.dumps(s.as_json(), indent=2) + "\n")
    return 0 if s.passed else 1


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `custody sim`."""
    p = sub.add_parser("sim", help="run simulated custody days against the real programs")
    s = p.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    ls = s.add_parser("list", help="list the scenarios in sim/scenarios/")
    ls.set_defaults(func=_list)
    r = s.add_parser("run", help="run a scenario and score it (exit 0 only if it passes)")
    r.add_argument("scenario", help="a name from `custody sim list` or a scenario file")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--speed", type=float, default=None,
                   help="clock speed: custody seconds per real second (scenario's default)")
    r.add_argument("--json", default=None, help="write the score as JSON to this file")
    r.add_argument("--workdir", default=None, help="keep configs, logs and databases here")
    r.add_argument("--no-vision", action="store_true", help="run nodes without cameras")
    r.set_defaults(func=_run)
