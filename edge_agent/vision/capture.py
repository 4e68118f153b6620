"""Frame sources: OpenCV cameras (device, file, RTSP) and the `kp:` keypoint feed.

Each source runs its own reader thread and hands the newest frame to the pipeline through a
one-slot mailbox, so a blocking read (an RTSP stream that hangs) never blocks the pipeline's
stall watchdog. Live sources drop stale frames; files are paced at their own frame rate and
never dropped.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import stat
import struct
import termios
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from protocol.clock import Clock

NUM_LANDMARKS = 33


@dataclass
class Frame:
    """One frame: pixels (BGR) from a camera, or persons' keypoints from a `kp:` feed."""

    ts_ms: int
    image: np.ndarray | None = None
    persons: list[np.ndarray] | None = None
    aspect: float = 4 / 3
    # A kp: feed's picture measures, for the tamper path (no pixels): grey-level spread,
    # fine detail (variance of the Laplacian) and the fraction of the scene still matching.
    view: tuple[float, float, float] | None = None


@dataclass
class SourceStats:
    """Counters a source keeps for the node's health."""

    frames: int = 0
    reconnects: int = 0
    bad_lines: int = 0
    dropped: int = 0  # frames replaced unread (the pipeline was busy: skip to newest)
    last_error: str = ""


class Mailbox:
    """The hand-over between a reader thread and the pipeline.

    `drop_old`: a live source keeps only the newest frame (the pipeline never falls behind a
    camera). `max_lag_ms`: a queue that drops its oldest frames once it spans more than that
    much frame time (a keypoint feed: consecutive lines keep behaviour windows dense, and a
    busy node still never lags more than `max_lag_ms`). Neither: a file waits for the reader.
    """

    def __init__(self, drop_old: bool, max_lag_ms: int | None = None) -> None:
        self._cv = threading.Condition()
        self._items: deque[Frame] = deque()
        self.drop_old = drop_old
        self.max_lag_ms = max_lag_ms
        self.closed = False
        self.dropped = 0

    def put(self, item: Frame, stop: threading.Event) -> None:
        """Offer a frame (see the class for what happens when the reader is busy)."""
        with self._cv:
            if self.max_lag_ms is not None:
                self._items.append(item)
                while len(self._items) > 1 and \
                        item.ts_ms - self._items[0].ts_ms > self.max_lag_ms:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while not self.drop_old and self._items and not stop.is_set():
                    self._cv.wait(0.1)
                if self._items:
                    self.dropped += len(self._items)
                    self._items.clear()
                self._items.append(item)
            self._cv.notify_all()

    def backlog(self) -> int:
        """Frames waiting for the pipeline."""
        return len(self._items)

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or None after `timeout` seconds."""
        with self._cv:
            if not self._items:
                self._cv.wait(timeout)
            item = self._items.popleft() if self._items else None
            self._cv.notify_all()
            return item


class Source:
    """Base of the frame sources: a thread that fills a mailbox until stopped."""

    def __init__(self, spec: str, clock: Clock, drop_old: bool,
                 max_lag_ms: int | None = None) -> None:
        self.spec = spec
        self.clock = clock
        self.stats = SourceStats()
        self.mailbox = Mailbox(drop_old, max_lag_ms)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_error: Callable[[str, str], None] | None = None  # (kind, detail)
        # Every frame read, in the reader thread, before any is skipped (the recorder).
        self.on_frame: Callable[[Frame], None] | None = None

    def start(self) -> None:
        """Start the reader thread."""
        self._thread = threading.Thread(target=self._run, name=f"src-{self.spec}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader thread and release the device."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def read(self, timeout: float) -> Frame | None:
        """The next frame or None after `timeout` seconds."""
        return self.mailbox.get(timeout)

    def caught_up(self) -> bool:
        """No frame read and waiting (for the held clock). Strict on purpose: the clock
        probes every quarter of its lease, so only a wait that lasts the whole lease (2
        custody s) stops custody time; a threshold of one frame let a node fall 3 custody s
        behind its camera with every probe passing."""
        return self.mailbox.backlog() == 0

    def _deliver(self, frame: Frame) -> None:
        if self.on_frame is not None:
            try:
                self.on_frame(frame)
            except Exception as exc:  # recording trouble is reported, frames keep flowing
                self._error("record_failed", f"{type(exc).__name__}: {exc}")
        self.mailbox.put(frame, self._stop)
        self.stats.dropped = self.mailbox.dropped

    def _error(self, kind: str, detail: str) -> None:
        self.stats.last_error = detail
        if self.on_error is not None:
            self.on_error(kind, detail)

    def _run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def cv_target(spec: str) -> int | str:
    """What cv2.VideoCapture should open for a source string (device index or path/URL)."""
    return int(spec) if spec.strip().isdigit() else spec


class VideoSource(Source):
    """A device index, video file or RTSP URL through OpenCV, with reconnect and back-off."""

    BACKOFF_MIN_S = 1.0
    BACKOFF_MAX_S = 30.0

    def __init__(self, spec: str, clock: Clock, pace: bool = True) -> None:
        target = cv_target(spec)
        self.is_file = isinstance(target, str) and os.path.isfile(target)
        # A live camera (device, stream, pipe) skips to the newest frame when the pipeline is
        # busy; a file (evaluation, trials) gives every frame, paced or not.
        super().__init__(spec, clock, drop_old=not self.is_file)
        self.target = target
        self.pace = pace
        self.finished = False  # a file that has been played to its end

    def _run(self) -> None:
        backoff = self.BACKOFF_MIN_S
        while not self._stop.is_set():
            cap = cv2.VideoCapture(self.target)
            if not cap.isOpened():
                cap.release()
                self._error("open_failed", f"cannot open camera source {self.spec!r}")
                self.stats.reconnects += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.BACKOFF_MAX_S)
                continue
            fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            period = 1.0 / fps if self.is_file and self.pace and 0 < fps < 240 else 0.0
            next_t = time.monotonic()
            got_any = False
            # A file's frames are stamped with their own position in the video, so behaviour
            # timings are those of the recording however fast it is processed.
            t0, index = self.clock.now_ms(), 0
            while not self._stop.is_set():
                ok, img = cap.read()
                if not ok or img is None:
                    break
                got_any = True
                backoff = self.BACKOFF_MIN_S
                self.stats.frames += 1
                ts = t0 + round(index * 1000 / fps) if self.is_file and fps > 0 else \
                    self.clock.now_ms()
                index += 1
                self._deliver(Frame(ts, image=img))
                if period:
                    next_t += period
                    self._stop.wait(max(0.0, next_t - time.monotonic()))
            cap.release()
            if self.is_file and got_any:
                self.finished = True  # played once; the watchdog reports the stall
                return
            if self._stop.is_set():
                return
            self._error("read_failed", f"camera source {self.spec!r} stopped delivering frames")
            self.stats.reconnects += 1
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.BACKOFF_MAX_S)


def parse_kp_line(line: str, clock: Clock) -> Frame:
    """Parse one `kp:` JSON line into a Frame; ValueError names what is wrong."""
    try:
        obj: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:  # json nests by recursion: a deep `[[[...` must not kill the feed
        raise ValueError("not JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise ValueError("a line must be a JSON object")
    ts = obj.get("ts")
    if ts is None:
        ts = clock.now_ms()
    elif not isinstance(ts, int) or isinstance(ts, bool):
        raise ValueError(f"'ts' must be integer milliseconds, got {ts!r}")
    aspect = obj.get("aspect", 4 / 3)
    if not isinstance(aspect, int | float) or isinstance(aspect, bool) or not 0.2 < aspect < 5:
        raise ValueError(f"'aspect' must be a number in (0.2, 5), got {aspect!r}")
    persons = obj.get("persons")
    if not isinstance(persons, list):
        raise ValueError("'persons' must be a list")
    view = obj.get("view")
    if view is not None:
        ok = isinstance(view, dict) and set(view) == {"std", "lap_var", "matched"} and all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1e9
            for v in view.values()) and view["matched"] <= 1
        if not ok:
            raise ValueError("'view' must be {std, lap_var, matched} non-negative numbers "
                             f"(matched at most 1), got {view!r}")
        view = (float(view["std"]), float(view["lap_var"]), float(view["matched"]))
    out = []
    for i, p in enumerate(persons):
        try:
            arr = np.asarray(p, dtype=np.float32)
        except (TypeError, ValueError, OverflowError):  # OverflowError: ints past float range
            raise ValueError(f"persons[{i}] must be 33 [x, y, visibility] numbers") from None
        if arr.shape != (NUM_LANDMARKS, 3) or not np.all(np.isfinite(arr)):
            raise ValueError(f"persons[{i}] must have shape (33, 3) of finite numbers, "
                             f"got {arr.shape}")
        out.append(arr)
    return Frame(int(ts), persons=out, aspect=float(aspect), view=view)




class KeypointSource(Source):
    """The `kp:<path>` feed: JSON lines of keypoints from a pty, FIFO or file."""

    MAX_LAG_MS = 1000  # of real time
    MAX_LINE_LAG_MS = 5000  # of line time, whatever the clock's speed

    def __init__(self, path: str, clock: Clock) -> None:
        # Never more than MAX_LAG_MS of real time behind: the oldest lines go when the pipeline
        # cannot keep up (three people in view used to put the node's vision 22 s late). Line
        # time runs `clock.speed` times faster than real time on the simulator's sped-up
        # clock, where a 1 s line-time bound dropped 40 % of a fight's dense lines the node
        # would have read in milliseconds (and the fight was missed); so the bound scales with
        # the speed, up to MAX_LINE_LAG_MS, well inside the time an alert is due in.
        lag = min(self.MAX_LAG_MS * clock.speed, max(self.MAX_LAG_MS, self.MAX_LINE_LAG_MS))
        super().__init__(f"kp:{path}", clock, drop_old=True, max_lag_ms=max(1, round(lag)))
        self.path = path
        self._fd: int | None = None
        self._parsing = False  # lines read and not yet parsed: invisible to both checks

    def caught_up(self) -> bool:
        """No frame waits and nothing is unread in the feed (a line of one person is
        ~0.7 KiB: a byte threshold let a whole line wait unseen)."""
        if not super().caught_up() or self._parsing:
            return False
        fd = self._fd
        if fd is None:  # being (re)opened: lines pile up unread
            return False
        try:
            n = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:  # closed meanwhile
            return False
        return int(n) == 0

    def _open(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            self._error("open_failed", f"cannot open keypoint feed {self.path}: {exc.strerror}")
            return None
        if os.isatty(fd):
            # Raw mode: no echo back to the writer, no 4 KiB canonical line limit.
            tty.setraw(fd, termios.TCSANOW)
        return fd

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set():
            fd = self._open()
            if fd is None:
                self.stats.reconnects += 1
                self._stop.wait(1.0)
                continue
            self._fd = fd
            is_fifo_or_tty = stat.S_ISFIFO(os.fstat(fd).st_mode) or os.isatty(fd)
            try:
                while not self._stop.is_set():
                    r, _, _ = select.select([fd], [], [], 0.2)
                    if not r:
                        continue
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:  # pty master closed (EIO): wait for it to come back
                        chunk = b""
                    if not chunk:
                        if is_fifo_or_tty:
                            break  # writer gone: reopen
                        self._stop.wait(0.1)  # regular file: follow it like tail -f
                        continue
                    buf += chunk
                    self._parsing = True
                    try:
                        while b"\n" in buf:
                            line, buf = buf.split(b"\n", 1)
                            self._line(line)
                    finally:
                        self._parsing = False
                    if len(buf) > 1 << 20:
                        self._bad("a line longer than 1 MiB")
                        buf = b""
            finally:
                self._fd = None  # before the close: the number may be reused at once
                os.close(fd)
            self.stats.reconnects += 1
            self._stop.wait(0.2)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return
        try:
            frame = parse_kp_line(text, self.clock)
        except ValueError as exc:
            self._bad(str(exc))
            return
        self.stats.frames += 1
        self._deliver(frame)

    def _bad(self, why: str) -> None:
        self.stats.bad_lines += 1
        self._error("bad_input", f"{self.path}: line skipped: {why}")


def open_source(spec: str, clock: Clock, pace: bool = True) -> Source:
    """The source a camera's `source` string names (see README.md)."""
    if spec.startswith("kp:"):
        path = spec[3:]
        if not path:
            raise ValueError("camera source 'kp:' needs a path, e.g. kp:/dev/pts/7")
        return KeypointSource(path, clock)
    if not spec.strip():
        raise ValueError("camera source is empty")
    return VideoSource(spec, clock, pace=pace)
