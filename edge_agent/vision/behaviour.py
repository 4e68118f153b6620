"""Behaviour over windows of pose keypoints: features, classifiers, and the event logic.

A classifier sees the last WINDOW_MS of one track and says normal / fall / lying_still /
agitated. The monitor turns those per-window classes into events: a fall at once; lying still
only after `rules.lying_still_s` of it; agitated, or fight when two or more people are in view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

CLASSES = ("normal", "fall", "lying_still", "agitated")
WINDOW_MS = 3000
STEP_S = 0.2  # seconds between the two poses a speed is measured over
MIN_VIS = 0.3
MODEL_PATH = Path(__file__).resolve().parent.parent.parent / "models" / "behaviour.tflite"
# Which classifier the pipeline uses unless told otherwise; chosen by models/eval_behaviour.py
# (see models/MODEL_CARD.md).
DEFAULT_CLASSIFIER = "model"

L_SH, R_SH, L_HIP, R_HIP = 11, 12, 23, 24
L_KNEE, R_KNEE = 25, 26
LIMBS = (15, 16, 27, 28)  # wrists and ankles
NOSE = 0

FEATURE_NAMES = (
    "angle_last", "angle_first", "angle_range", "log_aspect_last", "log_aspect_first",
    "drop", "max_down_speed", "mean_centre_speed", "mean_limb_speed", "max_limb_speed",
    "recent_limb_speed", "max_angle_rate", "mean_visibility", "head_above_hips",
    "log_height_ratio", "span_s",
)
N_FEATURES = len(FEATURE_NAMES)


@dataclass(frozen=True)
class PoseSummary:
    """Geometry of one pose: torso angle from vertical (deg), scale, centre, box, limbs."""

    angle: float
    scale: float
    centre: np.ndarray
    width: float
    height: float
    limbs: np.ndarray  # (4, 2), NaN where not visible
    head_above_hips: float
    visibility: float


def _mid(kp: np.ndarray, a: int, b: int) -> np.ndarray | None:
    pts = [kp[i, :2] for i in (a, b) if kp[i, 2] >= MIN_VIS]
    return np.mean(pts, axis=0) if pts else None


def summarise(kp: np.ndarray, aspect: float = 4 / 3) -> PoseSummary:
    """Summarise one (33, 3) keypoint set in aspect-corrected coordinates."""
    k = kp.astype(np.float64).copy()
    k[:, 0] *= aspect
    vis = k[:, 2] >= MIN_VIS
    pts = k[vis, :2] if vis.any() else k[:, :2]
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    w, h = max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)
    sh = _mid(k, L_SH, R_SH)
    hip = _mid(k, L_HIP, R_HIP)
    if hip is None:
        hip = _mid(k, L_KNEE, R_KNEE)
    if sh is not None and hip is not None and np.hypot(*(sh - hip)) > 1e-3:
        v = sh - hip
        angle = math.degrees(math.atan2(abs(v[0]), -v[1]))
        scale = float(np.hypot(*v))
    else:
        angle = 90.0 if w > 1.3 * h else 0.0
        scale = h / 2.5
    scale = max(scale, 0.3 * max(w, h), 1e-3)
    centre = hip if hip is not None else np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    limbs = np.full((len(LIMBS), 2), np.nan)
    for j, i in enumerate(LIMBS):
        if k[i, 2] >= MIN_VIS:
            limbs[j] = k[i, :2] - centre
    head = k[NOSE, 1] if k[NOSE, 2] >= MIN_VIS else (sh[1] if sh is not None else centre[1])
    return PoseSummary(angle, scale, np.asarray(centre), w, h, limbs,
                       float((centre[1] - head) / scale), float(k[:, 2].mean()))


def window_features(samples: Sequence[tuple[int, np.ndarray]], aspect: float = 4 / 3
                    ) -> np.ndarray | None:
    """The feature vector (FEATURE_NAMES) of a window of (ts_ms, keypoints); None if < 2."""
    if len(samples) < 2:
        return None
    s = [summarise(kp, aspect) for _, kp in samples]
    # Integer milliseconds since the window's first sample: differences are taken before any
    # float division, so the step checks and speeds do not depend on the absolute start time
    # (epoch ms / 1000 in float64 rounded 0.1 s steps either way).
    t0 = int(samples[0][0])
    t_ms = [int(ts) - t0 for ts, _ in samples]
    step_ms = round(STEP_S * 1000)
    scale = float(np.median([p.scale for p in s]))
    ang = np.array([p.angle for p in s])
    cy = np.array([p.centre[1] for p in s])
    down, centre_v, limb_v, ang_v, recent = [], [], [], [], []
    j = 0
    for i in range(1, len(s)):
        # Speeds over at least STEP_S, so that keypoint jitter does not grow with frame rate.
        while j + 1 < i and t_ms[i] - t_ms[j + 1] >= step_ms:
            j += 1
        dt_ms = t_ms[i] - t_ms[j]
        if 2 * dt_ms < step_ms:
            continue
        dt = min(dt_ms, 2000) / 1000.0
        down.append((cy[i] - cy[j]) / scale / dt)
        centre_v.append(float(np.hypot(*(s[i].centre - s[j].centre))) / scale / dt)
        d = np.hypot(*(s[i].limbs - s[j].limbs).T)
        d = d[np.isfinite(d)]
        lv = float(d.mean()) / scale / dt if d.size else 0.0
        limb_v.append(lv)
        if t_ms[-1] - t_ms[i] <= 1000:
            recent.append(lv)
        ang_v.append(abs(ang[i] - ang[j]) / dt)
    if not centre_v:
        return None
    return np.array([
        ang[-1] / 90, ang[0] / 90, (ang.max() - ang.min()) / 90,
        math.log(s[-1].height / s[-1].width), math.log(s[0].height / s[0].width),
        (cy[-1] - cy[0]) / scale, max(max(down), 0.0), float(np.mean(centre_v)),
        float(np.mean(limb_v)), float(np.max(limb_v)),
        float(np.mean(recent)) if recent else float(limb_v[-1]), max(ang_v) / 90,
        float(np.mean([p.visibility for p in s])), s[-1].head_above_hips,
        math.log(s[-1].height / s[0].height), t_ms[-1] / 1000.0,
    ], dtype=np.float32)


HEAD = (0, 1, 2, 3, 4, 5, 6, 7, 8)  # nose, eyes, ears
CORE = (0, 11, 12, 23, 24)  # nose, shoulders, hips
QUALITY_VIS = 0.5
FRAME_MARGIN = 0.01  # normalised: a point this close to an edge may be cut off


def _in_frame(kp: np.ndarray, idx: Sequence[int]) -> bool:
    """At least one of the points `idx` seen (visibility >= QUALITY_VIS) inside the image."""
    for i in idx:
        x, y, v = (float(a) for a in kp[i])
        if v >= QUALITY_VIS and FRAME_MARGIN <= x <= 1 - FRAME_MARGIN \
                and FRAME_MARGIN <= y <= 1 - FRAME_MARGIN:
            return True
    return False


def window_problem(samples: Sequence[tuple[int, np.ndarray]]) -> str | None:
    """Why a window cannot be classified (None when it can): the head or the hips out of frame
    or unseen at the start or the end of the window, or low keypoint confidence overall.

    Such windows are not guessed at: a person walking past close to the camera with the head
    cut off looks, to torso-angle features, like a person going down."""
    for _, kp in (samples[0], samples[-1]):
        if not _in_frame(kp, (L_HIP, R_HIP)):
            return "hips_out_of_frame"
        if not _in_frame(kp, HEAD):
            return "head_out_of_frame"
    vis = float(np.mean([kp[list(CORE), 2].mean() for _, kp in samples]))
    if vis < QUALITY_VIS:
        return "low_confidence"
    return None


class Classifier(Protocol):
    """Anything that maps a feature vector to per-class probabilities (CLASSES order)."""

    name: str

    def probs(self, features: np.ndarray) -> np.ndarray:
        """Probabilities over CLASSES."""
        ...


class HeuristicClassifier:
    """Plain thresholds on the window features: the baseline the model must beat."""

    name = "heuristic"

    def probs(self, features: np.ndarray) -> np.ndarray:
        """One-hot (with a soft score) over CLASSES from fixed thresholds."""
        f = dict(zip(FEATURE_NAMES, features.tolist(), strict=True))
        lying = f["angle_last"] > 0.6 and f["log_aspect_last"] < 0.4
        out = np.zeros(len(CLASSES), dtype=np.float32)
        if (lying and f["angle_first"] < 0.45 and f["max_angle_rate"] > 0.6
                and (f["drop"] > 0.4 or f["max_down_speed"] > 0.8)):
            out[1] = min(1.0, 0.6 + 0.2 * f["max_angle_rate"])
        elif lying and f["drop"] > 0.8 and f["max_down_speed"] > 1.5:
            # From a bed (already lying) or a low seat: the body does not turn, it drops.
            out[1] = min(1.0, 0.5 + 0.1 * f["max_down_speed"])
        elif lying and f["recent_limb_speed"] < 0.6 and f["mean_centre_speed"] < 0.5:
            out[2] = 0.8
        elif not lying and f["mean_limb_speed"] > 2.5 and f["max_limb_speed"] > 5.0:
            out[3] = min(1.0, 0.4 + 0.1 * f["mean_limb_speed"])
        else:
            out[0] = 0.8
        rest = (1.0 - out.max()) / (len(CLASSES) - 1)
        out[out == 0] = rest
        return out


class ModelClassifier:
    """The project's int8 behaviour model (models/behaviour.tflite) on LiteRT."""

    name = "model"

    def __init__(self, path: Path = MODEL_PATH, threads: int = 1) -> None:
        from .pose import load_interpreter

        self.it = load_interpreter(path, threads)
        self.inp = self.it.get_input_details()[0]
        self.out = self.it.get_output_details()[0]
        meta = path.with_suffix(".json")
        import json

        norm = json.loads(meta.read_text())
        self.mean = np.asarray(norm["mean"], dtype=np.float32)
        self.std = np.asarray(norm["std"], dtype=np.float32)
        if list(norm["features"]) != list(FEATURE_NAMES) or list(norm["classes"]) != list(CLASSES):
            raise ValueError(f"{meta}: features/classes do not match this code; retrain")

    def probs(self, features: np.ndarray) -> np.ndarray:
        """Softmax over CLASSES from the model (int8 or float I/O)."""
        x = ((features - self.mean) / self.std).astype(np.float32)[None]
        if self.inp["dtype"] != np.float32:
            sc, zp = self.inp["quantization"]
            info = np.iinfo(self.inp["dtype"])
            x = np.clip(np.round(x / sc + zp), info.min, info.max).astype(self.inp["dtype"])
        self.it.set_tensor(self.inp["index"], x)
        self.it.invoke()
        y = self.it.get_tensor(self.out["index"])[0]
        if self.out["dtype"] != np.float32:
            sc, zp = self.out["quantization"]
            y = (y.astype(np.float32) - zp) * sc
        y = np.asarray(y, dtype=np.float32)
        return y / max(float(y.sum()), 1e-6)


def make_classifier(kind: str = DEFAULT_CLASSIFIER, threads: int = 1) -> Classifier:
    """The classifier named `kind` ("model" or "heuristic"); the model falls back to the
    heuristic when its file is missing, which the caller sees in `.name`."""
    if kind == "model":
        try:
            return ModelClassifier(threads=threads)
        except (FileNotFoundError, ValueError, KeyError):
            return HeuristicClassifier()
    if kind == "heuristic":
        return HeuristicClassifier()
    raise ValueError(f"unknown behaviour classifier {kind!r}: use 'model' or 'heuristic'")


def classify_window(clf: Classifier, samples: Sequence[tuple[int, np.ndarray]],
                    aspect: float = 4 / 3) -> tuple[str, float] | None:
    """Class and probability for one window, or None when the window is too short."""
    f = window_features(samples, aspect)
    if f is None:
        return None
    p = clf.probs(f)
    i = int(np.argmax(p))
    return CLASSES[i], float(p[i])


def _near(a: Any, b: Any, aspect: float) -> bool:
    """Two tracks within reach of each other: the gap between their boxes (x corrected for
    the aspect) under the taller person's height (a step and a lunge)."""
    ba, bb = a.box.astype(np.float64), b.box.astype(np.float64)
    ba[[0, 2]] *= aspect
    bb[[0, 2]] *= aspect
    gap_x = max(0.0, float(max(ba[0], bb[0]) - min(ba[2], bb[2])))
    gap_y = max(0.0, float(max(ba[1], bb[1]) - min(ba[3], bb[3])))
    tall = max(float(ba[3] - ba[1]), float(bb[3] - bb[1]))
    return max(gap_x, gap_y) < tall


# --- events -------------------------------------------------------------------------------

def event_time(event_id: str, default: int) -> int:
    """The time (ms) a behaviour event's id was made with (`<camera>-<cls>-<track>-<ts>`)."""
    tail = event_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else default


BehaviourEvent = tuple[str, dict[str, Any]]  # (phase, body without camera/room)


@dataclass
class _Open:
    id: str
    cls: str
    score: int
    track: int
    persons: int
    last_true_ms: int


@dataclass
class _TrackState:
    fall_ended: int | None = None
    still_since: int | None = None
    not_still_since: int | None = None
    upright_since: int | None = None
    fall_candidate: tuple[int, float] | None = None  # (ts, score) awaiting confirmation
    fell_at: int | None = None  # window end of the last fall seen


@dataclass
class BehaviourMonitor:
    """Turns per-window classes into behaviour events with new/update/end and stable ids."""

    camera: str
    lying_still_ms: int = 600_000
    agitated_end_ms: int = 5000
    agitated_min_ms: int = 1500  # violence lasts; picking something up quickly does not
    fall_rearm_ms: int = 10000  # after a fall ends, the same track cannot fall again at once
    # A fall is confirmed once the person is still not upright this long after the window that
    # saw it (a fast deep bend to pick something up is upright again within a second).
    fall_confirm_ms: int = 1000
    min_score: float = 0.5
    classifier: Classifier = field(default_factory=HeuristicClassifier)
    open: dict[tuple[str, int], _Open] = field(default_factory=dict)
    states: dict[int, _TrackState] = field(default_factory=dict)
    last_cls: dict[int, tuple[str, float]] = field(default_factory=dict)
    agitated_since: int | None = None
    agitated_last: int | None = None
    rejected: dict[str, int] = field(default_factory=dict)  # windows not classified, by why

    def _event_id(self, cls: str, track: int, ts: int) -> str:
        return f"{self.camera[:30]}-{cls.replace('_', '-')}-{track}-{ts}"[:64]

    def _start(self, cls: str, track: int, score: float, persons: int, ts: int
               ) -> list[tuple[str, dict[str, Any]]]:
        o = _Open(self._event_id(cls, track, ts), cls, round(score * 100), track, persons,
                  ts)
        self.open[(cls, track)] = o
        return [("new", self._body(o))]

    def _body(self, o: _Open) -> dict[str, Any]:
        return {"id": o.id, "cls": o.cls, "score_pct": o.score, "track": o.track,
                "persons": o.persons}

    def _end(self, cls: str, track: int) -> list[tuple[str, dict[str, Any]]]:
        o = self.open.pop((cls, track), None)
        return [("end", self._body(o))] if o else []

    def _touch(self, cls: str, track: int, score: float, persons: int, ts: int
               ) -> list[tuple[str, dict[str, Any]]]:
        o = self.open[(cls, track)]
        o.last_true_ms = ts
        pct = round(score * 100)
        if abs(pct - o.score) >= 20 or persons != o.persons:
            o.score, o.persons = pct, persons
            return [("update", self._body(o))]
        return []

    def step(self, ts: int, tracks: Sequence[Any], aspect: float = 4 / 3,
             live: Sequence[Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Classify every track seen at `ts` (`live`: every track still alive, for who is
        near whom); return (phase, body) behaviour events."""
        out: list[tuple[str, dict[str, Any]]] = []
        persons = len(live) if live is not None else len(tracks)  # in view, seen now or not
        agitated: list[tuple[int, float]] = []
        for tr in tracks:
            win = tr.window(WINDOW_MS)
            why = window_problem(win) if len(win) >= 2 else None
            # Without the hips, or with poor keypoints, nothing is judged; without the head,
            # violence still can be (limb speed is measured against the hips) but a fall or
            # lying cannot (the body's angle and height are guesses).
            if why is not None and why != "head_out_of_frame":
                self.rejected[why] = self.rejected.get(why, 0) + 1
                continue
            res = classify_window(self.classifier, win, aspect)
            if res is None:
                continue
            cls, p = res
            if why is not None and cls in ("fall", "lying_still"):
                self.rejected[why] = self.rejected.get(why, 0) + 1
                continue
            self.last_cls[tr.id] = (cls, p)
            st = self.states.setdefault(tr.id, _TrackState())
            upright = summarise(tr.history[-1][1], aspect).angle < 40
            # fall: confirmed once still down `fall_confirm_ms` later; over once the person
            # has been upright again for 2 s
            rearmed = st.fall_ended is None or ts - st.fall_ended >= self.fall_rearm_ms
            if cls == "fall" and p >= self.min_score:
                st.fell_at = ts
                if ("fall", tr.id) in self.open:
                    out += self._touch("fall", tr.id, p, persons, ts)
                elif rearmed and st.fall_candidate is None:
                    st.fall_candidate = (ts, p)
            if st.fall_candidate is not None:
                cand_ts, cand_p = st.fall_candidate
                if upright:
                    st.fall_candidate = None  # up again at once: a bend, not a fall
                elif ts - cand_ts >= self.fall_confirm_ms:
                    st.fall_candidate = None
                    out += self._start("fall", tr.id, max(cand_p, p if cls == "fall" else 0.0),
                                       persons, cand_ts)
            if upright:
                st.upright_since = st.upright_since if st.upright_since is not None else ts
            else:
                st.upright_since = None
            if ("fall", tr.id) in self.open and st.upright_since is not None \
                    and ts - st.upright_since >= 2000:
                out += self._end("fall", tr.id)
                st.fall_ended = ts
            # lying still: the class must have held (gaps under 3 s forgiven) for lying_still_ms
            if cls == "lying_still" or (cls == "fall" and not upright):
                st.not_still_since = None
                if st.still_since is None:
                    st.still_since = ts
                if ts - st.still_since >= self.lying_still_ms:
                    if ("lying_still", tr.id) not in self.open:
                        out += self._start("lying_still", tr.id, p, persons, ts)
                    else:
                        out += self._touch("lying_still", tr.id, p, persons, ts)
            elif not upright and st.fell_at is not None and ts - st.fell_at <= WINDOW_MS + 500:
                pass  # down after a fall whose motion is still inside the window: neither way
            else:
                if st.not_still_since is None:
                    st.not_still_since = ts
                if ts - st.not_still_since >= 3000:
                    st.still_since = None
                    out += self._end("lying_still", tr.id)
            if cls == "agitated" and p >= self.min_score:
                agitated.append((tr.id, p))
        # agitated / fight are about the room: one event, fight when >= 2 people are in view
        if agitated:
            if self.agitated_last is None or ts - self.agitated_last > 1000:
                self.agitated_since = ts
            self.agitated_last = ts
        held = (self.agitated_since is not None and self.agitated_last == ts
                and ts - self.agitated_since >= self.agitated_min_ms)
        if agitated and (held or any(k[0] in ("agitated", "fight") for k in self.open)):
            track, p = max(agitated, key=lambda a: a[1])
            # fight: violent motion with someone else within reach (any live track, seen in
            # this run or not: pose drops one of two people in a tangle; seen at least three
            # times, so a one-off false detection is nobody); once a fight is
            # open it stays a fight while the violence goes on
            violent = {t for t, _ in agitated}
            others = list(live) if live is not None else list(tracks)
            fighting = any(k[0] == "fight" for k in self.open)
            want = "fight" if fighting or any(
                _near(a, b, aspect) for a in tracks if a.id in violent
                for b in others if b.id != a.id and len(b.history) >= 3) else "agitated"
            other = "agitated" if want == "fight" else "fight"
            for key in [k for k in self.open if k[0] == other]:
                out += self._end(*key)
            current = [k for k in self.open if k[0] == want]
            if current:
                out += self._touch(want, current[0][1], p, persons, ts)
            else:
                out += self._start(want, track, p, persons, ts)
        for key in [k for k in self.open if k[0] in ("agitated", "fight")]:
            if ts - self.open[key].last_true_ms >= self.agitated_end_ms:
                out += self._end(*key)
        return out

    def track_gone(self, track: int) -> list[tuple[str, dict[str, Any]]]:
        """End a vanished track's events (fall, lying still); a fall seen but not yet
        confirmed is raised (pose often loses a person on the floor) and ended."""
        st = self.states.pop(track, None)
        self.last_cls.pop(track, None)
        out: list[tuple[str, dict[str, Any]]] = []
        if st is not None and st.fall_candidate is not None \
                and ("fall", track) not in self.open:
            out += self._start("fall", track, st.fall_candidate[1], 1, st.fall_candidate[0])
        return out + self._end("fall", track) + self._end("lying_still", track)

    def close_all(self) -> list[tuple[str, dict[str, Any]]]:
        """End every open event (camera stopping)."""
        out: list[tuple[str, dict[str, Any]]] = []
        for key in list(self.open):
            out += self._end(*key)
        return out
