"""The book's five datasets: what they are, where they live, whether they are intact.

Each dataset is described once, in `DATASETS`: its Kaggle slug, its on-disk layout and
the counts of the full Kaggle release. Around that:

- `locate(name)`: the dataset's folder, from a data-directory setting (argument, then the
  `TL_DATA_DIR` environment variable, then the project's `data/` folder);
- `verify(name)`: layout, counts and every image readable, each problem named with its path;
- `download(name)`: fetch from Kaggle with the reader's credentials (Colab, GPU runners);
  without credentials or network it stops at once with instructions;
- `install_from_zip(name, zip_path)`: unpack a Kaggle zip into the expected layout;
- `synthesize(name, root)`: a small look-alike in the same layout (see `synthetic`);
- `dataset_root(name, synthetic=...)`: the one call a chapter makes to get its data;
- tables (`class_folder_table`, `lgg_slice_table`, `pcam_table`) that turn a layout into a
  dataframe of paths and labels.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .images import ImageReadError, image_info, is_image_file, read_image

DATA_DIR_ENV = "TL_DATA_DIR"
SYNTHETIC_MARKER = "SYNTHETIC.json"


@dataclass(frozen=True)
class DatasetSpec:
    """What one dataset is and how it is laid out on disk (the Kaggle layout)."""

    name: str  # folder name under the data directory
    title: str
    chapter: str
    kaggle_ref: str  # owner/dataset, or the competition name
    kaggle_kind: str  # "dataset" or "competition"
    kind: str  # "class_folders", "lgg_segmentation" or "labels_csv"
    layout: str  # the expected layout, as a reader would write it
    required_splits: tuple[str, ...] = ()
    optional_splits: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    full_counts: dict = field(default_factory=dict)  # {split: {class: n}} of the Kaggle release
    citation: str = ""

    @property
    def kaggle_url(self) -> str:
        if self.kaggle_kind == "competition":
            return f"https://www.kaggle.com/competitions/{self.kaggle_ref}/data"
        return f"https://www.kaggle.com/datasets/{self.kaggle_ref}"


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            name="brain_mri_yes_no",
            title="Brain MRI images for brain tumor detection (yes/no)",
            chapter="1: Xception",
            kaggle_ref="navoneel/brain-mri-images-for-brain-tumor-detection",
            kaggle_kind="dataset",
            kind="class_folders",
            layout="brain_mri_yes_no/{yes,no}/<image>.{jpg,JPG,jpeg,png}",
            required_splits=("",),
            classes=("no", "yes"),
            full_counts={"": {"no": 98, "yes": 155}},
            citation="N. Chakrabarty, Brain MRI Images for Brain Tumor Detection, Kaggle, 2019.",
        ),
        DatasetSpec(
            name="brain_tumor_mri_4class",
            title="Brain tumor MRI dataset (glioma, meningioma, no tumour, pituitary)",
            chapter="2: EfficientNetB3",
            kaggle_ref="masoudnickparvar/brain-tumor-mri-dataset",
            kaggle_kind="dataset",
            kind="class_folders",
            layout="brain_tumor_mri_4class/{Training,Testing}/{glioma,meningioma,notumor,pituitary}/<image>.jpg",
            required_splits=("Training",),
            optional_splits=("Testing",),
            classes=("glioma", "meningioma", "notumor", "pituitary"),
            full_counts={
                "Training": {"glioma": 1321, "meningioma": 1339, "notumor": 1595, "pituitary": 1457},
                "Testing": {"glioma": 300, "meningioma": 306, "notumor": 405, "pituitary": 300},
            },
            citation="M. Nickparvar, Brain Tumor MRI Dataset, Kaggle, 2021.",
        ),
        DatasetSpec(
            name="chest_xray",
            title="Chest X-ray images (pneumonia), Kermany et al.",
            chapter="3: X-ray retraining",
            kaggle_ref="paultimothymooney/chest-xray-pneumonia",
            kaggle_kind="dataset",
            kind="class_folders",
            layout="chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/<image>.jpeg",
            required_splits=("train",),
            optional_splits=("val", "test"),
            classes=("NORMAL", "PNEUMONIA"),
            full_counts={
                "train": {"NORMAL": 1341, "PNEUMONIA": 3875},
                "val": {"NORMAL": 8, "PNEUMONIA": 8},
                "test": {"NORMAL": 234, "PNEUMONIA": 390},
            },
            citation="D. Kermany et al., Identifying medical diagnoses and treatable diseases by "
            "image-based deep learning, Cell 172(5), 2018.",
        ),
        DatasetSpec(
            name="lgg_mri_segmentation",
            title="LGG brain MRI segmentation (TCGA), Buda et al.",
            chapter="4: ResNet50 + ResUNet",
            kaggle_ref="mateuszbuda/lgg-mri-segmentation",
            kaggle_kind="dataset",
            kind="lgg_segmentation",
            layout="lgg_mri_segmentation/kaggle_3m/TCGA_<site>_<id>_<date>/TCGA_<site>_<id>_<date>_<N>.tif "
            "+ ..._<N>_mask.tif, and kaggle_3m/data.csv",
            classes=("no tumour", "tumour"),
            full_counts={"patients": 110, "slices": 3929},
            citation="M. Buda, A. Saha, M. Mazurowski, Association of genomic subtypes of lower-grade "
            "gliomas with shape features automatically extracted by a deep learning algorithm, "
            "Computers in Biology and Medicine 109, 2019.",
        ),
        DatasetSpec(
            name="pcam",
            title="Histopathologic cancer detection (PatchCamelyon patches)",
            chapter="5: PyTorch ResNet50",
            kaggle_ref="histopathologic-cancer-detection",
            kaggle_kind="competition",
            kind="labels_csv",
            layout="pcam/train/<id>.tif (96x96 RGB) + pcam/train_labels.csv (id,label)",
            classes=("0", "1"),
            full_counts={"train": {"0": 130908, "1": 89117}},
            citation="B. Veeling et al., Rotation equivariant CNNs for digital pathology, MICCAI 2018; "
            "Kaggle competition Histopathologic Cancer Detection, 2018.",
        ),
    ]
}


class DataError(Exception):
    """Base class of the data errors; messages say what was expected, where, and the fix."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    pass


class DataLayoutError(DataError):
    pass


class DownloadError(DataError):
    pass


def spec(name: str) -> DatasetSpec:
    """The DatasetSpec of `name`, with the list of known names when it is not one."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


# --- where things are ------------------------------------------------------------------

def project_root() -> Path:
    """The book's repository folder (the one holding `_toc.yml`), or the working folder."""
    if os.environ.get("TL_PROJECT_ROOT"):
        return Path(os.environ["TL_PROJECT_ROOT"]).resolve()
    for start in (Path(__file__).resolve().parent.parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "_toc.yml").is_file() and (folder / "tl_helpers").is_dir():
                return folder
    return Path.cwd().resolve()


def data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else $TL_DATA_DIR, else the project's `data/`."""
    if data_dir:
        return Path(data_dir).expanduser().resolve()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser().resolve()
    return project_root() / "data"


def how_to_get(name: str, target: Path) -> str:
    """Instructions, in words, for putting dataset `name` at `target`."""
    s = spec(name)
    return (
        f"To get it: (a) with Kaggle credentials (~/.kaggle/kaggle.json, or KAGGLE_USERNAME and "
        f"KAGGLE_KEY), run `python -c \"import tl_helpers.data as d; d.download('{name}')\"`; or "
        f"(b) download the zip from {s.kaggle_url} and run "
        f"`python -c \"import tl_helpers.data as d; d.install_from_zip('{name}', 'archive.zip')\"`; or "
        f"(c) point {DATA_DIR_ENV} (or the notebook's DATA_DIR parameter) at a folder that already "
        f"holds `{s.name}/`. Expected layout: {s.layout}. Target: {target}"
    )


def locate(name: str, data_dir_: str | Path | None = None) -> Path:
    """The folder of dataset `name` under the data directory; a clear error when absent."""
    s = spec(name)
    base = data_dir(data_dir_)
    root = base / s.name
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"dataset {name!r} not found: looked for the folder {root} "
            f"(data directory {base}, from "
            f"{'the argument' if data_dir_ else DATA_DIR_ENV if os.environ.get(DATA_DIR_ENV) else 'the default'}). "
            + how_to_get(name, root)
        )
    return root


def is_synthetic(root: str | Path) -> bool:
    return (Path(root) / SYNTHETIC_MARKER).is_file()


def describe_source(root: str | Path) -> str:
    """One line saying where a dataset folder came from: synthetic (with seed) or real."""
    root = Path(root)
    if is_synthetic(root):
        meta = json.loads((root / SYNTHETIC_MARKER).read_text())
        return (f"SYNTHETIC look-alike data made by tl_helpers (seed {meta['seed']}, size "
                f"{meta['size']!r}); not real images")
    return "real data"


def dataset_root(name: str, synthetic: bool, data_dir_: str | Path | None = None, seed: int = 0,
                 size: str = "smoke") -> Path:
    """The one call a chapter makes: a synthetic set (made once, then reused) or the real one.

    Synthetic sets go to `<data dir>/synthetic/<name>-<size>-seed<seed>`; they are remade
    when the generator's version or settings changed.
    """
    if not synthetic:
        return locate(name, data_dir_)
    from . import synthetic as synth

    root = data_dir(data_dir_) / "synthetic" / f"{name}-{size}-seed{seed}"
    marker = root / SYNTHETIC_MARKER
    if marker.is_file():
        meta = json.loads(marker.read_text())
        if meta.get("generator_version") == synth.GENERATOR_VERSION:
            return root
    if marker.is_file():
        shutil.rmtree(root)  # a stale synthetic set we made ourselves (its marker says so)
    elif root.exists() and any(root.iterdir()):
        raise DataLayoutError(f"{root} exists but holds no {SYNTHETIC_MARKER}: it is not a synthetic set "
                              "made by tl_helpers, so it is left alone. Move it away, or choose another DATA_DIR.")
    synth.synthesize(name, root, seed=seed, size=size)
    return root


def synthesize(name: str, root: str | Path, seed: int = 0, size: str = "smoke") -> Path:
    """Write a small synthetic look-alike of dataset `name` at `root` (see `synthetic`)."""
    from . import synthetic as synth

    return synth.synthesize(name, root, seed=seed, size=size)


# --- listing files ---------------------------------------------------------------------

def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def list_class_images(root: str | Path) -> pd.DataFrame:
    """A dataframe (path, label) of the images in `root/<class>/`, classes sorted by name.

    Hidden folders (`.ipynb_checkpoints`) and files (`.DS_Store`) are never classes or
    images; other non-image files are left out here and reported by `verify`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"folder of class folders not found: {root}")
    rows = [
        (str(f), d.name)
        for d in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
        for f in sorted(d.iterdir())
        if f.is_file() and _visible(f) and is_image_file(f)
    ]
    return pd.DataFrame(rows, columns=["path", "label"])


def class_folder_table(root: str | Path, splits: tuple[str, ...] | None = None) -> pd.DataFrame:
    """(split, path, label) for a class-folder dataset, over its splits that are present.

    Without `splits`, a visible subfolder of `root` that holds folders is a split
    (`Training/`, `train/`); when there is none, `root` itself holds the classes (split "").
    """
    root = Path(root)
    if splits is None:
        splits = tuple(d.name for d in sorted(root.iterdir()) if d.is_dir() and _visible(d)
                       and any(c.is_dir() and _visible(c) for c in d.iterdir())) or ("",)
    frames = []
    for split in splits:
        if (root / split).is_dir():
            frame = list_class_images(root / split)
            frame.insert(0, "split", split)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["split", "path", "label"])


LGG_IMAGE = re.compile(r"^(TCGA_[A-Z0-9]+_[A-Z0-9]+)_(\d+)_(\d+)\.tif$")


def lgg_patient_id(folder_or_file: str | Path) -> str:
    """`TCGA_CS_4941` from `TCGA_CS_4941_19960909` or from one of its slice files."""
    match = re.match(r"^(TCGA_[A-Za-z0-9]+_[A-Za-z0-9]+)_", Path(folder_or_file).name)
    if not match:
        raise ValueError(f"not an LGG (TCGA_<site>_<id>_...) name: {folder_or_file}")
    return match.group(1)


def lgg_slice_table(root: str | Path, with_tumour: bool = True) -> pd.DataFrame:
    """(patient, slice, image_path, mask_path[, has_tumour]) for the LGG set, in slice order.

    `has_tumour` reads every mask (a slice has tumour when its mask has any non-zero pixel).
    """
    base = Path(root) / "kaggle_3m"
    rows = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith("TCGA_")):
        for image in folder.glob("*.tif"):
            match = LGG_IMAGE.match(image.name)
            if match and not image.name.endswith("_mask.tif"):
                mask = image.with_name(image.stem + "_mask.tif")
                rows.append((match.group(1), int(match.group(3)), str(image), str(mask)))
    table = pd.DataFrame(rows, columns=["patient", "slice", "image_path", "mask_path"])
    table = table.sort_values(["patient", "slice"], ignore_index=True)
    if with_tumour:
        table["has_tumour"] = [bool(read_image(m, channels=1).any()) for m in table["mask_path"]]
    return table


def pcam_table(root: str | Path) -> pd.DataFrame:
    """(id, path, label) for PCam: `train_labels.csv` joined to `train/<id>.<ext>`.

    The Kaggle files are `.tif`; other image endings (the JPEG subset) are accepted.
    """
    root = Path(root)
    labels = pd.read_csv(root / "train_labels.csv", dtype={"id": str})
    files = {f.stem: f for f in (root / "train").iterdir() if is_image_file(f)}
    labels["path"] = [str(files[i]) if i in files else "" for i in labels["id"]]
    return labels[["id", "path", "label"]]


XRAY_PATIENT = [re.compile(r"^(person\d+)_"), re.compile(r"^((?:NORMAL2-)?IM-\d+)-")]


def xray_patient_id(filename: str | Path) -> str:
    """The patient of a Kermany chest X-ray file: `person12` or `IM-0115` / `NORMAL2-IM-0955`."""
    name = Path(filename).name
    for pattern in XRAY_PATIENT:
        match = pattern.match(name)
        if match:
            return match.group(1)
    raise ValueError(f"no patient id in chest X-ray file name {name!r} "
                     "(expected person<N>_..., IM-<N>-... or NORMAL2-IM-<N>-...)")


def sample_per_class(table: pd.DataFrame, n: int, seed: int = 0, label_col: str = "label") -> pd.DataFrame:
    """Up to `n` random rows of each class of `table`, classes in sorted order."""
    shuffled = table.sample(frac=1.0, random_state=seed)
    return (shuffled.groupby(label_col, sort=True).head(n)
            .sort_values(label_col, kind="stable").reset_index(drop=True))


# --- verification ----------------------------------------------------------------------

@dataclass
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class VerifyReport:
    """What `verify` found: counts per split and class, problems (each with a path), notes."""

    dataset: str
    root: str
    source: str
    counts: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    sizes: list = field(default_factory=list)  # (width, height, mode) of a sample of images

    def size_summary(self) -> dict:
        """Range of widths and heights and the count of each mode, over the sampled images."""
        if not self.sizes:
            return {}
        widths, heights, modes = zip(*self.sizes)
        return {"sampled": len(self.sizes), "width": [min(widths), max(widths)],
                "height": [min(heights), max(heights)],
                "modes": {m: modes.count(m) for m in sorted(set(modes))}}

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_problems(self) -> "VerifyReport":
        if self.problems:
            shown = "\n  ".join(str(p) for p in self.problems[:20])
            more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
            raise DataLayoutError(
                f"dataset {self.dataset!r} at {self.root} has {len(self.problems)} problem(s):\n  "
                f"{shown}{more}\nExpected layout: {spec(self.dataset).layout}"
            )
        return self

    def __str__(self) -> str:
        lines = [f"{self.dataset}: {self.source}", f"counts: {json.dumps(self.counts)}"]
        if self.sizes:
            lines.append(f"image sizes: {json.dumps(self.size_summary())}")
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"PROBLEM {p}" for p in self.problems]
        return "\n".join(lines)


def _check_readable(paths: list[Path], problems: list, sizes: list, sample_every: int = 1) -> None:
    """Decode every image (threads: decoding releases the GIL); record problems and sizes."""
    def check(path: Path):
        try:
            read_image(path, channels=None)
        except ImageReadError as error:
            return path, str(error)
        return path, None

    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, (path, error) in enumerate(pool.map(check, paths)):
            if error:
                problems.append(Problem(str(path), error))
            elif i % sample_every == 0:
                info = image_info(path)
                sizes.append((info["width"], info["height"], info["mode"]))


def _verify_class_folders(s: DatasetSpec, root: Path, report: VerifyReport, deep: bool) -> None:
    to_read: list[Path] = []
    for split in s.required_splits + s.optional_splits:
        split_dir = root / split
        if not split_dir.is_dir():
            if split in s.required_splits:
                report.problems.append(Problem(str(split_dir), "missing folder; expected "
                                               f"class folders {', '.join(s.classes)} here"))
            else:
                report.notes.append(f"split {split}/ is absent (optional): chapters carve a held-out "
                                    "split from what is present")
            continue
        counts = {}
        for entry in sorted(split_dir.iterdir()):
            if entry.is_dir() and entry.name not in s.classes:
                hint = (" (Jupyter's autosave folder: delete it, it is not a class)"
                        if entry.name == ".ipynb_checkpoints" else "")
                report.problems.append(Problem(str(entry), "unexpected folder; the classes are "
                                               f"{', '.join(s.classes)}{hint}"))
        for cls in s.classes:
            class_dir = split_dir / cls
            if not class_dir.is_dir():
                report.problems.append(Problem(str(class_dir), "missing class folder"))
                continue
            n = 0
            for f in sorted(class_dir.iterdir()):
                if f.is_dir():
                    report.problems.append(Problem(str(f), "unexpected folder inside a class folder"
                                                   + (" (Jupyter's autosave folder: delete it)"
                                                      if f.name == ".ipynb_checkpoints" else "")))
                elif not _visible(f):
                    continue  # .DS_Store and friends: not images, harmless
                elif not is_image_file(f):
                    report.problems.append(Problem(str(f), "not an image file (expected one of "
                                                   ".jpg .jpeg .png .tif); move it out of the dataset"))
                else:
                    n += 1
                    to_read.append(f)
            if n == 0:
                report.problems.append(Problem(str(class_dir), "class folder holds no images"))
            counts[cls] = n
        report.counts[split or "all"] = counts
        full = s.full_counts.get(split)
        if full and counts != full:
            report.notes.append(f"{split or 'images'}: counts differ from the full Kaggle release "
                                f"{full} (a subset, or a different version)")
    if deep:
        _check_readable(to_read, report.problems, report.sizes, sample_every=max(1, len(to_read) // 400))


def _verify_lgg(s: DatasetSpec, root: Path, report: VerifyReport, deep: bool) -> None:
    base = root / "kaggle_3m"
    if not base.is_dir():
        report.problems.append(Problem(str(base), "missing folder kaggle_3m/ (the Kaggle zip also "
                                       "holds a copy under lgg-mri-segmentation/kaggle_3m/)"))
        return
    if not (base / "data.csv").is_file():
        report.notes.append(f"{base / 'data.csv'} is absent (patient metadata; not needed for training)")
    patients = [p for p in sorted(base.iterdir()) if p.is_dir() and p.name.startswith("TCGA_")]
    for entry in sorted(base.iterdir()):
        if entry.is_dir() and not entry.name.startswith("TCGA_"):
            report.problems.append(Problem(str(entry), "unexpected folder; patient folders are "
                                           "TCGA_<site>_<id>_<date>"))
    if not patients:
        report.problems.append(Problem(str(base), "no patient folders TCGA_<site>_<id>_<date>/"))
    pairs = []
    for folder in patients:
        for f in sorted(folder.iterdir()):
            if not _visible(f):
                continue
            if f.is_dir():
                report.problems.append(Problem(str(f), "unexpected folder inside a patient folder"))
            elif f.name.endswith("_mask.tif"):
                if not f.with_name(f.name.replace("_mask.tif", ".tif")).is_file():
                    report.problems.append(Problem(str(f), "mask without its image"))
            elif f.suffix == ".tif" and f.name.startswith(folder.name + "_"):
                mask = f.with_name(f.stem + "_mask.tif")
                if mask.is_file():
                    pairs.append((f, mask))
                else:
                    report.problems.append(Problem(str(f), f"image without its mask (expected {mask.name})"))
            else:
                report.problems.append(Problem(str(f), f"unexpected file; expected {folder.name}_<N>.tif "
                                               "and _mask.tif"))
    tumour = 0
    if deep:
        def check(pair):
            image_path, mask_path = pair
            try:
                image = read_image(image_path, channels=None)
                mask = read_image(mask_path, channels=None)
            except ImageReadError as error:
                return [(str(error.path), str(error))], False
            errors = []
            if image.shape[:2] != mask.shape[:2]:
                errors.append((str(mask_path), f"mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                              f"{image_path.name} is {image.shape[1]}x{image.shape[0]}; they must match"))
            values = np.unique(mask)
            if not set(values.tolist()) <= {0, 255}:
                errors.append((str(mask_path), f"mask values {values[:6].tolist()} are not only 0 and 255"))
            return errors, bool(mask.any())

        with ThreadPoolExecutor(max_workers=4) as pool:
            for errors, has_tumour in pool.map(check, pairs):
                tumour += has_tumour
                for path, message in errors:
                    report.problems.append(Problem(path, message))
        for image_path, _ in pairs[:: max(1, len(pairs) // 400)]:
            info = image_info(image_path)
            report.sizes.append((info["width"], info["height"], info["mode"]))
    report.counts = {"patients": len(patients), "slices": len(pairs)}
    if deep:
        report.counts.update({"slices with tumour": tumour, "slices without tumour": len(pairs) - tumour})
    if len(patients) != s.full_counts["patients"]:
        report.notes.append(f"{len(patients)} of the {s.full_counts['patients']} patients of the full release")


def _verify_labels_csv(s: DatasetSpec, root: Path, report: VerifyReport, deep: bool) -> None:
    csv_path, train = root / "train_labels.csv", root / "train"
    for needed in (csv_path, train):
        if not needed.exists():
            report.problems.append(Problem(str(needed), "missing; expected " + s.layout))
    if report.problems:
        return
    labels = pd.read_csv(csv_path, dtype={"id": str})
    if list(labels.columns[:2]) != ["id", "label"]:
        report.problems.append(Problem(str(csv_path), f"columns are {list(labels.columns)}; expected id,label"))
        return
    bad = labels[~labels["label"].isin([0, 1])]
    for _, row in bad.head(20).iterrows():
        report.problems.append(Problem(str(csv_path), f"id {row['id']}: label {row['label']!r} is not 0 or 1"))
    files, to_read = {}, []
    for f in train.iterdir():
        if not _visible(f):
            continue
        if f.is_dir() or not is_image_file(f):
            report.problems.append(Problem(str(f), "unexpected entry in train/ (expected <id>.tif images)"))
        else:
            files[f.stem] = f
    listed = set(labels["id"])
    for missing in sorted(listed - set(files))[:20]:
        report.problems.append(Problem(str(train / f"{missing}.tif"), "listed in train_labels.csv but no image file"))
    for extra in sorted(set(files) - listed)[:20]:
        report.problems.append(Problem(str(files[extra]), "image not listed in train_labels.csv"))
    to_read = [files[i] for i in labels["id"] if i in files]
    counts = labels["label"].value_counts().sort_index()
    report.counts = {"train": {str(k): int(v) for k, v in counts.items()}}
    exts = sorted({f.suffix for f in files.values()})
    if exts != [".tif"]:
        report.notes.append(f"image files are {', '.join(exts)} (Kaggle ships .tif); read the same way")
    if report.counts["train"] != s.full_counts["train"]:
        report.notes.append(f"a subset of the full release {s.full_counts['train']}")
    if deep:
        _check_readable(to_read, report.problems, report.sizes, sample_every=max(1, len(to_read) // 400))


def verify(name: str, root: str | Path | None = None, deep: bool = True) -> VerifyReport:
    """Check dataset `name` at `root` (default: `locate(name)`): layout, counts, readability.

    Returns a VerifyReport; nothing is raised for problems in the data (call
    `.raise_if_problems()`), so a reader sees every problem at once, each with its path.
    `deep=False` skips decoding the images (layout and counts only).
    """
    s = spec(name)
    root = Path(root) if root is not None else locate(name)
    if not root.is_dir():
        raise DatasetNotFoundError(f"dataset folder not found: {root}. " + how_to_get(name, root))
    report = VerifyReport(dataset=name, root=str(root), source=describe_source(root))
    {"class_folders": _verify_class_folders, "lgg_segmentation": _verify_lgg,
     "labels_csv": _verify_labels_csv}[s.kind](s, root, report, deep)
    return report


def require(name: str, root: str | Path | None = None, deep: bool = True) -> VerifyReport:
    """`verify`, then stop with every problem listed if there is any."""
    return verify(name, root, deep).raise_if_problems()


# --- download --------------------------------------------------------------------------

KAGGLE_API = "https://www.kaggle.com/api/v1"


def kaggle_credentials() -> tuple[str, str] | None:
    """(username, key) from KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json (or $KAGGLE_CONFIG_DIR)."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"]
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")) / "kaggle.json"
    if config.is_file():
        data = json.loads(config.read_text())
        return data["username"], data["key"]
    return None


def _kaggle_reachable(timeout: float) -> bool:
    try:
        with socket.create_connection(("www.kaggle.com", 443), timeout=timeout):
            return True
    except OSError:
        return False


def download(name: str, data_dir_: str | Path | None = None, timeout: float = 10.0,
             overwrite: bool = False) -> Path:
    """Download dataset `name` from Kaggle into the data directory and verify it.

    Needs Kaggle credentials (in Colab: upload kaggle.json to ~/.kaggle/, or set
    KAGGLE_USERNAME and KAGGLE_KEY). Without them, or without network, it stops within
    `timeout` seconds with instructions; it never hangs. PCam is a competition: accept its
    rules on the Kaggle page first.
    """
    s = spec(name)
    target = data_dir(data_dir_) / s.name
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise DownloadError(f"{target} already exists and is not empty; nothing downloaded. "
                            "Pass overwrite=True to replace it, or verify it with verify().")
    credentials = kaggle_credentials()
    if credentials is None:
        raise DownloadError(
            "no Kaggle credentials: create an API token on https://www.kaggle.com/settings "
            "(it downloads kaggle.json), then put it at ~/.kaggle/kaggle.json (chmod 600) or set "
            "KAGGLE_USERNAME and KAGGLE_KEY. " + how_to_get(name, target))
    if not _kaggle_reachable(timeout):
        raise DownloadError(
            f"cannot reach www.kaggle.com within {timeout:.0f} s (no network here?). Download on a "
            "connected machine instead. " + how_to_get(name, target))
    if s.kaggle_kind == "competition":
        url = f"{KAGGLE_API}/competitions/data/download-all/{s.kaggle_ref}"
    else:
        url = f"{KAGGLE_API}/datasets/download/{s.kaggle_ref}"
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive.zip"
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}") as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as error:
            hint = " Accept the competition's rules on its Kaggle page first." if error.code == 403 else ""
            raise DownloadError(f"Kaggle answered {error.code} for {url}.{hint} " + how_to_get(name, target)) from error
        except (urllib.error.URLError, OSError) as error:
            raise DownloadError(f"download of {url} failed: {error}. " + how_to_get(name, target)) from error
        return install_from_zip(name, archive, data_dir_, overwrite=overwrite)


# What to take out of each Kaggle zip: (entries that must be there, entries taken if there).
# The zips hold duplicate copies (brain_tumor_dataset/, lgg-mri-segmentation/, chest_xray/chest_xray/).
_ZIP_CONTENT = {
    "brain_mri_yes_no": (("yes", "no"), ()),
    "brain_tumor_mri_4class": (("Training",), ("Testing",)),
    "chest_xray": (("train",), ("val", "test")),
    "lgg_mri_segmentation": (("kaggle_3m",), ()),
    "pcam": (("train", "train_labels.csv"), ("test", "sample_submission.csv")),
}


def install_from_zip(name: str, zip_path: str | Path, data_dir_: str | Path | None = None,
                     overwrite: bool = False) -> Path:
    """Unpack a Kaggle zip of dataset `name` into `<data dir>/<name>/` in the expected layout."""
    s = spec(name)
    target = data_dir(data_dir_) / s.name
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise DownloadError(f"{target} already exists and is not empty; pass overwrite=True to replace it")
    required, optional = _ZIP_CONTENT[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tmp)
        # the shallowest folder that holds every required entry
        candidates = sorted(
            (p for p in [Path(tmp), *Path(tmp).rglob("*")] if p.is_dir() and "__MACOSX" not in p.parts
             and all((p / entry).exists() for entry in required)),
            key=lambda p: len(p.parts))
        if not candidates:
            raise DataLayoutError(f"{zip_path} does not hold {' and '.join(required)} in any folder; "
                                  f"is it the zip of {s.kaggle_url}?")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
        for entry in required + optional:
            if (candidates[0] / entry).exists():
                shutil.move(str(candidates[0] / entry), target / entry)
    print(verify(name, target, deep=False))
    return target
