"""The book's figures: sample grids, mask and heat-map overlays, training curves, confusion matrix, ROC.

Every function returns a `matplotlib.figure.Figure` and, given `save=path`, also writes it
as a PNG (100 dpi, tight box). Figures are built without pyplot: nothing is registered
globally, so no GUI backend is needed (headless runs, papermill, tests) and a figure is
never shown twice. In a notebook a figure shows when it is the cell's value or when it is
passed to `display(fig)`. Figures are kept small so executed notebooks stay small.

Extra results ride on the figure as attributes, documented per function:
`plot_confusion_matrix(...).confusion_matrix` and `plot_roc(...).aucs`.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from .metrics import binarize, class_indices, dice_scores

RIGHT_COLOUR = "green"
WRONG_COLOUR = "red"
TRUE_MASK_COLOUR = "lime"
PRED_MASK_COLOUR = "red"
SAVE_DPI = 100
# Text sizes in points: a page shows figures at 96 px per inch (tl.notebook), where 12 pt is
# the 16 px of the body text. Grids are at most MAX_WIDTH_IN wide, the page's text column.
LABEL_PT, TITLE_PT, SUPTITLE_PT, NOTE_PT = 12, 13, 14, 11
MAX_WIDTH_IN = 8.0


def _finish(fig: Figure, save: str | Path | None) -> Figure:
    """Save the figure as PNG when a path is given; return it either way."""
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=SAVE_DPI, bbox_inches="tight", format="png")
    return fig


def _fit_title(text, cell: float) -> str:
    """`text` wrapped into lines that fit a panel `cell` inches wide at LABEL_PT, so that a long
    title cannot widen the figure past the text column (and shrink its labels on the page).

    Used by tl.plotting.plot_image_grid and plot_heatmap_overlay.
    """
    wrap = max(8, int(cell * 72 / (0.6 * LABEL_PT)))  # characters per line
    return "\n".join(textwrap.fill(line, wrap) for line in str(text).split("\n"))


def _displayable(image) -> np.ndarray:
    """An array imshow draws as intended: HxW or HxWx3, uint8 or floats in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    if low >= 0.0 and high <= 1.0:
        return image
    if low >= 0.0 and high <= 255.0:
        return image / 255.0  # 0..255 pixels held as floats or wider integers
    # Preprocessed inputs (e.g. [-1, 1] or ImageNet-normalised) are shown by their own range.
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _class_name(value, class_names: Sequence[str] | None) -> str:
    """The display name of a label that may be an index into class_names or a name already."""
    if class_names is not None and isinstance(value, (int, np.integer)):
        return str(class_names[int(value)])
    return str(value)


def plot_image_grid(images, titles=None, ncols: int = 5, labels=None, predictions=None,
                    class_names: Sequence[str] | None = None, cmap: str = "gray",
                    suptitle: str | None = None, save: str | Path | None = None) -> Figure:
    """A grid of sample images, one axes per image (empty cells are not drawn).

    `labels` alone titles each image with its class; `labels` and `predictions` together
    title it "true / pred", green when they agree and red when they do not. Labels may be
    class indices (named through `class_names`) or names. `titles` go above those lines.
    2-D images use `cmap`. Used by chapters 1, 2, 3 and 5.
    """
    images = list(images)
    if not images:
        raise ValueError("plot_image_grid needs at least one image")
    if predictions is not None and labels is None:
        raise ValueError("predictions need labels to compare with")
    count = len(images)
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    cell = min(2.0, MAX_WIDTH_IN / ncols)
    fig = Figure(figsize=(cell * ncols, (cell + 0.45) * nrows), layout="constrained")
    for index, image in enumerate(images):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        shown = _displayable(image)
        ax.imshow(shown, cmap=cmap if shown.ndim == 2 else None)
        ax.set_axis_off()
        lines, colour = [], "black"
        if titles is not None:
            lines.append(str(titles[index]))
        if labels is not None:
            true_name = _class_name(labels[index], class_names)
            if predictions is None:
                lines.append(true_name)
            else:
                pred_name = _class_name(predictions[index], class_names)
                lines.append(f"{true_name} / {pred_name}")
                colour = RIGHT_COLOUR if true_name == pred_name else WRONG_COLOUR
        if lines:
            ax.set_title(_fit_title("\n".join(lines), cell), color=colour, fontsize=LABEL_PT)
    if suptitle:
        fig.suptitle(suptitle, fontsize=SUPTITLE_PT)
    return _finish(fig, save)


def plot_class_samples(table, per_class: int, seed: int = 0, label_col: str = "label",
                       path_col: str = "path", labels=None, titles_col: str | None = None,
                       suptitle: str | None = None) -> Figure:
    """`per_class` random images of each class of `table` (`tl.data.sample_per_class`), one row
    of the grid per class. `labels`: a function from a class to the words shown under its
    images (default: the class itself); `titles_col`: a column shown above each image (the
    patient, say).
    Used by the dataset tour (chapter 0) and chapter 1.
    """
    from ..data.images import read_image
    from ..data.tables import sample_per_class

    samples = sample_per_class(table, per_class, seed=seed, label_col=label_col)
    shown = [labels(value) if labels else value for value in samples[label_col]]
    return plot_image_grid([read_image(path) for path in samples[path_col]], labels=shown,
                           titles=list(samples[titles_col]) if titles_col else None,
                           ncols=per_class, suptitle=suptitle)


def _draw_overlay(ax, image, mask: np.ndarray, colour: str, alpha: float) -> None:
    """Image with the mask as a semi-transparent colour layer and its outline."""
    shown = _displayable(image)
    ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    layer = np.zeros(mask.shape + (4,), np.float32)
    layer[mask] = to_rgba(colour, alpha)
    ax.imshow(layer)
    if mask.any() and not mask.all():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=0.8)
    ax.set_axis_off()


def plot_mask_overlay(images, true_masks, pred_masks=None, titles=None, alpha: float = 0.4,
                      save: str | Path | None = None) -> Figure:
    """One row per image: image | image + true mask | image + predicted mask (when given).

    Masks may be 0/255, 0/1 or probabilities (thresholded at 0.5). The true mask is drawn in
    green, the predicted one in red, each as a translucent layer plus its contour; the
    predicted panel's title gives its Dice overlap with the true mask.
    Used by the dataset tour (chapter 0) and chapter 4.
    """
    images, true_masks = list(images), list(true_masks)
    if len(images) != len(true_masks) or (pred_masks is not None and len(pred_masks) != len(images)):
        raise ValueError("images, true_masks and pred_masks must have the same length")
    ncols = 2 if pred_masks is None else 3
    fig = Figure(figsize=(2.4 * ncols, 2.6 * len(images)), layout="constrained")
    for row, image in enumerate(images):
        truth = binarize(true_masks[row])
        ax = fig.add_subplot(len(images), ncols, row * ncols + 1)
        shown = _displayable(image)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        ax.set_axis_off()
        ax.set_title("image" if titles is None else str(titles[row]), fontsize=LABEL_PT)
        ax = fig.add_subplot(len(images), ncols, row * ncols + 2)
        _draw_overlay(ax, image, truth, TRUE_MASK_COLOUR, alpha)
        ax.set_title("true mask", fontsize=LABEL_PT)
        if pred_masks is not None:
            ax = fig.add_subplot(len(images), ncols, row * ncols + 3)
            predicted = binarize(pred_masks[row])
            _draw_overlay(ax, image, predicted, PRED_MASK_COLOUR, alpha)
            ax.set_title(f"predicted (Dice {dice_scores(truth[None], predicted[None])[0]:.2f})", fontsize=LABEL_PT)
    return _finish(fig, save)


def plot_heatmap_overlay(images, heatmaps, titles=None, regions=None, alpha: float = 0.45, ncols: int = 4,
                         save: str | Path | None = None) -> Figure:
    """Each image with its heat map (e.g. Grad-CAM, tl.explain.grad_cam) laid over it in "jet".

    Heat maps are resized to their image. `regions` (optional, one boolean mask per image,
    e.g. tl.explain.centre_mask or a true tumour mask) are outlined in white.
    Used by chapters 1, 2, 4 and 5.
    """
    from ..data.images import resize_image

    images, heatmaps = list(images), list(heatmaps)
    if not images or len(images) != len(heatmaps) or (regions is not None and len(regions) != len(images)):
        raise ValueError("plot_heatmap_overlay needs as many heat maps (and regions) as images, at least one")
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    cell = min(2.2, MAX_WIDTH_IN / ncols)
    fig = Figure(figsize=(cell * ncols, (cell + 0.4) * nrows), layout="constrained")
    for index, (image, heat) in enumerate(zip(images, heatmaps)):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        shown = _displayable(image)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        ax.imshow(resize_image(np.asarray(heat, np.float32), shown.shape[:2]), cmap="jet", alpha=alpha, vmin=0, vmax=1)
        if regions is not None:
            region = resize_image(np.asarray(regions[index], np.float32), shown.shape[:2])
            ax.contour(region, levels=[0.5], colors=["white"], linewidths=0.8)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(_fit_title(titles[index], cell), fontsize=LABEL_PT)
    return _finish(fig, save)


def _history_dict(history) -> dict[str, list[float]]:
    """The {metric: [per-epoch values]} of a keras History or of a plain dict."""
    values = getattr(history, "history", history)
    if not isinstance(values, Mapping):
        raise TypeError(f"expected a keras History or a dict of metric lists, got {type(history).__name__}")
    return {str(key): [float(v) for v in series] for key, series in values.items()}


def _is_single_history(histories) -> bool:
    if hasattr(histories, "history"):
        return True
    return isinstance(histories, Mapping) and all(
        isinstance(series, (list, tuple, np.ndarray)) and (len(series) == 0 or np.isscalar(series[0]))
        for series in histories.values())


def training_phases(histories) -> list[tuple[str, dict[str, list[float]]]]:
    """Normalise one history, a list of them, or {phase name: history} to [(name, dict)].

    Used by tl.plotting.plot_training_curves (chapters 1 to 4).
    """
    if _is_single_history(histories):
        return [("", _history_dict(histories))]
    if isinstance(histories, Mapping):
        return [(str(name), _history_dict(history)) for name, history in histories.items()]
    return [(f"phase {index + 1}", _history_dict(history)) for index, history in enumerate(histories)]


def plot_training_curves(histories, metrics: Sequence[str] = ("loss", "accuracy"),
                         save: str | Path | None = None) -> Figure:
    """Train and validation curves, one panel per metric, phases continued on one epoch axis.

    `histories` is a keras History, a dict {metric: [values], "val_"+metric: [values]}, a
    list of those, or {phase name: history}. Phases follow one another (epochs 1..n1, then
    n1+1..n1+n2, ...) with a dotted vertical line and the phase's name at each boundary.
    Metrics that no phase recorded are left out; none at all is an error. Used by chapters 1, 2, 3 and 4.
    """
    phases = training_phases(histories)
    recorded = [m for m in metrics if any(m in h or f"val_{m}" in h for _, h in phases)]
    if not recorded:
        found = sorted({key for _, h in phases for key in h})
        raise ValueError(f"none of the metrics {list(metrics)} is in the histories; they hold {found}")
    fig = Figure(figsize=(min(MAX_WIDTH_IN, 4.0 * len(recorded)), 3.3), layout="constrained")
    for panel, metric in enumerate(recorded):
        ax = fig.add_subplot(1, len(recorded), panel + 1)
        offset = 0
        for index, (name, history) in enumerate(phases):
            length = max(len(history.get(metric, [])), len(history.get(f"val_{metric}", [])))
            if index > 0:
                ax.axvline(offset + 0.5, color="gray", linestyle=":", linewidth=1)
            if name and len(phases) > 1:  # upright along the phase's start: names never run into each other
                ax.text(offset + 0.6, 0.97, name, transform=ax.get_xaxis_transform(), rotation=90,
                        fontsize=NOTE_PT, va="top", ha="left", color="gray")
            for key, colour, style, label in ((metric, "C0", "-", "train"),
                                              (f"val_{metric}", "C1", "--", "validation")):
                series = history.get(key, [])
                if series:
                    ax.plot(np.arange(offset + 1, offset + len(series) + 1), series, color=colour,
                            linestyle=style, marker=".", label=label if index == 0 else None)
            offset += length
        ax.set_xlabel("epoch")
        ax.set_title(metric, fontsize=TITLE_PT)
        ax.legend(fontsize=NOTE_PT)
    return _finish(fig, save)


def plot_curves(curves: Mapping, xlabel: str, ylabel: str, title: str | None = None,
                save: str | Path | None = None) -> Figure:
    """One line per named pandas Series (its index on x, its values on y), each line's best
    (highest) point ringed: runs compared on one axis that is not the epoch, e.g. validation
    ROC AUC against the training images presented (`tl.keras_training.by_films`).

    `fig.best` is a table, a row per curve: its best value, the x where it was reached and
    its last x ("<xlabel> in all"). Used by chapter 3.
    """
    import pandas as pd

    if not curves:
        raise ValueError("no curves to draw")
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    rows = {}
    for index, (name, series) in enumerate(curves.items()):
        x, y = np.asarray(series.index, dtype=float), np.asarray(series, dtype=float)
        on_top = 2 + len(curves) - index  # an earlier curve stays visible where a later one retraces it
        ax.plot(x, y, color=f"C{index}", marker=".", label=str(name), zorder=on_top)
        best = int(np.nanargmax(y))
        ax.plot(x[best], y[best], "o", markersize=10, markerfacecolor="none", color=f"C{index}", zorder=on_top)
        rows[str(name)] = {f"best {ylabel}": round(float(y[best]), 3), f"at {xlabel}": series.index[best],
                           f"{xlabel} in all": series.index[-1]}
    fig.best = pd.DataFrame.from_dict(rows, orient="index")
    ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax.set_ylabel(ylabel, fontsize=LABEL_PT)
    if title:
        ax.set_title(title, fontsize=TITLE_PT)
    ax.legend(fontsize=NOTE_PT)
    return _finish(fig, save)


def plot_confusion_matrix(y_true, y_pred, class_names: Sequence[str], normalize: bool = False,
                          save: str | Path | None = None) -> Figure:
    """Confusion matrix, rows = true class, columns = predicted, every cell annotated.

    `normalize=True` divides each row by its count (recall on the diagonal; an empty row
    stays 0). The matrix drawn is `fig.confusion_matrix` (a numpy array). Used by chapters 1, 2, 4 and 5.
    """
    from sklearn.metrics import confusion_matrix

    true_index = class_indices(y_true, class_names)
    pred_index = class_indices(y_pred, class_names)
    matrix = confusion_matrix(true_index, pred_index, labels=list(range(len(class_names))))
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)
    size = 2.6 + 0.75 * len(class_names)
    fig = Figure(figsize=(size + 0.8, size), layout="constrained")
    ax = fig.add_subplot()
    shown = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, matrix.max()))
    fig.colorbar(shown, ax=ax, shrink=0.8)
    dark_above = (1 if normalize else max(1, matrix.max())) / 2
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, f"{value:.2f}" if normalize else f"{value:d}", ha="center", va="center",
                fontsize=LABEL_PT, color="white" if value > dark_above else "black")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, [str(c) for c in class_names], rotation=45, ha="right", fontsize=LABEL_PT)
    ax.set_yticks(ticks, [str(c) for c in class_names], fontsize=LABEL_PT)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalize else ""), fontsize=TITLE_PT)
    fig.confusion_matrix = matrix
    return _finish(fig, save)


def _draw_roc(ax, is_positive: np.ndarray, score: np.ndarray, name: str) -> float:
    """One ROC curve with its AUC in the legend; NaN (and no curve) without both classes."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if is_positive.all() or not is_positive.any():
        ax.plot([], [], label=f"{name} (AUC n/a: one class only)")
        return float("nan")
    false_pos, true_pos, _ = roc_curve(is_positive, score)
    auc = float(roc_auc_score(is_positive, score))
    ax.plot(false_pos, true_pos, label=f"{name} (AUC = {auc:.3f})")
    return auc


def plot_roc(y_true, scores, class_names: Sequence[str] | None = None,
             save: str | Path | None = None) -> Figure:
    """ROC curves with AUC in the legend; the AUCs are also `fig.aucs`, a dict.

    Binary: `scores` is P(positive) (N or Nx1), or an Nx2 softmax whose column 1 is the
    positive class; `y_true` is 0/1. `fig.aucs` = {positive name: auc}.
    Several classes: `scores` is NxK, `y_true` holds class indices (or is one-hot); one
    curve per class, one-vs-rest. `fig.aucs` = {class name: auc, ..., "macro": mean}.
    A class absent from y_true (or present everywhere) has AUC NaN and no curve.
    Used by chapters 1, 2, 4 and 5.
    """
    scores = np.asarray(scores, dtype=np.float64)
    y_true = np.asarray(y_true)
    if y_true.ndim == 2:
        y_true = y_true.argmax(axis=1)
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    fig = Figure(figsize=(5.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1)
    aucs: dict[str, float] = {}
    if scores.ndim == 1 or scores.shape[1] == 2:
        positive = scores if scores.ndim == 1 else scores[:, 1]
        name = str(class_names[1]) if class_names is not None else "positive"
        aucs[name] = _draw_roc(ax, y_true.astype(int) == 1, positive, name)
        ax.set_title("ROC", fontsize=TITLE_PT)
    else:
        names = [str(c) for c in class_names] if class_names is not None else [str(k) for k in range(scores.shape[1])]
        for k, name in enumerate(names):
            aucs[name] = _draw_roc(ax, y_true.astype(int) == k, scores[:, k], name)
        aucs["macro"] = float(np.nanmean(list(aucs.values())))
        ax.set_title(f"ROC, one-vs-rest (macro AUC = {aucs['macro']:.3f})", fontsize=TITLE_PT)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=NOTE_PT, loc="lower right")
    fig.aucs = aucs
    return _finish(fig, save)
