"""Multi-person scenes composed from the real single-person GMDCSA24 clips.

No real footage of two or more people (let alone a fight) with a licence that allows it is
available to the project, so scenes with two people are made from real frames: two clips, each
scaled to 640x480 and cropped to its central 480x480, side by side (960x480), so the two
real people stand about a body width apart. A "staged fight" plays two clips with fast reaching
movements (picking things off the floor, from a chair) three times faster than they were filmed:
real bodies and real pixels moving violently, but not a real fight. Files go to .cache/composed/
(derived video, never committed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .clips import DATA, ROOT

OUT = ROOT / ".cache" / "composed"
SIDE = 480


@dataclass(frozen=True)
class Scene:
    """A composed clip: name, kind, its parts (path, speed) and the fall onset (s) if any."""

    name: str
    kind: str  # "2p-ADL", "2p-Fall", "staged-fight"
    parts: tuple[tuple[str, float], ...]
    seconds: float | None = None  # length; None: the first part's
    width: int = SIDE  # width of each part's tile (narrower: people closer together)


SCENES = (
    Scene("adl-s1-10+s3-20", "2p-ADL", (("Subject-1/ADL/10.mp4", 1), ("Subject-3/ADL/20.mp4", 1))),
    Scene("adl-s2-23+s3-18", "2p-ADL", (("Subject-2/ADL/23.mp4", 1), ("Subject-3/ADL/18.mp4", 1))),
    Scene("adl-s3-07+s3-15", "2p-ADL", (("Subject-3/ADL/07.mp4", 1), ("Subject-3/ADL/15.mp4", 1))),
    Scene("adl-s1-16+s3-19", "2p-ADL", (("Subject-1/ADL/16.mp4", 1), ("Subject-3/ADL/19.mp4", 1))),
    Scene("fall-s3-20+s3-18", "2p-Fall",
          (("Subject-3/Fall/20.mp4", 1), ("Subject-3/ADL/18.mp4", 1))),
    Scene("fall-s2-13+s3-20", "2p-Fall",
          (("Subject-2/Fall/13.mp4", 1), ("Subject-3/ADL/20.mp4", 1))),
    Scene("fall-s1-15+s3-07", "2p-Fall",
          (("Subject-1/Fall/15.mp4", 1), ("Subject-3/ADL/07.mp4", 1))),
    Scene("fall-s3-01+s2-23", "2p-Fall",
          (("Subject-3/Fall/01.mp4", 1), ("Subject-2/ADL/23.mp4", 1))),
    Scene("fight-s3-19+s1-16", "staged-fight",
          (("Subject-3/ADL/19.mp4", 3), ("Subject-1/ADL/16.mp4", 3)), 8.0, 280),
    Scene("fight-s1-16+s3-18", "staged-fight",
          (("Subject-1/ADL/16.mp4", 3), ("Subject-3/ADL/18.mp4", 4)), 8.0, 280),
    Scene("fight-s3-18+s3-19", "staged-fight",
          (("Subject-3/ADL/18.mp4", 4), ("Subject-3/ADL/19.mp4", 3)), 8.0, 280),
)


def _frames(path: Path, width: int = SIDE) -> tuple[list[np.ndarray], float]:
    """The clip's frames at 640x480, cropped to `width` columns around where its person
    mostly is (the middle for a full-width tile)."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
    full = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        full.append(cv2.resize(img, (640, 480), interpolation=cv2.INTER_AREA))
    cap.release()
    if not full:
        raise ValueError(f"{path}: no frames")
    x = (640 - width) // 2
    if width < SIDE:
        from edge_agent.vision.pose import PoseEstimator

        pe = PoseEstimator()
        xs = []
        for img in full[:: max(1, len(full) // 8)]:
            for p in pe.estimate(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))[:1]:
                b = p.box()
                xs.append((b[0] + b[2]) / 2 * 640)
        if xs:
            x = int(min(max(float(np.median(xs)) - width / 2, 0), 640 - width))
    return [f[:, x:x + width] for f in full], fps


def compose_frames(parts: tuple[tuple[str, float], ...], data: Path = DATA, fps: float = 15.0,
                   seconds: float | None = None, width: int = SIDE) -> list[np.ndarray]:
    """The composed frames at `fps`. Without `seconds` the first part sets the length and the
    others loop; with it, every part plays forwards then backwards (no jump at the seam)."""
    srcs = [(*_frames(data / rel, width), speed) for rel, speed in parts]
    first, f_fps, f_speed = srcs[0]
    n = int((seconds or len(first) / f_fps / f_speed) * fps)
    out = []
    for k in range(n):
        t = k / fps
        tiles = []
        for frames, sfps, speed in srcs:
            i = int(t * speed * sfps)
            if seconds is not None:
                period = 2 * (len(frames) - 1)
                i = i % period if period else 0
                i = i if i < len(frames) else period - i
            tiles.append(frames[i % len(frames)])
        out.append(np.hstack(tiles))
    return out


def write(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    """Write frames as an MJPEG AVI (lossless enough, supported by every OpenCV build)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    if not vw.isOpened():
        raise RuntimeError(f"cannot write {path} (MJPG)")
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def scene_file(scene: Scene, data: Path = DATA, fps: float = 15.0) -> Path:
    """The composed clip of `scene`, built once under .cache/composed/."""
    path = OUT / f"{scene.name}.avi"
    if not path.exists():
        write(compose_frames(scene.parts, data, fps, scene.seconds, scene.width), path, fps)
    return path
