"""Synthetic BlazePose keypoint sequences for training and testing the behaviour classifier.

A 2D stick body (33 BlazePose landmarks) driven by a few joint angles is animated through
everyday movement (standing, walking, sitting down, bending, reaching, lying down slowly,
lying and shifting), falls (from standing, walking or sitting; sideways, backwards and towards
the camera), lying still, and agitated movement (flailing, punching, kicking). Every sequence
gets random size, position, frame rate, viewing aspect, keypoint jitter and occlusion.

`window(kind, rng)` returns one labelled 3-second window as (samples, label), where samples is
a list of (ts_ms, (33, 3) array of x, y, visibility) in normalised image coordinates.
Run as a script to print a few example windows' features.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edge_agent.vision.behaviour import CLASSES, WINDOW_MS

Params = dict[str, float]
Samples = list[tuple[int, np.ndarray]]

# Segment lengths in torso lengths.
UPPER_ARM, FOREARM, THIGH, SHIN = 0.55, 0.5, 0.8, 0.8


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _limb(start: np.ndarray, a1: float, a2: float, l1: float, l2: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """Two-segment limb hanging down (angle 0 = straight down), angles in degrees."""
    down = np.array([0.0, 1.0])
    mid = start + l1 * _rot(down, a1)
    end = mid + l2 * _rot(down, a1 + a2)
    return mid, end


def body(p: Params) -> np.ndarray:
    """(33, 2) landmarks in body coordinates (hip centre at 0, torso length 1, y down),
    upright, facing the camera; p holds joint angles in degrees and `depth` (0..1) that
    foreshortens the torso when leaning towards the camera."""
    k = np.zeros((33, 2))
    lean = p.get("lean", 0.0)
    torso = _rot(np.array([0.0, -1.0]), lean) * (1 - 0.7 * p.get("depth", 0.0))
    sh_c = torso
    half_sh, half_hip = 0.22, 0.16
    side = _rot(np.array([1.0, 0.0]), lean)
    k[11], k[12] = sh_c + half_sh * side, sh_c - half_sh * side
    k[23], k[24] = half_hip * np.array([1.0, 0.0]), -half_hip * np.array([1.0, 0.0])
    head = sh_c + _rot(np.array([0.0, -0.38]), lean + p.get("neck", 0.0))
    up = _rot(np.array([0.0, -1.0]), lean)
    k[0] = head
    for i, dx in ((1, 0.03), (2, 0.06), (3, 0.09), (4, -0.03), (5, -0.06), (6, -0.09)):
        k[i] = head + dx * side + 0.05 * up
    k[7], k[8] = head + 0.13 * side + 0.02 * up, head - 0.13 * side + 0.02 * up
    k[9], k[10] = head + 0.04 * side - 0.07 * up, head - 0.04 * side - 0.07 * up
    # arms (angles measured from hanging down, positive = away from the body)
    for sh, el, wr, sign, a1, a2 in ((11, 13, 15, 1, p["l_sh"], p["l_el"]),
                                     (12, 14, 16, -1, p["r_sh"], p["r_el"])):
        mid, end = _limb(k[sh], -sign * a1 + lean, -sign * a2, UPPER_ARM, FOREARM)
        k[el], k[wr] = mid, end
        d = end - mid
        d = d / (np.linalg.norm(d) + 1e-9)
        k[wr + 2] = end + 0.09 * d + 0.02 * sign * side   # pinky 17/18
        k[wr + 4] = end + 0.10 * d                         # index 19/20
        k[wr + 6] = end + 0.06 * d - 0.03 * sign * side    # thumb 21/22
    for hip, kn, an, sign, a1, a2 in ((23, 25, 27, 1, p["l_hip"], p["l_knee"]),
                                      (24, 26, 28, -1, p["r_hip"], p["r_knee"])):
        mid, end = _limb(k[hip], -sign * a1, sign * a2, THIGH * p.get("leg_fore", 1.0),
                         SHIN * p.get("leg_fore", 1.0))
        k[kn], k[an] = mid, end
        k[an + 2] = end + np.array([0.0, 0.04])            # heel 29/30
        k[an + 4] = end + np.array([0.08 * sign, 0.06])    # foot index 31/32
    return k


BASE: Params = {"l_sh": 10, "r_sh": 10, "l_el": 5, "r_el": 5, "l_hip": 3, "r_hip": 3,
                "l_knee": 0, "r_knee": 0, "lean": 0, "neck": 0, "depth": 0, "leg_fore": 1.0}


class Scene:
    """Camera-side randomness of one sequence: size, place, aspect, noise, occlusion."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.scale = rng.uniform(0.09, 0.28)     # torso length / image height
        self.aspect = float(rng.choice([4 / 3, 16 / 9]))
        self.cx = rng.uniform(0.25, 0.75)
        self.floor = rng.uniform(0.65, 0.95)     # image y of the feet when standing
        self.jitter = self.scale * rng.uniform(0.005, 0.04)
        self.fps = float(rng.choice([5, 8, 10, 15, 15, 30]))
        self.occlude_legs = rng.random() < 0.2
        self.occlude_head = rng.random() < 0.1
        self.drop = rng.uniform(0.0, 0.08)       # chance a point is missed in a frame

    def project(self, k: np.ndarray, rot: float, hip: tuple[float, float]) -> np.ndarray:
        """Body coordinates -> (33, 3) normalised image points with visibility."""
        pts = np.array([_rot(v, rot) for v in k]) * self.scale
        pts[:, 0] = pts[:, 0] / self.aspect + hip[0]
        pts[:, 1] = pts[:, 1] + hip[1]
        pts += self.rng.normal(0, self.jitter, pts.shape)
        vis = self.rng.uniform(0.75, 1.0, 33)
        vis[self.rng.random(33) < self.drop] = self.rng.uniform(0.0, 0.3)
        if self.occlude_legs:
            vis[25:33] = self.rng.uniform(0.0, 0.25, 8)
        if self.occlude_head:
            vis[0:11] = self.rng.uniform(0.0, 0.25, 11)
        return np.concatenate([pts, vis[:, None]], axis=1).astype(np.float32)

    def standing_hip_y(self) -> float:
        """Image y of the hip centre for a standing person."""
        return self.floor - (THIGH + SHIN) * self.scale


Motion = Callable[[float], tuple[Params, float, tuple[float, float]]]  # t -> params, rot, hip


def _walk(sc: Scene, speed: float, start_x: float) -> Motion:
    f = sc.rng.uniform(0.8, 1.6)
    ph = sc.rng.uniform(0, 2 * math.pi)

    def m(t: float) -> tuple[Params, float, tuple[float, float]]:
        s = math.sin(2 * math.pi * f * t + ph)
        p = {**BASE, "l_hip": 20 * s, "r_hip": -20 * s, "l_knee": 15 * max(0, -s),
             "r_knee": 15 * max(0, s), "l_sh": 10 - 15 * s, "r_sh": 10 + 15 * s}
        return p, 0.0, (start_x + speed * t, sc.standing_hip_y() - 0.01 * abs(s))
    return m


def _stand(sc: Scene) -> Motion:
    arm = sc.rng.uniform(5, 40)
    el = sc.rng.uniform(0, 100)

    def m(t: float) -> tuple[Params, float, tuple[float, float]]:
        p = {**BASE, "l_sh": arm + 3 * math.sin(t), "r_sh": arm, "l_el": el, "r_el": el * 0.5,
             "lean": 2 * math.sin(0.7 * t)}
        return p, 0.0, (sc.cx, sc.standing_hip_y())
    return m


def _sitting_params(rng: np.random.Generator) -> Params:
    return {**BASE, "l_hip": 80, "r_hip": -80, "l_knee": 80, "r_knee": -80,
            "l_sh": rng.uniform(10, 40), "r_sh": rng.uniform(10, 40),
            "l_el": rng.uniform(20, 110), "r_el": rng.uniform(20, 110), "leg_fore": 0.7}


def _sit(sc: Scene) -> Motion:
    p0 = _sitting_params(sc.rng)
    hy = sc.standing_hip_y() + 0.55 * sc.scale

    def m(t: float) -> tuple[Params, float, tuple[float, float]]:
        p = {**p0, "l_el": p0["l_el"] + 10 * math.sin(1.3 * t), "lean": 5 * math.sin(0.5 * t)}
        return p, 0.0, (sc.cx, hy)
    return m


def _blend(a: Params, b: Params, u: float) -> Params:
    u = min(max(u, 0.0), 1.0)
    u = u * u * (3 - 2 * u)  # smooth step
    return {k: a.get(k, 0.0) * (1 - u) + b.get(k, 0.0) * u for k in set(a) | set(b)}


def _lying_params(rng: np.random.Generator) -> Params:
    curl = rng.uniform(0, 60)
    return {**BASE, "l_hip": curl, "r_hip": -curl * rng.uniform(0.5, 1), "l_knee": curl,
            "r_knee": -curl, "l_sh": rng.uniform(0, 120), "r_sh": rng.uniform(0, 60),
            "l_el": rng.uniform(0, 90), "r_el": rng.uniform(0, 90)}


def _lying_hip(sc: Scene) -> float:
    return sc.floor - sc.rng.uniform(0.0, 0.35) * sc.scale


def _lying(sc: Scene, moving: bool) -> Motion:
    p0 = _lying_params(sc.rng)
    rot = float(sc.rng.choice([-1, 1]) * sc.rng.uniform(65, 110))
    hip = (sc.cx, _lying_hip(sc))
    amp = sc.rng.uniform(20, 60) if moving else 0.0
    f = sc.rng.uniform(0.3, 1.0)

    def m(t: float) -> tuple[Params, float, tuple[float, float]]:
        s = math.sin(2 * math.pi * f * t)
        p = {**p0, "l_sh": p0["l_sh"] + amp * s, "l_el": p0["l_el"] + amp * s,
             "l_hip": p0["l_hip"] + 0.5 * amp * s}
        return p, rot + (0.15 * amp * s), (hip[0] + 0.002 * amp * s * sc.scale, hip[1])
    return m


def _transition(sc: Scene, before: Motion, t0: float, dur: float, end_params: Params,
                end_rot: float, end_hip: tuple[float, float], after_jitter: float = 0.0
                ) -> Motion:
    """Run `before` until t0, then move to an end pose over `dur` seconds and stay there."""
    def m(t: float) -> tuple[Params, float, tuple[float, float]]:
        if t <= t0:
            return before(t)
        p_a, r_a, h_a = before(t0)
        u = (t - t0) / dur
        # a fall accelerates: quadratic progress
        uu = min(1.0, u * u) if after_jitter >= 0 else min(1.0, u)
        p = _blend(p_a, end_params, uu)
        rot = r_a + (end_rot - r_a) * uu
        hip = (h_a[0] + (end_hip[0] - h_a[0]) * uu, h_a[1] + (end_hip[1] - h_a[1]) * uu)
        if u >= 1 and after_jitter > 0:
            p = {**p, "l_sh": p["l_sh"] + after_jitter * math.sin(3 * t)}
        return p, rot, hip
    return m


def _upright(sc: Scene) -> Motion:
    r = sc.rng.random()
    if r < 0.4:
        return _stand(sc)
    if r < 0.75:
        return _walk(sc, sc.rng.uniform(-0.12, 0.12), sc.cx)
    return _sit(sc)


def motion_for(kind: str, sc: Scene) -> tuple[Motion, str]:
    """A motion of class `kind` ('normal', 'fall', 'lying_still', 'agitated')."""
    rng = sc.rng
    w = WINDOW_MS / 1000
    if kind == "fall":
        before = _upright(sc)
        impact = rng.uniform(0.45, w - 0.3)
        dur = rng.uniform(0.35, 1.0)
        t0 = impact - dur
        style = rng.random()
        end_p = _lying_params(rng)
        if style < 0.75:  # sideways / backwards: the body axis rotates to the floor
            end_rot = float(rng.choice([-1, 1]) * rng.uniform(60, 110))
            end_hip = (sc.cx + rng.uniform(-0.5, 0.5) * sc.scale, _lying_hip(sc))
        else:  # towards (or away from) the camera: foreshortened, drops to the floor
            end_p = {**end_p, "depth": rng.uniform(0.6, 0.95), "leg_fore": 0.3}
            end_rot = float(rng.uniform(-40, 40))
            end_hip = (sc.cx, sc.floor - 0.1 * sc.scale)
        return _transition(sc, before, t0, dur, end_p, end_rot, end_hip,
                           after_jitter=rng.uniform(0, 15)), "fall"
    if kind == "lying_still":
        return _lying(sc, moving=False), "lying_still"
    if kind == "agitated":
        f = rng.uniform(2.0, 5.0)
        amp = rng.uniform(60, 120)
        base = _upright(sc) if rng.random() < 0.3 else _stand(sc)
        kick = rng.random() < 0.3

        def m(t: float) -> tuple[Params, float, tuple[float, float]]:
            p, rot, hip = base(t)
            s1 = math.sin(2 * math.pi * f * t)
            s2 = math.sin(2 * math.pi * f * 1.3 * t + 1.0)
            p = {**p, "l_sh": 60 + amp * s1, "r_sh": 60 + amp * s2, "l_el": 60 + 50 * s2,
                 "r_el": 60 + 50 * s1, "lean": 10 * s1}
            if kick:
                p["l_hip"] = 10 + 50 * max(0.0, s2)
                p["l_knee"] = 40 * max(0.0, s1)
            return p, rot, (hip[0] + 0.15 * sc.scale * s2, hip[1])
        return m, "agitated"
    # normal: a mix of everyday movement, including hard negatives
    r = rng.random()
    if r < 0.2:
        return _stand(sc), "normal"
    if r < 0.4:
        return _walk(sc, rng.uniform(-0.15, 0.15), sc.cx), "normal"
    if r < 0.5:
        return _sit(sc), "normal"
    if r < 0.6:  # sitting down (or getting up): hips drop, torso stays up
        sit_p = _sitting_params(rng)
        hy = sc.standing_hip_y() + 0.55 * sc.scale
        return _transition(sc, _stand(sc), rng.uniform(0, 1.5), rng.uniform(0.8, 1.8), sit_p,
                           0.0, (sc.cx, hy), after_jitter=-1), "normal"
    if r < 0.72:  # bending to pick something up and back
        bend = rng.uniform(50, 100)
        t0, dur = rng.uniform(0, 1.2), rng.uniform(0.6, 1.2)
        st = _stand(sc)

        def m(t: float) -> tuple[Params, float, tuple[float, float]]:
            p, rot, hip = st(t)
            u = min(max((t - t0) / dur, 0.0), 1.0)
            v = math.sin(math.pi * u)
            return {**p, "lean": -bend * v * sc.rng.choice([1, 1])}, rot, hip
        return m, "normal"
    if r < 0.8:  # lying down slowly on a bed
        end_rot = float(rng.choice([-1, 1]) * rng.uniform(70, 100))
        return _transition(sc, _sit(sc), rng.uniform(-1.5, 0.5), rng.uniform(2.5, 4.0),
                           _lying_params(rng), end_rot, (sc.cx, sc.standing_hip_y()),
                           after_jitter=-1), "normal"
    if r < 0.9:  # lying and moving (turning over, reading)
        return _lying(sc, moving=True), "normal"
    # brisk gestures (talking with hands), slower than agitation
    f, amp = rng.uniform(0.5, 1.2), rng.uniform(20, 50)
    st = _stand(sc)

    def g(t: float) -> tuple[Params, float, tuple[float, float]]:
        p, rot, hip = st(t)
        s = math.sin(2 * math.pi * f * t)
        return {**p, "l_sh": 30 + amp * s, "l_el": 70 + 30 * s}, rot, hip
    return g, "normal"


def render(m: Motion, sc: Scene, duration_s: float, start_ms: int = 0) -> Samples:
    """Sample a motion at the scene's frame rate."""
    n = int(duration_s * sc.fps) + 1
    out: Samples = []
    for i in range(n):
        t = i / sc.fps
        p, rot, hip = m(t)
        out.append((start_ms + round(t * 1000), sc.project(body(p), rot, hip)))
    return out


def window(kind: str, rng: np.random.Generator) -> tuple[Samples, str, float]:
    """One labelled window of WINDOW_MS: (samples, label, aspect)."""
    sc = Scene(rng)
    m, label = motion_for(kind, sc)
    return render(m, sc, WINDOW_MS / 1000), label, sc.aspect


def dataset(n_per_class: int, seed: int) -> tuple[list[Samples], list[str], list[float]]:
    """Balanced windows of every class."""
    rng = np.random.default_rng(seed)
    xs, ys, aspects = [], [], []
    for kind in CLASSES:
        for _ in range(n_per_class):
            s, lab, a = window(kind, rng)
            xs.append(s)
            ys.append(lab)
            aspects.append(a)
    return xs, ys, aspects


def two_person_fight(rng: np.random.Generator, seconds: float = 4.0) -> list[tuple[int, list]]:
    """Frames of two people close together, both flailing (for the fight tests and demos)."""
    a, b = Scene(rng), Scene(rng)
    b.fps, b.scale, b.aspect = a.fps, a.scale, a.aspect
    b.cx = a.cx + 0.6 * a.scale
    ma, _ = motion_for("agitated", a)
    mb, _ = motion_for("agitated", b)
    ra, rb = render(ma, a, seconds), render(mb, b, seconds)
    return [(ta, [ka, kb]) for (ta, ka), (_, kb) in zip(ra, rb, strict=True)]


if __name__ == "__main__":
    from edge_agent.vision.behaviour import FEATURE_NAMES, window_features

    rng = np.random.default_rng(1)
    for kind in CLASSES:
        s, lab, a = window(kind, rng)
        f = window_features(s, a)
        assert f is not None
        print(lab, dict(zip(FEATURE_NAMES, np.round(f, 2).tolist(), strict=True)))
