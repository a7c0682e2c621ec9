"""Chapter 4's segmenters on this machine: what sets their pace, the network or the loader?

Times, on real LGG tumour slices at the chapter's size and batch: the loader alone
(read, resize, augment image and mask), then for each segmenter (the article's ResUNet
from scratch; the U-Net on the pretrained Lite0 encoder, frozen and fine-tuned) `fit` on
the same batches held in memory, `fit` through the loader, and `predict`. One run, in
turn. Run it alone on the machine:

    flock /tmp/tl_cpu.lock .venv/bin/python benchmarks/bench_resunet.py
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tl_helpers as tl  # noqa: E402  (first: it orders the imports TensorFlow needs)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from tl_helpers.techniques import segmentation as seg  # noqa: E402

SHARED = Path(os.environ.get("TL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    root = tl.data.dataset_root("lgg_mri_segmentation", synthetic=False, data_dir=args.data_dir)
    slices = tl.data.lgg_slice_table(root)
    tumour = slices[slices.has_tumour].iloc[:args.slices].reset_index(drop=True)
    augment = tl.augment.Augment(rotation_range=10, width_shift_range=0.05, height_shift_range=0.05,
                                 zoom_range=0.05, horizontal_flip=True)  # chapter 4's
    loader = tl.loaders.KerasImageDataset(
        tumour, x_col="image_path", y_col=None, mask_col="mask_path", class_mode="mask",
        image_size=(args.size, args.size), batch_size=args.batch_size, preprocess=seg.standardize_images,
        shuffle=True, seed=0, augment=augment)
    n = len(tumour)
    print(f"{n} tumour slices from {root}, {args.size}x{args.size}, batch {args.batch_size}, "
          f"{os.cpu_count()} CPU cores, Keras {keras.__version__} ({keras.config.backend()})")

    started = time.perf_counter()
    batches = [loader[i] for i in range(len(loader))]
    print(f"loader alone          : {n / (time.perf_counter() - started):7.1f} images/s")
    images, masks = (np.concatenate([b[k] for b in batches]) for k in (0, 1))

    def lite0_unet(train_encoder):
        encoder = tl.backbones.get_backbone("efficientnet_lite0", input_shape=(args.size, args.size, 3), pooling=None)
        return seg.build_pretrained_unet(encoder.model, train_encoder=train_encoder)

    # the loader's images are standardised; the speed of a network does not depend on its input's scale
    for name, build in (("ResUNet from scratch", lambda: seg.build_resunet((args.size, args.size, 3))),
                        ("U-Net, Lite0 encoder frozen", lambda: lite0_unet(False)),
                        ("U-Net, Lite0 encoder fine-tuned", lambda: lite0_unet(True))):
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=seg.focal_tversky_loss(),
                      metrics=[seg.tversky, seg.dice_coefficient])
        model.fit(images[:2 * args.batch_size], masks[:2 * args.batch_size], batch_size=args.batch_size,
                  epochs=1, verbose=0)  # build and trace outside the timings
        print(f"{name}: {model.count_params():,} parameters")
        for label, fit_args in (("fit, arrays in memory", dict(x=images, y=masks, batch_size=args.batch_size)),
                                ("fit, through loader  ", dict(x=loader))):
            started = time.perf_counter()
            model.fit(epochs=args.epochs, verbose=0, **fit_args)
            print(f"  {label} : {args.epochs * n / (time.perf_counter() - started):7.1f} training images/s")
        started = time.perf_counter()
        model.predict(images, batch_size=args.batch_size, verbose=0)
        print(f"  predict               : {n / (time.perf_counter() - started):7.1f} images/s")


if __name__ == "__main__":
    main()
