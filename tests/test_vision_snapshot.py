"""Privacy-masked snapshots: faces blurred (real BlazeFace), masked regions blacked out, and a
thumbnail that fits the protocol's snapshot event."""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np

from edge_agent.vision import open_camera
from edge_agent.vision.capture import Frame
from edge_agent.vision.snapshot import FaceDetector, Snapshotter
from protocol.clock import REAL
from protocol.events import validate_body
from protocol.site import Camera, Rules
from tests.vision_scenes import background, falling, lying, photo, standing, timed


def _detail(img: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var())


def test_face_is_found_and_blurred_and_regions_are_blacked_out(tmp_path):
    img = photo("astronaut.png")
    faces = FaceDetector().detect(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0]
    assert 150 < (x0 + x1) / 2 < 300 and 60 < (y0 + y1) / 2 < 200  # her face, upper middle
    snap = Snapshotter([(400, 400, 100, 100)], folder=tmp_path)
    masked, thumb = snap.take(img, [], "snap-1")
    before, after = img[y0:y1, x0:x1], masked[y0:y1, x0:x1]
    assert _detail(after) < 0.1 * _detail(before)          # face unrecognisable
    assert not masked[400:500, 400:500].any()              # masked region black
    assert np.array_equal(masked[0:50, 0:50], img[0:50, 0:50])  # the rest untouched
    assert (tmp_path / "snap-1.jpg").is_file()
    assert thumb is not None and len(thumb) <= 512
    assert cv2.imdecode(np.frombuffer(base64.b64decode(thumb), np.uint8), 0) is not None


def test_fall_with_snapshots_enabled_emits_a_masked_snapshot(tmp_path):
    events: list[tuple[str, dict[str, Any]]] = []

    def emit(t: str, body: dict[str, Any]) -> None:
        validate_body(t, body)
        events.append((t, body))

    w = open_camera(Camera("cam-a", "0", ((0, 0, 64, 64),)), "room-a", emit, REAL, Rules(),
                    snapshots=True, snapshot_dir=str(tmp_path))
    bg = background("coffee.png")
    for ts, f in timed(standing(bg, 25) + falling(bg) + lying(bg, 10)):
        w.process(Frame(ts, image=f))
    snaps = [b for t, b in events if t == "snapshot"]
    assert len(snaps) == 1 and snaps[0]["alert"] == "fall" and snaps[0]["masked"] is True
    saved = list(tmp_path.glob("*.jpg"))
    assert len(saved) == 1
    img = cv2.imread(str(saved[0]))
    assert not img[:60, :60].any()  # the configured masked region
