"""Small synthetic look-alikes of the five datasets, in their exact Kaggle layouts.

They let every chapter run offline in minutes (the `smoke` profile) and let the tests
exercise the real loading code. The pictures are cartoons of the real thing. At the
`smoke` size the signal is clear (a model trained for seconds must learn it, so a broken
pipeline shows); at the `medium` size a lesion's contrast starts near zero and healthy
images carry more look-alike distractors. Sizes, formats and modes vary as in the real data. Nothing here is a medical image: every folder
gets a `SYNTHETIC.json` marker, and `tl_helpers.data.describe_source` reports it.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

GENERATOR_VERSION = 2  # 2: the smoke size draws clear lesions (a smoke run must learn)

# Image counts per size. "smoke" keeps the whole book to minutes on two cores; "medium"
# is for tests that need enough samples to measure learnability.
SIZES = {  # dataset -> {size: counts}
    "brain_mri_yes_no": {"smoke": {"yes": 36, "no": 24}, "medium": {"yes": 150, "no": 150}},
    "brain_tumor_mri_4class": {"smoke": {"Training": 24, "Testing": 8}, "medium": {"Training": 80, "Testing": 10}},
    "chest_xray": {"smoke": {"train": (24, 72), "val": (4, 4), "test": (12, 20)},
                   "medium": {"train": (100, 200), "val": (4, 4), "test": (10, 10)}},
    "lgg_mri_segmentation": {"smoke": {"patients": 6, "slices": (12, 16)},
                             "medium": {"patients": 10, "slices": (16, 20)}},
    "pcam": {"smoke": {"patches": 400}, "medium": {"patches": 600}},
}
SIZE_NAMES = ("smoke", "medium")
# How visible the signal is. "clear" (smoke): lesions, consolidation and tumour cells stand
# out, so a model trained for seconds learns them and a broken pipeline shows (the smoke
# floors in tests/test_smoke_floors.py). "subtle" (medium): contrast from near zero, as in
# the real data, for tests that measure how hard a task is.
SIGNAL = {"smoke": "clear", "medium": "subtle"}


# --- drawing helpers ---------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-blurred white noise scaled to zero mean, unit standard deviation."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return (noise - noise.mean()) / (noise.std() + 1e-6)


def _ellipse(shape, center, axes, angle=0.0) -> np.ndarray:
    """A filled ellipse as a float mask (1 inside)."""
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, (int(center[0]), int(center[1])), (max(1, int(axes[0])), max(1, int(axes[1]))),
                float(angle), 0, 360, 1, -1)
    return mask.astype(np.float32)


def _blob(rng, shape, center, radius, irregularity=0.5) -> np.ndarray:
    """An irregular lesion-like blob: an ellipse whose edge is pushed about by smooth noise."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    aspect = rng.uniform(0.7, 1.3)
    dist = np.sqrt(((xx - center[0]) / (radius * aspect)) ** 2 + ((yy - center[1]) * aspect / radius) ** 2)
    wobble = _smooth_noise(rng, shape, sigma=max(2.0, radius / 3)) * irregularity * 0.35
    return cv2.GaussianBlur((dist + wobble < 1.0).astype(np.float32), (0, 0), 1.2)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def _brain_slice(rng, height, width, lesion=None, contrast=0.0, distractor=False):
    """A cartoon axial brain MRI: dark background, skull ring, textured brain, ventricles.

    `lesion` is None, "glioma" (irregular, deep), "meningioma" (round, on the brain's edge),
    "pituitary" (small, low and central) or "generic"; `contrast` in 0..1 sets how far it
    stands out. The head fills only part of the frame, so cropping to it matters.
    """
    shape = (height, width)
    image = rng.uniform(0, 12, shape).astype(np.float32)  # dark border with scanner noise
    cx, cy = width * rng.uniform(0.42, 0.58), height * rng.uniform(0.42, 0.58)
    rx, ry = width * rng.uniform(0.26, 0.36), height * rng.uniform(0.30, 0.40)
    angle = rng.uniform(-15, 15)
    head = _ellipse(shape, (cx, cy), (rx, ry), angle)
    brain = _ellipse(shape, (cx, cy), (rx * 0.9, ry * 0.9), angle)
    texture = _smooth_noise(rng, shape, sigma=max(1.5, width / 90))
    tissue = rng.uniform(95, 125) + 14 * texture
    image = image * (1 - head) + head * rng.uniform(170, 210)  # skull and scalp
    image = image * (1 - brain) + brain * tissue
    for side in (-1, 1):  # two ventricles, dark, near the middle
        ventricle = _ellipse(shape, (cx + side * rx * 0.15, cy - ry * 0.05), (rx * 0.08, ry * 0.22), side * 12)
        image = image * (1 - ventricle) + ventricle * rng.uniform(35, 55)
    if distractor:  # a bright, lesion-sized but healthy structure (e.g. fat, a vessel)
        spot = _blob(rng, shape, (cx + rx * rng.uniform(-0.5, 0.5), cy + ry * rng.uniform(-0.5, 0.5)),
                     min(rx, ry) * rng.uniform(0.08, 0.14), 0.2) * brain
        image = image + spot * rng.uniform(25, 60)
    lesion_mask = np.zeros(shape, np.float32)
    if lesion is not None:
        r = min(rx, ry)
        if lesion == "meningioma":
            theta = rng.uniform(0, 2 * np.pi)
            center = (cx + np.cos(theta) * rx * 0.78, cy + np.sin(theta) * ry * 0.78)
            lesion_mask = _blob(rng, shape, center, r * rng.uniform(0.18, 0.28), 0.15) * head
        elif lesion == "pituitary":
            center = (cx + rx * rng.uniform(-0.08, 0.08), cy + ry * rng.uniform(0.35, 0.5))
            lesion_mask = _blob(rng, shape, center, r * rng.uniform(0.09, 0.15), 0.1) * brain
        else:  # glioma / generic: irregular and inside the brain
            center = (cx + rx * rng.uniform(-0.5, 0.5), cy + ry * rng.uniform(-0.45, 0.25))
            lesion_mask = _blob(rng, shape, center, r * rng.uniform(0.15, 0.3),
                                0.9 if lesion == "glioma" else 0.5) * brain
        bright = 40 + 110 * contrast
        core = _smooth_noise(rng, shape, 2.0) * 10
        image = image + lesion_mask * (bright + core)
    return _to_uint8(cv2.GaussianBlur(image, (0, 0), 0.8)), lesion_mask


def _save(image: np.ndarray, path: Path, rgb: bool = False) -> None:
    """Save uint8 gray (optionally as RGB, slightly tinted, like scanned JPEGs) to path."""
    if rgb and image.ndim == 2:
        tint = np.array([1.0, 0.98, 1.02], np.float32)
        image = _to_uint8(image[..., None].astype(np.float32) * tint)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": 92} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    if path.suffix.lower() in (".tif", ".tiff"):
        kwargs = {"compression": "tiff_deflate"}
    Image.fromarray(image).save(path, format={".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG",
                                              ".tif": "TIFF"}[path.suffix.lower()], **kwargs)


# --- the five datasets -------------------------------------------------------------------

def _contrast(rng, clear: bool, subtle_range: tuple[float, float]) -> float:
    """A lesion's contrast: from `subtle_range`, or from 0.6..1.0 when the signal is clear."""
    return rng.uniform(0.6, 1.0) if clear else rng.uniform(*subtle_range)


def _yes_no(root: Path, rng, counts, clear: bool) -> None:
    extensions = [".jpg", ".JPG", ".jpeg", ".png"]
    for label, n in (("yes", counts["yes"]), ("no", counts["no"])):
        for i in range(1, n + 1):
            height, width = int(rng.integers(180, 400)), int(rng.integers(160, 420))
            has = label == "yes"
            image, _ = _brain_slice(rng, height, width, "generic" if has else None,
                                    contrast=_contrast(rng, clear, (0.0, 0.8)) if has else 0.0,
                                    distractor=rng.random() < (0.15 if clear else 0.35))
            name = f"Y{i}" if has else (f"No{i}" if i % 3 == 0 else f"{i} no")
            _save(image, root / label / f"{name}{extensions[int(rng.integers(4))]}", rgb=rng.random() < 0.3)


def _four_class(root: Path, rng, counts, clear: bool) -> None:
    prefixes = {"glioma": "gl", "meningioma": "me", "notumor": "no", "pituitary": "pi"}
    for split, n in counts.items():
        tag = "Tr" if split == "Training" else "Te"
        for cls, short in prefixes.items():
            for i in range(n):
                size = int(rng.integers(224, 300))
                image, _ = _brain_slice(rng, size, size, None if cls == "notumor" else cls,
                                        contrast=_contrast(rng, clear, (0.05, 0.9)),
                                        distractor=rng.random() < (0.15 if clear else 0.3))
                _save(image, root / split / cls / f"{tag}-{short}_{i:04d}.jpg", rgb=rng.random() < 0.5)


def _chest_film(rng, height, width, pneumonia: bool, severity: float, clear: bool = False) -> np.ndarray:
    """A cartoon frontal chest radiograph: bright body, dark lungs, heart, spine, ribs."""
    shape = (height, width)
    image = np.full(shape, rng.uniform(20, 40), np.float32)
    cx = width * rng.uniform(0.47, 0.53)
    body = _ellipse(shape, (cx, height * 0.6), (width * 0.45, height * 0.55))
    image = image * (1 - body) + body * rng.uniform(150, 180)
    lungs = np.zeros(shape, np.float32)
    for side in (-1, 1):
        lungs = np.maximum(lungs, _ellipse(shape, (cx + side * width * 0.19, height * 0.5),
                                           (width * rng.uniform(0.12, 0.15), height * rng.uniform(0.28, 0.33))))
    image = image * (1 - lungs) + lungs * rng.uniform(45, 70)
    yy = np.arange(height, dtype=np.float32)[:, None]
    ribs = 0.5 + 0.5 * np.sin(yy / height * rng.uniform(28, 36) + rng.uniform(0, 6.3))
    image += lungs * ribs * rng.uniform(12, 22)
    heart = _ellipse(shape, (cx - width * 0.05, height * 0.62), (width * 0.11, height * 0.14), -20)
    image = np.maximum(image, heart * rng.uniform(150, 175))
    spine = np.zeros(shape, np.float32)
    spine[:, int(cx - width * 0.03):int(cx + width * 0.03)] = 1
    image = np.maximum(image, spine * body * rng.uniform(165, 190))
    if pneumonia:  # patchy consolidation: cloudy brightening inside the lungs
        cloud = _smooth_noise(rng, shape, sigma=width / 30)
        patches = np.clip(cloud - rng.uniform(0.0, 0.3 if clear else 0.9), 0, None) * lungs  # clear: wider
        image += patches * (25 + 70 * severity)
    image += _smooth_noise(rng, shape, 1.0) * 4
    return _to_uint8(cv2.GaussianBlur(image, (0, 0), 1.0))


def _chest_xray(root: Path, rng, counts, clear: bool) -> None:
    next_patient = {"NORMAL": 1, "PNEUMONIA": 1}
    for split, (n_normal, n_pneumonia) in counts.items():
        for cls, n in (("NORMAL", n_normal), ("PNEUMONIA", n_pneumonia)):
            made = 0
            while made < n:
                pid = next_patient[cls]
                next_patient[cls] += int(rng.integers(1, 4))
                views = 1 if cls == "NORMAL" else int(rng.integers(1, 4))  # several images per patient
                kind = "bacteria" if rng.random() < 0.65 else "virus"
                for view in range(min(views, n - made)):
                    height, width = int(rng.integers(200, 300)), int(rng.integers(240, 340))
                    image = _chest_film(rng, height, width, cls == "PNEUMONIA", _contrast(rng, clear, (0.0, 1.0)), clear)
                    if cls == "NORMAL":
                        prefix = "NORMAL2-" if rng.random() < 0.4 else ""
                        name = f"{prefix}IM-{pid:04d}-{view + 1:04d}.jpeg"
                    else:
                        name = f"person{pid}_{kind}_{int(rng.integers(1, 5000))}.jpeg"
                    _save(image, root / split / cls / name, rgb=rng.random() < 0.1)
                    made += 1


def _lgg(root: Path, rng, counts, clear: bool) -> None:
    base = root / "kaggle_3m"
    sites = ["CS", "DU", "EZ", "FG", "HT"]
    patients = []
    for p in range(counts["patients"]):
        patient = f"TCGA_{sites[p % len(sites)]}_{int(rng.integers(4000, 9000))}"
        folder = base / f"{patient}_{int(rng.integers(1985, 2005))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
        n_slices = int(rng.integers(*counts["slices"]))
        # a tumour is an ellipsoid across the middle slices; slices outside it have empty masks
        first, last = int(n_slices * rng.uniform(0.3, 0.45)), int(n_slices * rng.uniform(0.6, 0.75))
        contrast = _contrast(rng, clear, (0.15, 0.8))
        head_rng_seed = int(rng.integers(1 << 30))
        centre = (rng.uniform(95, 160), rng.uniform(90, 150))
        radius = rng.uniform(18, 34)
        for n in range(1, n_slices + 1):
            slice_rng = np.random.default_rng([head_rng_seed, n])
            # each slice: same head placement, fresh texture
            image, _ = _brain_slice(np.random.default_rng(head_rng_seed), 256, 256)
            image = _to_uint8(image.astype(np.float32) + _smooth_noise(slice_rng, (256, 256), 2.0) * 6)
            mask = np.zeros((256, 256), np.float32)
            if first <= n <= last:
                t = (n - first) / max(1, last - first)
                r = radius * np.sqrt(max(0.05, 1 - (2 * t - 1) ** 2))
                mask = (_blob(slice_rng, (256, 256), centre, r, 0.6) > 0.5).astype(np.float32)
            channels = []
            for c, gain in enumerate((0.35, 1.0, 0.55)):  # pre-contrast, FLAIR, post-contrast
                channel = image.astype(np.float32) * rng.uniform(0.85, 1.1) + mask * (35 + 120 * contrast) * gain
                channels.append(cv2.GaussianBlur(channel, (0, 0), 0.7 + 0.3 * c))
            stem = f"{folder.name}_{n}"
            _save(_to_uint8(np.stack(channels, axis=-1)), folder / f"{stem}.tif")
            _save((mask * 255).astype(np.uint8), folder / f"{stem}_mask.tif")
        patients.append(patient)
    table = pd.DataFrame({"Patient": patients,
                          "histological_type": rng.integers(1, 4, len(patients)),
                          "neoplasm_histologic_grade": rng.integers(1, 3, len(patients)),
                          "age_at_initial_pathologic": rng.integers(20, 75, len(patients))})
    table.to_csv(base / "data.csv", index=False)


def _tissue_patch(rng, tumour_region: np.ndarray, clear: bool = False) -> np.ndarray:
    """A cartoon H&E patch: pink stroma, purple nuclei; dense, large, dark ones in tumour areas."""
    size = tumour_region.shape[0]
    stroma = np.array([232, 182, 208], np.float32) + rng.normal(0, 6, 3)
    image = np.ones((size, size, 3), np.float32) * stroma
    image += _smooth_noise(rng, (size, size), 3.0)[..., None] * np.array([6, 12, 8], np.float32)
    nuclei = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(25, 45))):  # sparse, small, regular nuclei everywhere
        cv2.circle(nuclei, (int(rng.integers(size)), int(rng.integers(size))), int(rng.integers(1, 3)), 1, -1)
    ys, xs = np.nonzero(tumour_region)
    if len(ys):  # tumour: crowded, larger, irregular nuclei
        density = rng.uniform(0.7 if clear else 0.3, 1.0)
        for k in rng.choice(len(ys), size=int(len(ys) * 0.02 * density), replace=False):
            axes = (int(rng.integers(2, 5)), int(rng.integers(2, 4)))
            cv2.ellipse(nuclei, (int(xs[k]), int(ys[k])), axes, float(rng.uniform(0, 180)), 0, 360, 2, -1)
    hematoxylin = {1: np.array([150, 95, 170], np.float32), 2: np.array([95, 45, 130], np.float32)}
    for level, colour in hematoxylin.items():
        where = (nuclei == level)[..., None]
        image = np.where(where, colour + rng.normal(0, 10, 3), image)
    return _to_uint8(cv2.GaussianBlur(image, (0, 0), 0.6))


def _pcam(root: Path, rng, counts, clear: bool) -> None:
    size, rows = 96, []
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(counts["patches"]):
        label = int(rng.random() < 0.45)
        region = np.zeros((size, size), bool)
        if label or rng.random() < 0.5:  # negatives may hold tumour outside the centre 32x32
            radius = rng.uniform(14, 30)
            if label:
                cy, cx = rng.uniform(36, 60, 2)
            else:  # a corner far enough out that it misses the centre 32x32 (32..64)
                cy, cx = [rng.choice([rng.uniform(0, 32 - radius * 0.7 + 1e-3), rng.uniform(64 + radius * 0.7, 96)])
                          for _ in range(2)]
            region = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
            if not label:
                region[32:64, 32:64] = False
        image_id = rng.bytes(20).hex()
        _save(_tissue_patch(rng, region, clear), root / "train" / f"{image_id}.tif")
        rows.append((image_id, label))
    pd.DataFrame(rows, columns=["id", "label"]).to_csv(root / "train_labels.csv", index=False)


_MAKERS = {
    "brain_mri_yes_no": _yes_no,
    "brain_tumor_mri_4class": _four_class,
    "chest_xray": _chest_xray,
    "lgg_mri_segmentation": _lgg,
    "pcam": _pcam,
}


def synthesize(name: str, root: str | Path, seed: int = 0, size: str = "smoke") -> Path:
    """Write a synthetic look-alike of dataset `name` into `root` (which must not exist yet).

    Deterministic: the same name, seed and size give the same files, pixel for pixel.
    Used by every chapter (the smoke profile, through tl.data.load) and the tests.
    """
    if name not in _MAKERS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(_MAKERS)}")
    if size not in SIZE_NAMES:
        raise KeyError(f"unknown size {size!r}; known: {', '.join(SIZE_NAMES)}")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty; synthetic data is only written to a new folder")
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, list(_MAKERS).index(name)])
    _MAKERS[name](root, rng, SIZES[name][size], SIGNAL[size] == "clear")
    (root / "SYNTHETIC.json").write_text(json.dumps({
        "dataset": name, "seed": seed, "size": size, "generator_version": GENERATOR_VERSION,
        "note": "synthetic look-alike images made by tl_helpers.synthetic; not medical images",
    }, indent=1))
    return root
