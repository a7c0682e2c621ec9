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


# chapter 3: the article's flow_from_directory stream, the class weights as sample weights
def weighted_batches(x, y, batch_size: int, seed: int = 0):
    """Endless batches (x, y, sample weight), drawn from shuffled passes over the rows.

    Each pass visits every row once in a new (seeded) order, and a batch may span two
    passes, as Keras' `flow_from_directory` does: an "epoch" can then be any number of
    steps. Every sample weighs its class's balanced weight (`balanced_class_weights`), so
    both classes count the same in the loss. Taught in chapter 3.
    """
    y = np.asarray(y)
    weights = balanced_class_weights(y)
    weight = np.array([weights[label] for label in y.tolist()], dtype=np.float32)
    rng = np.random.default_rng(seed)
    order = np.empty(0, dtype=int)
    while True:
        while len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(y))])
        rows, order = order[:batch_size], order[batch_size:]
        yield x[rows], y[rows], weight[rows]
