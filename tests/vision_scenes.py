"""Frame sequences built from real photographs (scikit-image samples) for the vision tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

SAMPLES = Path(__file__).resolve().parent.parent / "models" / "samples"
W, H = 640, 480


def photo(name: str) -> np.ndarray:
    """A sample photograph as BGR (extracted by ./setup.sh)."""
    img = cv2.imread(str(SAMPLES / name), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{SAMPLES / name} missing: run ./setup.sh")
    return img


def background(name: str = "brick.png") -> np.ndarray:
    """A room-sized background from a sample photograph."""
    return cv2.resize(photo(name), (W, H), interpolation=cv2.INTER_AREA)


def with_person(bg: np.ndarray, angle: float = 0.0, cx: float = 320, cy: float = 240,
                size: int = 300) -> np.ndarray:
    """The astronaut photograph (a person) pasted on `bg`, rotated by `angle` degrees
    clockwise about its centre, centred at (cx, cy)."""
    person = cv2.resize(photo("astronaut.png"), (size, size), interpolation=cv2.INTER_AREA)
    m = cv2.getRotationMatrix2D((size / 2, size / 2), -angle, 1.0)
    m[0, 2] += cx - size / 2
    m[1, 2] += cy - size / 2
    mask = cv2.warpAffine(np.full((size, size), 255, np.uint8), m, (W, H))
    warped = cv2.warpAffine(person, m, (W, H))
    out = bg.copy()
    out[mask > 127] = warped[mask > 127]
    return out


def timed(frames: list[np.ndarray], start_ms: int = 1_000_000, fps: float = 10.0
          ) -> Iterator[tuple[int, np.ndarray]]:
    """(ts_ms, frame) pairs at `fps`."""
    for i, f in enumerate(frames):
        yield start_ms + round(i * 1000 / fps), f


def standing(bg: np.ndarray, n: int, sway: float = 6.0) -> list[np.ndarray]:
    """A person standing, swaying a little (so there is motion)."""
    return [with_person(bg, 0, 320 + sway * np.sin(i / 2), 240) for i in range(n)]


def falling(bg: np.ndarray, n: int = 8) -> list[np.ndarray]:
    """A person toppling over to the floor in `n` frames."""
    return [with_person(bg, 90 * (i + 1) / n, 320 + 60 * (i + 1) / n, 240 + 110 * (i + 1) / n)
            for i in range(n)]


def lying(bg: np.ndarray, n: int) -> list[np.ndarray]:
    """A person lying on the floor, not moving."""
    return [with_person(bg, 90, 380, 350) for _ in range(n)]
