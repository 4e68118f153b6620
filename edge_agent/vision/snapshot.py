"""Privacy-masked snapshots: faces blurred (BlazeFace short range + pose head points), masked
regions (toilets, ...) blacked out, then JPEG.

face_detection_short_range.tflite
  in  [1, 128, 128, 3] float32, RGB scaled to [-1, 1], frame letterboxed.
  out regressors [1, 896, 16]: box dx, dy, w, h + 6 keypoints (x, y), input pixels relative to
      the anchor; classificators [1, 896, 1] logits.
  Anchors: SSD, strides 8, 16, 16, 16 on 128 px, fixed size: 16x16x2 + 8x8x6 = 896.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .pose import MODELS, decode_ssd, letterbox, load_interpreter, ssd_anchors

# protocol/events.py caps "str" fields at 512 characters: the event carries a thumbnail only.
MAX_B64 = 512


class FaceDetector:
    """BlazeFace (short range) on LiteRT."""

    SIZE = 128

    def __init__(self, models: Path = MODELS, threads: int = 1, min_score: float = 0.5) -> None:
        self.it = load_interpreter(models / "face_detection_short_range.tflite", threads)
        outs = {tuple(d["shape"]): d["index"] for d in self.it.get_output_details()}
        if (1, 896, 16) not in outs or (1, 896, 1) not in outs:
            raise ValueError(f"face_detection_short_range.tflite has unexpected outputs {outs}")
        self._boxes, self._scores = outs[(1, 896, 16)], outs[(1, 896, 1)]
        self.anchors = ssd_anchors(self.SIZE, (8, 16, 16, 16))
        self.min_score = min_score

    def detect(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes (x0, y0, x1, y1) in image pixels."""
        canvas, lb = letterbox(rgb, self.SIZE)
        x = (canvas.astype(np.float32) / 127.5 - 1.0)[None]
        self.it.set_tensor(self.it.get_input_details()[0]["index"], x)
        self.it.invoke()
        found = decode_ssd(self.it.get_tensor(self._boxes)[0], self.it.get_tensor(self._scores)[0],
                           self.anchors, self.SIZE, 6, self.min_score)
        out = []
        for box, _, _ in found:
            b = lb.to_image(box.reshape(2, 2)).reshape(4)
            out.append((int(b[0]), int(b[1]), int(b[2]), int(b[3])))
        return out


def head_boxes(persons: Sequence[np.ndarray], width: int, height: int
               ) -> list[tuple[int, int, int, int]]:
    """Boxes around the head landmarks (0-10) of each person, in pixels."""
    out = []
    for kp in persons:
        head = kp[:11]
        pts = head[head[:, 2] >= 0.3, :2]
        if len(pts) == 0:
            continue
        x0, y0 = pts.min(0) * (width, height)
        x1, y1 = pts.max(0) * (width, height)
        r = max(x1 - x0, y1 - y0, 10) * 0.8
        out.append((int(x0 - r), int(y0 - r), int(x1 + r), int(y1 + r)))
    return out


def mask_frame(bgr: np.ndarray, faces: Sequence[tuple[int, int, int, int]],
               regions: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """A copy of the frame with faces blurred beyond recognition and regions [x, y, w, h]
    blacked out."""
    out = bgr.copy()
    h, w = out.shape[:2]
    for x0, y0, x1, y1 in faces:
        pad_x, pad_y = (x1 - x0) // 4, (y1 - y0) // 4
        x0, y0 = max(0, x0 - pad_x), max(0, y0 - pad_y)
        x1, y1 = min(w, x1 + pad_x), min(h, y1 + pad_y)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        roi = out[y0:y1, x0:x1]
        small = cv2.resize(roi, (max(1, (x1 - x0) // 12), max(1, (y1 - y0) // 12)),
                           interpolation=cv2.INTER_AREA)
        out[y0:y1, x0:x1] = cv2.GaussianBlur(
            cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST), (0, 0), 5)
    for x, y, rw, rh in regions:
        out[max(0, y):max(0, y + rh), max(0, x):max(0, x + rw)] = 0
    return out


def thumbnail_b64(bgr: np.ndarray, max_chars: int = MAX_B64) -> str | None:
    """The largest grey JPEG thumbnail whose base64 fits in `max_chars`, or None."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    for width in (96, 80, 64, 48, 40, 32):
        small = cv2.resize(gray, (width, max(1, round(h * width / w))),
                           interpolation=cv2.INTER_AREA)
        for q in (40, 25, 15, 8):
            ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, q,
                                                   cv2.IMWRITE_JPEG_OPTIMIZE, 1])
            if ok:
                text = base64.b64encode(buf.tobytes()).decode("ascii")
                if len(text) <= max_chars:
                    return text
    return None


class Snapshotter:
    """Makes masked snapshots: full-size JPEG to a local folder (optional) + event thumbnail."""

    def __init__(self, regions: Sequence[tuple[int, int, int, int]],
                 folder: Path | None = None, threads: int = 1) -> None:
        self.regions = list(regions)
        self.folder = folder
        self.faces = FaceDetector(threads=threads)

    def take(self, bgr: np.ndarray, persons: Sequence[np.ndarray], name: str
             ) -> tuple[np.ndarray, str | None]:
        """Mask a frame; save it as `name`.jpg when a folder is set; return it and a thumbnail."""
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = bgr.shape[:2]
        faces = self.faces.detect(rgb) + head_boxes(persons, w, h)
        masked = mask_frame(bgr, faces, self.regions)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(self.folder / f"{name}.jpg"), masked)
        return masked, thumbnail_b64(masked)
