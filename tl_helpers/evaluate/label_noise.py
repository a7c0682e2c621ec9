"""Near-duplicate pairs across splits whose labels disagree: label noise, leakage, or neither?

`tl.near_duplicates.audit_splits` finds images of a later split with a near-twin in an
earlier one. When the two carry the same label, the twin is leakage: the later image's answer
was seen in training. When they carry different labels, two readings compete:

- one picture saved twice under two labels: at least one label is wrong (label noise), and
  the training copy teaches the model the other answer, which costs the test score rather
  than flattering it;
- two different pictures that merely hash alike (neighbouring slices, a similar head): then
  nothing is wrong with either label.

`cross_label_twins` lists those pairs with a pixel comparison that tells the two readings
apart (`pixel_gap`: near 0 for one picture saved twice); `plot_pairs` shows them side by
side; `calls_on_twins` says what the model called the later member of each pair.

    twins = cross_label_twins(audit, table)
    plot_pairs(twins, table)
    calls_on_twins(twins, table, "test", y_pred, CLASSES)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..data.images import read_image, resize_image

SAME_PICTURE_GAP = 8.0  # mean absolute gray difference (of 255) below which two images count as one picture


def pixel_gap(path_a, path_b, mirrored: bool = False, size: int = 64) -> float:
    """Mean absolute difference of two images' gray pixels (0-255), both resized to `size` x
    `size`, the second mirrored left-right first when `mirrored`: about 0 for one picture saved
    twice (re-encoded, resized), tens for two different pictures. Taught in chapter 2.
    """
    a, b = (resize_image(read_image(p, channels=1).astype(np.float32), (size, size)) for p in (path_a, path_b))
    if mirrored:
        b = b[:, ::-1]
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


def cross_label_twins(audit, table: pd.DataFrame, label_col: str = "label", path_col: str = "path",
                      size: int = 64) -> pd.DataFrame:
    """The pairs of `audit` (tl.near_duplicates.audit_splits on `table`) that join two splits
    and carry different labels, one row each: `row` and `partner` (labels of the table's index),
    `split`, `label`, `partner_split`, `partner_label`, `distance` (bits), `mirrored` (the partner
    matched as its mirror image), `pixel_gap` (`pixel_gap` of the two files) and `same_picture`
    (`pixel_gap` below SAME_PICTURE_GAP). Sorted by split, then pixel gap. Taught in chapter 2.
    """
    pairs = audit.pairs[~audit.pairs["within"]]
    labels, partner_labels = (table.loc[pairs[c], label_col].to_numpy() for c in ("row", "partner"))
    differ = labels != partner_labels
    pairs = pairs[differ]
    twins = pd.DataFrame({
        "row": pairs["row"].to_numpy(), "partner": pairs["partner"].to_numpy(),
        "split": pairs["split"].to_numpy(), "label": labels[differ],
        "partner_split": pairs["partner_split"].to_numpy(), "partner_label": partner_labels[differ],
        "distance": pairs["distance"].to_numpy(dtype=int), "mirrored": pairs["mirrored"].to_numpy(dtype=bool)})
    twins["pixel_gap"] = [pixel_gap(table.loc[r, path_col], table.loc[p, path_col], m, size)
                          for r, p, m in zip(twins["row"], twins["partner"], twins["mirrored"])]
    twins["same_picture"] = twins["pixel_gap"] < SAME_PICTURE_GAP
    return twins.sort_values(["split", "pixel_gap"], kind="stable").reset_index(drop=True)


def describe_twins(twins: pd.DataFrame, what: str = "images") -> str:
    """One line: how many cross-label pairs, how many of them one picture saved twice, the
    label pairs they join and per later split how many. Taught in chapter 2.
    """
    if twins.empty:
        return "no near-duplicate pair across splits carries two labels"
    same = int(twins["same_picture"].sum())
    joined = (twins["partner_label"].astype(str) + " / " + twins["label"].astype(str)).value_counts()
    per_split = twins["split"].value_counts()
    return (f"{len(twins)} pairs across splits carry two labels; {same} of them are one picture saved twice "
            f"(pixel gap below {SAME_PICTURE_GAP:g} of 255), {len(twins) - same} two pictures that hash alike; "
            f"labels (earlier / later split): {', '.join(f'{k} {v}' for k, v in joined.items())}; "
            f"later split: {', '.join(f'{k} {v}' for k, v in per_split.items())} {what}")


def plot_pairs(twins: pd.DataFrame, table: pd.DataFrame, count: int = 12, path_col: str = "path",
               what: str = "images"):
    """The first `count` pairs of `cross_label_twins`, each later image beside its earlier twin
    (two pairs a row), titled with split, label, and the distance and pixel gap. None (and a
    printed line) when there is no pair. Taught in chapter 2.
    """
    from .plotting import plot_image_grid

    if twins.empty:
        print("no near-duplicate pair across splits carries two labels")
        return None
    images, titles = [], []
    for twin in twins.head(count).itertuples(index=False):
        images += [read_image(table.loc[twin.row, path_col]), read_image(table.loc[twin.partner, path_col])]
        titles += [f"{twin.split}: {twin.label}",
                   f"{twin.partner_split}: {twin.partner_label} ({twin.distance} bits"
                   f"{', mirrored' if twin.mirrored else ''}, gap {twin.pixel_gap:.0f})"]
    return plot_image_grid(images, ncols=4, titles=titles,
                           suptitle=f"{what.capitalize()} whose near-twin in an earlier split has another label")


def calls_on_twins(twins: pd.DataFrame, table: pd.DataFrame, split: str, calls: Sequence[int],
                   classes: Sequence[str], split_col: str = "split") -> pd.DataFrame:
    """What a model called the `split` members of cross-label pairs: one row per such image with
    its label, its twin's label, the call, and which of the two the call agrees with ("its own",
    "the twin's", "neither"). `calls` are class indices, one per row of `split` in table order
    (a model's predictions on that split). Taught in chapter 2.
    """
    members = table.index[table[split_col].astype(str) == split]
    calls = np.asarray(calls)
    if len(calls) != len(members):
        raise ValueError(f"{len(calls)} calls for the {len(members)} rows of split {split!r}")
    mine = twins[twins["split"] == split]
    called = [classes[int(calls[members.get_loc(row)])] for row in mine["row"]]
    agrees = ["its own" if c == own else "the twin's" if c == twin else "neither"
              for c, own, twin in zip(called, mine["label"], mine["partner_label"])]
    return pd.DataFrame({"label": mine["label"].to_numpy(), "twin's label": mine["partner_label"].to_numpy(),
                         "called": called, "call agrees with": agrees,
                         "same picture": mine["same_picture"].to_numpy()})
