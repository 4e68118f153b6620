"""Event-level check of the whole node pipeline on every real clip, and on two-person scenes
composed from them (models/compose.py).

Each clip runs through the camera worker exactly as on a node (video file -> motion gate ->
BlazePose -> tracker -> behaviour -> events). The heuristic and the int8 model judge the same
pose stream (the model rides along as a shadow monitor), so they differ only by classifier.

- fall recall: fall clips (one person, or one falling beside another) with a `fall` event no
  earlier than 0.3 s before the labelled onset;
- fight recall: staged-fight scenes with a `fight` event;
- false alarms per clip kind: daily-activity clips with any behaviour event; fall clips with
  any other event or a fall before the onset; staged fights with a `fall`.
Intervals are 95 % Wilson score intervals over clips.

    .venv/bin/python -m models.eval_pipeline_clips [--write]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.vision import open_camera
from edge_agent.vision.behaviour import BehaviourMonitor, make_classifier
from protocol.clock import REAL
from protocol.site import Camera, Rules

from .clips import DATA, clips
from .compose import SCENES, scene_file

CLASSIFIERS = ("heuristic", "model")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of k successes out of n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


@dataclass
class Case:
    """One clip to play: its file, kind and fall onset (s)."""

    name: str
    path: Path
    kind: str  # Fall, ADL, 2p-Fall, 2p-ADL, staged-fight
    onset_s: float | None


def cases(data: Path = DATA) -> list[Case]:
    """Every real clip, then every composed scene."""
    real = clips(data)
    out = [Case(c.path, data / c.path, c.kind, c.fall_onset()) for c in real]
    onsets = {c.path: c.fall_onset() for c in real}
    for s in SCENES:
        out.append(Case(s.name, scene_file(s, data), s.kind, onsets.get(s.parts[0][0])))
    return out


def _stamped(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, int]]:
    return [(b["cls"], ph, int(b["id"].rsplit("-", 1)[1])) for ph, b in events]


def run_case(path: Path) -> tuple[dict[str, list[tuple[str, str, float]]], dict[str, int], int]:
    """Play one clip; per classifier the (cls, phase, t_s) behaviour events; health; max
    persons tracked at once."""
    events: list[tuple[str, dict[str, Any]]] = []
    w = open_camera(Camera("cam-eval", str(path), ()), "room", lambda t, b: events.append((t, b)),
                    REAL, Rules(), stall_s=1.0, pace=False, classifier="heuristic")
    shadow = BehaviourMonitor("cam-eval", classifier=make_classifier("model"))
    got: dict[str, list[tuple[str, str, int]]] = {"heuristic": [], "model": []}
    first: list[int] = []
    most = [0]
    real_step, real_gone = w.monitor.step, w.monitor.track_gone

    def step(ts: int, tracks: Any, aspect: float = 4 / 3, live: Any = None) -> Any:
        if not first:
            first.append(ts)
        most[0] = max(most[0], len(tracks))
        got["model"].extend(_stamped(shadow.step(ts, tracks, aspect, live)))
        out = real_step(ts, tracks, aspect, live)
        got["heuristic"].extend(_stamped(out))
        return out

    def gone(track: int) -> Any:
        got["model"].extend(_stamped(shadow.track_gone(track)))
        return real_gone(track)

    w.monitor.step = step  # type: ignore[method-assign]
    w.monitor.track_gone = gone  # type: ignore[method-assign]
    w.start()
    end = time.monotonic() + 300
    while time.monotonic() < end and not any(t == "fault" and b["kind"] == "no_frames"
                                             for t, b in events):
        time.sleep(0.1)
    w.stop()
    # Times relative to the first frame (the first frame always runs pose); an event's own
    # time is the end of the window that raised it, the last part of its id.
    t0 = first[0] if first else 0
    out = {k: [(c, ph, (ts - t0) / 1000) for c, ph, ts in evs if ph == "new"]
           for k, evs in got.items()}
    return out, w.health(), most[0]


def verdict(case: Case, evs: list[tuple[str, str, float]]) -> tuple[bool | None, bool]:
    """(hit or None when the kind has nothing to find, false alarm) for one clip."""
    news = [(c, t) for c, _, t in evs]
    if case.kind in ("Fall", "2p-Fall"):
        onset = case.onset_s or 0.0
        hit = any(c == "fall" and t >= onset - 0.3 for c, t in news)
        fa = any(c in ("agitated", "fight") or (c == "fall" and t < onset - 0.3)
                 for c, t in news)
        return hit, fa
    if case.kind == "staged-fight":
        return any(c == "fight" for c, _ in news), any(c == "fall" for c, _ in news)
    return None, bool(news)


def _rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n} ({lo:.2f}-{hi:.2f})"


def main() -> int:
    """Run every clip; print (and optionally write) the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"real clips absent ({DATA}): nothing to evaluate")
        return 0
    rows = ["| clip | kind | most people | heuristic events (t s) | model events (t s) | "
            "pose runs / frames | heuristic | model |", "|---|---|---:|---|---|---:|---|---|"]
    tally: dict[tuple[str, str], list[int]] = {}  # (classifier, kind) -> [hits, fas, n]
    for case in cases():
        if args.only and args.only not in case.name:
            continue
        evs, health, most = run_case(case.path)
        marks = []
        for k in CLASSIFIERS:
            hit, fa = verdict(case, evs[k])
            t = tally.setdefault((k, case.kind), [0, 0, 0])
            t[0] += bool(hit)
            t[1] += fa
            t[2] += 1
            marks.append(("✓" if hit else "✗ miss") if hit is not None else ""
                         + (" false alarm" if fa else ("" if hit is not None else "✓")))
        desc = {k: ", ".join(f"{c} {t:.1f}" for c, _, t in evs[k]) or "–" for k in CLASSIFIERS}
        rows.append(f"| {case.name} | {case.kind} | {most} | {desc['heuristic']} | "
                    f"{desc['model']} | {health['pose_runs']} / {health['frames']} | "
                    f"{marks[0]} | {marks[1]} |")
        print(rows[-1], flush=True)
    summary = ["", "| classifier | fall recall (Fall + 2p-Fall) | fight recall (staged) | "
               "false alarms: ADL | 2p-ADL | Fall | 2p-Fall | staged-fight |",
               "|---|---|---|---|---|---|---|---|"]
    for k in CLASSIFIERS:
        def get(kind: str, k: str = k) -> list[int]:
            return tally.get((k, kind), [0, 0, 0])
        fh = get("Fall")[0] + get("2p-Fall")[0]
        fn = get("Fall")[2] + get("2p-Fall")[2]
        sf = get("staged-fight")
        summary.append(f"| {k} | {_rate(fh, fn)} | {_rate(sf[0], sf[2])} | " + " | ".join(
            _rate(get(kind)[1], get(kind)[2]) for kind in
            ("ADL", "2p-ADL", "Fall", "2p-Fall", "staged-fight")) + " |")
    text = "\n".join(rows + summary) + (
        "\n\nCounts are clips; brackets are 95 % Wilson intervals. Real clips: the GMDCSA24 "
        "subset (19: 11 falls, 8 daily activities). 2p-*/staged-fight: composed from those "
        "clips (models/compose.py): two real people side by side; a staged fight is two real "
        "reaching movements played 3-4x fast, not a real fight. Both classifiers judge the "
        "same pose stream. Default: see models/MODEL_CARD.md.\n")
    print("\n".join(summary))
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from benchmarks.results import command_line, write_section

        write_section("vision on real clips", command_line(), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
