"""Shortcut check: does the image files' metadata alone predict the label?

Public datasets are often put together from several sources, one class from one, another
class from another. Then the size, colour mode or file type of an image tells its class,
and a network can score well by reading the file rather than the scan. This check gathers
what each file's header says (read without decoding the pixels), fits a small classifier on
that alone, and scores it by cross-validation. A metadata-only ROC AUC well above 0.5 means
the test score may partly measure the source, and the chapter should say so.

    check = shortcut_check(table)                    # table: path, label
    check.report                                     # {"roc_auc": Estimate, "balanced_accuracy": Estimate}
    check.per_feature                                # which single field predicts best
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from .metrics import Estimate, _balanced_accuracy, _roc_auc, bootstrap_ci, macro_roc_auc, per_group_values

NUMERIC = ("width", "height", "aspect", "file_bytes", "bytes_per_pixel", "bit_depth")
CATEGORICAL = ("mode", "format", "extension")
FEATURES = NUMERIC + CATEGORICAL
_BITS = {"1": 1, "L": 8, "P": 8, "LA": 16, "PA": 16, "I;16": 16, "I;16B": 16, "RGB": 24, "YCbCr": 24,
         "LAB": 24, "HSV": 24, "RGBA": 32, "RGBX": 32, "CMYK": 32, "I": 32, "F": 32}


def _header(path: str) -> dict:
    """One file's metadata from its header; the pixels are not decoded."""
    with Image.open(path) as image:
        width, height = image.size
        mode, kind = image.mode, image.format
    size = os.stat(path).st_size
    return {"path": path, "width": width, "height": height, "aspect": width / height, "mode": mode,
            "format": kind or "unknown", "extension": Path(path).suffix, "file_bytes": size,
            "bytes_per_pixel": size / (width * height), "bit_depth": _BITS.get(mode, 0)}


def image_metadata(paths: Sequence, threads: int = 4) -> pd.DataFrame:
    """Per file: width, height, aspect (width / height), mode (L, RGB, RGBA, P...), format (JPEG,
    PNG... as the header says), extension (as written, `.JPG` is not `.jpg`), file_bytes,
    bytes_per_pixel (compression) and bit_depth (bits per pixel of the mode).

    Read from headers only (PIL opens without decoding), so thousands of files take seconds.
    Taught in chapter 1 (the image heights beside the network's scores); reached through
    tl.shortcuts.shortcut_check in chapter 2.
    """
    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        rows = list(pool.map(_header, paths))
    return pd.DataFrame(rows, columns=["path", *FEATURES])


def _design(metadata: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """Numeric fields as they are (sizes on a log scale), categorical ones one-hot."""
    parts = []
    for name in features:
        if name in CATEGORICAL:
            parts.append(pd.get_dummies(metadata[name].astype(str), prefix=name).to_numpy(dtype=np.float64))
        elif name in ("width", "height", "file_bytes", "bytes_per_pixel"):
            parts.append(np.log(metadata[[name]].to_numpy(dtype=np.float64)))
        else:
            parts.append(metadata[[name]].to_numpy(dtype=np.float64))
    return np.hstack(parts)


def _auc(y: np.ndarray, proba: np.ndarray) -> float:
    if proba.shape[1] == 2:
        return _roc_auc(y, proba[:, 1])
    return macro_roc_auc(y, proba)


def _balanced_accuracy_of_calls(y: np.ndarray, proba: np.ndarray) -> float:
    return _balanced_accuracy(y, proba.argmax(axis=1))


def _out_of_fold(x: np.ndarray, y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Class probabilities of each row from a model that did not see it (stratified k-fold)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    model = HistGradientBoostingClassifier(max_iter=100, max_depth=3, min_samples_leaf=5, random_state=seed)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with threadpool_limits(1):  # small fits: one thread is fastest, and 30x faster on a busy machine
        return cross_val_predict(model, x, y, cv=folds, method="predict_proba")


@dataclass
class ShortcutCheck:
    """What `shortcut_check` measured.

    - `report`: `roc_auc` (one-vs-rest macro average with more than two classes) and
      `balanced_accuracy` of the metadata-only classifier, cross-validated, with bootstrap
      intervals: a dict for `card.metrics(check.report, prefix="metadata_only")`;
    - `chance`: the balanced accuracy of guessing (1 / number of classes); the AUC's is 0.5;
    - `per_class`: each class against the rest, ROC AUC from the same predictions;
    - `per_feature`: the same check with one field at a time, best first (`best_feature`);
    - `metadata`: the fields of every file; `by_label`: their summary per class.

    Used by tl.shortcuts.shortcut_check (chapters 1 and 2).
    """
    report: dict
    chance: float
    per_class: pd.DataFrame
    per_feature: pd.DataFrame
    metadata: pd.DataFrame
    by_label: pd.DataFrame
    n_folds: int = 5

    @property
    def best_feature(self) -> str:
        """The single metadata field whose check scored the highest ROC AUC."""
        return str(self.per_feature.index[0])


def metadata_by_label(metadata: pd.DataFrame, labels: Sequence) -> pd.DataFrame:
    """Per class: files, median width, height and file size, and the share of each mode, format
    and extension (columns like `format=PNG`). Taught in chapter 1; used by chapter 2.
    """
    frame = metadata.assign(label=np.asarray(labels))
    summary = frame.groupby("label").agg(files=("path", "size"), median_width=("width", "median"),
                                         median_height=("height", "median"),
                                         median_kib=("file_bytes", lambda s: s.median() / 1024))
    shares = [pd.crosstab(frame["label"], frame[name].astype(str), normalize="index").add_prefix(f"{name}=")
              for name in CATEGORICAL]
    return pd.concat([summary, *shares], axis=1)


def shortcut_check(table: pd.DataFrame, path_col: str = "path", label_col: str = "label", n_folds: int = 5,
                   seed: int = 0, n_boot: int = 1000, n_boot_features: int = 200,
                   features: Sequence[str] = FEATURES, metadata: pd.DataFrame | None = None) -> ShortcutCheck:
    """Cross-validated metadata-only classifier: how well do file headers predict the label?

    Gathers `image_metadata` for `table[path_col]` (or takes `metadata`, one row per table row),
    fits a small gradient-boosted tree model on the fields in `features` (sizes on a log scale,
    mode, format and extension one-hot), and scores out-of-fold predictions of stratified
    `n_folds`-fold cross-validation: ROC AUC and balanced accuracy, each with a stratified
    bootstrap interval (tl.metrics.bootstrap_ci, `n_boot` resamples). Then the same for each
    field alone (`n_boot_features` resamples: rougher intervals, to keep it quick). An AUC
    near 0.5 means the metadata carries no label; near 1, the files give the class away.
    Taught in chapter 1; used by chapter 2.
    """
    labels = table[label_col].to_numpy()
    classes, y = np.unique(labels.astype(str), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"a shortcut check needs at least two classes in {label_col!r}, got {list(classes)}")
    smallest = int(np.bincount(y).min())
    if smallest < n_folds:
        raise ValueError(f"the smallest class has {smallest} rows, fewer than n_folds={n_folds}")
    if metadata is None:
        metadata = image_metadata(table[path_col].tolist())
    if len(metadata) != len(table):
        raise ValueError(f"{len(metadata)} metadata rows for {len(table)} table rows")
    metadata = metadata.reset_index(drop=True)

    def scored(columns: Sequence[str], resamples: int) -> tuple[np.ndarray, dict]:
        proba = _out_of_fold(_design(metadata, columns), y, n_folds, seed)
        return proba, {"roc_auc": bootstrap_ci(_auc, y, proba, n_boot=resamples, seed=seed),
                       "balanced_accuracy": bootstrap_ci(_balanced_accuracy_of_calls, y, proba, n_boot=resamples, seed=seed)}

    proba, report = scored(list(features), n_boot)
    per_class = pd.DataFrame(
        [(name, *bootstrap_ci(_auc, (y == k).astype(int), np.column_stack([1 - proba[:, k], proba[:, k]]),
                              n_boot=n_boot, seed=seed)) for k, name in enumerate(classes)],
        columns=["class", *Estimate._fields]).set_index("class")
    rows = []
    for name in features:
        _, alone = scored([name], n_boot_features)
        rows.append({"feature": name, "distinct": int(metadata[name].nunique()),
                     **{f"roc_auc_{part}": v for part, v in zip(Estimate._fields, alone["roc_auc"])},
                     **{f"balanced_accuracy_{part}": v for part, v in zip(Estimate._fields, alone["balanced_accuracy"])}})
    per_feature = (pd.DataFrame(rows).set_index("feature")
                   .sort_values(["roc_auc_value", "balanced_accuracy_value"], ascending=False, kind="stable"))
    return ShortcutCheck(report=report, chance=1 / len(classes), per_class=per_class, per_feature=per_feature,
                         metadata=metadata, by_label=metadata_by_label(metadata, labels), n_folds=n_folds)


# --- chapter 2: what a shortcut check found, in words ------------------------------------

def describe(check: ShortcutCheck, unit: str = "files") -> str:
    """What `shortcut_check` found, as lines to print: the cross-validated ROC AUC (macro
    one-vs-rest with more than two classes) and balanced accuracy against chance, the best
    single field, each class against the rest (more than two classes), and the verdict: the
    files carry part of the label when the AUC's interval lies above 0.5.

    Taught in chapter 2; used by chapter 1.
    """
    auc, balanced = check.report["roc_auc"], check.report["balanced_accuracy"]
    several = len(check.per_class) > 2
    lines = [f"the class from the files' metadata alone ({check.n_folds}-fold cross-validated, "
             f"{len(check.metadata)} {unit}): {'macro one-vs-rest ' if several else ''}ROC AUC {auc} "
             f"(chance 0.5), balanced accuracy {balanced.value:.3f} (chance {check.chance:.2f})",
             f"the best single field: {check.best_feature}, ROC AUC {check.per_feature.iloc[0].roc_auc_value:.3f}"]
    if several:
        lines.append("each class against the rest: "
                     + ", ".join(f"{name} {row.value:.3f}" for name, row in check.per_class.iterrows()))
    if auc.low > 0.5:
        lines.append("-> better than chance: the files carry part of the label, so a score on these "
                     f"{unit} may partly measure where a file came from rather than what it shows")
    else:
        lines.append("-> not distinguishable from chance: the files' metadata does not give the label away")
    return "\n".join(lines)


def coloured_share(table: pd.DataFrame, per_class: int = 25, seed: int = 0, label_col: str = "label",
                   path_col: str = "path", tolerance: int = 2) -> pd.Series:
    """Per class, the share of up to `per_class` random images (e.g. crops) whose three colour
    channels differ by more than `tolerance` gray levels somewhere: a gray scan saved as RGB has
    equal channels, one that went through a colour JPEG or a colour source does not. A class
    whose share stands apart carries a colour shortcut the network can read. Taught in chapter 2.
    """
    from ..data.images import read_image
    from ..data.tables import sample_per_class

    looked_at = sample_per_class(table, per_class, seed=seed, label_col=label_col)
    coloured = [np.abs(np.diff(read_image(path, channels=3).astype(int), axis=2)).max() > tolerance
                for path in looked_at[path_col]]
    return looked_at.assign(coloured=coloured).groupby(label_col).coloured.mean()


# --- chapter 1: does the model's score track a metadata field? ---------------------------

def _spearman(x, y) -> float:
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


@dataclass
class ScoreVsField:
    """What `score_vs_field` measured: does a model's score follow one metadata field?

    - `overall`: Spearman correlation of the score with the field over all images (it is
      expected when the field predicts the label and the model predicts the label too);
    - `within_class`: the same correlation inside each class, where the label is fixed: a
      model that reads the field rather than the image keeps it there;
    - `strata`: the images cut into `n_strata` groups of about equal size by the field; in
      each, the count, positives, the model's ROC AUC and the field's own ROC AUC (in the
      direction it has over all images). A model that reads the image ranks well inside a
      stratum where the field has little left to say.

    Used by tl.shortcuts.score_vs_field (chapter 1).
    """
    field: str
    overall: Estimate
    within_class: pd.DataFrame
    strata: pd.DataFrame

    def report(self) -> dict:
        """The correlations as Estimates for `card.metrics`: `overall` and `within_<class>`."""
        inside = {f"within_{label}": Estimate(row.value, row.low, row.high)
                  for label, row in self.within_class.iterrows()}
        return {"overall": self.overall, **inside}

    def describe(self, what: str = "the model's P(positive)") -> str:
        """Lines to print: the correlations and, per stratum, the two ROC AUCs."""
        inside = "; ".join(f"{label} {row.value:.2f} ({row.low:.2f} to {row.high:.2f}, {int(row.n)} images)"
                           for label, row in self.within_class.iterrows())
        lines = [f"Spearman correlation of {what} with the image {self.field}: {self.overall} over all "
                 f"images; within each class: {inside}"]
        for name, row in self.strata.iterrows():
            lines.append(f"  {self.field} {name}: {int(row.n)} images, {int(row.positives)} positive; ROC AUC "
                         f"model {row.model_roc_auc:.3f}, {self.field} alone {row.field_roc_auc:.3f}")
        return "\n".join(lines)


def score_vs_field(p_positive, is_positive, values, field: str = "height", n_strata: int = 3,
                   n_boot: int = 1000, seed: int = 0, labels: Sequence | None = None) -> ScoreVsField:
    """Does a model's score track a file's metadata field (`values`, e.g. image heights)?

    Spearman correlations of `p_positive` with `values`, over all images and within each
    class (`labels`, default the 0/1 `is_positive`), each with a bootstrap interval
    (tl.metrics.bootstrap_ci, resampling within the classes overall); and the ROC AUC of the
    model and of the field alone inside `n_strata` strata of the field (quantiles; NaN where
    a stratum holds one class). Meant for the validation split, before the test is scored.
    Taught in chapter 1.
    """
    p = np.asarray(p_positive, dtype=np.float64)
    y = np.asarray(is_positive, dtype=bool)
    v = np.asarray(values, dtype=np.float64)
    if not (len(p) == len(y) == len(v)):
        raise ValueError(f"{len(p)} scores, {len(y)} labels and {len(v)} {field} values")
    labels = np.asarray(labels) if labels is not None else y.astype(int)
    pair = np.column_stack([p, v])
    overall = bootstrap_ci(lambda _, s: _spearman(s[:, 0], s[:, 1]), y.astype(int), pair, n_boot=n_boot, seed=seed)
    rows = []
    for label in np.unique(labels):
        inside = labels == label
        estimate = bootstrap_ci(lambda s: _spearman(s[:, 0], s[:, 1]), pair[inside], n_boot=n_boot, seed=seed)
        rows.append({"class": label, **estimate._asdict(), "n": int(inside.sum())})
    within = pd.DataFrame(rows).set_index("class")
    sign = 1.0 if _roc_auc(y, v) >= 0.5 else -1.0
    cuts = pd.qcut(v, n_strata, duplicates="drop")
    codes = np.asarray(cuts.codes)  # a stratum holding one class gets NaN AUCs (per_group_values)
    strata = pd.DataFrame({
        "stratum": [f"{interval.left:.0f}-{interval.right:.0f}" for interval in cuts.categories],
        "n": np.bincount(codes, minlength=len(cuts.categories)),
        "positives": np.bincount(codes, weights=y, minlength=len(cuts.categories)).astype(int),
        "model_roc_auc": per_group_values(_roc_auc, y, p, codes).to_numpy(),
        "field_roc_auc": per_group_values(_roc_auc, y, sign * v, codes).to_numpy()})
    return ScoreVsField(field, overall, within, strata.set_index("stratum"))
