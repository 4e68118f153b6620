"""Vision in real time with a 30 fps camera, and the CPU share of recording.

A live camera is stood in for by a source that delivers real frames (a GMDCSA24 clip, 1280x720,
played forwards and backwards) at 30 fps with live timestamps, whatever the pipeline does, as a
V4L2 camera would. The camera worker runs on it for `--seconds` with and without recording to
segments; reported: frames the camera delivered, frames the pipeline handled (skipping to the
newest), pose runs per second, the fps the worker reports in health, and CPU seconds per wall
second of the process. Recording alone (encoding the same frames at 640 px) is timed per codec.

    .venv/bin/python -m benchmarks.bench_realtime [--seconds 20] [--write]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_agent.recording.segments import CODECS, SegmentRecorder, codec_works
from edge_agent.vision.capture import Frame, Source
from edge_agent.vision.pipeline import CameraWorker
from models.clips import DATA
from protocol.clock import REAL, Clock
from protocol.site import Camera, Rules

CLIP = "Subject-3/Fall/01.mp4"  # 1280x720, 29.9 fps: walking, a fall


PI = """
Expected on a Raspberry Pi (reasoned, not measured here): BlazePose full (detector + landmarks)
runs on XNNPACK; a Pi 4 (4x Cortex-A72, 1.5 GHz) is about 3-4x slower per thread than this
x86 core and a Pi 5 (4x Cortex-A76, 2.4 GHz) about 1.5x slower, so one pose run of ~50 ms
unloaded here becomes ~150-200 ms (Pi 4) or ~70-90 ms (Pi 5). With `cpu_share=0.6` the budget
then allows ~3-4 pose runs a second on a Pi 4 and ~7-8 on a Pi 5 (analysis_fps caps it at 15),
while the cheap per-frame path (motion gate + tamper, a few ms here) holds the camera's 30 fps
on a Pi 5 and ~20-30 on a Pi 4; frames beyond that are skipped, never queued, so alerts are
never late by more than one pose run. Recording: mp4v costs ~2.5 ms CPU a frame here at
640x360, so ~8-10 ms on a Pi 4: ~15 % of one core at 15 fps, ~30 % at 30 fps; a Pi 4's
hardware H.264 encoder (h264_v4l2m2m, tried first by `codec="auto"` when the OpenCV build has
it) takes that to near zero; the Pi 5 has no H.264 encoder, so it records mp4v in software.
Recording at 15 fps is the default for that reason.
"""


def load(path: Path) -> list[np.ndarray]:
    """Decoded frames, forwards then backwards (a seamless loop)."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    cap.release()
    return out + out[-2:0:-1]


class LiveLoop(Source):
    """A 30 fps camera: frames at a fixed real rate, newest wins when the reader is busy."""

    def __init__(self, frames: list[np.ndarray], clock: Clock, fps: float = 30.0) -> None:
        super().__init__("live-loop", clock, drop_old=True)
        self.frames, self.period = frames, 1.0 / fps

    def _run(self) -> None:
        nxt, i = time.monotonic(), 0
        while not self._stop.is_set():
            self.stats.frames += 1
            self._deliver(Frame(self.clock.now_ms(), image=self.frames[i % len(self.frames)]))
            i += 1
            nxt += self.period
            self._stop.wait(max(0.0, nxt - time.monotonic()))


def cpu_s() -> float:
    """CPU seconds (user + system) of this process so far, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(frames: list[np.ndarray], seconds: float, record_dir: str | None,
        record_fps: float = 15.0) -> dict[str, Any]:
    """Run the worker on the live loop; the figures of one run."""
    w = CameraWorker(Camera("cam-rt", "0", ()), "room", lambda t, b: None, REAL, Rules(),
                     record_dir=record_dir, segment_s=10.0, record_fps=record_fps)
    src = LiveLoop(frames, REAL)
    w.source = src
    src.on_error = w.faults.raise_
    if w.recorder is not None:
        src.on_frame = w._record
        w._source_records = True
    import threading

    c0, t0 = cpu_s(), time.monotonic()
    src.start()
    th = threading.Thread(target=w._run, daemon=True)
    th.start()
    time.sleep(seconds)
    health = w.health()
    w._stop.set()
    src.stop()
    th.join(5)
    wall, cpu = time.monotonic() - t0, cpu_s() - c0
    if w.recorder is not None:
        w.recorder.close()
    return {"delivered": src.stats.frames, "handled": w.stats["frames"],
            "pose_runs": w.stats["pose_runs"], "wall": wall, "cpu": cpu,
            "fps_x10": health["fps_x10"], "pose_fps_x10": health["pose_fps_x10"],
            "pose_ms": health["pose_ms"], "dropped": health["dropped"]}


def record_cost(frames: list[np.ndarray], n: int = 150) -> list[tuple[str, float, float]]:
    """(codec, CPU ms per frame, MB per minute at 30 fps) of recording at 640 px."""
    out = []
    with tempfile.TemporaryDirectory() as d:
        for fourcc in CODECS:
            if not codec_works(fourcc, Path(d)):
                continue
            r = SegmentRecorder("cam-rt", "room", Path(d) / fourcc, lambda t, b: None,
                                segment_s=3600, fps=30.0, codec=fourcc)
            c0 = cpu_s()
            for i in range(n):
                r.write(frames[i % len(frames)], i * 33)
            seg = r.close()
            ms = (cpu_s() - c0) / n * 1000
            mb_min = (seg.bytes if seg else 0) / n * 30 * 60 / 1e6
            out.append((fourcc, ms, mb_min))
    return out


def main() -> int:
    """Measure and print (optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if not (DATA / CLIP).is_file():
        print(f"real clip absent ({DATA / CLIP}): nothing to measure")
        return 0
    frames = load(DATA / CLIP)
    rows = ["| run | camera frames | handled | pose runs/s | health fps | pose ms | "
            "CPU s / wall s |", "|---|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as d:
        for name, rec, rfps in (("vision only", None, 15.0),
                                ("vision + recording 15 fps", d, 15.0),
                                ("vision + recording 30 fps", d, 30.0)):
            r = run(frames, args.seconds, rec, rfps)
            rows.append(f"| {name} | {r['delivered']} ({r['delivered'] / r['wall']:.1f}/s) | "
                        f"{r['handled']} ({r['handled'] / r['wall']:.1f}/s) | "
                        f"{r['pose_runs'] / r['wall']:.1f} | {r['fps_x10'] / 10:.1f} | "
                        f"{r['pose_ms']} | {r['cpu'] / r['wall']:.2f} |")
            print(rows[-1], flush=True)
    rows += ["", "| recording codec | CPU ms / frame (640x360) | share of one core at 30 fps |"
             " MB / minute |", "|---|---:|---:|---:|"]
    for fourcc, ms, mb in record_cost(frames):
        rows.append(f"| {fourcc} | {ms:.1f} | {ms * 30 / 1000:.0%} | {mb:.1f} |")
        print(rows[-1], flush=True)
    load_avg = os.getloadavg()[0]
    text = "\n".join(rows) + (f"\n\nMeasured on {os.cpu_count()} CPUs shared with other work "
                              f"(load average {load_avg:.1f} at the end): read the CPU columns as "
                              "upper bounds of cost and the rates as lower bounds.\n") + PI

    if args.write:
        from benchmarks.results import command_line, write_section

        write_section("vision in real time (30 fps camera) and recording cost", command_line(),
                      text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
