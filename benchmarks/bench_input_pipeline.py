"""Images per second: tl_helpers' Keras input pipeline against Keras' ImageDataGenerator.

Both read the same folder of class folders, resize to the same size, apply the same
augmentations (the EfficientNet chapter's: rotation, shifts, zoom, horizontal flip) and
yield the same batches (float32 NxHxWx3, one-hot labels). One run, the two in turn, the
first N batches of a shuffled epoch each. Run it alone on the machine:

    flock /tmp/tl_cpu.lock .venv/bin/python benchmarks/bench_input_pipeline.py
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tl_helpers.train.augment import Augment  # noqa: E402
from tl_helpers.train.loaders import KerasImageDataset  # noqa: E402

SHARED = Path(os.environ.get("TL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SETTINGS = dict(rotation_range=20, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.1,
                horizontal_flip=True)


def keras_image_data_generator():
    """Keras 3 keeps ImageDataGenerator only in its legacy package (tf.keras exposes it too)."""
    try:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
    except ImportError:  # older Keras
        from keras.preprocessing.image import ImageDataGenerator
    return ImageDataGenerator


def images_per_second(next_batch, batches: int) -> tuple[float, int]:
    """Pull `batches` batches; return images per second and the number of images."""
    count = 0
    start = time.perf_counter()
    for index in range(batches):
        images, labels = next_batch(index)
        assert images.dtype == np.float32 and images.ndim == 4 and labels.shape[0] == images.shape[0]
        count += images.shape[0]
    return count / (time.perf_counter() - start), count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(SHARED / "brain_tumor_mri_4class" / "Training"))
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    size = (args.size, args.size)
    print(f"data: {args.root}; {args.batches} batches of {args.batch_size}, {size[0]}x{size[1]} RGB")
    print(f"augmentation (both): {SETTINGS}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")

    generator = keras_image_data_generator()(**SETTINGS)
    flow = generator.flow_from_directory(args.root, target_size=size, color_mode="rgb",
                                         batch_size=args.batch_size, class_mode="categorical",
                                         shuffle=True, seed=0)
    keras_rate, keras_count = images_per_second(lambda _: next(flow), args.batches)
    print(f"Keras ImageDataGenerator.flow_from_directory: {keras_rate:8.1f} images/s ({keras_count} images)")

    rates = {}
    for threads in (1, None):
        ours = KerasImageDataset.from_directory(args.root, image_size=size, batch_size=args.batch_size,
                                                shuffle=True, seed=0, augment=Augment(**SETTINGS),
                                                threads=threads)
        rates[ours.threads], count = images_per_second(ours.__getitem__, args.batches)
        print(f"tl_helpers KerasImageDataset, {ours.threads} thread(s): "
              f"{rates[ours.threads]:8.1f} images/s ({count} images)")
    best_threads = max(rates, key=rates.get)
    print(f"speed-up: {rates[1] / keras_rate:.1f}x with 1 thread, "
          f"{rates[best_threads] / keras_rate:.1f}x with {best_threads} threads (target: at least 2x)")


if __name__ == "__main__":
    main()
