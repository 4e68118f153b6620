"""A virtual camera: BlazePose keypoint lines (`kp:` feed) for the people in its room.

Each line is {"ts": custody ms, "persons": [[[x, y, visibility] * 33], ...]} (the vision
part's README). People stand at their own spot; a fall tips one of them over within half a
second of custody time, towards the middle of the picture (a body that leaves the picture is
not judged, as on a real camera); lying down takes a few seconds (sit, then lie back), so it
is not a fall; a fight makes everyone's arms punch and legs kick, 2-3 times a second. A covered
camera sends nothing (keypoints carry no pixels, so "covered" reaches the node as a stalled
feed).
"""

import json
import math
import random
import zlib

from .pty_port import FifoPort

# Standing pose, BlazePose order, relative to the feet centre, in units of body height.
_STAND: list[tuple[float, float]] = [
    (0.00, -0.93),  # 0 nose
    (-0.01, -0.95), (-0.02, -0.95), (-0.03, -0.95),  # 1-3 left eye inner/eye/outer
    (0.01, -0.95), (0.02, -0.95), (0.03, -0.95),  # 4-6 right eye
    (-0.05, -0.93), (0.05, -0.93),  # 7-8 ears
    (-0.02, -0.90), (0.02, -0.90),  # 9-10 mouth
    (-0.11, -0.80), (0.11, -0.80),  # 11-12 shoulders
    (-0.13, -0.62), (0.13, -0.62),  # 13-14 elbows
    (-0.14, -0.46), (0.14, -0.46),  # 15-16 wrists
    (-0.15, -0.43), (0.15, -0.43), (-0.14, -0.42), (0.14, -0.42),  # 17-20 pinky, index
    (-0.13, -0.44), (0.13, -0.44),  # 21-22 thumbs
    (-0.07, -0.50), (0.07, -0.50),  # 23-24 hips
    (-0.07, -0.26), (0.07, -0.26),  # 25-26 knees
    (-0.07, -0.03), (0.07, -0.03),  # 27-28 ankles
    (-0.08, 0.00), (0.08, 0.00),  # 29-30 heels
    (-0.05, 0.00), (0.05, 0.00),  # 31-32 foot index
]
_LEFT_ARM = (13, 15, 17, 19, 21)  # elbow, wrist, hand
_RIGHT_ARM = (14, 16, 18, 20, 22)
_ANKLES = (27, 28, 29, 30, 31, 32)
LIE_DOWN_MS = 10000  # sitting down on the bench, sitting, then lying back
# A person standing still differs between frames only by the keypoints' jitter, so each
# camera keeps this many jittered standing poses per person, already serialised, and picks
# one per frame: a sped-up run sends tens of lines a second per camera, and computing and
# serialising every pose afresh was most of the simulator's CPU (at x60 under load its camera
# pump fell hundreds of ms behind, which the nodes rightly reported as recording gaps).
STANDING_VARIANTS = 16


def _smooth(u: float) -> float:
    """0..1 eased in and out (a person's movement starts and stops gently)."""
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)
_HIP, _SEAT = -0.50, -0.26  # hip height standing, and of a bench (knee height), in heights


def pose(cx: float, foot_y: float, height: float, tilt: float, rng: random.Random,
         flail: float = 0.0, t_s: float = 0.0, sit: float = 0.0) -> list[list[float]]:
    """33 landmarks of a person; `tilt` 0 = upright, 1 = lying (towards the middle of the
    picture); `flail` (body heights) swings the arms and legs as punches and kicks at time
    `t_s`; `sit` 0..1 lowers the hips and upper body onto a bench, from which `tilt` lies
    the body back along the bench (turning about the hips, not the feet)."""
    a = tilt * math.pi / 2 * (-1.0 if cx > 0.5 else 1.0)
    ca, sa = math.cos(a), math.sin(a)
    out = []
    # Punches and kicks: smooth, fast swings (2-3 a second, the arms out of step), as the
    # behaviour model knows violence, not a new random limb position every frame.
    w = 2 * math.pi * 2.5 * t_s
    swing = {**{i: (math.sin(w), math.cos(w)) for i in _LEFT_ARM},
             **{i: (-math.sin(1.3 * w + 1.0), math.cos(1.3 * w + 1.0)) for i in _RIGHT_ARM},
             **{i: (0.5 * math.sin(0.7 * w), 0.3 * max(0.0, math.sin(0.7 * w)))
                for i in _ANKLES}}
    for i, (dx, dy) in enumerate(_STAND):
        if flail and i in swing:
            reach = 1.0 if i in (15, 16, 27, 28) or i > 16 else 0.5  # elbows swing less
            sx, sy = swing[i]
            dx += flail * reach * sx * (-1 if dx < 0 else 1)
            dy -= flail * reach * sy * 0.5
        py = 0.0  # the point turned about: the feet (a fall ends on the floor line)
        if sit:
            # Sitting lowers the hips onto the bench (the thighs point at the camera, so the
            # legs look short); lying back turns the body about the hips, which stay on the
            # bench, and the legs stretch out along it.
            py = _HIP + (_SEAT - _HIP) * sit
            dy -= _HIP
            if dy > 0:  # legs, relative to the hips
                dy = max(0.0, dy - (_SEAT - _HIP) * sit * (1 - tilt))
        dy -= py if not sit else 0.0
        x = cx + (dx * ca - dy * sa) * height * 0.75
        y = foot_y + (py + dx * sa + dy * ca) * height
        out.append([round(x + rng.gauss(0, 0.002), 3), round(y + rng.gauss(0, 0.002), 3), 0.95])
    return out


def spot(person: str) -> float:
    """Where a person stands in the picture (x of the feet), the same every time."""
    return 0.15 + 0.7 * (zlib.crc32(person.encode()) % 1000) / 1000


# What a keypoint line says the picture measures for the node's tamper path (no pixels in a
# kp: feed): grey-level spread, fine detail, fraction of the scene matching the reference.
VIEWS = {"clear": {"std": 50, "lap_var": 400, "matched": 1.0},
         "blurred": {"std": 48, "lap_var": 30, "matched": 0.9},  # smeared: detail gone
         "moved": {"std": 50, "lap_var": 380, "matched": 0.1}}  # turned away: layout gone
VIEW_JSON = {k: json.dumps(v, separators=(",", ":")) for k, v in VIEWS.items()}


class VirtualCamera:
    """The keypoint feed of one camera; the world tells it who is in view and doing what."""

    def __init__(self, camera_id: str, seed: int = 0) -> None:
        self.id = camera_id
        self.port = FifoPort(camera_id)
        self.rng = random.Random(seed)
        self.covered = False
        self.view = "clear"  # what the tamper path measures (VIEWS)
        self.lines = 0
        self.last_ts = 0
        self._fall_start: dict[str, int] = {}  # person -> custody ms the fall began
        self._lie_start: dict[str, int] = {}  # person -> custody ms they began to lie down
        self._standing: dict[str, list[str]] = {}  # person -> serialised standing poses

    @property
    def path(self) -> str:
        """The named pipe the agent's `kp:` source opens."""
        return self.port.path

    def frame(self, ts_ms: int, people: list[str], falling: str | None = None,
              lying: str | None = None, fighting: bool = False) -> None:
        """Write one line showing `people` (each at their own spot, so nobody jumps when
        someone leaves); `falling` tips that person over (and keeps them down), `lying`
        has that person lie down (over LIE_DOWN_MS) and stay flat, `fighting` makes
        everyone's limbs fly."""
        if self.covered or ts_ms <= self.last_ts:
            return
        self.last_ts = ts_ms
        persons: list[str] = []
        for who in people:
            cx = spot(who)
            if who != falling and who != lying and not fighting:
                persons.append(self._stand(who, cx))
                continue
            tilt = sit = 0.0
            if who == falling:
                start = self._fall_start.setdefault(who, ts_ms)
                tilt = min(1.0, (ts_ms - start) / 500.0)
            elif who == lying:
                # sit down (1.5 s), sit a moment (1.5 s), then lie back slowly (7 s)
                t = (ts_ms - self._lie_start.setdefault(who, ts_ms)) / 1000
                sit = _smooth(t / 1.5)
                tilt = _smooth((t - 3) / 7)
            flail = 0.25 if fighting and tilt == 0.0 else 0.0
            persons.append(json.dumps(pose(cx, 0.92, 0.7, tilt, self.rng, flail, ts_ms / 1000,
                                           sit), separators=(",", ":")))
        for who in list(self._fall_start):
            if who != falling:
                del self._fall_start[who]
        for who in list(self._lie_start):
            if who != lying:
                del self._lie_start[who]
        line = (f'{{"ts":{ts_ms},"persons":[{",".join(persons)}],'
                f'"view":{VIEW_JSON[self.view]}}}\n')
        if self.port.write(line.encode()):
            self.lines += 1

    def _stand(self, who: str, cx: float) -> str:
        """One of the person's jittered standing poses, serialised."""
        variants = self._standing.get(who)
        if variants is None:
            variants = [json.dumps(pose(cx, 0.92, 0.7, 0.0, self.rng), separators=(",", ":"))
                        for _ in range(STANDING_VARIANTS)]
            self._standing[who] = variants
        return variants[self.rng.randrange(STANDING_VARIANTS)]

    def close(self) -> None:
        """Close the pipe."""
        self.port.close()
