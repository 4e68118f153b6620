"""The whole pipeline (video file -> BlazePose -> tracker -> behaviour) on real footage:
GMDCSA24 clips under ../shared/data (read in place, never copied)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from edge_agent.vision import open_camera
from protocol.clock import REAL
from protocol.events import validate_body
from protocol.site import Camera, Rules
from tests.conftest import SHARED_DATA

CLIPS = SHARED_DATA / "gmdcsa24"

pytestmark = pytest.mark.skipif(
    not CLIPS.is_dir(), reason=f"real clips not present at {CLIPS} (shared data folder absent)")


def run_clip(rel: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []

    def emit(t: str, body: dict[str, Any]) -> None:
        validate_body(t, body)
        events.append((t, body))

    w = open_camera(Camera("cam-real", str(CLIPS / rel), ()), "holding-1", emit, REAL, Rules(),
                    stall_s=1.0, pace=False)
    w.start()
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end and not any(
                t == "fault" and b["kind"] == "no_frames" for t, b in events):
            time.sleep(0.1)
    finally:
        w.stop()
    return events


@pytest.mark.slow
def test_real_fall_clip_is_a_fall_and_daily_activity_is_not():
    fall = run_clip("Subject-3/Fall/20.mp4")  # walking, then falling forward
    adl = run_clip("Subject-3/ADL/20.mp4")    # sitting on a bed talking on the phone
    for events in (fall, adl):
        assert any(t == "person_count" and b["count"] == 1 for t, b in events)
    fall_cls = [b["cls"] for t, b in fall if t == "behaviour" and b["phase"] == "new"]
    assert "fall" in fall_cls
    assert not [b for t, b in adl if t == "behaviour"]
