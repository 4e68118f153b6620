"""Feature matrices for training and evaluation: synthetic windows and real-clip windows."""

from __future__ import annotations

import numpy as np

from edge_agent.vision.behaviour import CLASSES, N_FEATURES, window_features

from . import clips as real
from .synth_keypoints import dataset


def synthetic(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, class indices) of balanced synthetic windows."""
    xs, ys, aspects = dataset(n_per_class, seed)
    feats, labels = [], []
    for s, y, a in zip(xs, ys, aspects, strict=True):
        f = window_features(s, a)
        if f is not None:
            feats.append(f)
            labels.append(CLASSES.index(y))
    return np.stack(feats), np.array(labels)


def real_clips(subjects: set[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features, class indices, clip path per row) of the real clips of `subjects` (all when
    None); empty arrays when the data folder is absent."""
    feats, labels, paths = [], [], []
    if not real.DATA.is_dir():
        return np.zeros((0, N_FEATURES), np.float32), np.zeros(0, int), []
    for clip in real.clips():
        if subjects is not None and clip.subject not in subjects:
            continue
        xs, ys, aspect = real.windows(clip)
        for s, y in zip(xs, ys, strict=True):
            f = window_features(s, aspect)
            if f is not None:
                feats.append(f)
                labels.append(CLASSES.index(y))
                paths.append(clip.path)
    if not feats:
        return np.zeros((0, N_FEATURES), np.float32), np.zeros(0, int), []
    return np.stack(feats), np.array(labels), paths


TRAIN_SUBJECTS = {"Subject 1", "Subject 2"}
HELD_OUT_SUBJECTS = {"Subject 3"}
TRAIN_SEED, TEST_SEED = 1, 2
