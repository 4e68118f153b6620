"""Cheap motion gating: is anything moving in the frame? (runs on every frame)"""

from __future__ import annotations

import cv2
import numpy as np

GATE_SIZE = (160, 120)


def small_gray(bgr: np.ndarray, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A downscaled grey copy of a BGR frame, shared by the motion gate and the tamper path."""
    g = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    return cv2.resize(g, size, interpolation=cv2.INTER_AREA)


class MotionGate:
    """Frame difference against a slowly adapting background at 160x120.

    `update` returns the fraction of pixels that changed by more than `threshold` grey levels;
    `moving` is true when that fraction exceeds `min_fraction`. The background adapts slowly
    (so lighting drifts are absorbed) and not at all on the first frame after a jump.
    """

    def __init__(self, threshold: int = 25, min_fraction: float = 0.004,
                 adapt: float = 0.05) -> None:
        self.threshold = threshold
        self.min_fraction = min_fraction
        self.adapt = adapt
        self._bg: np.ndarray | None = None
        self.last_fraction = 0.0

    def update(self, gray: np.ndarray) -> float:
        """Feed one grey frame (any size); return the changed fraction."""
        g = cv2.resize(gray, GATE_SIZE, interpolation=cv2.INTER_AREA)
        g = cv2.GaussianBlur(g, (5, 5), 0).astype(np.float32)
        if self._bg is None:
            self._bg = g
            self.last_fraction = 1.0  # first frame: look at it
            return 1.0
        diff = cv2.absdiff(g, self._bg)
        frac = float(np.count_nonzero(diff > self.threshold)) / diff.size
        cv2.accumulateWeighted(g, self._bg, self.adapt)
        self.last_fraction = frac
        return frac

    @property
    def moving(self) -> bool:
        """Whether the last frame showed motion."""
        return self.last_fraction >= self.min_fraction
