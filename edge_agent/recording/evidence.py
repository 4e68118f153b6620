"""Evidence for an alert: the recorded video around it, cut from the segments and kept on the
node, privacy-masked; served only on an explicit request.

When a behaviour event starts, `EvidenceKeeper.alert()` notes it; once the recording has run
`after_s` past it, the keeper cuts [t - before_s, t + after_s] out of the closed segments into
two files under `directory`: `<id>.masked.<ext>` (every person blurred, the camera's masked
regions blacked out) and `<id>.clear.<ext>` (the cut as recorded, for a role allowed to see
clear video). An `evidence` event carries both SHA-256s, the alert's id, the span and the frame
count, so the journal proves which clip exists. Nothing is sent until the supervisor asks
(`serve`, protocol/evidence.py); the ring never deletes evidence files.

People are found by the pose pipeline (`note_people`, boxes at each pose run). A frame with no
pose result within `people_ttl_ms` is blurred whole: where people are is unknown, so nothing
of it is shown.
"""

from __future__ import annotations

import base64
import bisect
import json
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from protocol.evidence import MAX_CHUNK, EvidenceRequest, response

from .segments import CODECS, Emit, SegmentRecorder, sha256_file

log = logging.getLogger(__name__)
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the recorded frame


def _smear(roi: np.ndarray, cell: int) -> np.ndarray:
    """Blur away everything smaller than about `cell` pixels (downscale, blur, upscale: cheap
    at any size, and smooth, so no block edges hint at what was there)."""
    h, w = roi.shape[:2]
    small = cv2.resize(roi, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (3, 3), 0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blur_people(img: np.ndarray, boxes: Sequence[Box] | None,
                regions: Sequence[tuple[int, int, int, int]] = ()) -> np.ndarray:
    """A masked copy: each person box (grown by a fifth) blurred to detail of an eighth of the
    box, so no face or feature survives; with `boxes` None the whole frame blurred;
    `regions` (x, y, w, h) blacked out."""
    out = img.copy()
    h, w = out.shape[:2]
    if boxes is None:
        out = _smear(out, max(8, min(h, w) // 20))
    else:
        for x0, y0, x1, y1 in boxes:
            gx, gy = (x1 - x0) // 5, (y1 - y0) // 5
            a, b = max(0, x0 - gx), max(0, y0 - gy)
            c, d = min(w, x1 + gx), min(h, y1 + gy)
            if c - a >= 2 and d - b >= 2:
                out[b:d, a:c] = _smear(out[b:d, a:c], max(4, max(c - a, d - b) // 8))
    for x, y, rw, rh in regions:
        out[max(0, y):y + rh, max(0, x):x + rw] = 0
    return out


@dataclass
class _Pending:
    alert: str
    ts_ms: int


@dataclass(frozen=True)
class Evidence:
    """A kept evidence clip, as reported in its `evidence` event."""

    id: str
    alert: str
    start_ms: int
    end_ms: int
    frames: int
    masked_file: str
    sha256: str
    clear_file: str
    clear_sha256: str

    def body(self, camera: str, room: str) -> dict[str, Any]:
        """The `evidence` event body."""
        return {"id": self.id, "camera": camera, "room": room, "alert": self.alert,
                "start_ms": self.start_ms, "end_ms": self.end_ms, "frames": self.frames,
                "sha256": self.sha256, "clear_sha256": self.clear_sha256, "masked": True}


class EvidenceKeeper:
    """Cuts, masks and keeps evidence clips around alerts; serves them on request."""

    def __init__(self, camera: str, room: str, recorder: SegmentRecorder,
                 directory: str | Path, emit: Emit, *, before_s: float = 15.0,
                 after_s: float = 15.0, regions: Sequence[tuple[int, int, int, int]] = (),
                 people_ttl_ms: int = 2500) -> None:
        self.camera, self.room, self.recorder, self.emit = camera, room, recorder, emit
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.before_ms, self.after_ms = round(before_s * 1000), round(after_s * 1000)
        self.regions = tuple(regions)
        self.people_ttl_ms = people_ttl_ms
        self.pending: list[_Pending] = []
        self.kept: dict[str, Evidence] = {}
        self._load_kept()
        # (ts, boxes normalised 0..1) of recent pose runs, enough to cover a clip
        self._people: deque[tuple[int, list[tuple[float, float, float, float]]]] = deque()
        self._lock = threading.Lock()
        self.stats = {"kept": 0, "served": 0, "refused": 0}

    def _load_kept(self) -> None:
        """The clips kept before a restart (`<id>.json` beside each), so they stay servable."""
        for meta in sorted(self.dir.glob("*.json")):
            try:
                ev = Evidence(**json.loads(meta.read_text()))
            except (OSError, ValueError, TypeError) as e:
                log.warning("evidence index %s unreadable: %s", meta, e)
                continue
            self.kept[ev.id] = ev

    def note_people(self, ts_ms: int, boxes: Sequence[tuple[float, float, float, float]]
                    ) -> None:
        """Where people were at a pose run (normalised xyxy boxes)."""
        with self._lock:
            self._people.append((ts_ms, [tuple(map(float, b)) for b in boxes]))  # type: ignore
            horizon = self.before_ms + self.after_ms + 60_000
            while self._people and ts_ms - self._people[0][0] > horizon:
                self._people.popleft()

    def alert(self, alert_id: str, ts_ms: int) -> str:
        """Keep the clip around an alert starting at `ts_ms`; returns the evidence id."""
        with self._lock:
            if alert_id not in self.kept and all(p.alert != alert_id for p in self.pending):
                self.pending.append(_Pending(alert_id, ts_ms))
        return alert_id

    def poll(self, now_ms: int, force: bool = False) -> list[Evidence]:
        """Cut every pending clip whose `after_s` has passed (all of them when `force`)."""
        done = []
        with self._lock:
            due = [p for p in self.pending if force or now_ms >= p.ts_ms + self.after_ms]
            self.pending = [p for p in self.pending if p not in due]
        for p in due:
            ev = self._cut(p)
            if ev is not None:
                done.append(ev)
        return done

    def _boxes_at(self, ts: int, w: int, h: int) -> list[Box] | None:
        with self._lock:
            people = list(self._people)
        times = [t for t, _ in people]
        i = bisect.bisect_left(times, ts)
        # The pose runs either side of the frame, when close enough; their boxes together, so
        # a person moving between two runs stays covered.
        near = [people[j] for j in (i - 1, i)
                if 0 <= j < len(people) and abs(people[j][0] - ts) <= self.people_ttl_ms]
        if not near:
            return None
        boxes = [b for _, bs in near for b in bs]
        return [(round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h))
                for x0, y0, x1, y1 in boxes]

    def _cut(self, p: _Pending) -> Evidence | None:
        start, end = p.ts_ms - self.before_ms, p.ts_ms + self.after_ms
        self.recorder.flush_until(min(end, p.ts_ms))
        ext = CODECS[self.recorder.codec]
        safe = p.alert[:64]
        masked_path = self.dir / f"{safe}.masked{ext}"
        clear_path = self.dir / f"{safe}.clear{ext}"
        writers: list[Any] = []
        first = last = None
        n = 0
        fourcc = cv2.VideoWriter.fourcc(*self.recorder.codec)
        for path, stamps in self.recorder.segments_between(start, end):
            cap = cv2.VideoCapture(str(path))
            for t in stamps:
                ok, img = cap.read()
                if not ok:
                    break
                if t < start or t > end:
                    continue
                if not writers:
                    h, w = img.shape[:2]
                    writers = [cv2.VideoWriter(str(q), fourcc, self.recorder.fps, (w, h))
                               for q in (masked_path, clear_path)]
                h, w = img.shape[:2]
                writers[0].write(blur_people(img, self._boxes_at(t, w, h), self.regions))
                writers[1].write(img)
                first = t if first is None else first
                last = t
                n += 1
            cap.release()
        for vw in writers:
            vw.release()
        if n == 0 or first is None or last is None:
            return None
        ev = Evidence(safe, p.alert, first, last, n, masked_path.name, sha256_file(masked_path),
                      clear_path.name, sha256_file(clear_path))
        (self.dir / f"{safe}.json").write_text(json.dumps(asdict(ev)))
        self.kept[ev.id] = ev
        self.stats["kept"] += 1
        self.emit("evidence", ev.body(self.camera, self.room))
        return ev

    def serve(self, req: EvidenceRequest) -> dict[str, Any]:
        """The response to a checked evidence request: one chunk of the masked clip (or the
        clear one when the supervisor, having checked the role, asks for it)."""
        ev = self.kept.get(req.evidence)
        if ev is None:
            self.stats["refused"] += 1
            return response(req, ok=False, error=f"no evidence {req.evidence!r} on this node")
        path = self.dir / (ev.clear_file if req.clear else ev.masked_file)
        digest = ev.clear_sha256 if req.clear else ev.sha256
        if not path.is_file():
            self.stats["refused"] += 1
            return response(req, ok=False, error=f"evidence {ev.id}: its file is missing")
        # The whole file is hashed once, at the first chunk (a 30 s clip is megabytes; hashing
        # it for every chunk would cost the node seconds): the supervisor checks the whole
        # file it received against the journal anyway.
        if req.offset == 0 and sha256_file(path) != digest:
            self.stats["refused"] += 1
            return response(req, ok=False, error=f"evidence {ev.id}: file no longer matches "
                                                 "its journaled sha256")
        total = path.stat().st_size
        length = min(req.length or MAX_CHUNK, MAX_CHUNK)
        with open(path, "rb") as fh:
            fh.seek(req.offset)
            data = fh.read(length)
        self.stats["served"] += 1
        return response(req, ok=True, sha256=digest, total=total, offset=req.offset,
                        data_b64=base64.b64encode(data).decode("ascii"),
                        eof=req.offset + len(data) >= total, clear=req.clear)
