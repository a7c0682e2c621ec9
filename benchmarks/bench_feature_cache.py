"""Frozen-backbone phase: cached features against the articles' backbone-in-the-loop training.

Same data (brain_mri_yes_no, 253 images, stratified 80/20 split, seed 0), same image
size, same backbone (frozen, inference mode), same head with the same initial weights,
same epochs and batch size, no augmentation in either:

- the articles' way: backbone + head as one Keras model, backbone frozen, images read and
  pushed through the backbone for every batch of every epoch (training and validation);
- the cache: `features.train_head_on_frozen_backbone`, backbone run once per image (cold
  cache, timed including that), then the head alone; a second call (warm cache) too.

One run, the two in turn. Run it alone on the machine:

    flock /tmp/tl_cpu.lock .venv/bin/python benchmarks/bench_feature_cache.py
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from tl_helpers.train import backbones, features  # noqa: E402
from tl_helpers.data import list_class_images  # noqa: E402
from tl_helpers.train.loaders import KerasImageDataset  # noqa: E402

SHARED = Path(os.environ.get("TL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def get_frozen_backbone(size: int):
    """The offline ImageNet Lite0 port; keras MobileNetV2 (random weights) if it is missing."""
    try:
        backbone = backbones.get_backbone("efficientnet_lite0", "keras", weights="imagenet",
                                          input_shape=(size, size, 3))
        model, preprocess, label = backbone.model, backbone.preprocess, f"efficientnet_lite0 ({backbone.weights_source})"
    except Exception as error:  # noqa: BLE001 - say why, then measure with what is there
        print(f"efficientnet_lite0 unavailable ({error}); using MobileNetV2 with random weights")
        model = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False,
                                               weights=None, pooling="avg")
        preprocess, label = keras.applications.mobilenet_v2.preprocess_input, "MobileNetV2 (random weights)"
    model.trainable = False
    return model, preprocess, label


def compiled(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "brain_mri_yes_no")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    table = list_class_images(args.data)
    table["y"] = (table["label"] == "yes").astype("float32")
    train, val = train_test_split(table, test_size=0.2, stratify=table["y"], random_state=0)
    model, preprocess, label = get_frozen_backbone(args.size)
    image_size = (args.size, args.size)
    print(f"data: {args.data} ({len(train)} train / {len(val)} validation), {args.size}x{args.size}, "
          f"{args.epochs} epochs, batch {args.batch_size}; backbone: {label}; {os.cpu_count()} CPU cores")

    keras.utils.set_random_seed(0)
    head = features.dense_head(model.output.shape[-1], 1, dropout=0.3)
    initial_head_weights = head.get_weights()

    # The articles' way: the frozen backbone inside the training model.
    keras.utils.set_random_seed(0)
    in_loop = compiled(features.stack_head(model, head))
    loaders = [KerasImageDataset(frame, class_mode="binary", image_size=image_size,
                                 batch_size=args.batch_size, shuffle=shuffle, seed=0, preprocess=preprocess)
               for frame, shuffle in ((train, True), (val, False))]
    started = time.perf_counter()
    history_loop = in_loop.fit(loaders[0], validation_data=loaders[1], epochs=args.epochs, verbose=0)
    loop_seconds = time.perf_counter() - started

    # The cache: features once, then the head alone (same initial head weights).
    with tempfile.TemporaryDirectory() as cache_dir:
        runs = []
        for _ in ("cold", "warm"):
            head.set_weights(initial_head_weights)
            compiled(head)  # a fresh optimizer each run
            started = time.perf_counter()
            phase = features.train_head_on_frozen_backbone(
                model, preprocess, head, train["path"], train["y"].to_numpy(), val["path"], val["y"].to_numpy(),
                image_size, epochs=args.epochs, batch_size=args.batch_size, seed=0, cache_dir=cache_dir)
            runs.append((time.perf_counter() - started, phase))

    (cold_seconds, cold), (warm_seconds, warm) = runs
    val_loop = history_loop.history["val_accuracy"]
    print(f"backbone in the loop : {loop_seconds:7.1f} s   val accuracy per epoch "
          f"{' '.join(f'{v:.3f}' for v in val_loop)}")
    for name, seconds, phase in (("cached, cold cache  ", cold_seconds, cold), ("cached, warm cache  ", warm_seconds, warm)):
        per_epoch = phase.history.history["val_accuracy"]
        print(f"{name} : {seconds:7.1f} s   (features {phase.feature_seconds:.1f} s + head {phase.fit_seconds:.1f} s)"
              f"   val accuracy per epoch {' '.join(f'{v:.3f}' for v in per_epoch)}")
    print(f"speed-up: {loop_seconds / cold_seconds:.1f}x with a cold cache, {loop_seconds / warm_seconds:.1f}x warm")
    print(f"final val accuracy: in the loop {val_loop[-1]:.3f}, cached {cold.history.history['val_accuracy'][-1]:.3f} "
          f"(validation set of {len(val)}: one image = {1 / len(val):.3f})")


if __name__ == "__main__":
    main()
