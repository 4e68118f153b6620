"""Whole-process recording and evidence on a real clip: segments written, hashed, journaled and
verified; a modified segment caught; a masked evidence clip kept for an alert and served."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_agent.recording import SegmentRecorder, blur_people, verify_segments
from edge_agent.vision.capture import Frame
from edge_agent.vision.pipeline import CameraWorker
from protocol.clock import REAL
from protocol.envelope import seal, verify
from protocol.events import BodyError, validate_body
from protocol.evidence import EvidenceError, parse_request
from protocol.site import Camera, Rules
from supervisor.journal import Journal
from tests.conftest import SHARED_DATA

CLIP = SHARED_DATA / "gmdcsa24" / "Subject-3" / "Fall" / "20.mp4"  # walking, then a fall
KEY = b"k" * 32
START = 1_764_000_000_000


def frames(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    cap.release()
    return out, fps


@pytest.mark.skipif(not CLIP.is_file(), reason=f"real clip not present at {CLIP} "
                    "(shared data folder absent; set CUSTODY_SHARED_DATA)")
def test_real_clip_recorded_journaled_verified_and_evidence_masked(tmp_path):
    journal = Journal(tmp_path / "journal.db")
    seq = [0]
    emitted: list[tuple[str, dict[str, Any]]] = []

    def emit(etype: str, body: dict[str, Any]) -> None:
        validate_body(etype, body)
        emitted.append((etype, body))
        seq[0] += 1  # as the node does: sealed, then journaled by the supervisor
        journal.append("node-a", 1, seq[0], "event",
                       seal(KEY, "node-a", 1, seq[0], START + seq[0], etype, body))

    rec, evid = tmp_path / "rec", tmp_path / "evidence"
    w = CameraWorker(Camera("cam-a", "0", ()), "holding-1", emit, REAL, Rules(),
                     record_dir=str(rec), segment_s=2.0, ring_hours=1.0,
                     evidence_dir=str(evid), evidence_before_s=2.0, evidence_after_s=1.0)
    imgs, fps = frames(CLIP)
    for i, img in enumerate(imgs):
        w.process(Frame(START + round(i * 1000 / fps), image=img))
    w.stop()  # closes the open segment, cuts any clip still pending
    for t in w._evidence_threads:
        t.join(10)

    # Segments: every frame recorded once, each segment journaled with its hash.
    events = [verify(e.payload, {"node-a": KEY}) for e in journal.entries()]
    segs = [e.body for e in events if e.type == "segment"]
    assert len(segs) >= 3 and sum(s["frames"] for s in segs) == len(imgs)
    assert all(s["end_ms"] - s["start_ms"] < 2000 for s in segs)
    assert verify_segments(rec, segs) == {}
    # A segment changed after the fact no longer matches the journal.
    victim = rec / segs[1]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert verify_segments(rec, segs) == {segs[1]["file"]: "modified"}
    (rec / segs[2]["file"]).unlink()
    assert verify_segments(rec, segs)[segs[2]["file"]] == "missing"

    # The heartbeat says recording while a segment is open.
    beats = [e.body for e in events if e.type == "camera" and e.body["live"]]
    assert beats and all(b["recording"] for b in beats)

    # Evidence: the fall alert refers to it; the evidence event carries its hashes.
    falls = [e.body for e in events if e.type == "behaviour" and e.body["cls"] == "fall"
             and e.body["phase"] == "new"]
    assert falls and falls[0]["evidence"] == falls[0]["id"]
    ev = [e.body for e in events if e.type == "evidence"]
    assert len(ev) == 1 and ev[0]["alert"] == falls[0]["id"] and ev[0]["masked"] is True
    kept = w.evidence.kept[ev[0]["id"]]
    masked_path, clear_path = evid / kept.masked_file, evid / kept.clear_file
    assert hashlib.sha256(masked_path.read_bytes()).hexdigest() == ev[0]["sha256"]
    assert hashlib.sha256(clear_path.read_bytes()).hexdigest() == ev[0]["clear_sha256"]
    fall_ts = int(falls[0]["id"].rsplit("-", 1)[1])
    assert ev[0]["start_ms"] >= fall_ts - 2000 - 100 and ev[0]["end_ms"] <= fall_ts + 1000 + 100
    masked, _ = frames(masked_path)
    clear, _ = frames(clear_path)
    assert len(masked) == len(clear) == ev[0]["frames"] > 10
    # Where the person is, the masked clip has lost the detail (pixelated); elsewhere it is the
    # picture as recorded.
    box = w.evidence._boxes_at(ev[0]["start_ms"], clear[0].shape[1], clear[0].shape[0])
    assert box
    x0, y0, x1, y1 = box[0]
    lap = [cv2.Laplacian(cv2.cvtColor(f[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
           for f in (masked[0], clear[0])]
    assert lap[0] < 0.2 * lap[1]

    # Served only on request, chunk by chunk, and it hashes to what was journaled.
    got, offset = b"", 0
    while True:
        resp = w.evidence.serve(parse_request({"txn": "t1", "evidence": kept.id,
                                               "user": "sup-1", "offset": offset,
                                               "length": 50_000}))
        assert resp["ok"], resp
        chunk = base64.b64decode(resp["data_b64"])
        got += chunk
        offset += len(chunk)
        if resp["eof"]:
            break
    assert hashlib.sha256(got).hexdigest() == ev[0]["sha256"]
    assert not w.evidence.serve(parse_request({"txn": "t2", "evidence": "nope",
                                               "user": "sup-1"}))["ok"]
    masked_path.write_bytes(got[:-10])  # a kept clip that no longer matches is not served
    resp = w.evidence.serve(parse_request({"txn": "t3", "evidence": kept.id, "user": "sup-1"}))
    assert not resp["ok"] and "sha256" in resp["error"]
    journal.close()


def test_segment_ring_rotates_and_deletes_the_oldest(tmp_path):
    got: list[dict[str, Any]] = []
    r = SegmentRecorder("cam-b", "room-b", tmp_path, lambda t, b: got.append(b),
                        segment_s=1.0, ring_hours=3 / 3600)  # a 3 s ring
    img = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for i in range(70):  # 7 s at 10 fps
        r.write(img, START + i * 100)
    r.close()
    assert [b["frames"] for b in got] == [10] * 7
    left = sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".ts")
    assert len(left) < 7 and got[-1]["file"] in left and got[0]["file"] not in left
    assert r.stats["deleted"] == 7 - len(left)


def test_blur_people_hides_boxes_and_unknown_frames_whole():
    img = np.random.default_rng(2).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = blur_people(img, [(100, 50, 180, 200)])
    assert np.array_equal(out[:, :60], img[:, :60])  # away from the person: untouched
    assert out[80:180, 110:170].std() < img[80:180, 110:170].std() * 0.5
    whole = blur_people(img, None)
    assert whole.std() < img.std() * 0.5


def test_event_and_request_bodies_are_checked():
    good = {"camera": "cam-a", "room": "r", "file": "x.mp4", "start_ms": 1, "end_ms": 2,
            "frames": 2, "bytes": 10, "codec": "mp4v", "sha256": "a" * 64}
    validate_body("segment", good)
    with pytest.raises(BodyError, match="sha256"):
        validate_body("segment", {**good, "sha256": "xyz"})
    with pytest.raises(EvidenceError, match="length"):
        parse_request({"txn": "t", "evidence": "e-1", "user": "u", "length": 10**9})
    with pytest.raises(EvidenceError, match="clear"):
        parse_request({"txn": "t", "evidence": "e-1", "user": "u", "clear": "yes"})
