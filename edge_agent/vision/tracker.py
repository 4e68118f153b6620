"""A small multi-person tracker: stable track numbers and a keypoint history per person."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

HISTORY_MS = 4000


def keypoint_box(kp: np.ndarray, min_vis: float = 0.3) -> np.ndarray:
    """Bounding box (x0, y0, x1, y1) of the visible keypoints (all if none is visible)."""
    pts = kp[kp[:, 2] >= min_vis, :2]
    if len(pts) == 0:
        pts = kp[:, :2]
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()],
                    dtype=np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    iw = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    ih = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    inter = iw * ih
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One tracked person: its number, keypoint history and when it was last seen."""

    id: int
    history: deque[tuple[int, np.ndarray]] = field(default_factory=deque)
    misses: int = 0

    @property
    def last_ts(self) -> int:
        """Timestamp of the newest observation."""
        return self.history[-1][0]

    @property
    def box(self) -> np.ndarray:
        """Box of the newest observation."""
        return keypoint_box(self.history[-1][1])

    def window(self, span_ms: int) -> list[tuple[int, np.ndarray]]:
        """Observations of the last `span_ms` milliseconds, oldest first."""
        end = self.last_ts
        return [(t, k) for t, k in self.history if end - t <= span_ms]


class Tracker:
    """Greedy IoU / centre-distance matching between consecutive pose runs.

    A track is dropped once it has been missing from `max_misses` pose runs in a row and unseen
    for `grace_ms` (pose loses people for a few frames mid-fall), or unseen for `max_age_ms`.
    """

    def __init__(self, max_misses: int = 3, grace_ms: int = 2500,
                 max_age_ms: int = 30000) -> None:
        self.grace_ms = grace_ms
        self.tracks: dict[int, Track] = {}
        self.max_misses = max_misses
        self.max_age_ms = max_age_ms
        self._next = 1
        self.dropped: list[int] = []  # ids dropped by the last update

    def update(self, ts_ms: int, persons: list[np.ndarray]) -> list[Track]:
        """Match this run's persons to tracks; return the tracks seen in this run."""
        boxes = [keypoint_box(p) for p in persons]
        pairs: list[tuple[float, int, int]] = []
        for tid, tr in self.tracks.items():
            tb = tr.box
            diag = float(np.hypot(tb[2] - tb[0], tb[3] - tb[1])) + 1e-6
            tc = (tb[:2] + tb[2:]) / 2
            for i, b in enumerate(boxes):
                iou = box_iou(tb, b)
                dist = float(np.hypot(*((b[:2] + b[2:]) / 2 - tc))) / diag
                if iou > 0.05 or dist < 1.0:
                    pairs.append((iou - dist, tid, i))
        pairs.sort(reverse=True)
        used_t: set[int] = set()
        used_p: set[int] = set()
        seen: list[Track] = []
        for _, tid, i in pairs:
            if tid in used_t or i in used_p:
                continue
            used_t.add(tid)
            used_p.add(i)
            tr = self.tracks[tid]
            tr.history.append((ts_ms, persons[i]))
            tr.misses = 0
            seen.append(tr)
        for i, p in enumerate(persons):
            if i not in used_p:
                tr = Track(self._next, deque([(ts_ms, p)]))
                self._next += 1
                self.tracks[tr.id] = tr
                seen.append(tr)
        self.dropped = []
        for tid, tr in list(self.tracks.items()):
            while tr.history and ts_ms - tr.history[0][0] > HISTORY_MS and len(tr.history) > 1:
                tr.history.popleft()
            if tid not in used_t and tr not in seen:
                tr.misses += 1
                unseen = ts_ms - tr.last_ts
                if (tr.misses >= self.max_misses and unseen > self.grace_ms) \
                        or unseen > self.max_age_ms:
                    del self.tracks[tid]
                    self.dropped.append(tid)
        return sorted(seen, key=lambda t: t.id)
