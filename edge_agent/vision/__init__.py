"""Vision on the room node: camera capture, motion gating, pose, tracking, behaviour, tamper.

The agent calls `open_camera(...)` once per camera and `start()`s the worker; events go out
through `emit(event_type, body)` (thread-safe, provided by the agent). A worker may also
offer `caught_up() -> bool` (no frame waiting for it): in a simulated run the agent lets
custody time run only while it is true (protocol/heldclock.py); a worker without it is not
waited for.
"""

from collections.abc import Callable
from typing import Any

from protocol.clock import Clock
from protocol.site import Camera, Rules

from .pipeline import CameraWorker

__all__ = ["CameraWorker", "open_camera"]


def open_camera(camera: Camera, room: str, emit: Callable[[str, dict[str, Any]], None],
                clock: Clock, rules: Rules, **options: Any) -> CameraWorker:
    """A worker for one camera of a room node (not started; call `start()`).

    Options (all optional): threads=1, classifier="heuristic"|"model", snapshots=False,
    snapshot_dir=None, stall_s=9.0 (real seconds without a frame before
    the camera is reported stalled; checked every 0.5 s, so reported within 10 s),
    heartbeat_s=None (custody seconds between recording heartbeats; None: half the site's
    recording gap).
    """
    return CameraWorker(camera, room, emit, clock, rules, **options)
