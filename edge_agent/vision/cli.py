"""`custody vision run SOURCE`: run one camera's pipeline alone and print its events.

For setting up and calibrating a camera on site (is the person counted? does the tamper check
hold in this lighting?) without an agent, broker or keys. Events print as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from protocol.clock import from_env
from protocol.ids import check_id
from protocol.site import Camera, Rules


def _run(args: argparse.Namespace) -> int:
    regions = tuple(tuple(int(v) for v in r.split(",")) for r in args.mask)
    for r in regions:
        if len(r) != 4:
            print(f"custody vision: --mask {r} must be x,y,w,h", file=sys.stderr)
            return 2
    camera = Camera(check_id(args.camera, "camera id"), args.source,
                    tuple((r[0], r[1], r[2], r[3]) for r in regions))
    lock = threading.Lock()
    stalled = threading.Event()

    def emit(event_type: str, body: dict[str, Any]) -> None:
        with lock:
            print(json.dumps({"type": event_type, "body": body}, sort_keys=True), flush=True)
        if event_type == "fault" and body.get("kind") == "no_frames" and args.exit_on_stall:
            stalled.set()

    from . import open_camera
    from .behaviour import DEFAULT_CLASSIFIER

    worker = open_camera(camera, check_id(args.room, "room id"), emit, from_env(),
                         Rules(lying_still_s=args.lying_still_s), threads=args.threads,
                         classifier=args.classifier or DEFAULT_CLASSIFIER,
                         snapshots=bool(args.snapshots),
                         snapshot_dir=args.snapshots, stall_s=args.stall_s,
                         record_dir=args.record, evidence_dir=args.evidence)
    worker.start()
    end = time.monotonic() + args.seconds if args.seconds else float("inf")
    try:
        while time.monotonic() < end and not stalled.is_set():
            time.sleep(0.1)
    finally:
        worker.stop()
        with lock:
            print(json.dumps({"type": "health", "body": worker.health()}, sort_keys=True),
                  flush=True)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `custody vision`."""
    p = sub.add_parser("vision", help="run a camera pipeline alone (set-up and calibration)")
    s = p.add_subparsers(dest="vision_command", metavar="ACTION", required=True)
    r = s.add_parser("run", help="run one camera and print its events as JSON lines")
    r.add_argument("source", help="device index, video file, rtsp:// URL or kp:<path>")
    r.add_argument("--camera", default="cam-test", help="camera id for the events")
    r.add_argument("--room", default="room-test", help="room id for the events")
    r.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    r.add_argument("--exit-on-stall", action="store_true",
                   help="stop when the source stops delivering (end of a file)")
    r.add_argument("--stall-s", type=float, default=9.0)
    r.add_argument("--lying-still-s", type=int, default=600)
    r.add_argument("--classifier", choices=("heuristic", "model"), default=None,
                   help="default: the pipeline's (models/MODEL_CARD.md)")
    r.add_argument("--record", metavar="DIR", default=None,
                   help="record segments here (segment events are printed)")
    r.add_argument("--evidence", metavar="DIR", default=None,
                   help="keep masked evidence clips around alerts here (needs --record)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--snapshots", metavar="DIR", default=None,
                   help="take masked snapshots on behaviour events into DIR")
    r.add_argument("--mask", action="append", default=[], metavar="X,Y,W,H",
                   help="a region blacked out of snapshots (repeatable)")
    r.set_defaults(func=_run)
