"""Balance classes by adding augmented copies of minority-class images, as files.

The other remedy for imbalance is to weight the loss (`tl_helpers.imbalance`). Adding
copies instead gives every class the same number of training images, each copy a
randomly rotated / shifted / flipped version of an original. Two rules keep it honest:
copies are made from the training split only (a copy of a test image in training is a
leak), and they are written once, under a folder named after the settings, so reruns
reuse the same files.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..train.augment import Augment
from ..data.images import read_image


def copies_needed(labels: pd.Series, target: int | None = None) -> dict:
    """{class: copies to add} to bring every class up to `target` (default: the largest class).

    Taught in chapter 2.
    """
    counts = labels.value_counts().sort_index()
    target = int(counts.max()) if target is None else int(target)
    return {str(label): max(0, target - int(n)) for label, n in counts.items()}


def _settings_folder(augment: Augment, seed: int) -> str:
    return "copies-" + hashlib.sha256(f"{augment!r}|{seed}".encode()).hexdigest()[:12]


def add_augmented_copies(table: pd.DataFrame, out_dir: str | Path, augment: Augment,
                         label_col: str = "label", path_col: str = "path", target: int | None = None,
                         seed: int = 0) -> pd.DataFrame:
    """Augmented copies that bring each class of `table` up to `target` images; only the new rows.

    Sources are drawn in a random order per class (every original is used once before
    any is used twice). Copy k of class c is `out_dir/copies-<settings>/<c>/<stem>_aug<k>.png`,
    made with its own random stream (seed, class, k), so it is the same file on every
    run. The returned rows have the table's columns plus `source_path` (the original) and
    `augmented` = True; concatenate them with the table to train on the balanced set. Taught in chapter 2.
    """
    if table.empty:
        raise ValueError("the table has no rows: nothing to balance")
    folder = Path(out_dir) / _settings_folder(augment, seed)
    rows = []
    for class_index, (label, needed) in enumerate(copies_needed(table[label_col].astype(str), target).items()):
        members = table[table[label_col].astype(str) == label]
        order = np.random.default_rng([seed, class_index]).permutation(len(members))
        for k in range(needed):
            source = members.iloc[order[k % len(order)]]
            source_path = Path(str(source[path_col]))
            target_path = folder / label / f"{source_path.stem}_aug{k}.png"
            if not target_path.is_file():
                rng = np.random.default_rng([seed, class_index, k])
                image = augment.apply(rng, read_image(source_path, channels=None))
                target_path.parent.mkdir(parents=True, exist_ok=True)
                partial = target_path.with_name(target_path.stem + ".partial.png")
                bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
                if not cv2.imwrite(str(partial), bgr):
                    raise OSError(f"could not write the augmented copy {partial}")
                partial.replace(target_path)
            row = source.to_dict()
            row.update({path_col: str(target_path), "source_path": str(source_path), "augmented": True})
            rows.append(row)
    columns = list(table.columns) + [c for c in ("source_path", "augmented") if c not in table.columns]
    return pd.DataFrame(rows, columns=columns)
