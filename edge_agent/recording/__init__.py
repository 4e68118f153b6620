"""Whole-process recording on the node: rotated, hashed video segments and evidence clips.

`SegmentRecorder` writes a camera's frames to local segments and reports each closed one as a
`segment` event (SHA-256, span, frame count); `EvidenceKeeper` cuts a privacy-masked clip
around an alert out of them and serves it only on request (protocol/evidence.py).
"""

from .evidence import EvidenceKeeper, blur_people
from .segments import SegmentRecorder, choose_codec, sha256_file, verify_segments

__all__ = ["EvidenceKeeper", "SegmentRecorder", "blur_people", "choose_codec", "sha256_file",
           "verify_segments"]
