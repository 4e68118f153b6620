"""Whole-process recording: a camera's frames into rotated local video segments.

Each closed segment is hashed (SHA-256 of the file's bytes) and reported as a `segment` event
(camera, room, file, start, end, frame count, size, codec, sha256), so the journal proves which
video existed and that it has not been changed since. The per-frame timestamps of a segment go
to a sidecar `<segment>.ts` file (one integer ms per line) so that an evidence clip can be cut at
exact times. Old segments are deleted once the ring holds more than `ring_hours` of video.

Codec: H.264 where this OpenCV build has an encoder ("avc1"), else MPEG-4 Part 2 ("mp4v"),
else MJPEG; the pip OpenCV wheels have no H.264 encoder (measured: benchmarks/RESULTS.md,
"recording cost").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from protocol.evidence import sha256_file

Emit = Callable[[str, dict[str, Any]], None]

# (fourcc, file extension), best first
CODECS = {"avc1": ".mp4", "mp4v": ".mp4", "MJPG": ".avi"}
_CODEC_CACHE: dict[str, bool] = {}


def codec_works(fourcc: str, directory: Path) -> bool:
    """Whether this OpenCV build can write `fourcc` (tried once per process on a tiny file)."""
    if fourcc not in _CODEC_CACHE:
        probe = directory / f".probe-{fourcc}{CODECS[fourcc]}"
        vw = cv2.VideoWriter(str(probe), cv2.VideoWriter.fourcc(*fourcc), 10, (64, 48))
        ok = vw.isOpened()
        if ok:
            vw.write(np.zeros((48, 64, 3), np.uint8))
        vw.release()
        ok = ok and probe.exists() and probe.stat().st_size > 0
        probe.unlink(missing_ok=True)
        _CODEC_CACHE[fourcc] = ok
    return _CODEC_CACHE[fourcc]


def choose_codec(directory: Path, wanted: str = "auto") -> str:
    """The codec to record with: `wanted` if it works, else the best that does."""
    order = list(CODECS) if wanted == "auto" else [wanted]
    for fourcc in order:
        if fourcc not in CODECS:
            raise ValueError(f"recording codec {fourcc!r}: use one of {', '.join(CODECS)} "
                             "or 'auto'")
        if codec_works(fourcc, directory):
            return fourcc
    raise RuntimeError(f"no video codec of {order} can be written by this OpenCV build")


@dataclass(frozen=True)
class Segment:
    """A closed segment as reported in its `segment` event."""

    file: str
    start_ms: int
    end_ms: int
    frames: int
    bytes: int
    codec: str
    sha256: str

    def body(self, camera: str, room: str) -> dict[str, Any]:
        """The `segment` event body."""
        return {"camera": camera, "room": room, "file": self.file, "start_ms": self.start_ms,
                "end_ms": self.end_ms, "frames": self.frames, "bytes": self.bytes,
                "codec": self.codec, "sha256": self.sha256}


class SegmentRecorder:
    """Writes one camera's frames into segments of `segment_s` seconds under `directory`."""

    def __init__(self, camera: str, room: str, directory: str | Path, emit: Emit, *,
                 segment_s: float = 60.0, ring_hours: float = 24.0, fps: float = 15.0,
                 codec: str = "auto", max_width: int = 640) -> None:
        if segment_s <= 0 or ring_hours <= 0:
            raise ValueError("recording: segment_s and ring_hours must be > 0")
        self.camera, self.room, self.emit = camera, room, emit
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_ms = round(segment_s * 1000)
        self.ring_ms = round(ring_hours * 3600 * 1000)
        self.fps = fps
        self.min_gap_ms = 900.0 / fps  # record at most `fps` frames a second (10 % jitter)
        self.codec = choose_codec(self.dir, codec)
        self.max_width = max_width
        self._lock = threading.Lock()
        self._vw: Any = None
        self._path: Path | None = None
        self._ts: list[int] = []
        self._size: tuple[int, int] | None = None
        self.closed: list[Segment] = []  # this run's closed segments, oldest first
        self.stats = {"segments": 0, "frames": 0, "skipped": 0, "deleted": 0, "errors": 0}

    @property
    def recording(self) -> bool:
        """True while a segment is open (frames are being written)."""
        return self._vw is not None

    def write(self, img: np.ndarray, ts_ms: int) -> None:
        """Append one BGR frame taken at `ts_ms` (unless it comes sooner than the recording
        rate allows); rotates the segment when it is full."""
        with self._lock:
            if self._ts and ts_ms - self._ts[-1] < self.min_gap_ms:
                self.stats["skipped"] += 1  # a camera faster than the recording rate
                return
            if self._vw is not None and ts_ms - self._ts[0] >= self.segment_ms:
                self._close()
            h, w = img.shape[:2]
            if w > self.max_width:  # record at a bounded size: CPU and disk on a Pi
                img = cv2.resize(img, (self.max_width, round(h * self.max_width / w)),
                                 interpolation=cv2.INTER_AREA)
                h, w = img.shape[:2]
            if self._vw is not None and self._size != (w, h):
                self._close()  # the camera changed resolution: a new segment
            if self._vw is None:
                self._open(ts_ms, w, h)
            self._vw.write(img)
            self._ts.append(ts_ms)
            self.stats["frames"] += 1

    def _open(self, ts_ms: int, w: int, h: int) -> None:
        self._path = self.dir / f"{self.camera}-{ts_ms}{CODECS[self.codec]}"
        self._vw = cv2.VideoWriter(str(self._path), cv2.VideoWriter.fourcc(*self.codec),
                                   self.fps, (w, h))
        if not self._vw.isOpened():
            self._vw = None
            self.stats["errors"] += 1
            raise OSError(f"cannot open video segment {self._path} ({self.codec})")
        self._size = (w, h)
        self._ts = []

    def _close(self) -> Segment | None:
        vw, path, ts = self._vw, self._path, self._ts
        self._vw, self._path, self._ts = None, None, []
        if vw is None or path is None:
            return None
        vw.release()
        if not ts:
            path.unlink(missing_ok=True)
            return None
        path.with_suffix(path.suffix + ".ts").write_text("".join(f"{t}\n" for t in ts))
        seg = Segment(path.name, ts[0], ts[-1], len(ts), path.stat().st_size, self.codec,
                      sha256_file(path))
        self.closed.append(seg)
        self.stats["segments"] += 1
        self.emit("segment", seg.body(self.camera, self.room))
        self._prune(ts[-1])
        return seg

    def close(self) -> Segment | None:
        """Close the open segment (camera stopping); returns it, reported like any other."""
        with self._lock:
            return self._close()

    def _prune(self, now_ms: int) -> None:
        """Delete segments that ended more than the ring's span before `now_ms`."""
        for path in sorted(self.dir.glob(f"{self.camera}-*")):
            if path.suffix == ".ts" or path == self._path:
                continue
            try:
                start = int(path.stem.rsplit("-", 1)[1])
            except ValueError:
                continue
            ts_file = path.with_suffix(path.suffix + ".ts")
            end = start
            if ts_file.exists():
                lines = ts_file.read_text().split()
                end = int(lines[-1]) if lines else start
            if now_ms - end > self.ring_ms:
                path.unlink(missing_ok=True)
                ts_file.unlink(missing_ok=True)
                self.stats["deleted"] += 1

    def segments_between(self, start_ms: int, end_ms: int) -> list[tuple[Path, list[int]]]:
        """Closed segment files overlapping [start_ms, end_ms], oldest first, with their frame
        timestamps."""
        out = []
        for ts_file in sorted(self.dir.glob(f"{self.camera}-*.ts")):
            ts = [int(x) for x in ts_file.read_text().split()]
            if ts and ts[0] <= end_ms and ts[-1] >= start_ms:
                out.append((ts_file.with_suffix(""), ts))
        out.sort(key=lambda item: item[1][0])
        return out

    def flush_until(self, ts_ms: int) -> None:
        """Close the open segment if it holds frames at or after `ts_ms` (so an evidence clip
        can be cut from closed, hashed files)."""
        with self._lock:
            if self._ts and self._ts[-1] >= ts_ms:
                self._close()


def verify_segments(directory: str | Path, bodies: list[dict[str, Any]]) -> dict[str, str]:
    """Check each journaled `segment` body against the file on disk: {file: problem} for every
    file that is missing or whose SHA-256 or size differs (empty when all match)."""
    bad: dict[str, str] = {}
    for b in bodies:
        path = Path(directory) / b["file"]
        if not path.is_file():
            bad[b["file"]] = "missing"
        elif os.path.getsize(path) != b["bytes"] or sha256_file(path) != b["sha256"]:
            bad[b["file"]] = "modified"
    return bad
