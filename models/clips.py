"""Real clips (GMDCSA24 subset under ../shared/data): BlazePose keypoints and window labels.

Keypoints are computed with the node's own pose pipeline (edge_agent.vision.pose) and cached
under .cache/clip_keypoints/ (derived numbers only; the videos are never copied).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_agent.vision.behaviour import WINDOW_MS

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CUSTODY_SHARED_DATA") or ROOT.parent / "shared" / "data") / "gmdcsa24"
CACHE = ROOT / ".cache" / "clip_keypoints"
TARGET_FPS = 15.0


@dataclass(frozen=True)
class Clip:
    """One labelled clip: its path relative to DATA, subject, fps and label segments."""

    path: str
    subject: str
    kind: str
    fps: float
    segments: tuple[tuple[str, float, float], ...]

    def fall_onset(self) -> float | None:
        """Start of the falling segment in seconds, if any."""
        starts = [s for c, s, _ in self.segments if c.lower().startswith("fall")]
        return min(starts) if starts else None


def clips(data: Path = DATA) -> list[Clip]:
    """All clips listed in labels.csv."""
    with open(data / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [Clip(r["path"], r["subject"], r["kind"], float(r["fps"]),
                 tuple((c, float(a), float(b)) for c, a, b in json.loads(r["segments"])))
            for r in rows]


def keypoints(clip: Clip, data: Path = DATA) -> tuple[list[int], list[np.ndarray | None], float]:
    """(ts_ms, keypoints of the largest person or None, aspect) per sampled frame, cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    cache = CACHE / (clip.path.replace("/", "_") + ".npz")
    if cache.exists():
        z = np.load(cache)
        kps: list[np.ndarray | None] = [k if z["found"][i] else None
                                        for i, k in enumerate(z["kps"])]
        return z["ts"].tolist(), kps, float(z["aspect"])
    from edge_agent.vision.pose import PoseEstimator

    pe = PoseEstimator()
    cap = cv2.VideoCapture(str(data / clip.path))
    step = max(1, round(clip.fps / TARGET_FPS))
    ts, out, i, aspect = [], [], 0, 4 / 3
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if i % step == 0:
            h, w = img.shape[:2]
            aspect = w / h
            persons = pe.estimate(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            best = None
            if persons:
                areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in (p.box() for p in persons)]
                best = persons[int(np.argmax(areas))].landmarks
            ts.append(round(i * 1000 / clip.fps))
            out.append(best)
        i += 1
    cap.release()
    found = np.array([k is not None for k in out])
    arr = np.stack([k if k is not None else np.zeros((33, 3), np.float32) for k in out])
    np.savez_compressed(cache, ts=np.array(ts), kps=arr, found=found, aspect=aspect)
    return ts, out, aspect


def label_at(clip: Clip, t_s: float) -> str | None:
    """Label of the window ending at t_s: fall within 2.5 s after onset, lying_still after
    3 s (the dataset's falling segment includes lying on the floor), None in between."""
    onset = clip.fall_onset()
    if onset is None or t_s < onset:
        return "normal"
    if t_s - onset <= 2.5:
        return "fall" if t_s - onset >= 0.4 else None
    return "lying_still" if t_s - onset >= 3.0 else None


def windows(clip: Clip, data: Path = DATA, every_ms: int = 200
            ) -> tuple[list[list[tuple[int, np.ndarray]]], list[str], float]:
    """Labelled windows (ending every `every_ms`, at least 1 s of history) of one clip."""
    ts, kps, aspect = keypoints(clip, data)
    seen = [(t, k) for t, k in zip(ts, kps, strict=True) if k is not None]
    xs, ys = [], []
    last = -10**9
    for i, (t, _) in enumerate(seen):
        if t - last < every_ms or t < 1000:
            continue
        lab = label_at(clip, t / 1000)
        if lab is None:
            continue
        win = [(tt, k) for tt, k in seen[: i + 1] if t - tt <= WINDOW_MS]
        if len(win) < 3:
            continue
        last = t
        xs.append(win)
        ys.append(lab)
    return xs, ys, aspect


if __name__ == "__main__":
    import time

    for c in clips():
        t0 = time.time()
        ts, k, _ = keypoints(c)
        found = sum(x is not None for x in k)
        print(f"{c.path}: {found}/{len(k)} frames with a person ({time.time() - t0:.1f} s)")
