"""Tables of a dataset's files: each layout becomes a dataframe of paths and labels."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .images import is_image_file, read_image

from .registry import DatasetNotFoundError, extra_set


# --- listing files ---------------------------------------------------------------------

__all__ = ['is_visible', 'list_class_images', 'class_folder_table', 'LGG_IMAGE', 'lgg_patient_id',
           'lgg_slice_table', 'pcam_table', 'pcam_tif_files', 'XRAY_PATIENT', 'xray_patient_id', 'sample_per_class']

def is_visible(path: Path) -> bool:
    """False for hidden files and folders (`.ipynb_checkpoints`, `.DS_Store`): never data.

    Used by every chapter (through tl.data.load).
    """
    return not path.name.startswith(".")


def list_class_images(root: str | Path) -> pd.DataFrame:
    """A dataframe (path, label) of the images in `root/<class>/`, classes sorted by name.

    Hidden folders (`.ipynb_checkpoints`) and files (`.DS_Store`) are never classes or
    images; other non-image files are left out here and reported by `verify`.
    Used by chapter 1.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"folder of class folders not found: {root}")
    rows = [
        (str(f), d.name)
        for d in sorted(p for p in root.iterdir() if p.is_dir() and is_visible(p))
        for f in sorted(d.iterdir())
        if f.is_file() and is_visible(f) and is_image_file(f)
    ]
    return pd.DataFrame(rows, columns=["path", "label"])


def class_folder_table(root: str | Path, splits: tuple[str, ...] | None = None) -> pd.DataFrame:
    """(split, path, label) for a class-folder dataset, over its splits that are present.

    Without `splits`, a visible subfolder of `root` that holds folders is a split
    (`Training/`, `train/`); when there is none, `root` itself holds the classes (split "").
    Used by the dataset tour (chapter 0) and chapters 2 and 3.
    """
    root = Path(root)
    if splits is None:
        splits = tuple(d.name for d in sorted(root.iterdir()) if d.is_dir() and is_visible(d)
                       and any(c.is_dir() and is_visible(c) for c in d.iterdir())) or ("",)
    frames = []
    for split in splits:
        if (root / split).is_dir():
            frame = list_class_images(root / split)
            frame.insert(0, "split", split)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["split", "path", "label"])


LGG_IMAGE = re.compile(r"^(TCGA_[A-Z0-9]+_[A-Z0-9]+)_(\d+)_(\d+)\.tif$")


def lgg_patient_id(folder_or_file: str | Path) -> str:
    """`TCGA_CS_4941` from `TCGA_CS_4941_19960909` or from one of its slice files.

    Used by tl.data.lgg_slice_table: the dataset tour (chapter 0) and chapter 4.
    """
    match = re.match(r"^(TCGA_[A-Za-z0-9]+_[A-Za-z0-9]+)_", Path(folder_or_file).name)
    if not match:
        raise ValueError(f"not an LGG (TCGA_<site>_<id>_...) name: {folder_or_file}")
    return match.group(1)


def lgg_slice_table(root: str | Path, with_tumour: bool = True) -> pd.DataFrame:
    """(patient, slice, image_path, mask_path[, has_tumour]) for the LGG set, in slice order.

    `has_tumour` reads every mask (a slice has tumour when its mask has any non-zero pixel).
    Used by the dataset tour (chapter 0) and chapter 4.
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


def pcam_table(root: str | Path, split: str = "train", missing_ok: bool = False) -> pd.DataFrame:
    """(id, path, label) for PCam: `<split>_labels.csv` joined to `<split>/<id>.<ext>`.

    split: "train" (Kaggle's labelled patches) or an extra set of the registry that is not on
        Kaggle: "official_valid", PatchCamelyon's own validation split, whose slides its
        training split does not use (`tl.data.extra_set("pcam", "official_valid")`).
    missing_ok: an extra set whose folder and table are both absent (a copy with only Kaggle's
        data) gives an empty table instead of DatasetNotFoundError.
    The Kaggle files are `.tif`; other image endings (the JPEG subset) are accepted.
    Used by the dataset tour (chapter 0) and chapter 5.
    """
    root = Path(root)
    if split != "train":
        extra_set("pcam", split)  # a name the registry knows
    csv, folder = root / f"{split}_labels.csv", root / split
    if missing_ok and split != "train" and not csv.exists() and not folder.exists():
        return pd.DataFrame({"id": pd.Series(dtype=str), "path": pd.Series(dtype=str),
                             "label": pd.Series(dtype=int)})
    for needed in (csv, folder):
        if not needed.exists():
            raise DatasetNotFoundError(f"{needed} is missing: PCam's {split!r} set is "
                                       f"{split}/<id>.<ext> + {split}_labels.csv under {root}")
    labels = pd.read_csv(csv, dtype={"id": str})
    files = {f.stem: f for f in folder.iterdir() if is_image_file(f)}
    labels["path"] = [str(files[i]) if i in files else "" for i in labels["id"]]
    return labels[["id", "path", "label"]]


def pcam_tif_files(root: str | Path, paths, n: int = 6) -> list[Path]:
    """Up to `n` of Kaggle's `.tif` patches to show: those of a `kaggle_tif_samples/` folder
    under `root` when there is one (a copy converted to another format keeps a few), else the
    first `.tif` files among `paths`. Used by chapter 5.
    """
    folder = Path(root) / "kaggle_tif_samples"
    files = (sorted(folder.glob("*.tif")) if folder.is_dir()
             else sorted(Path(p) for p in paths if str(p).endswith(".tif")))
    return files[:n]


XRAY_PATIENT = [re.compile(r"^(person\d+)_"), re.compile(r"^((?:NORMAL2-)?IM-\d+)-")]


def xray_patient_id(filename: str | Path) -> str:
    """The patient of a Kermany chest X-ray file: `person12` or `IM-0115` / `NORMAL2-IM-0955`.

    Used by the dataset tour (chapter 0) and chapter 3.
    """
    name = Path(filename).name
    for pattern in XRAY_PATIENT:
        match = pattern.match(name)
        if match:
            return match.group(1)
    raise ValueError(f"no patient id in chest X-ray file name {name!r} "
                     "(expected person<N>_..., IM-<N>-... or NORMAL2-IM-<N>-...)")


def sample_per_class(table: pd.DataFrame, n: int, seed: int = 0, label_col: str = "label") -> pd.DataFrame:
    """Up to `n` random rows of each class of `table`, classes in sorted order.

    Used by chapters 2 and 3 (and by `tl.plotting.plot_class_samples`).
    """
    shuffled = table.sample(frac=1.0, random_state=seed)
    return (shuffled.groupby(label_col, sort=True).head(n)
            .sort_values(label_col, kind="stable").reset_index(drop=True))


