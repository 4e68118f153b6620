"""Behaviour features, classifiers (heuristic and the int8 model) and event logic."""

from __future__ import annotations

from collections import deque

import numpy as np

from edge_agent.vision.behaviour import (
    CLASSES,
    MODEL_PATH,
    N_FEATURES,
    BehaviourMonitor,
    HeuristicClassifier,
    ModelClassifier,
    make_classifier,
    window_features,
)
from edge_agent.vision.pose import ssd_anchors
from edge_agent.vision.tracker import Track
from models.synth_keypoints import dataset


def test_ssd_anchor_counts_match_the_models():
    assert ssd_anchors(224, (8, 16, 32, 32, 32)).shape == (2254, 2)
    assert ssd_anchors(128, (8, 16, 16, 16)).shape == (896, 2)


def test_committed_model_is_int8_and_classifies_synthetic_windows():
    clf = ModelClassifier()
    assert clf.inp["dtype"] == np.int8 and clf.out["dtype"] == np.int8
    xs, ys, aspects = dataset(15, seed=99)
    right = 0
    for s, y, a in zip(xs, ys, aspects, strict=True):
        f = window_features(s, a)
        assert f is not None and f.shape == (N_FEATURES,)
        p = clf.probs(f)
        assert abs(float(p.sum()) - 1) < 1e-3
        right += CLASSES[int(np.argmax(p))] == y
    assert right / len(ys) > 0.8


def test_heuristic_separates_the_clear_cases():
    clf = HeuristicClassifier()
    xs, ys, aspects = dataset(15, seed=98)
    right = sum(CLASSES[int(np.argmax(clf.probs(window_features(s, a))))] == y
                for s, y, a in zip(xs, ys, aspects, strict=True))
    assert right / len(ys) > 0.6


def test_make_classifier_names():
    assert make_classifier("heuristic").name == "heuristic"
    assert make_classifier("model").name == ("model" if MODEL_PATH.exists() else "heuristic")


def _track(tid: int, samples):
    return Track(tid, deque(samples))


def test_monitor_fall_then_lying_still_after_the_configured_time_then_end():
    xs, _ys, _aspects = dataset(1, seed=5)
    fall = xs[CLASSES.index("fall")]
    still = xs[CLASSES.index("lying_still")][-1][1]
    mon = BehaviourMonitor("cam-a", lying_still_ms=10_000, classifier=ModelClassifier())
    events = []
    history = list(fall)
    for t, _ in fall:
        tr = _track(1, [s for s in history if s[0] <= t])
        events += mon.step(t, [tr])
    t0 = fall[-1][0]
    for k in range(1, 30):  # 15 s of a still person on the floor, every 0.5 s
        history.append((t0 + 500 * k, still))
        events += mon.step(t0 + 500 * k, [_track(1, [s for s in history
                                                     if s[0] > t0 + 500 * k - 3000])])
    classes = [(ph, b["cls"]) for ph, b in events]
    assert ("new", "fall") in classes and ("new", "lying_still") in classes
    assert classes.index(("new", "fall")) < classes.index(("new", "lying_still"))
    assert mon.track_gone(1) and not mon.open


def test_window_features_do_not_depend_on_the_absolute_start_time():
    # Two poses 100 ms apart (half a speed step: the boundary case) and a real window, shifted
    # to many epoch start times: features must be identical (integer ms differences first).
    xs, _, aspects = dataset(4, seed=97)
    base = [(ts - xs[0][0][0], kp) for ts, kp in xs[0]]
    pair = [(0, xs[1][0][1]), (100, xs[1][-1][1])]
    rejected = 0
    for start in range(1_764_000_000_000, 1_764_000_000_000 + 286 * 7, 7):
        for samples in (base, pair):
            a = window_features(samples, aspects[0])
            b = window_features([(start + t, kp) for t, kp in samples], aspects[0])
            assert (a is None) == (b is None)
            if a is None:
                rejected += 1
                continue
            assert b is not None
            np.testing.assert_array_equal(a, b)
    assert rejected == 0  # the 100 ms pair is a valid (shortest) step at every start time
