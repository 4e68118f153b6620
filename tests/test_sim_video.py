"""Simulator cameras fed real pixel frames: the [video] table's validation, the quick intake,
the YUV4MPEG2 named pipe read by real OpenCV and by the node's real VideoSource, and (where
../shared/data is present) what BlazePose sees in the pictures made from a real clip."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.vision.capture import VideoSource, open_source
from protocol.clock import REAL
from protocol.config import ConfigError
from sim.devices.video import Clip, VideoCamera, empty_room, load_clip, y4m_header
from sim.scenario import SHARED_DATA, MissingFootage, load_scenario

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "sim" / "sites" / "compact.toml"
REAL_CLIP = SHARED_DATA / "gmdcsa24" / "Subject-3" / "Fall" / "20.mp4"


def synthetic_clip(path: Path, n: int = 12, fps: float = 10.0) -> Path:
    """A small MJPEG clip: a white square moving right on grey (frame i: square at 10*i)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (160, 120))
    assert w.isOpened()
    for i in range(n):
        img = np.full((120, 160, 3), 90, np.uint8)
        img[40:80, 10 * i: 10 * i + 30] = 255
        w.write(img)
    w.release()
    return path


def scenario(tmp_path: Path, video: str, *, speed: float = 1, violations: str = '["fall"]',
             intake: str = "quick") -> Path:
    """A fall scenario file in tmp_path with the given [video] table."""
    text = f"""
[scenario]
site = "{SITE}"
speed = {speed}
pace = 0.1
tail_s = 5

[rules]
search_min_duration_s = 10

{video}

[[officers]]
id = "off-a"
sex = "f"

[[officers]]
id = "off-b"
sex = "m"

[[detainees]]
id = "det-1"
case = "c-1"
sex = "m"
holding = "holding-1"
team = ["off-b", "off-a"]
arrive_s = 1
intake = "{intake}"
violations = {violations}

[[expect]]
rule = "{'fall' if 'fall' in violations else 'fight'}"
room = "holding-1"
within_s = 30
"""
    f = tmp_path / "video.toml"
    f.write_text(text)
    return f


def video_table(tmp_path: Path, extra: str = "", rooms: str = '["holding-1"]') -> str:
    synthetic_clip(tmp_path / "clip.avi")
    return f'[video]\nrooms = {rooms}\ndata_dir = "{tmp_path}"\nfall_clip = "clip.avi"\n{extra}'


def test_video_table_loads_and_plans_a_quick_fall_day(tmp_path):
    sc = load_scenario(scenario(tmp_path, video_table(tmp_path)))
    assert sc.video is not None and sc.video.rooms == ("holding-1",)
    assert sc.video.fall_clip == str(tmp_path / "clip.avi")
    steps = sc.plan.sorted_steps()
    search = next(s for s in steps if s.action == "command"
                  and s.args["command"] == "record-search")
    into_search = next(s for s in steps if s.action == "move" and s.args["room"] == "search")
    # The search lasts the (overridden) site minimum plus a third.
    assert search.at_s - into_search.at_s == pytest.approx(10 * 4 / 3, abs=0.01)
    fall = next(s for s in steps if s.action == "behaviour" and s.args["kind"] == "fall")
    assert [(e.rule, e.room, e.from_s) for e in sc.plan.expected] == [
        ("fall", "holding-1", fall.at_s)]
    assert sc.duration_s < 90  # a minute and a half of custody time at x1


@pytest.mark.parametrize(("extra", "rooms", "key", "why"), [
    ("colour = true\n", '["holding-1"]', "video.colour", "unknown"),
    ("", '["search"]', "video.rooms", "with a camera"),
    ("", '["holding-1", "holding-1"]', "video.rooms", "distinct"),
    ("", "[]", "video.rooms", "1 to 3"),
])
def test_bad_video_tables_are_refused_naming_file_and_key(tmp_path, extra, rooms, key, why):
    f = scenario(tmp_path, video_table(tmp_path, extra, rooms))
    with pytest.raises(ConfigError) as exc:
        load_scenario(f)
    assert str(f) in str(exc.value) and key in str(exc.value) and why in str(exc.value)


def test_video_rooms_need_a_slow_clock(tmp_path):
    f = scenario(tmp_path, video_table(tmp_path), speed=60)
    with pytest.raises(ConfigError, match=r"scenario\.speed.*at most x2"):
        load_scenario(f)
    # The command line's --speed is checked too.
    with pytest.raises(ConfigError, match=r"scenario\.speed"):
        load_scenario(scenario(tmp_path, video_table(tmp_path)), speed=30)


def test_a_missing_clip_names_the_missing_path(tmp_path):
    f = scenario(tmp_path, f'[video]\nrooms = ["holding-1"]\ndata_dir = "{tmp_path}/absent"\n'
                           'fall_clip = "gmdcsa24/Subject-3/Fall/20.mp4"')
    with pytest.raises(MissingFootage) as exc:
        load_scenario(f)
    assert f"{tmp_path}/absent/gmdcsa24/Subject-3/Fall/20.mp4" in str(exc.value)
    assert "video.fall_clip" in str(exc.value)


def test_a_file_that_is_not_video_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a video")
    f = scenario(tmp_path, f'[video]\nrooms = ["holding-1"]\ndata_dir = "{tmp_path}"\n'
                           'fall_clip = "notes.txt"')
    with pytest.raises(ConfigError, match=r"video\.fall_clip: expected a clip OpenCV decodes"):
        load_scenario(f)


def test_video_rooms_show_falls_only_and_intake_is_checked(tmp_path):
    f = scenario(tmp_path, video_table(tmp_path), violations='["fight"]')
    with pytest.raises(ConfigError, match=r"video\.rooms.*det-1 has fight"):
        load_scenario(f)
    f = scenario(tmp_path, video_table(tmp_path), intake="brief")
    with pytest.raises(ConfigError, match=r"detainees\[0\].intake: expected one of full, quick"):
        load_scenario(f)


def test_y4m_pipe_is_read_by_opencv_and_follows_the_view(tmp_path):
    clip = load_clip(synthetic_clip(tmp_path / "clip.avi", n=12, fps=10.0))
    view = {"now": "empty"}
    cam = VideoCamera("cam-test", tmp_path, clip, 1.0, lambda: view["now"])
    cam.start()
    try:
        cap = cv2.VideoCapture(cam.path)  # blocks until the writer has the pipe open
        assert cap.isOpened()
        ok, first = cap.read()
        assert ok and first.shape == (120, 160, 3)
        # The empty room: the median of the first third (square moving) is plain grey.
        assert np.abs(first.astype(int) - empty_room(clip).astype(int)).mean() < 4
        view["now"] = "person"
        got = []
        end = time.monotonic() + 5
        while time.monotonic() < end and len(got) < 3:
            ok, img = cap.read()
            assert ok
            if img[60, 5:25].mean() > 200:  # the clip's first frame: square at x 0-30
                got.append(img)
        assert len(got) == 3
        view["now"] = "fall"  # plays the clip at 10 fps: the square moves right
        xs = []
        end = time.monotonic() + 5
        while time.monotonic() < end and len(xs) < 14:
            ok, img = cap.read()
            assert ok
            xs.append(int(np.argmax(img[60].mean(axis=1) > 200)))
        assert xs[-1] >= 100  # reached the last frames (square at 110) and held there
        assert xs == sorted(xs)
        cap.release()
        # A reader that goes away (node killed) is waited for; the next (the node started
        # again) gets a new stream header.
        time.sleep(0.5)
        cap = cv2.VideoCapture(cam.path)
        ok, img = cap.read()
        assert ok and img.shape == (120, 160, 3)
        cap.release()
        assert cam.readers == 2 and cam.clip_plays == 1
    finally:
        cam.close()
    assert not Path(cam.path).exists()


def test_the_nodes_video_source_opens_the_pipe_as_a_live_camera(tmp_path):
    """The node's own VideoSource: a live camera (frames stamped on arrival, never 'finished'),
    frames keep coming at the idle rate, and a covered camera goes silent."""
    clip = load_clip(synthetic_clip(tmp_path / "clip.avi"))
    cam = VideoCamera("cam-node", tmp_path, clip, 1.0, lambda: "person")
    cam.start()
    src = open_source(cam.path, REAL)
    assert isinstance(src, VideoSource) and not src.is_file
    src.start()
    try:
        stamps = []
        end = time.monotonic() + 10
        while time.monotonic() < end and len(stamps) < 6:
            f = src.read(1.0)
            if f is not None:
                assert f.image is not None and f.image.shape == (120, 160, 3)
                stamps.append(f.ts_ms)
        assert len(stamps) == 6
        gaps = np.diff(stamps)
        assert np.all(gaps > 0) and np.median(gaps) > 100  # ~5 fps idle, stamped on arrival
        cam.covered = True
        time.sleep(0.5)
        while src.read(0.1) is not None:
            pass
        assert src.read(1.0) is None
        assert not src.finished
    finally:
        src.stop()
        cam.close()


def test_header_names_size_and_rate():
    assert y4m_header(640, 480, 15.06) == b"YUV4MPEG2 W640 H480 F15060:1000 Ip A1:1 C420jpeg\n"


@pytest.mark.skipif(not REAL_CLIP.is_file(),
                    reason=f"real clips not present at {REAL_CLIP} (shared data folder absent)")
def test_blazepose_sees_nobody_in_the_empty_room_and_the_detainee_in_the_first_frame():
    from edge_agent.vision.pose import PoseEstimator

    clip: Clip = load_clip(REAL_CLIP)
    pose = PoseEstimator(threads=1)
    rgb = [cv2.cvtColor(x, cv2.COLOR_BGR2RGB) for x in (empty_room(clip), clip.frames[0])]
    assert [len(pose.estimate(x)) for x in rgb] == [0, 1]


def test_shipped_scenario_without_shared_data_names_the_missing_clip(monkeypatch, tmp_path):
    monkeypatch.setattr("sim.scenario.SHARED_DATA", tmp_path / "shared" / "data")
    with pytest.raises(MissingFootage) as exc:
        load_scenario(ROOT / "sim" / "scenarios" / "fall-video.toml")
    assert f"{tmp_path}/shared/data/gmdcsa24/Subject-3/Fall/20.mp4" in str(exc.value)
