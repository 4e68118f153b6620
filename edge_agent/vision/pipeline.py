"""One camera's pipeline: source -> tamper path + motion gate -> pose -> tracker -> behaviour
-> events, with a stall watchdog and a heartbeat."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from protocol.clock import Clock
from protocol.site import Camera, Rules

from .behaviour import DEFAULT_CLASSIFIER, BehaviourMonitor, event_time, make_classifier
from .capture import Frame, Source, open_source
from .motion import MotionGate, small_gray
from .tamper import TamperDetector
from .tracker import Tracker

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], None]


class _Faults:
    """Device faults of one camera as new/update/end events, one open event per kind."""

    def __init__(self, camera: str, emit: Emit, clock: Clock) -> None:
        self.camera, self.emit, self.clock = camera, emit, clock
        self.open: dict[str, tuple[str, int, float]] = {}  # kind -> (id, count, last emit)
        self._lock = threading.Lock()

    def raise_(self, kind: str, detail: str) -> None:
        with self._lock:
            now = time.monotonic()
            if kind not in self.open:
                fid = f"{self.camera[:30]}-{kind.replace('_', '-')}-{self.clock.now_ms()}"[:64]
                self.open[kind] = (fid, 1, now)
                self.emit("fault", {"id": fid, "phase": "new", "device": self.camera,
                                    "kind": kind, "count": 1, "detail": detail[:500]})
                return
            fid, count, last = self.open[kind]
            count += 1
            if now - last >= 30:
                self.emit("fault", {"id": fid, "phase": "update", "device": self.camera,
                                    "kind": kind, "count": count, "detail": detail[:500]})
                last = now
            self.open[kind] = (fid, count, last)

    def clear(self, kind: str) -> None:
        with self._lock:
            item = self.open.pop(kind, None)
            if item is not None:
                self.emit("fault", {"id": item[0], "phase": "end", "device": self.camera,
                                    "kind": kind, "count": item[1]})


class CameraWorker:
    """Runs one camera: `start()`, `stop()`, `health()`; `process(frame)` for one frame."""

    def __init__(self, camera: Camera, room: str, emit: Emit, clock: Clock, rules: Rules, *,
                 threads: int = 1, classifier: str = DEFAULT_CLASSIFIER, snapshots: bool = False,
                 snapshot_dir: str | None = None, stall_s: float = 9.0,
                 occupied_interval_ms: int = 2000, empty_interval_ms: int = 10000,
                 detect_interval_ms: int = 1000, heartbeat_s: float | None = None,
                 pace: bool = True, pose: Any = None, analysis_fps: float = 15.0,
                 cpu_share: float = 0.6, pose_max_width: int = 640,
                 record_dir: str | None = None, segment_s: float = 60.0,
                 ring_hours: float = 24.0, record_fps: float = 15.0,
                 record_codec: str = "auto", evidence_dir: str | None = None,
                 evidence_before_s: float = 15.0, evidence_after_s: float = 15.0) -> None:
        self.camera, self.room, self.emit, self.clock, self.rules = camera, room, emit, clock, rules
        self.threads = threads
        self.stall_s = stall_s
        self.heartbeat_ms = round((heartbeat_s or rules.recording_gap_s / 2) * 1000)
        self.occupied_interval_ms = occupied_interval_ms
        self.empty_interval_ms = empty_interval_ms
        self.pace = pace
        self._pose = pose  # shared PoseEstimator (tests, benchmarks) or built lazily
        self.gate = MotionGate()
        self.tamper = TamperDetector(camera.id)
        self.tracker = Tracker()
        self.monitor = BehaviourMonitor(camera.id, lying_still_ms=rules.lying_still_s * 1000,
                                        classifier=make_classifier(classifier, threads))
        self.faults = _Faults(camera.id, emit, clock)
        self.snapshots = snapshots
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self._snapshotter: Any = None
        self.source: Source | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_pose_ts: int | None = None
        self._last_detect_ts: int | None = None
        self._rois: list[Any] = []
        self.detect_interval_ms = detect_interval_ms
        self._occupied = False
        self._count_emitted = 0
        self._count_candidate = 0
        self._count_since = 0
        self._frame_times: deque[float] = deque()
        self._last_heartbeat = 0
        # (custody ms, monotonic s, frame ms, lines read, anyone in view) at the last frame
        self._last_frame: tuple[int, float, int, int, bool] | None = None
        self._stalled = False
        self.stats = {"frames": 0, "pose_runs": 0, "detector_runs": 0, "persons": 0,
                      "motion_frames": 0, "events": 0, "errors": 0}
        # The per-frame budget: pose at most `analysis_fps` times a second of frame time, and
        # no more often than lets its measured cost stay within `cpu_share` of one core; the
        # source skips to the newest frame whatever the pipeline cannot take.
        self.min_pose_gap_ms = 1000.0 / analysis_fps if analysis_fps > 0 else 0.0
        self.cpu_share = cpu_share
        self.pose_max_width = pose_max_width
        self._pose_cost_ms: float | None = None  # moving average of one pose run
        self._pose_times: deque[float] = deque()
        self.recorder: Any = None
        self.evidence: Any = None
        self._evidence_threads: list[threading.Thread] = []
        if record_dir:
            from edge_agent.recording import EvidenceKeeper, SegmentRecorder

            self.recorder = SegmentRecorder(camera.id, room, record_dir, self._emit,
                                            segment_s=segment_s, ring_hours=ring_hours,
                                            fps=record_fps, codec=record_codec)
            if evidence_dir:
                self.evidence = EvidenceKeeper(camera.id, room, self.recorder, evidence_dir,
                                               self._emit, before_s=evidence_before_s,
                                               after_s=evidence_after_s,
                                               regions=camera.masked_regions)
        elif evidence_dir:
            raise ValueError("evidence_dir needs record_dir: evidence is cut from the recording")
        self._source_records = False

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Open the source and start the processing thread."""
        self.source = open_source(self.camera.source, self.clock, pace=self.pace)
        self.source.on_error = self.faults.raise_
        if self.recorder is not None and not self.camera.source.startswith("kp:"):
            self.source.on_frame = self._record  # every frame, before any is skipped
            self._source_records = True
        self.source.start()
        self._thread = threading.Thread(target=self._run, name=f"vision-{self.camera.id}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the threads; say the camera is no longer live."""
        self._stop.set()
        if self.source is not None:
            self.source.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for t in self._evidence_threads:
            t.join(timeout=60)
        if self.recorder is not None:
            self.recorder.close()
            if self.evidence is not None:
                self.evidence.poll(0, force=True)  # cut what there is of pending clips
        self._emit("camera", {"camera": self.camera.id, "room": self.room, "live": False})

    def caught_up(self) -> bool:
        """No frame waits for this pipeline (a simulated run's held clock waits for it)."""
        return self.source is None or self.source.caught_up()

    def health(self) -> dict[str, int]:
        """Counters for the node's health message (all integers)."""
        src = self.source.stats if self.source is not None else None
        return {"fps_x10": 0 if self._stalled else self._fps_x10(), "frames": self.stats["frames"],
                "pose_runs": self.stats["pose_runs"],
                "detector_runs": self.stats["detector_runs"], "persons": self._count_emitted,
                "motion_frames": self.stats["motion_frames"],
                "reconnects": src.reconnects if src else 0,
                "bad_lines": src.bad_lines if src else 0,
                "stalled": int(self._stalled), "tamper": len(self.tamper.active),
                "errors": self.stats["errors"], "dropped": src.dropped if src else 0,
                "pose_fps_x10": self._rate_x10(self._pose_times),
                "pose_ms": round(self._pose_cost_ms or 0),
                "segments": self.recorder.stats["segments"] if self.recorder else 0,
                "rejected_windows": sum(self.monitor.rejected.values())}

    # --- loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        assert self.source is not None
        last_frame = time.monotonic()
        last_frame_ms = self.clock.now_ms()
        while not self._stop.is_set():
            frame = self.source.read(timeout=0.5)
            now = time.monotonic()
            if frame is None:
                # Silent for stall_s of real time and of custody time: the same on a real
                # node (where a clock stepped back counts as real time only); on a simulated
                # run's held clock, time standing still (no frames are due then) is no stall.
                custody_ms = self.clock.now_ms() - last_frame_ms
                if not self._stalled and now - last_frame >= self.stall_s and (
                        custody_ms >= self.stall_s * 1000 or custody_ms < 0):
                    self._stalled = True
                    self._emit("camera", {"camera": self.camera.id, "room": self.room,
                                          "live": False, "fps_x10": 0})
                    self.faults.raise_("no_frames", f"no frame for {self.stall_s:.0f} s from "
                                       f"{self.camera.source}")
                continue
            last_frame = now
            self._note_gap(frame)
            if self._stalled:
                self._stalled = False
                self.faults.clear("no_frames")
                self._last_heartbeat = 0  # say live at once
            for kind in ("open_failed", "read_failed"):
                self.faults.clear(kind)
            try:
                self.process(frame)
            except Exception as exc:  # one bad frame must not stop the camera
                self.stats["errors"] += 1
                self.faults.raise_("pipeline_error", f"{type(exc).__name__}: {exc}")
            last_frame = time.monotonic()  # a stall is the source's silence, not our work
            last_frame_ms = self.clock.now_ms()

    def _note_gap(self, frame: Frame) -> None:
        """Log a frame that comes after two heartbeats of custody time with none, where the
        last one showed someone, and which the node took a heartbeat or more after its own
        time stamp: the recording-gap rule will see that silence, and it is the node's (or
        the feed's transport), not the camera's; the counters say where it went."""
        now, src = self.clock.now_ms(), self.source.stats if self.source is not None else None
        read = src.frames if src is not None else 0
        last = self._last_frame
        self._last_frame = (now, time.monotonic(), frame.ts_ms, read,
                            frame.persons is None or bool(frame.persons))
        if last is None or not last[4] or now - last[0] < 2 * self.heartbeat_ms:
            return
        if (now - last[0]) - (frame.ts_ms - last[2]) < self.heartbeat_ms:
            return  # the feed itself was quiet (a simulated camera of an emptied room)
        log.warning("camera %s: a frame after %.1f custody s without (%.2f real s; %.1f s of "
                    "frame time on); lines read meanwhile %d, dropped %d, bad %d, "
                    "reconnects %d", self.camera.id, (now - last[0]) / 1000,
                    time.monotonic() - last[1], (frame.ts_ms - last[2]) / 1000, read - last[3],
                    src.dropped if src else 0, src.bad_lines if src else 0,
                    src.reconnects if src else 0)

    def _fps_x10(self) -> int:
        return self._rate_x10(self._frame_times)

    @staticmethod
    def _rate_x10(times: deque[float]) -> int:
        """Events per second x10 over the last 5 s of `times` (monotonic seconds)."""
        now = time.monotonic()
        while times and now - times[0] > 5.0:
            times.popleft()
        if len(times) < 2:
            return 0
        span = max(now - times[0], 1e-3)
        return round(10 * (len(times) - 1) / span)

    def _record(self, frame: Frame) -> None:
        if frame.image is not None and self.recorder is not None:
            self.recorder.write(frame.image, frame.ts_ms)

    def _emit(self, event_type: str, body: dict[str, Any]) -> None:
        self.stats["events"] += 1
        self.emit(event_type, body)

    # --- one frame -----------------------------------------------------------------------
    def process(self, frame: Frame) -> None:
        """Run one frame through the pipeline (tamper, gate, pose, tracker, behaviour)."""
        self.stats["frames"] += 1
        self._frame_times.append(time.monotonic())
        if self.recorder is not None and not self._source_records and frame.image is not None:
            self._record(frame)  # frames handed in directly (tests, benchmarks)
        self._heartbeat()
        if frame.persons is not None:  # kp: feed, pixels skipped
            if frame.view is not None:  # ... but the tamper path judges its measures
                for kind, phase, tid, score in self.tamper.check_view(frame.view, frame.ts_ms):
                    self._emit("tamper", {"id": tid, "phase": phase, "camera": self.camera.id,
                                          "room": self.room, "kind": kind, "score_pct": score})
            self._persons(frame.ts_ms, frame.persons, frame.aspect, None)
            return
        img = frame.image
        assert img is not None
        if self.evidence is not None and self.evidence.pending:
            self._cut_evidence(frame.ts_ms)
        gray = small_gray(img)
        for kind, phase, tid, score in self.tamper.check(gray, frame.ts_ms, self.gate.moving):
            self._emit("tamper", {"id": tid, "phase": phase, "camera": self.camera.id,
                                  "room": self.room, "kind": kind, "score_pct": score})
        self.gate.update(gray)
        if self.gate.moving:
            self.stats["motion_frames"] += 1
        if self._pose_due(frame.ts_ms):
            self._last_pose_ts = frame.ts_ms
            self.stats["pose_runs"] += 1
            t0 = time.perf_counter()
            h, w = img.shape[:2]
            small = img
            if w > self.pose_max_width:  # landmarks are normalised: any size gives the same
                small = cv2.resize(img, (self.pose_max_width, round(h * self.pose_max_width / w)),
                                   interpolation=cv2.INTER_AREA)
            rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
            persons = [p.landmarks for p in self._find_people(rgb, frame.ts_ms)]
            cost = (time.perf_counter() - t0) * 1000
            self._pose_cost_ms = cost if self._pose_cost_ms is None else \
                0.8 * self._pose_cost_ms + 0.2 * cost
            self._pose_times.append(time.monotonic())
            if self.evidence is not None:
                from .tracker import keypoint_box

                self.evidence.note_people(frame.ts_ms, [tuple(keypoint_box(p)) for p in persons])
            self._persons(frame.ts_ms, persons, w / h, img)

    def _find_people(self, rgb: np.ndarray, ts: int) -> list[Any]:
        """Landmarks of everyone in view. Between detector runs (at most `detect_interval_ms`
        apart) people are followed from last frame's landmarks, as MediaPipe does, which
        skips the detector; anyone lost, or a new detector run due, runs the detector."""
        found = None
        if self._rois and self._last_detect_ts is not None \
                and ts - self._last_detect_ts < self.detect_interval_ms:
            found = self.pose.track(rgb, self._rois)
        if found is None:
            found = self.pose.estimate(rgb)
            self._last_detect_ts = ts
            self.stats["detector_runs"] += 1
        self._rois = [p.next_roi for p in found if p.next_roi is not None]
        return list(found)

    @property
    def pose(self) -> Any:
        """The pose estimator, built on first use (a kp: camera never loads it)."""
        if self._pose is None:
            from .pose import PoseEstimator

            self._pose = PoseEstimator(threads=self.threads)
        return self._pose

    def _pose_due(self, ts: int) -> bool:
        if self._last_pose_ts is None:
            return True
        if self.gate.moving:
            # keep the budget: a pose run costs `_pose_cost_ms`; spend at most cpu_share of
            # one core on it, and never more than analysis_fps runs a second of frame time
            gap = self.min_pose_gap_ms
            # The cost part applies to live sources only (the newest frame wins anyway): a
            # file played unpaced, or frames handed in, are analysed the same on any machine.
            live = self.source is not None and self.source.mailbox.drop_old
            if live and self._pose_cost_ms is not None and self.cpu_share > 0:
                gap = max(gap, self._pose_cost_ms / self.cpu_share)
            # a 10 % allowance: frames 1/15 s apart must not miss a 1/15 s gap by jitter
            return ts - self._last_pose_ts >= 0.9 * gap
        interval = self.occupied_interval_ms if self._occupied else self.empty_interval_ms
        return ts - self._last_pose_ts >= interval

    def _heartbeat(self) -> None:
        now = self.clock.now_ms()
        if now - self._last_heartbeat >= self.heartbeat_ms:
            # A fixed cadence: a heartbeat is due at the first frame after each period, and
            # the late arrival of that frame does not push all later ones back (it used to,
            # so heartbeats drifted towards the site's recording gap). After a stall, restart.
            behind = now - self._last_heartbeat >= 2 * self.heartbeat_ms
            self._last_heartbeat = now if behind else self._last_heartbeat + self.heartbeat_ms
            # recording: frames arrive and the picture is usable (no tamper), which is what
            # the supervisor's recording-gap rule needs to hear.
            # With a recorder, recording means a segment is being written (and usable).
            writing = self.recorder.recording if self.recorder is not None else True
            self._emit("camera", {"camera": self.camera.id, "room": self.room, "live": True,
                                  "recording": writing and not self.tamper.active,
                                  "fps_x10": self._fps_x10()})

    def _persons(self, ts: int, persons: list[np.ndarray], aspect: float,
                 img: np.ndarray | None) -> None:
        tracks = self.tracker.update(ts, persons)
        self._occupied = bool(tracks) or bool(self.tracker.tracks)
        # Count live tracks, not this frame's detections: pose misses a person now and then.
        self._count(ts, len(self.tracker.tracks))
        events = []
        for tid in self.tracker.dropped:
            events += self.monitor.track_gone(tid)
        events += self.monitor.step(ts, tracks, aspect, list(self.tracker.tracks.values()))
        for phase, body in events:
            if phase == "new" and self.evidence is not None:
                # the clip is centred on the event's own time (a fall's is when it was seen,
                # before it was confirmed), which its id ends with
                body = {**body, "evidence": self.evidence.alert(body["id"],
                                                                event_time(body["id"], ts))}
            self._emit("behaviour", {**body, "phase": phase, "camera": self.camera.id,
                                     "room": self.room})
            if phase == "new" and img is not None and self.snapshots:
                self._snapshot(img, persons, body["cls"], body["id"])

    def _cut_evidence(self, ts: int) -> None:
        """Cut due evidence clips in a thread of their own (reading and encoding 30 s of
        video must not hold up the frames)."""
        assert self.evidence is not None
        if any(t.is_alive() for t in self._evidence_threads):
            return
        if not any(ts >= p.ts_ms + self.evidence.after_ms for p in self.evidence.pending):
            return
        t = threading.Thread(target=self.evidence.poll, args=(ts,), daemon=True,
                             name=f"evidence-{self.camera.id}")
        self._evidence_threads = [t]
        t.start()

    def _count(self, ts: int, n: int) -> None:
        if n != self._count_candidate:
            self._count_candidate, self._count_since = n, ts
        if n != self._count_emitted and ts - self._count_since >= 1000:
            self._count_emitted = n
            self.stats["persons"] = n
            self._emit("person_count", {"camera": self.camera.id, "room": self.room,
                                        "count": n})

    def _snapshot(self, img: np.ndarray, persons: list[np.ndarray], alert: str,
                  name: str) -> None:
        if self._snapshotter is None:
            from .snapshot import Snapshotter

            self._snapshotter = Snapshotter(self.camera.masked_regions, self.snapshot_dir,
                                            self.threads)
        _, thumb = self._snapshotter.take(img, persons, name)
        if thumb is not None:
            self._emit("snapshot", {"camera": self.camera.id, "room": self.room,
                                    "alert": alert, "jpeg_b64": thumb, "masked": True})

