"""The supervisor's evidence pieces without a broker: the cache's bound, what plays in
Chromium, the signed chunk wire form."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from protocol.evidence import (
    EvidenceError,
    EvidenceRequest,
    open_request,
    open_response,
    response,
    seal_request,
    seal_response,
)
from supervisor.evidence import EvidenceCache, media_kind, playable, still_frame

KEY = b"n" * 32


def _clip(path: Path, fourcc: str) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 10, (160, 120))
    for i in range(10):
        vw.write(np.random.default_rng(i).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    vw.release()
    return path


def test_playable_by_container_and_codec_and_a_still_for_the_rest(tmp_path):
    # Debian's Chromium plays WebM VP8 and H.264 MP4, not mp4v or MJPEG (measured with it).
    webm = _clip(tmp_path / "a.webm", "VP80")
    mp4v = _clip(tmp_path / "b.mp4", "mp4v")
    avi = _clip(tmp_path / "c.avi", "MJPG")
    assert [media_kind(p) for p in (webm, mp4v, avi)] == ["webm", "mp4", "avi"]
    assert playable(webm, "webm") and not playable(mp4v, "mp4") and not playable(avi, "avi")
    assert still_frame(mp4v, tmp_path / "b.jpg")
    img = cv2.imread(str(tmp_path / "b.jpg"))
    assert img is not None and img.shape[:2] == (120, 160)


def test_cache_keeps_within_its_bound_and_drops_the_least_recent(tmp_path):
    cache = EvidenceCache(tmp_path / "c", max_bytes=2500)
    files = []
    for i in range(3):
        p = cache.dir / f"e{i}.masked.mp4"
        p.write_bytes(bytes([i]) * 1000)
        os.utime(p, (1000 + i, 1000 + i))
        files.append(p)
    assert cache.trim({files[0]}) == 1  # the oldest that is not being kept now
    assert files[0].exists() and not files[1].exists() and files[2].exists()
    assert cache.total() <= 2500
    assert cache.path("../x") is None and cache.path(".e.part") is None
    digest = hashlib.sha256(files[2].read_bytes()).hexdigest()
    assert cache.find("e2", False, digest) == files[2]
    assert cache.find("e2", False, "0" * 64) is None and not files[2].exists()  # changed


def test_chunk_wire_form_is_signed_and_pins_the_bytes():
    req = EvidenceRequest("t1", "ev-1", "sup", False, 0, 1000)
    assert open_request(seal_request(KEY, "node-a", 1, req), KEY, "node-a") == req
    with pytest.raises(EvidenceError, match="refused"):
        open_request(seal_request(b"x" * 32, "node-a", 1, req), KEY, "node-a")
    data = b"\n\x00video bytes with a newline\n" * 3000  # larger than one envelope
    resp = response(req, ok=True, sha256="a" * 64, total=len(data), offset=0,
                    data_b64=base64.b64encode(data).decode(), eof=True, clear=False)
    wire = seal_response(KEY, "node-a", 1, resp)
    body, got = open_response(wire, KEY, "node-a")
    assert got == data and body["length"] == len(data) and body["eof"] is True
    head, _, _ = wire.partition(b"\n")
    with pytest.raises(EvidenceError, match="signed hash"):
        open_response(head + b"\n" + data[:-1] + b"X", KEY, "node-a")
    with pytest.raises(EvidenceError, match="refused"):
        open_response(wire, b"y" * 32, "node-a")
    no = seal_response(KEY, "node-a", 1, response(req, ok=False, error="no such clip"))
    assert open_response(no, KEY, "node-a")[0]["error"] == "no such clip"
