"""Is a dataset folder intact? Layout, counts and every image readable, each problem named."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .images import ImageReadError, image_info, is_image_file, read_image

from .registry import (DataLayoutError, DatasetNotFoundError, DatasetSpec, describe_source, how_to_get,
                       locate, spec)
from .tables import is_visible


# --- verification ----------------------------------------------------------------------

__all__ = ['Problem', 'VerifyReport', 'verify', 'require']

@dataclass
class Problem:
    """One thing `verify` found wrong: the file (or folder) and what is wrong with it.

    Used by every chapter (through tl.data.load).
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class VerifyReport:
    """What `verify` found: counts per split and class, problems (each with a path), notes.

    Used by every chapter (what tl.data.load returns).
    """

    dataset: str
    root: Path  # the dataset's folder
    source: str  # where it came from, in a sentence (run cards, printouts)
    source_short: str = ""  # the same in a few words (figure titles)
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


def _progress(items, total: int, show: bool):
    """`items` with a tqdm bar when `show` (the verify command), else unchanged."""
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, total=total, unit="image", desc="decoding")


def _check_readable(paths: list[Path], problems: list, sizes: list, sample_every: int = 1,
                    progress: bool = False) -> None:
    """Decode every image (threads: decoding releases the GIL); record problems and sizes."""
    def check(path: Path):
        try:
            read_image(path, channels=None)
        except ImageReadError as error:
            return path, str(error)
        return path, None

    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, (path, error) in enumerate(_progress(pool.map(check, paths), len(paths), progress)):
            if error:
                problems.append(Problem(str(path), error))
            elif i % sample_every == 0:
                info = image_info(path)
                sizes.append((info["width"], info["height"], info["mode"]))


def _verify_class_folders(s: DatasetSpec, root: Path, report: VerifyReport, deep: bool,
                          progress: bool = False) -> None:
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
                elif not is_visible(f):
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
        _check_readable(to_read, report.problems, report.sizes, sample_every=max(1, len(to_read) // 400),
                        progress=progress)


def _verify_lgg(s: DatasetSpec, root: Path, report: VerifyReport, deep: bool, progress: bool = False) -> None:
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
            if not is_visible(f):
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
            for errors, has_tumour in _progress(pool.map(check, pairs), len(pairs), progress):
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


def _report_duplicate_ids(labels: pd.DataFrame, csv_path: Path, report: VerifyReport) -> None:
    """One problem per id listed more than once: the patch could land in two splits."""
    repeated = labels[labels["id"].duplicated(keep=False)]
    for image_id, rows in repeated.groupby("id", sort=True):
        found = sorted(rows["label"].astype(str).unique())
        clash = (f"; the rows disagree on the label ({', '.join(found)})" if len(found) > 1
                 else f" with the same label {found[0]}")
        report.problems.append(Problem(str(csv_path), f"id {image_id} is listed more than once "
                                       f"({len(rows)} rows){clash}; keep one row per id, or the "
                                       "same patch can land in two splits"))


def _verify_labels_csv(s: DatasetSpec, root: Path, report: VerifyReport, deep: bool,
                       progress: bool = False) -> None:
    """Kaggle's train/ + train_labels.csv, then each extra set of the registry that is there
    (PCam's official_valid/ + official_valid_labels.csv), each checked the same way."""
    _verify_labels_split(s, root, "train", report, deep, progress)
    if report.counts.get("train") is not None and report.counts["train"] != s.full_counts["train"]:
        report.notes.append(f"a subset of the full release {s.full_counts['train']}")
    for name, about in s.extra_sets.items():
        if (root / name).exists() or (root / f"{name}_labels.csv").exists():
            _verify_labels_split(s, root, name, report, deep, progress)
            if name in report.counts:
                report.notes.append(f"{name}/: {about['title']}")


def _verify_labels_split(s: DatasetSpec, root: Path, split: str, report: VerifyReport, deep: bool,
                         progress: bool = False) -> None:
    """One `<split>/` folder and its `<split>_labels.csv`: layout, labels, ids, readability."""
    csv_path, folder = root / f"{split}_labels.csv", root / split
    missing = [needed for needed in (csv_path, folder) if not needed.exists()]
    for needed in missing:
        report.problems.append(Problem(str(needed), "missing; expected " + s.layout))
    if missing:
        return
    labels = pd.read_csv(csv_path, dtype={"id": str})
    if list(labels.columns[:2]) != ["id", "label"]:
        report.problems.append(Problem(str(csv_path), f"columns are {list(labels.columns)}; expected id,label"))
        return
    bad = labels[~labels["label"].isin([0, 1])]
    for _, row in bad.head(20).iterrows():
        report.problems.append(Problem(str(csv_path), f"id {row['id']}: label {row['label']!r} is not 0 or 1"))
    _report_duplicate_ids(labels, csv_path, report)
    files = {}
    for f in folder.iterdir():
        if not is_visible(f):
            continue
        if f.is_dir() or not is_image_file(f):
            report.problems.append(Problem(str(f), f"unexpected entry in {split}/ (expected <id>.tif images)"))
        else:
            files[f.stem] = f
    listed = set(labels["id"])
    for missing_id in sorted(listed - set(files))[:20]:
        report.problems.append(Problem(str(folder / f"{missing_id}.tif"),
                                       f"listed in {csv_path.name} but no image file"))
    for extra in sorted(set(files) - listed)[:20]:
        report.problems.append(Problem(str(files[extra]), f"image not listed in {csv_path.name}"))
    to_read = [files[i] for i in labels["id"] if i in files]
    counts = labels["label"].value_counts().sort_index()
    report.counts[split] = {str(k): int(v) for k, v in counts.items()}
    exts = sorted({f.suffix for f in files.values()})
    if split == "train" and exts != [".tif"]:
        report.notes.append(f"image files are {', '.join(exts)} (Kaggle ships .tif); read the same way")
    if deep:
        _check_readable(to_read, report.problems, report.sizes, sample_every=max(1, len(to_read) // 400),
                        progress=progress)


def verify(name: str, root: str | Path | None = None, deep: bool = True, progress: bool = False) -> VerifyReport:
    """Check dataset `name` at `root` (default: `locate(name)`): layout, counts, readability.

    Returns a VerifyReport; nothing is raised for problems in the data (call
    `.raise_if_problems()`), so a reader sees every problem at once, each with its path.
    `deep=False` skips decoding the images (layout and counts only); `progress` shows a bar.
    Used by every chapter (through tl.data.load).
    """
    s = spec(name)
    root = Path(root) if root is not None else locate(name)
    if not root.is_dir():
        raise DatasetNotFoundError(f"dataset folder not found: {root}. " + how_to_get(name, root))
    report = VerifyReport(dataset=name, root=root, source=describe_source(root),
                          source_short=describe_source(root, short=True))
    {"class_folders": _verify_class_folders, "lgg_segmentation": _verify_lgg,
     "labels_csv": _verify_labels_csv}[s.kind](s, root, report, deep, progress)
    return report


def require(name: str, root: str | Path | None = None, deep: bool = True) -> VerifyReport:
    """`verify`, then stop with every problem listed if there is any.

    Used by every chapter (through tl.data.load).
    """
    return verify(name, root, deep).raise_if_problems()


