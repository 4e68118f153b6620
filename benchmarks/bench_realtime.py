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


def run(frames: list[np.ndarray], seconds: float, record_dir: str | None) -> dict[str, Any]:
    """Run the worker on the live loop; the figures of one run."""
    w = CameraWorker(Camera("cam-rt", "0", ()), "room", lambda t, b: None, REAL, Rules(),
                     record_dir=record_dir, segment_s=10.0, record_fps=30.0)
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
        for name, rec in (("vision only", None), ("vision + recording", d)):
            r = run(frames, args.seconds, rec)
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
    text = "\n".join(rows) + f"\n\nMachine load shared with other work; {os.cpu_count()} CPUs.\n"
    if args.write:
        from benchmarks.results import command_line, write_section

        write_section("vision in real time (30 fps camera) and recording cost", command_line(),
                      text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
