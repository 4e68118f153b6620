"""Camera tamper detection against a reference frame, separate from motion gating.

Checks on a 320x240 grey copy, about once a second:
- covered: the image lost nearly all contrast (grey-level spread below a quarter of the
  reference's, or below 6 grey levels): a hand, tape or a cap over the lens;
- blurred: the variance of the Laplacian (fine detail) fell below a quarter of the reference's
  while the coarse layout still matches: smeared or defocused lens;
- moved: most cells of a 4x4 grid no longer correlate with the reference at coarse scale
  (camera turned, shifted, or the scene replaced by a picture).
A condition must hold for `hold_ms` before a `new` event, and be clear for `hold_ms` before
`end`; `update` repeats every `update_ms` while it lasts. The reference is learnt from the first
stable second of video and follows slow lighting drift only while nothing is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("covered", "blurred", "moved")


@dataclass
class Measures:
    """What one tamper check saw: spread, detail and layout relative to the reference."""

    std: float
    lap_var: float
    matched_cells: float  # fraction of grid cells still correlated with the reference


def _coarse(gray: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 4)
    return cv2.resize(g, (64, 48), interpolation=cv2.INTER_AREA)


def _lap_var(gray: np.ndarray) -> float:
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def _cell_match(a: np.ndarray, b: np.ndarray, grid: int = 4, min_corr: float = 0.5) -> float:
    """Fraction of grid cells where a and b correlate (ZNCC >= min_corr) or are both flat."""
    h, w = a.shape
    ok = 0
    for i in range(grid):
        for j in range(grid):
            ca = a[i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid]
            cb = b[i * h // grid:(i + 1) * h // grid, j * w // grid:(j + 1) * w // grid]
            sa, sb = float(ca.std()), float(cb.std())
            if sa < 2 and sb < 2:  # both flat (a plain wall): same if same brightness
                ok += abs(float(ca.mean()) - float(cb.mean())) < 20
                continue
            if sa < 1e-3 or sb < 1e-3:
                continue
            corr = float(((ca - ca.mean()) * (cb - cb.mean())).mean() / (sa * sb))
            ok += corr >= min_corr
    return ok / (grid * grid)


@dataclass
class _State:
    active: bool = False
    since_ms: int = 0  # when the condition (or its absence) started holding
    last_emit_ms: int = 0
    event_id: str = ""
    score: int = 0


class TamperDetector:
    """Stateful tamper checker; `check(gray, ts)` returns events as (kind, phase, id, score)."""

    def __init__(self, camera: str, interval_ms: int = 1000, hold_ms: int = 3000,
                 update_ms: int = 30000, learn_frames: int = 3) -> None:
        self.camera = camera
        self.interval_ms = interval_ms
        self.hold_ms = hold_ms
        self.update_ms = update_ms
        self.learn_frames = learn_frames
        self.ref: np.ndarray | None = None
        self.ref_coarse: np.ndarray | None = None
        self.ref_std = 0.0
        self.ref_lap = 0.0
        self._learning: list[np.ndarray] = []
        self._last_check_ms: int | None = None
        self._states = {k: _State() for k in KINDS}
        self._pending = {k: False for k in KINDS}
        self.last: Measures | None = None
        self.checks = 0

    @property
    def active(self) -> list[str]:
        """Kinds of tamper currently reported."""
        return [k for k, s in self._states.items() if s.active]

    def reset_reference(self) -> None:
        """Forget the reference (after a deliberate camera move); it is learnt again."""
        self.ref = None
        self._learning = []

    def measure(self, gray: np.ndarray) -> Measures:
        """Compare one grey frame with the reference."""
        assert self.ref_coarse is not None
        return Measures(float(gray.std()), _lap_var(gray),
                        _cell_match(_coarse(gray), self.ref_coarse))

    def conditions(self, m: Measures) -> dict[str, tuple[bool, int]]:
        """Which tamper conditions hold for these measures, with a 0-100 score each."""
        covered = m.std < max(6.0, 0.25 * self.ref_std)
        moved = not covered and m.matched_cells < 0.4
        blurred = (not covered and not moved and self.ref_lap > 20
                   and m.lap_var < 0.25 * self.ref_lap)
        return {
            "covered": (covered, int(100 * max(0.0, 1 - m.std / max(self.ref_std, 1e-6)))),
            "blurred": (blurred, int(100 * max(0.0, 1 - m.lap_var / max(self.ref_lap, 1e-6)))),
            "moved": (moved, int(100 * (1 - m.matched_cells))),
        }

    def check_view(self, view: tuple[float, float, float], ts_ms: int
                   ) -> list[tuple[str, str, str, int]]:
        """The same check on measures a `kp:` feed reports instead of pixels (spread, detail,
        matched fraction): the reference spread and detail are learnt from its first views
        and follow drift while all is well, as with pixels."""
        if self._last_check_ms is not None and ts_ms - self._last_check_ms < self.interval_ms:
            return []
        self._last_check_ms = ts_ms
        std, lap, matched = view
        if self.ref_std <= 0:
            self._learning.append(np.array([std, lap], dtype=np.float32))
            if len(self._learning) >= self.learn_frames:
                ref = np.median(np.stack(self._learning), axis=0)
                self.ref_std, self.ref_lap = float(ref[0]), float(ref[1])
                self._learning = []
            return []
        events = self._judge(Measures(std, lap, matched), ts_ms)
        if not self.active and not any(self._pending.values()):
            self.ref_std += 0.05 * (std - self.ref_std)
            self.ref_lap += 0.05 * (lap - self.ref_lap)
        return events

    def check(self, gray: np.ndarray, ts_ms: int, motion: bool = False
              ) -> list[tuple[str, str, str, int]]:
        """Run a check if one is due; return tamper events (kind, phase, id, score_pct)."""
        if self._last_check_ms is not None and ts_ms - self._last_check_ms < self.interval_ms:
            return []
        self._last_check_ms = ts_ms
        if self.ref is None:
            self._learn(gray)
            return []
        events = self._judge(self.measure(gray), ts_ms)
        if not any(self._pending.values()) and not self.active and not motion:
            # Follow slow lighting drift while all is well and the scene is still.
            assert self.ref is not None
            cv2.accumulateWeighted(gray.astype(np.float32), self.ref, 0.05)
            self._set_reference(self.ref)
        return events

    def _judge(self, m: Measures, ts_ms: int) -> list[tuple[str, str, str, int]]:
        """Turn one check's measures into tamper events: a condition must hold for hold_ms
        before `new` and be clear for hold_ms before `end`."""
        self.checks += 1
        self.last = m
        conds = self.conditions(m)
        events: list[tuple[str, str, str, int]] = []
        for kind, (holds, score) in conds.items():
            st = self._states[kind]
            if holds != self._pending[kind]:
                self._pending[kind] = holds
                st.since_ms = ts_ms
            st.score = score
            held = ts_ms - st.since_ms >= self.hold_ms
            if holds and not st.active and held:
                st.active, st.last_emit_ms = True, ts_ms
                st.event_id = f"{self.camera[:40]}-{kind}-{ts_ms}"[:64]
                events.append((kind, "new", st.event_id, score))
            elif holds and st.active and ts_ms - st.last_emit_ms >= self.update_ms:
                st.last_emit_ms = ts_ms
                events.append((kind, "update", st.event_id, score))
            elif not holds and st.active and held:
                st.active = False
                events.append((kind, "end", st.event_id, score))
        return events

    def _learn(self, gray: np.ndarray) -> None:
        self._learning.append(gray.astype(np.float32))
        if len(self._learning) < self.learn_frames:
            return
        ref = np.median(np.stack(self._learning), axis=0).astype(np.float32)
        self._learning = []
        self._set_reference(ref)

    def _set_reference(self, ref: np.ndarray) -> None:
        self.ref = ref
        self.ref_coarse = _coarse(ref)
        self.ref_std = float(ref.std())
        self.ref_lap = _lap_var(ref.astype(np.uint8))
