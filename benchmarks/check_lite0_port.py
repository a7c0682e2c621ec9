"""Print how closely the Keras EfficientNet-Lite0 port matches timm's PyTorch model.

Figures printed: max |logit difference| on random images, on scikit-image's photographs
and on a few dataset images (when ../shared/data is present); the top-5 ImageNet classes
of the cat and the coffee cup in both frameworks; and inference speed of both at 224x224.

    flock /tmp/tl_cpu.lock .venv/bin/python benchmarks/check_lite0_port.py
"""
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tl_helpers.train import backbones as bb, lite0, weights  # noqa: E402  (before keras: loads triton first)
from tl_helpers.data.images import is_image_file, read_image  # noqa: E402

SIZE = 224
SHARED_DATA = Path(os.environ.get("TL_SHARED_DATA", REPO.parent / "shared" / "data"))
DATASET_FOLDERS = ("brain_tumor_mri_4class/Training/glioma", "brain_mri_yes_no/yes",
                   "chest_xray/train/NORMAL", "pcam/train")


def resized(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR))


def dataset_images(per_folder: int = 2) -> np.ndarray | None:
    """A few real dataset images, RGB uint8 at 224x224, or None without ../shared/data."""
    images = []
    for folder in DATASET_FOLDERS:
        path = SHARED_DATA / folder
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if is_image_file(p))[:per_folder]
            images += [resized(read_image(p, channels=3)) for p in files]
    return np.stack(images) if images else None


def main() -> None:
    import keras
    import skimage.data
    import torch

    keras_model, torch_model = lite0.build_lite0_keras(), lite0.build_lite0_torch()
    normalize = bb.torch_normalize_lite0()

    def keras_logits(images):
        return keras.ops.convert_to_numpy(keras_model(bb.preprocess_lite0(images), training=False))

    def torch_logits(images):
        batch = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            return torch_model(normalize(batch)).numpy()

    print(f"Keras {keras.__version__} (backend {keras.backend.backend()}), torch "
          f"{torch.__version__}; weights: {lite0.lite0_weights_source()}")
    random_images = np.random.default_rng(0).integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8)
    photos = {"chelsea (cat)": resized(skimage.data.chelsea()),
              "coffee": resized(skimage.data.coffee())}
    sets = {"random uint8 images (8)": random_images,
            "skimage photographs (2)": np.stack(list(photos.values()))}
    real = dataset_images()
    if real is not None:
        sets[f"dataset images ({len(real)}, {SHARED_DATA})"] = real
    for label, images in sets.items():
        difference = np.abs(keras_logits(images) - torch_logits(images)).max()
        print(f"max |logit difference| Keras - PyTorch, {label}: {difference:.2e}")
    for photo, image in photos.items():
        for framework, logits in (("keras", keras_logits), ("torch", torch_logits)):
            top5 = weights.top_k_classes(logits(image[None])[0], k=5)
            names = ", ".join(f"{index} {name.split(',')[0]} {p:.3f}" for index, name, p in top5)
            print(f"top-5 {photo:14s} {framework}: {names}")
    batch = np.concatenate([random_images, random_images])  # 16 images
    runs = {"keras (model.predict, compiled)":
            lambda images: keras_model.predict(bb.preprocess_lite0(images), batch_size=16,
                                               verbose=0),
            "torch (eval, no_grad)": torch_logits}
    for framework, run in runs.items():
        run(batch)  # warm-up (graph tracing, allocations)
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            run(batch)
            seconds.append(time.perf_counter() - start)
        print(f"inference {framework} Lite0 @{SIZE}, batch 16: "
              f"{len(batch) / np.median(seconds):.1f} images/s (median of 3)")

if __name__ == "__main__":
    main()
