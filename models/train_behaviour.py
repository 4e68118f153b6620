"""Train the behaviour classifier and write models/behaviour.tflite (int8) + behaviour.json.

Needs tensorflow-cpu (not a project dependency, not in CI). From the repository root:

    python3 -m venv .cache/train-venv
    .cache/train-venv/bin/pip install tensorflow-cpu opencv-python-headless ai-edge-litert
    PYTHONPATH=. .cache/train-venv/bin/python -m models.train_behaviour

Data: synthetic keypoint windows (models/synth_keypoints.py, seed 1) plus BlazePose keypoints
of the real GMDCSA24 clips of subjects 1 and 2 under ../shared/data (subject 3 is held out for
models/eval_behaviour.py). To retrain on site footage, add windows to `extra` below (same
features, labels from CLASSES) and run again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_agent.vision.behaviour import CLASSES, FEATURE_NAMES, MODEL_PATH

from .features import TRAIN_SEED, TRAIN_SUBJECTS, real_clips, synthetic


def main() -> None:
    """Train, quantise to int8 and write the model and its normalisation file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=1500)
    ap.add_argument("--real-weight", type=int, default=25, help="repeat real windows N times")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--out", type=Path, default=MODEL_PATH)
    args = ap.parse_args()

    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    xs, ys = synthetic(args.per_class, TRAIN_SEED)
    xr, yr, _ = real_clips(TRAIN_SUBJECTS)
    print(f"synthetic windows: {len(xs)}, real windows (subjects 1-2): {len(xr)}")
    if len(xr):
        xs = np.concatenate([xs] + [xr] * args.real_weight)
        ys = np.concatenate([ys] + [yr] * args.real_weight)
    mean, std = xs.mean(0), xs.std(0) + 1e-6
    xn = ((xs - mean) / std).astype(np.float32)
    counts = np.bincount(ys, minlength=len(CLASSES))
    weights = {i: float(len(ys) / (len(CLASSES) * max(c, 1))) for i, c in enumerate(counts)}

    model = tf.keras.Sequential([
        tf.keras.layers.Input((len(FEATURE_NAMES),)),
        tf.keras.layers.Dense(32, activation="relu"),
        tf.keras.layers.Dropout(0.1),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(len(CLASSES), activation="softmax"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xn, ys, epochs=args.epochs, batch_size=128, validation_split=0.1,
              class_weight=weights, verbose=2, shuffle=True)

    def representative() -> Iterator[list[np.ndarray]]:  # calibration for full-integer quantisation
        for i in np.random.default_rng(0).choice(len(xn), 500, replace=False):
            yield [xn[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    args.out.write_bytes(conv.convert())
    args.out.with_suffix(".json").write_text(json.dumps({
        "features": list(FEATURE_NAMES), "classes": list(CLASSES),
        "mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std],
        "trained_on": {"synthetic_windows": int(args.per_class * len(CLASSES)),
                       "real_windows": len(xr), "real_weight": args.real_weight},
    }, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
