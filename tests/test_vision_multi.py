"""Many people per frame on real footage: two real people (GMDCSA24 subjects composed side by
side, models/compose.py) detected and tracked apart; `fight` on a staged two-person clip."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from edge_agent.vision.capture import Frame, Mailbox
from edge_agent.vision.pipeline import CameraWorker
from edge_agent.vision.pose import PoseEstimator
from models.compose import SCENES, compose_frames
from protocol.clock import REAL
from protocol.events import validate_body
from protocol.site import Camera, Rules
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA / "gmdcsa24"
needs_clips = pytest.mark.skipif(not DATA.is_dir(), reason=f"real clips not present at {DATA} "
                                 "(shared data folder absent; set CUSTODY_SHARED_DATA)")
START = 1_764_000_000_000


def worker(events: list[tuple[str, dict[str, Any]]], pose: Any = None) -> CameraWorker:
    def emit(t: str, body: dict[str, Any]) -> None:
        validate_body(t, body)
        events.append((t, body))
    return CameraWorker(Camera("cam-m", "0", ()), "holding-1", emit, REAL, Rules(), pose=pose)


@needs_clips
def test_two_real_people_in_one_frame_are_detected_and_tracked_apart():
    pose = PoseEstimator()
    frames = compose_frames((("Subject-3/ADL/18.mp4", 1), ("Subject-1/ADL/10.mp4", 1)), DATA,
                            fps=10, seconds=2.5)
    found = pose.estimate(frames[0][:, :, ::-1].copy())
    assert len(found) == 2  # both real people in one frame
    xs = sorted((p.box()[0] + p.box()[2]) / 2 for p in found)
    assert xs[0] < 0.5 < xs[1]  # one on each side
    events: list[tuple[str, dict[str, Any]]] = []
    w = worker(events, pose)
    seen: dict[int, list[float]] = {}
    for i, f in enumerate(frames):
        w.process(Frame(START + i * 100, image=f))
        for tr in w.tracker.tracks.values():
            b = tr.box
            seen.setdefault(tr.id, []).append(float(b[0] + b[2]) / 2)
    # two tracks, each staying on its own side the whole time (no swaps, no third track)
    assert len(seen) == 2
    sides = [sorted(set(x < 0.5 for x in v)) for v in seen.values()]
    assert sorted(map(tuple, sides)) == [(False,), (True,)]
    assert ("person_count", {"camera": "cam-m", "room": "holding-1", "count": 2}) in events


@needs_clips
def test_fight_raised_on_a_staged_two_person_clip():
    scene = next(s for s in SCENES if s.name == "fight-s3-19+s1-16")
    frames = compose_frames(scene.parts, DATA, fps=15, seconds=6.0, width=scene.width)
    events: list[tuple[str, dict[str, Any]]] = []
    w = worker(events)
    for i, f in enumerate(frames):
        w.process(Frame(START + round(i * 1000 / 15), image=f))
    new = [b for t, b in events if t == "behaviour" and b["phase"] == "new"]
    assert any(b["cls"] == "fight" and b["persons"] >= 2 for b in new), new
    assert not any(b["cls"] == "fall" for b in new)


def test_a_busy_pipeline_gets_the_newest_frame_and_the_skips_are_counted():
    box = Mailbox(drop_old=True)
    stop = threading.Event()
    for ts in (1, 2, 3):
        box.put(Frame(ts, persons=[]), stop)
    got = box.get(0.1)
    assert got is not None and got.ts_ms == 3 and box.dropped == 2
