"""The camera pipeline on real photographs composited into frame sequences (real BlazePose)."""

from __future__ import annotations

import itertools
from typing import Any

import cv2
import numpy as np
import pytest

from edge_agent.vision import open_camera
from edge_agent.vision.capture import Frame
from edge_agent.vision.pipeline import CameraWorker
from edge_agent.vision.pose import PoseEstimator
from protocol.clock import REAL
from protocol.events import validate_body
from protocol.site import Camera, Rules
from tests.vision_scenes import background, falling, lying, standing, timed, with_person

Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def pose() -> PoseEstimator:
    return PoseEstimator(threads=1)


def make_worker(pose: PoseEstimator, events: Events, lying_still_s: int = 600) -> CameraWorker:
    def emit(t: str, body: dict[str, Any]) -> None:
        validate_body(t, body)  # every body the pipeline emits must match the protocol
        events.append((t, body))
    return open_camera(Camera("cam-a", "0", ()), "room-a", emit, REAL,
                       Rules(lying_still_s=lying_still_s), pose=pose)


def run(worker: CameraWorker, frames: list[np.ndarray], start_ms: int = 1_000_000,
        fps: float = 10.0) -> int:
    ts = start_ms
    for ts, f in timed(frames, start_ms, fps):
        worker.process(Frame(ts, image=f))
    return ts


def of(events: Events, kind: str) -> list[dict[str, Any]]:
    return [b for t, b in events if t == kind]


_NOISE = [np.random.default_rng(i).normal(0, 3, (480, 640, 3)).astype(np.int16)
          for i in range(5)]


def noisy(frames: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """Sensor noise (a few fixed noise fields in turn), so that 'still' frames are not
    bit-identical."""
    return [np.clip(f.astype(np.int16) + _NOISE[(i + seed) % len(_NOISE)], 0, 255)
            .astype(np.uint8) for i, f in enumerate(frames)]


def test_person_present_is_counted_then_leaves(pose):
    ev: Events = []
    w = make_worker(pose, ev)
    bg = background("coffee.png")
    end = run(w, noisy(standing(bg, 25)))
    run(w, noisy([bg] * 80, 1), start_ms=end + 100)  # gone: the track expires after ~3 s
    counts = [b["count"] for b in of(ev, "person_count")]
    assert counts == [1, 0]
    assert not of(ev, "behaviour") and not of(ev, "tamper")
    assert w.health()["persons"] == 0 and w.health()["frames"] == 105


def test_two_people_are_counted_and_tracked_apart(pose):
    ev: Events = []
    w = make_worker(pose, ev)
    bg = background("motorcycle_left.png")
    two = [with_person(with_person(bg, 0, 170 + 4 * np.sin(i), 260, 240), 0,
                       470 - 4 * np.sin(i), 260, 240) for i in range(30)]
    end = run(w, noisy(two))
    run(w, noisy([with_person(bg, 0, 170 + 4 * np.sin(i), 260, 240) for i in range(60)], 1),
        start_ms=end + 100)
    assert [b["count"] for b in of(ev, "person_count")] == [2, 1]
    assert w.stats["detector_runs"] < w.stats["pose_runs"]  # followed between detector runs
    assert of(ev, "behaviour") == []


def test_person_rotated_to_the_floor_is_a_fall_then_lying_still(pose):
    ev: Events = []
    w = make_worker(pose, ev, lying_still_s=5)
    bg = background("coffee.png")
    end = run(w, noisy(standing(bg, 25) + falling(bg) + lying(bg, 80)))
    beh = of(ev, "behaviour")
    falls = [b for b in beh if b["cls"] == "fall"]
    assert falls and falls[0]["phase"] == "new" and falls[0]["track"] == 1
    assert falls[0]["score_pct"] >= 50
    still = [b for b in beh if b["cls"] == "lying_still"]
    assert still and still[0]["phase"] == "new"
    # lying still only after the configured 5 s of lying
    assert int(still[0]["id"].rsplit("-", 1)[1]) - int(falls[0]["id"].rsplit("-", 1)[1]) >= 5000
    # getting up ends both
    run(w, noisy(standing(bg, 40), 3), start_ms=end + 100)
    ends = {b["cls"] for b in of(ev, "behaviour") if b["phase"] == "end"}
    assert ends == {"fall", "lying_still"}


def test_standing_still_and_walking_give_no_behaviour(pose):
    ev: Events = []
    w = make_worker(pose, ev, lying_still_s=5)
    bg = background("motorcycle_left.png")
    frames = [with_person(bg, 0, 200 + 8 * i, 250) for i in range(30)] + \
        [with_person(bg, 0, 440, 250)] * 40
    run(w, noisy(frames))
    assert [b["count"] for b in of(ev, "person_count")] == [1]
    assert of(ev, "behaviour") == []


@pytest.mark.parametrize("name", ["brick.png", "grass.png"])
def test_empty_room_gives_nothing_and_costs_little(pose, name):
    ev: Events = []
    w = make_worker(pose, ev)
    run(w, noisy([background(name)] * 120))  # 12 s at 10 fps
    assert [t for t, _ in ev] == ["camera"]  # the liveness heartbeat only
    assert ev[0][1]["live"] is True
    # motion gating: the models ran on the first frame and then every 10 s, not per frame
    assert w.stats["pose_runs"] <= 3


def test_occupied_still_room_still_runs_pose_every_few_seconds(pose):
    ev: Events = []
    w = make_worker(pose, ev)
    bg = background("coffee.png")
    run(w, [with_person(bg, 0, 320, 240)] * 100)  # 10 s, identical frames: no motion
    assert 4 <= w.stats["pose_runs"] <= 15


def _tamper_run(pose, bad: list[np.ndarray], name: str = "coffee.png") -> Events:
    ev: Events = []
    w = make_worker(pose, ev)
    bg = background(name)
    end = run(w, noisy([bg] * 30))              # learn the reference
    end = run(w, noisy(bad, 1), start_ms=end + 100)
    run(w, noisy([bg] * 60, 2), start_ms=end + 100)  # back to normal
    return ev


def test_covered_lens_is_tamper_new_then_end(pose):
    ev = _tamper_run(pose, [np.full((480, 640, 3), 25, np.uint8)] * 60)
    t = of(ev, "tamper")
    assert [(b["kind"], b["phase"]) for b in t] == [("covered", "new"), ("covered", "end")]
    assert t[0]["id"] == t[1]["id"] and t[0]["score_pct"] >= 80


def test_blurred_lens_is_tamper(pose):
    bg = background("coffee.png")
    ev = _tamper_run(pose, [cv2.GaussianBlur(bg, (0, 0), 6)] * 60)
    kinds = [(b["kind"], b["phase"]) for b in of(ev, "tamper")]
    assert kinds == [("blurred", "new"), ("blurred", "end")]


def test_moved_camera_is_tamper(pose):
    bg = background("motorcycle_left.png")
    shifted = cv2.warpAffine(bg, np.float32([[1, 0, 160], [0, 1, 60]]), (640, 480),
                             borderMode=cv2.BORDER_REFLECT)
    ev = _tamper_run(pose, [shifted] * 60, "motorcycle_left.png")
    assert [(b["kind"], b["phase"]) for b in of(ev, "tamper")] == [("moved", "new"),
                                                                     ("moved", "end")]


def test_replaced_scene_is_tamper_and_long_tamper_updates(pose):
    ev: Events = []
    w = make_worker(pose, ev)
    end = run(w, noisy([background("coffee.png")] * 30))
    run(w, noisy([background("motorcycle_left.png")] * 400, 1), start_ms=end + 100)  # 40 s
    phases = [(b["kind"], b["phase"]) for b in of(ev, "tamper")]
    assert phases[0] == ("moved", "new") and ("moved", "update") in phases


class StepClock:
    """Custody time set by the test, frame by frame."""

    def __init__(self) -> None:
        self.ms = 0

    def now_ms(self) -> int:
        return self.ms


def test_heartbeat_every_half_recording_gap_and_not_recording_while_covered(pose):
    ev: Events = []
    clock = StepClock()
    w = CameraWorker(Camera("cam-a", "0", ()), "room-a", lambda t, b: ev.append((t, b)),
                     clock, Rules(recording_gap_s=2), pose=pose)  # type: ignore[arg-type]
    bg = background("coffee.png")
    covered = np.full((480, 640, 3), 25, np.uint8)
    frames = noisy([bg] * 30) + noisy([covered] * 60, 1) + noisy([bg] * 60, 2)
    for ts, f in timed(frames):
        clock.ms = ts
        w.process(Frame(ts, image=f))
    beats = [(b["recording"], b["live"]) for t, b in ev if t == "camera"]
    assert len(beats) == 15  # 15 s of frames, one heartbeat a second (gap 2 s / 2)
    assert all(live for _, live in beats)
    assert beats[0] == (True, True) and (False, True) in beats and beats[-1] == (True, True)


def test_heartbeat_keeps_its_cadence_when_frames_are_sparse(pose):
    """Frames 1.7 s apart (a sped-up simulation): a heartbeat at the first frame after each
    period, never drifting later, so no two are further apart than period + one frame."""
    beats: list[int] = []
    clock = StepClock()
    w = CameraWorker(Camera("cam-a", "0", ()), "room-a",
                     lambda t, b: beats.append(clock.ms) if t == "camera" else None,
                     clock, Rules(recording_gap_s=10), heartbeat_s=2.5,
                     pose=pose)  # type: ignore[arg-type]
    bg = background("coffee.png")
    for ts, f in timed(noisy([bg] * 120), fps=1 / 1.7):  # 204 s of frames
        clock.ms = ts
        w.process(Frame(ts, image=f))
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert max(gaps) <= 2500 + 1700
    # 2.5 s on average: one per period, where re-arming at each frame would give one per
    # 3.4 s (two frames) here.
    assert len(beats) >= 204 / 2.5 - 1


def test_lights_dimmed_is_not_tamper(pose):
    bg = background("coffee.png")
    dim = (bg.astype(np.float32) * 0.6).astype(np.uint8)
    ev = _tamper_run(pose, [dim] * 60)
    assert of(ev, "tamper") == []
