"""What chapter 4's segmenter cross-validation costs an epoch: the U-Net's decoder on cached
encoder features, against the whole U-Net (frozen encoder) on the same slices.

    .venv/bin/python benchmarks/bench_segmenter_cv.py [--size 128] [--slices 200] [--epochs 3]

The real LGG tumour slices from $TL_DATA_DIR (else synthetic look-alikes) at the cpu profile's
segmenter size, EfficientNet-Lite0 as the encoder. Prints seconds per epoch after the first
(which traces the graphs) for: the whole U-Net fed images (what the chapter's held-out U-Net
pays, without its augmentation and loading), the decoder fed the cached features, and the one-off
cost of computing the cache. It says whether the cache is what makes a 5-fold cross-validation
affordable, or whether the decoder itself is the cost.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import tl_helpers as tl


def epoch_seconds(model, x, y, epochs: int, batch_size: int = 16) -> float:
    """Seconds per epoch after the first, compiled as the chapter compiles a segmenter."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=tl.segmentation.focal_tversky_loss())
    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[Clock()])
    return float(np.mean(times[1:])) if len(times) > 1 else times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import keras

    report = tl.data.load("lgg_mri_segmentation", synthetic="TL_DATA_DIR" not in os.environ)
    slices = tl.data.lgg_slice_table(report.root)
    tumour = slices[slices.has_tumour].head(args.slices)
    encoder = tl.backbones.get_backbone("efficientnet_lite0", input_shape=(args.size, args.size, 3), pooling=None)
    data = tl.loaders.KerasImageDataset(tumour, x_col="image_path", y_col=None, mask_col="mask_path",
                                        class_mode="mask", image_size=(args.size, args.size), batch_size=16,
                                        shuffle=False, preprocess=encoder.preprocess)
    x, y = tl.loaders.all_batches(data)
    started = time.perf_counter()
    cached = tl.segmentation.encoder_features(encoder.model).predict(x, batch_size=16, verbose=0)
    cache_seconds = time.perf_counter() - started
    keras.utils.set_random_seed(0)
    decoder = tl.segmentation.build_unet_decoder([c.shape[1:] for c in cached])
    on_cache = epoch_seconds(decoder, cached, y, args.epochs)
    keras.utils.set_random_seed(0)
    unet = tl.segmentation.build_pretrained_unet(encoder.model, train_encoder=False)
    whole = epoch_seconds(unet, x, y, args.epochs)
    print(f"{len(x)} tumour slices at {args.size}x{args.size} ({report.source[:40]}...)")
    print(f"the cache, once: {cache_seconds:.1f} s")
    print(f"an epoch of the whole U-Net (frozen encoder), images in: {whole:.1f} s")
    print(f"an epoch of the decoder alone, cached features in:     {on_cache:.1f} s "
          f"({whole / on_cache:.1f}x faster)")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
