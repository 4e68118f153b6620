"""A virtual pixel camera: real video frames as a YUV4MPEG2 stream on a named pipe.

The node opens the pipe's path like any OpenCV-readable camera (cv2.VideoCapture through
FFmpeg), so the frames go through its real VideoSource, motion gate, BlazePose, tracker and
behaviour classifier. What the camera shows comes from one real clip:

- the room empty: a background picture made from the clip (the per-pixel median of its
  first third, where the person is still walking about);
- somebody in the room: the clip's first frame, repeated;
- a fall: the clip played from its first frame at its own frame rate (times the clock speed,
  so the fall takes its real duration in custody time), its last frame held afterwards.

Between clip plays the pipe carries IDLE_FPS frames per real second: enough for the node's
heartbeat, cheap for its pose estimator (a still picture does not open the motion gate).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IDLE_FPS = 5.0  # real frames per second while the picture is still
VIEWS = ("empty", "person", "fall")


@dataclass
class Clip:
    """A decoded clip: BGR frames, their frame rate, and where it came from."""

    path: str
    frames: list[np.ndarray]
    fps: float

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        h, w = self.frames[0].shape[:2]
        return w, h

    @property
    def duration_s(self) -> float:
        """Seconds the clip lasts at its own frame rate."""
        return len(self.frames) / self.fps


def load_clip(path: str | Path, max_frames: int | None = None) -> Clip:
    """Decode a video file (its first `max_frames` frames if given; 1 is a cheap check that
    it opens, decodes and states a sane rate); ValueError says what is wrong with it."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"OpenCV cannot open {path}")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frames: list[np.ndarray] = []
        while max_frames is None or len(frames) < max_frames:
            ok, img = cap.read()
            if not ok or img is None:
                break
            # I420 needs even sides.
            h, w = img.shape[:2]
            frames.append(img[: h - h % 2, : w - w % 2])
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"{path} has no frames OpenCV can decode")
    if not 1.0 <= fps <= 120.0:
        raise ValueError(f"{path} reports {fps:g} frames per second (want 1-120)")
    return Clip(str(path), frames, fps)


def empty_room(clip: Clip) -> np.ndarray:
    """The room without its occupant: the per-pixel median of the clip's first third (the
    person moves about there; later they lie in one place, which a median would keep)."""
    n = max(3, len(clip.frames) // 3)
    return np.median(np.stack(clip.frames[:n]), axis=0).astype(np.uint8)


def y4m_header(width: int, height: int, fps: float) -> bytes:
    """A YUV4MPEG2 stream header (4:2:0, progressive, square pixels)."""
    num = round(fps * 1000)
    return f"YUV4MPEG2 W{width} H{height} F{num}:1000 Ip A1:1 C420jpeg\n".encode()


def y4m_frame(bgr: np.ndarray) -> bytes:
    """One YUV4MPEG2 frame of a BGR picture."""
    return b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes()


def _reader_gone(fd: int) -> bool:
    """True when nobody has the pipe open for reading any more (poll reports an error)."""
    p = select.poll()
    p.register(fd, select.POLLOUT)
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))


class VideoCamera:
    """A named pipe the node reads as a camera; `view()` says what the room shows now
    ("empty", "person" or "fall"). Writes never block the simulator: a writer thread feeds
    the pipe, a frame is never cut, and a reader that goes away (node killed) is waited for
    again and gets a fresh stream header."""

    def __init__(self, camera_id: str, directory: Path, clip: Clip, speed: float,
                 view: Callable[[], str]) -> None:
        self.id = camera_id
        self.clip = clip
        self.speed = speed
        self.view = view
        self.path = str(directory / f"{camera_id}.y4m")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.mkfifo(self.path, 0o600)
        self.covered = False
        self.frames = 0  # frames written whole
        self.readers = 0  # times a reader opened the pipe
        self.clip_plays = 0
        self._empty = empty_room(clip)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start feeding the pipe (frames flow once the node opens it)."""
        self._thread = threading.Thread(target=self._run, name=f"sim-video-{self.id}",
                                        daemon=True)
        self._thread.start()

    def _open(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):  # no reader yet
                return None
            raise
        # A whole frame in the pipe at once where the system allows it (fewer wake-ups).
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        self.readers += 1
        return fd

    def picture(self, view: str, since_fall_s: float) -> np.ndarray:
        """The picture for a view; `since_fall_s` is real seconds since the fall began."""
        if view == "fall":
            i = int(since_fall_s * self.clip.fps * self.speed)
            return self.clip.frames[min(i, len(self.clip.frames) - 1)]
        if view == "person":
            return self.clip.frames[0]
        return self._empty

    def _run(self) -> None:
        fd: int | None = None
        pending = b""
        is_frame = False
        fall_start: float | None = None
        next_t = time.monotonic()
        w, h = self.clip.size
        while not self._stop.is_set():
            if fd is None:
                fd = self._open()
                if fd is None:
                    self._stop.wait(0.1)
                    continue
                pending, is_frame = y4m_header(w, h, self.clip.fps), False
            if not pending and _reader_gone(fd):
                # Noticed between frames, so a node restarting later opens a fresh stream.
                os.close(fd)
                fd = None
                continue
            now = time.monotonic()
            if not pending and now >= next_t:
                view = self.view()
                if view == "fall":
                    if fall_start is None:
                        fall_start = now
                        self.clip_plays += 1
                    played = (now - fall_start) * self.clip.fps * self.speed
                    # The clip at its own rate; its last frame, once reached, at the idle rate.
                    period = 1.0 / (self.clip.fps * self.speed) \
                        if played < len(self.clip.frames) else 1.0 / IDLE_FPS
                else:
                    fall_start = None
                    period = 1.0 / IDLE_FPS
                if not self.covered:
                    pending = y4m_frame(self.picture(view, now - (fall_start or now)))
                    is_frame = True
                # Late frames are skipped, not bunched: the node stamps each on arrival.
                next_t = max(next_t + period, now)
            if not pending:
                self._stop.wait(min(0.05, max(0.0, next_t - now)))
                continue
            _, ready, _ = select.select([], [fd], [], 0.05)
            if not ready:
                continue
            try:
                n = os.write(fd, pending)
            except BlockingIOError:
                continue
            except OSError:  # the reader went away (EPIPE): wait for the next one
                os.close(fd)
                fd, pending = None, b""
                continue
            pending = pending[n:]
            if not pending and is_frame:
                self.frames += 1
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Stop the writer and remove the pipe."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
