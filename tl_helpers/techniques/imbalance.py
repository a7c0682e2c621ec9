"""Class imbalance: weights that make every class count the same in the training loss.

Chest X-rays hold about three pneumonia films for one normal film; a model trained
without weights learns that "pneumonia" is the safe answer. Keras' `fit(class_weight=...)`
multiplies each sample's loss by its class's weight.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def balanced_class_weights(labels: Sequence, classes: Sequence | None = None) -> dict:
    """{class: n_samples / (n_classes * n_in_class)}, the "balanced" rule (as scikit-learn's).

    Each class's weights then sum to the same total (n_samples / n_classes), so the rare
    class weighs as much in the loss as the common one. `labels` are class indices or
    names; `classes` (default: the sorted distinct labels) fixes the keys, and a class
    with no sample is an error (its weight would be infinite). Keys are plain Python
    ints for integer labels, as Keras expects. Taught in chapter 3.
    """
    labels = np.asarray(labels).ravel()
    if labels.size == 0:
        raise ValueError("no labels given")
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    counts = {c: int((labels == c).sum()) for c in classes.tolist()}
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise ValueError(f"classes {empty} have no samples: their weight would be infinite")
    unknown = sorted(set(np.unique(labels).tolist()) - set(counts))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(counts)}")
    return {c: len(labels) / (len(counts) * n) for c, n in counts.items()}
