"""Camera sources through the running worker: kp: feed on a real pty, a video file, a dead RTSP
URL, stalls and bad input."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_agent.vision import open_camera
from edge_agent.vision.capture import parse_kp_line
from models.synth_keypoints import two_person_fight
from protocol.clock import REAL
from protocol.events import validate_body
from protocol.site import Camera, Rules
from tests.vision_scenes import background, standing


class Sink:
    """A thread-safe emit that records (type, body) and checks bodies against the protocol."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, t: str, body: dict[str, Any]) -> None:
        validate_body(t, body)
        with self.lock:
            self.events.append((t, body))

    def of(self, t: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for k, b in self.events if k == t]

    def wait(self, pred, timeout: float = 20.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.05)
        return False


def kp_line(ts: int, persons: list[np.ndarray]) -> bytes:
    return (json.dumps({"ts": ts, "persons": [np.round(p, 4).tolist() for p in persons]})
            + "\n").encode()


def test_parse_kp_line_errors_name_the_problem():
    with pytest.raises(ValueError, match="not JSON"):
        parse_kp_line("{nope", REAL)
    with pytest.raises(ValueError, match="'persons' must be a list"):
        parse_kp_line('{"ts": 1}', REAL)
    with pytest.raises(ValueError, match=r"persons\[0\] must have shape \(33, 3\)"):
        parse_kp_line('{"ts": 1, "persons": [[[0, 0, 1]]]}', REAL)
    f = parse_kp_line(json.dumps({"persons": [[[0.5, 0.5, 1.0]] * 33]}), REAL)
    assert f.persons is not None and f.persons[0].shape == (33, 3) and f.ts_ms > 0


def test_kp_feed_on_a_pty_counts_people_reports_fight_and_bad_lines():
    master, slave = os.openpty()
    path = os.ttyname(slave)
    sink = Sink()
    w = open_camera(Camera("cam-kp", f"kp:{path}", ()), "holding-1", sink, REAL, Rules())
    w.start()
    try:
        frames = two_person_fight(np.random.default_rng(4), seconds=5.0)
        ts = 5_000_000
        first = frames[0][1][0]
        for i in range(15):  # the first of them alone and calm for 1.5 s
            os.write(master, kp_line(ts + i * 100, [first]))
            time.sleep(0.01)
        os.write(master, b"this is not json\n")
        for t, persons in frames:
            os.write(master, kp_line(ts + 2000 + t, persons))
            time.sleep(0.005)
        assert sink.wait(lambda: any(b["cls"] == "fight" for b in sink.of("behaviour")))
        counts = [b["count"] for b in sink.of("person_count")]
        assert counts[:2] == [1, 2]
        fight = next(b for b in sink.of("behaviour") if b["cls"] == "fight")
        assert fight["phase"] == "new" and fight["persons"] == 2
        faults = sink.of("fault")
        assert [(f["kind"], f["phase"]) for f in faults][:1] == [("bad_input", "new")]
        assert w.health()["bad_lines"] == 1
        assert sink.of("camera")[0]["live"] is True
    finally:
        w.stop()
        os.close(master)
        os.close(slave)


def test_kp_feed_stall_is_reported_within_the_timeout(tmp_path: Path):
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(kp_line(1000, []) * 3)
    sink = Sink()
    w = open_camera(Camera("cam-kp", f"kp:{feed}", ()), "holding-1", sink, REAL, Rules(),
                    stall_s=1.0)
    w.start()
    try:
        assert sink.wait(lambda: any(f["kind"] == "no_frames" for f in sink.of("fault")), 10)
        assert sink.of("camera")[-1]["live"] is False
        assert w.health()["stalled"] == 1
        with feed.open("ab") as fh:  # frames again: fault ends, camera live again
            fh.write(kp_line(5000, []))
        assert sink.wait(lambda: any(f["phase"] == "end" for f in sink.of("fault")), 10)
        assert sink.of("camera")[-1]["live"] is True
    finally:
        w.stop()


def test_video_file_source_runs_pose_and_counts(tmp_path: Path):
    clip = tmp_path / "room.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 480))
    bg = background("coffee.png")
    for f in [bg] * 10 + standing(bg, 40):
        vw.write(f)
    vw.release()
    sink = Sink()
    w = open_camera(Camera("cam-file", str(clip), ()), "room-a", sink, REAL, Rules(),
                    stall_s=1.0)
    w.start()
    try:
        assert sink.wait(lambda: any(f["kind"] == "no_frames" for f in sink.of("fault")), 60)
        assert [b["count"] for b in sink.of("person_count")] == [1]
        h = w.health()
        assert h["frames"] == 50 and h["pose_runs"] >= 5
    finally:
        w.stop()


def test_unreachable_rtsp_camera_is_a_fault_and_keeps_retrying():
    sink = Sink()
    w = open_camera(Camera("cam-ip", "rtsp://127.0.0.1:9/stream", ()), "room-a", sink, REAL,
                    Rules(), stall_s=2.0)
    w.start()
    try:
        assert sink.wait(lambda: any(f["kind"] == "no_frames" for f in sink.of("fault")), 15)
        kinds = {f["kind"] for f in sink.of("fault")}
        assert "open_failed" in kinds
        assert w.health()["reconnects"] >= 1
        assert not sink.of("person_count")
    finally:
        w.stop()


def test_custody_vision_run_prints_events_for_a_video_file(tmp_path: Path):
    import subprocess
    import sys

    clip = tmp_path / "room.avi"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 480))
    bg = background("coffee.png")
    for f in [bg] * 5 + standing(bg, 30):
        vw.write(f)
    vw.release()
    r = subprocess.run([sys.executable, "-m", "custody.cli", "vision", "run", str(clip),
                        "--camera", "cam-9", "--exit-on-stall", "--stall-s", "1",
                        "--seconds", "60"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    types = [x["type"] for x in lines]
    assert {"type": "person_count", "body": {"camera": "cam-9", "room": "room-test",
                                             "count": 1}} in lines
    assert "fault" in types and types[-1] == "health"
    assert lines[-1]["body"]["frames"] == 35


def test_kp_view_measures_go_through_the_tamper_path():
    """A kp: line's `view` (spread, detail, matched fraction) is judged by the same tamper
    detector as pixels: a blur shorter than the hold raises nothing, a longer one or a moved
    camera does, and each ends once the view is clear for the hold (issue 18)."""
    from edge_agent.vision.tamper import TamperDetector

    with pytest.raises(ValueError, match="'view' must be"):
        parse_kp_line('{"ts": 1, "persons": [], "view": {"std": 50}}', REAL)
    f = parse_kp_line('{"ts": 1, "persons": [], "view": {"std": 50, "lap_var": 400, '
                      '"matched": 1}}', REAL)
    assert f.view == (50.0, 400.0, 1.0)
    det = TamperDetector("cam-x")
    clear, blurred, moved = (50.0, 400.0, 1.0), (50.0, 40.0, 0.95), (50.0, 380.0, 0.2)
    events: list[tuple[int, str, str]] = []

    def show(view: tuple[float, float, float], start: int, end: int) -> None:
        for ts in range(start, end, 500):
            events.extend((ts, k, p) for k, p, _, _ in det.check_view(view, ts))

    show(clear, 0, 10_000)  # the reference is learnt from the first views
    show(blurred, 10_000, 12_000)  # 2 s: under the 3 s hold
    show(clear, 12_000, 20_000)
    assert events == []
    show(blurred, 20_000, 30_000)
    show(clear, 30_000, 40_000)
    show(moved, 40_000, 50_000)
    show(clear, 50_000, 60_000)
    assert [(k, p) for _, k, p in events] == [("blurred", "new"), ("blurred", "end"),
                                             ("moved", "new"), ("moved", "end")]
    assert 23_000 <= events[0][0] <= 24_000 and 33_000 <= events[1][0] <= 34_000
