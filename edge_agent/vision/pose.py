"""BlazePose on LiteRT: the person detector (anchors + box decoding) and the landmark model.

Tensors relied on (checked at load; a model with other shapes is refused):

pose_detection.tflite
  in  [1, 224, 224, 3] float32, RGB scaled to [-1, 1], whole frame letterboxed (aspect kept,
      centred, zero padding).
  out [1, 2254, 12] float32 regressors per SSD anchor: box centre dx, dy, w, h, then 4
      keypoints (x, y), all in input pixels relative to the anchor centre. Keypoint 0 = mid-hip,
      1 = a point on the circle enclosing the whole body (its distance to 0 is the radius),
      2 = mid-shoulder, 3 = a point on the upper-body circle.
  out [1, 2254, 1] float32 classifier logit per anchor (sigmoid, clipped to +-100).
  Anchors: SSD, strides 8, 16, 32, 32, 32 on 224 px, min scale 0.1484375, max scale 0.75,
  aspect ratio 1 plus one interpolated anchor, fixed size 1: 28x28x2 + 14x14x2 + 7x7x6 = 2254.

pose_landmark_full.tflite
  in  [1, 256, 256, 3] float32, RGB scaled to [0, 1], a square crop rotated so that the body
      axis (mid-hip -> body circle point) points up, side = 2.5 x body radius.
  out [1, 195] float32: 39 landmarks x (x, y, z, visibility, presence); x, y in crop pixels;
      visibility and presence are logits. The first 33 are the BlazePose body landmarks;
      of the 6 auxiliary points, 33 (body centre) and 34 (body-circle point) play the role of
      the detector's keypoints 0 and 1 and give the next frame's ROI (detector skipped).
  out [1, 1] float32 pose presence (probability that a person is in the crop).
  The segmentation [1,256,256,1], heatmap [1,64,64,39] and world landmarks [1,117] outputs are
  not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

MODELS = Path(__file__).resolve().parent.parent.parent / "models" / "blazepose"
NUM_LANDMARKS = 33


def load_interpreter(path: str | Path, threads: int = 1) -> Any:
    """A LiteRT interpreter for `path` (ai_edge_litert, else tflite_runtime), tensors allocated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model {path} is missing: run ./setup.sh to extract it")
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # devices with the older runtime only
        from tflite_runtime.interpreter import Interpreter
    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    return it


def ssd_anchors(input_size: int, strides: tuple[int, ...], min_scale: float = 0.1484375,
                max_scale: float = 0.75) -> np.ndarray:
    """SSD anchor centres (N, 2) in normalised input coordinates, fixed size 1 (MediaPipe's)."""
    # With fixed-size anchors the scales (min_scale..max_scale) only fix how many anchors share
    # a cell (one per aspect ratio plus one interpolated), never their size.
    n = len(strides)
    out: list[tuple[float, float]] = []
    layer = 0
    while layer < n:
        per_cell = 0
        last = layer
        while last < n and strides[last] == strides[layer]:
            per_cell += 2  # aspect ratio 1.0 and the interpolated one
            last += 1
        fm = math.ceil(input_size / strides[layer])
        for y in range(fm):
            for x in range(fm):
                out.extend([((x + 0.5) / fm, (y + 0.5) / fm)] * per_cell)
        layer = last
    return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into a square model input: scale and padding in input pixels."""

    size: int
    scale: float
    pad_x: float
    pad_y: float

    def to_image(self, pts: np.ndarray) -> np.ndarray:
        """Map (..., 2) input-normalised points to image pixels."""
        out = pts.astype(np.float32).copy()
        out[..., 0] = (out[..., 0] * self.size - self.pad_x) / self.scale
        out[..., 1] = (out[..., 1] * self.size - self.pad_y) / self.scale
        return out


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect into a size x size canvas, centred, zero padded."""
    h, w = rgb.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas[py:py + nh, px:px + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas, Letterbox(size, s, float(px), float(py))


@dataclass(frozen=True)
class Detection:
    """One SSD detection in image pixels: box (x0, y0, x1, y1), score, keypoints (K, 2)."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box a (4,) against boxes b (N, 4)."""
    x0 = np.maximum(a[0], b[:, 0])
    y0 = np.maximum(a[1], b[:, 1])
    x1 = np.minimum(a[2], b[:, 2])
    y1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.asarray(inter / np.maximum(area, 1e-9))


def decode_ssd(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
               input_size: int, num_keypoints: int, min_score: float,
               iou_threshold: float = 0.3) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Decode SSD outputs into (box xyxy, score, keypoints) in input-normalised coordinates,
    after MediaPipe-style weighted non-maximum suppression."""
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.nonzero(scores >= min_score)[0]
    if keep.size == 0:
        return []
    r = raw_boxes.reshape(len(anchors), -1)[keep] / input_size
    a = anchors[keep]
    cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = r[:, 4:4 + 2 * num_keypoints].reshape(-1, num_keypoints, 2) + a[:, None, :]
    sc = scores[keep]
    order = np.argsort(-sc)
    boxes, kps, sc = boxes[order], kps[order], sc[order]
    out = []
    remaining = np.arange(len(sc))
    while remaining.size:
        first = remaining[0]
        ious = _iou(boxes[first], boxes[remaining])
        group = remaining[ious > iou_threshold]
        group = np.union1d(group, [first]).astype(int)
        wts = sc[group][:, None]
        box = (boxes[group] * wts).sum(0) / wts.sum()
        kp = (kps[group] * wts[:, :, None]).sum(0) / wts.sum()
        out.append((box, float(sc[first]), kp))
        remaining = remaining[ious <= iou_threshold]
    return out


@dataclass(frozen=True)
class Roi:
    """A rotated square region of the image: centre and side in pixels, rotation in radians."""

    cx: float
    cy: float
    side: float
    rotation: float

    def crop_to_image(self, size: int) -> np.ndarray:
        """2x3 affine matrix mapping crop pixels (u, v) of a size x size crop to image pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        k = self.side / size
        tx = self.cx - 0.5 * self.side * c + 0.5 * self.side * s
        ty = self.cy - 0.5 * self.side * s - 0.5 * self.side * c
        return np.array([[k * c, -k * s, tx], [k * s, k * c, ty]], dtype=np.float64)


def _same_person(a: Detection, b: Detection) -> bool:
    """Two detections of one person: boxes overlap, or mid-hips within half a body radius."""
    if float(_iou(np.asarray(a.box), np.asarray([b.box]))[0]) > 0.3:
        return True
    ra = float(np.hypot(*(a.keypoints[1] - a.keypoints[0])))
    rb = float(np.hypot(*(b.keypoints[1] - b.keypoints[0])))
    return float(np.hypot(*(a.keypoints[0] - b.keypoints[0]))) < 0.5 * max(ra, rb)


def detection_roi(det: Detection) -> Roi:
    """MediaPipe's pose ROI: centred on mid-hip, body axis up, side 2 x radius x 1.25."""
    (x0, y0), (x1, y1) = det.keypoints[0], det.keypoints[1]
    radius = math.hypot(x1 - x0, y1 - y0)
    rotation = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
    rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
    return Roi(float(x0), float(y0), 2.0 * radius * 1.25, rotation)


@dataclass(frozen=True)
class Person:
    """One person's 33 landmarks: (33, 3) of x, y normalised to the image and visibility;
    `next_roi` is where to look for them in the next frame."""

    landmarks: np.ndarray
    score: float
    next_roi: Roi | None = None

    def box(self, min_vis: float = 0.3) -> tuple[float, float, float, float]:
        """Normalised bounding box of the visible landmarks (all of them if none visible)."""
        pts = self.landmarks[self.landmarks[:, 2] >= min_vis, :2]
        if len(pts) == 0:
            pts = self.landmarks[:, :2]
        return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()),
                float(pts[:, 1].max()))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -50, 50))))


class PoseEstimator:
    """Detector + landmark model over whole frames; returns every person found."""

    DET_SIZE = 224
    LM_SIZE = 256

    def __init__(self, models: Path = MODELS, threads: int = 1, max_persons: int = 4,
                 min_detection: float = 0.5, min_presence: float = 0.5,
                 tiles: bool = True) -> None:
        self.tiles = tiles
        self.detector_passes = 0
        self.det = load_interpreter(models / "pose_detection.tflite", threads)
        self.lm = load_interpreter(models / "pose_landmark_full.tflite", threads)
        self._check_shapes()
        self.anchors = ssd_anchors(self.DET_SIZE, (8, 16, 32, 32, 32))
        self.max_persons = max_persons
        self.min_detection = min_detection
        self.min_presence = min_presence
        d_out = {tuple(d["shape"]): d["index"] for d in self.det.get_output_details()}
        self._det_boxes, self._det_scores = d_out[(1, 2254, 12)], d_out[(1, 2254, 1)]
        l_out = {tuple(d["shape"]): d["index"] for d in self.lm.get_output_details()}
        self._lm_points, self._lm_flag = l_out[(1, 195)], l_out[(1, 1)]

    def _check_shapes(self) -> None:
        want: list[tuple[str, Any, list[int], set[tuple[int, ...]]]] = [
            ("pose_detection", self.det, [1, 224, 224, 3], {(1, 2254, 12), (1, 2254, 1)}),
            ("pose_landmark_full", self.lm, [1, 256, 256, 3], {(1, 195), (1, 1)})]
        for name, it, shape_in, outs in want:
            got_in = list(it.get_input_details()[0]["shape"])
            got_out = {tuple(d["shape"]) for d in it.get_output_details()}
            if got_in != shape_in or not outs <= got_out:
                raise ValueError(f"{name}.tflite has unexpected tensors: in {got_in}, "
                                 f"out {sorted(got_out)}")

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Every person the detector finds in a whole RGB frame, in image pixels.

        The detector sees a 224 px letterbox: on a wide frame people shrink below what it finds
        and it favours one prominent person. So the whole frame is searched and, when the frame
        is not square, also square tiles the height of the frame overlapping by at least a
        third; detections of all passes are merged by non-maximum suppression."""
        h, w = rgb.shape[:2]
        out = self._detect_once(rgb, 0, 0)
        if self.tiles and max(h, w) > 1.15 * min(h, w):
            side = min(h, w)
            n = max(2, math.ceil((max(h, w) - side) / (side * 2 / 3)) + 1)
            for k in range(n):
                off = round(k * (max(h, w) - side) / (n - 1))
                if w >= h:
                    out += self._detect_once(rgb[:, off:off + side], off, 0)
                else:
                    out += self._detect_once(rgb[off:off + side], 0, off)
        out.sort(key=lambda d: -d.score)
        kept: list[Detection] = []
        for d in out:
            if not any(_same_person(d, k) for k in kept):
                kept.append(d)
        return kept[: self.max_persons]

    def _detect_once(self, rgb: np.ndarray, ox: int, oy: int) -> list[Detection]:
        canvas, lb = letterbox(rgb, self.DET_SIZE)
        x = (canvas.astype(np.float32) / 127.5 - 1.0)[None]
        self.det.set_tensor(self.det.get_input_details()[0]["index"], x)
        self.det.invoke()
        self.detector_passes += 1
        raw_boxes = self.det.get_tensor(self._det_boxes)[0]
        raw_scores = self.det.get_tensor(self._det_scores)[0]
        found = decode_ssd(raw_boxes, raw_scores, self.anchors, self.DET_SIZE, 4,
                           self.min_detection)
        out = []
        off = np.array([ox, oy], dtype=np.float32)
        for box, score, kps in found[: self.max_persons]:
            b = (lb.to_image(box.reshape(2, 2)) + off).reshape(4)
            out.append(Detection((float(b[0]), float(b[1]), float(b[2]), float(b[3])), score,
                                 lb.to_image(kps) + off))
        return out

    def landmarks(self, rgb: np.ndarray, roi: Roi) -> Person | None:
        """Run the landmark model on one ROI; None when the model says nobody is there."""
        h, w = rgb.shape[:2]
        m = roi.crop_to_image(self.LM_SIZE)
        crop = cv2.warpAffine(rgb, m, (self.LM_SIZE, self.LM_SIZE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        x = (crop.astype(np.float32) / 255.0)[None]
        self.lm.set_tensor(self.lm.get_input_details()[0]["index"], x)
        self.lm.invoke()
        flag = float(self.lm.get_tensor(self._lm_flag).reshape(-1)[0])
        if flag < self.min_presence:
            return None
        raw = self.lm.get_tensor(self._lm_points).reshape(39, 5)
        uv1 = np.concatenate([raw[:, :2], np.ones((39, 1), np.float32)], axis=1)
        xy = uv1 @ m.T
        body = raw[:NUM_LANDMARKS]
        vis = _sigmoid(np.minimum(body[:, 3], body[:, 4]))
        pts = np.stack([xy[:NUM_LANDMARKS, 0] / w, xy[:NUM_LANDMARKS, 1] / h, vis],
                       axis=1).astype(np.float32)
        aux = Detection((0.0, 0.0, 0.0, 0.0), flag, xy[33:35].astype(np.float32))
        return Person(pts, flag, detection_roi(aux))

    def estimate(self, rgb: np.ndarray) -> list[Person]:
        """All persons in an RGB frame (detector, then landmarks per detection, de-duplicated)."""
        return self._landmarks_all(rgb, [detection_roi(d) for d in self.detect(rgb)])

    def track(self, rgb: np.ndarray, rois: list[Roi]) -> list[Person] | None:
        """The persons of the last frame, found again from their ROIs without the detector;
        None when anyone was lost (the caller then runs `estimate`)."""
        persons = self._landmarks_all(rgb, rois)
        return persons if len(persons) == len(rois) else None

    def _landmarks_all(self, rgb: np.ndarray, rois: list[Roi]) -> list[Person]:
        persons: list[Person] = []
        for roi in rois:
            p = self.landmarks(rgb, roi)
            if p is None:
                continue
            b = np.asarray(p.box())
            if any(_iou(b, np.asarray([q.box()]))[0] > 0.5 for q in persons):
                continue
            persons.append(p)
        return persons
