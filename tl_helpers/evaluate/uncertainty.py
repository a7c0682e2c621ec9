"""Monte Carlo dropout: a dropout layer that stays on at inference, and what to do with it.

A network with dropout left on gives a slightly different answer every time it sees the
same input. Averaged over many passes, those answers give a prediction (the predictive
mean) and a measure of how unsure the network is about it (their spread). A classifier
that can say "I am not sure" can hand its least certain cases to a person and be more
accurate on the rest: `accuracy_coverage` measures that trade-off and
`plot_accuracy_coverage` draws it.

Keras only (backend-neutral); the functions on arrays work with any model's outputs.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import keras
import numpy as np
import pandas as pd


@keras.saving.register_keras_serializable(package="tl_helpers")
class MCDropout(keras.layers.Dropout):
    """Dropout that drops units at inference too (`training` is ignored): Monte Carlo dropout.

    Every call, in `fit`, `predict` or a plain `model(x)`, draws a new random mask, so
    repeated predictions of one input differ; `mc_predict` collects them. Taught in chapter 1.
    """

    def call(self, inputs, training=None):
        return super().call(inputs, training=True)


def mc_dropout_head(feature_dim: int, n_classes: int, rate: float = 0.2, hidden_units: int | None = None,
                    seed: int | None = None, name: str = "mc_dropout_head") -> keras.Model:
    """A classifier head on pooled features: MCDropout(rate) -> Dense(hidden, relu) -> Dense(softmax).

    `hidden_units` defaults to 2 x `n_classes`. The dropout stays on at inference, so the
    head gives a distribution of predictions rather than one (see `mc_predict`). Put it on a
    backbone with `tl_helpers.features.stack_head` to fine-tune the whole network. Taught in chapter 1.
    """
    inputs = keras.Input((feature_dim,), name=f"{name}_features")
    x = MCDropout(rate, seed=seed, name=f"{name}_mc_dropout")(inputs)
    x = keras.layers.Dense(hidden_units or 2 * n_classes, activation="relu", name=f"{name}_hidden")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name=f"{name}_softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def without_mc_dropout(head: keras.Model, name: str = "head_without_mc_dropout") -> keras.Model:
    """The head of `mc_dropout_head` with plain Dropout (off when predicting) in place of
    MCDropout; the trained Dense layers are shared, not copied.

    It gives one deterministic pass: what an exported model can carry (a file that answers
    differently each time cannot be checked or used as a plain classifier). Taught in chapter 1.
    """
    dropout = head.layers[1]
    if not isinstance(dropout, MCDropout):
        raise ValueError(f"{head.name}: expected MCDropout after the input (tl.uncertainty.mc_dropout_head), "
                         f"found {type(dropout).__name__}")
    inputs = keras.Input((head.inputs[0].shape[-1],), name="features")
    x = keras.layers.Dropout(dropout.rate, name="dropout")(inputs)
    for layer in head.layers[2:]:  # the dense layers, weights and all
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def live_hidden_units(head: keras.Model, features) -> np.ndarray:
    """For each hidden ReLU unit of a `mc_dropout_head`, whether any of `features` switches it on.

    A unit whose input stays negative outputs zero and gets no gradient, so it cannot
    recover; a head with none left gives every image the same probability (a collapsed
    run). Taught in chapter 1.
    """
    weights, bias = head.layers[2].get_weights()  # the Dense ReLU layer after the dropout
    return (np.asarray(features) @ weights + bias > 0).any(axis=0)


def mc_predict(model, inputs, passes: int = 30, batch_size: int = 256) -> np.ndarray:
    """`passes` stochastic predictions of `inputs` by a model with MC dropout: (passes, N, ...).

    Each pass is a full `predict` over the inputs, with fresh dropout masks. Running a
    head with MC dropout on cached features, rather than the whole network on images,
    makes 30 passes cost next to nothing. Taught in chapter 1.
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1, not {passes}")
    outputs = [np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0)) for _ in range(passes)]
    return np.stack(outputs).astype(np.float64)


def predictive_summary(samples) -> pd.DataFrame:
    """Per-example mean and spread of MC samples shaped (passes, N, classes).

    Columns: `p_mean_<k>` for each class k (the predictive mean), `predicted` (argmax of
    the mean), `spread` (standard deviation across passes of the predicted class's
    probability; for two classes, of the positive class's, which is the same number),
    `entropy` (of the mean, in nats) and `confidence` (the mean's largest probability). Taught in chapter 1.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 3:
        raise ValueError(f"expected samples shaped (passes, N, classes), got {samples.shape}")
    mean = samples.mean(axis=0)
    predicted = mean.argmax(axis=1)
    rows = np.arange(mean.shape[0])
    spread = samples[:, rows, predicted].std(axis=0)
    entropy = -(mean * np.log(np.clip(mean, 1e-12, 1.0))).sum(axis=1)
    table = pd.DataFrame({f"p_mean_{k}": mean[:, k] for k in range(mean.shape[1])})
    table["predicted"] = predicted
    table["spread"] = spread
    table["entropy"] = entropy
    table["confidence"] = mean[rows, predicted]
    return table


def accuracy_coverage(y_true, y_pred, uncertainty, coverages=None) -> pd.DataFrame:
    """Accuracy on the most certain cases when the rest are referred to a person.

    For each coverage c (a fraction of the cases the model keeps), the ceil(c * N) cases
    with the lowest `uncertainty` are kept; ties are broken by position (stable sort).
    Returns one row per coverage: `coverage`, `kept`, `correct`, `accuracy`, and `referred`.
    Default coverages: 1.0 down to 0.1 in steps of 0.05. Taught in chapter 1.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    uncertainty = np.asarray(uncertainty, dtype=np.float64).ravel()
    if not len(y_true) == len(y_pred) == len(uncertainty):
        raise ValueError(f"lengths differ: y_true {len(y_true)}, y_pred {len(y_pred)}, "
                         f"uncertainty {len(uncertainty)}")
    if len(y_true) == 0:
        raise ValueError("no cases")
    if coverages is None:
        coverages = np.round(np.arange(1.0, 0.099, -0.05), 2)
    order = np.argsort(uncertainty, kind="stable")
    correct_sorted = (y_true == y_pred)[order]
    rows = []
    for coverage in coverages:
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], not {coverage}")
        kept = max(1, math.ceil(round(coverage * len(y_true), 9)))
        correct = int(correct_sorted[:kept].sum())
        rows.append({"coverage": float(coverage), "kept": kept, "correct": correct,
                     "accuracy": correct / kept, "referred": len(y_true) - kept})
    return pd.DataFrame(rows)


def accuracy_at_coverage(y_true, y_pred, uncertainty, coverage: float) -> tuple[float, int, int]:
    """(accuracy, correct, kept) when only the `coverage` fraction most certain cases are kept.

    Taught in chapter 1.
    """
    row = accuracy_coverage(y_true, y_pred, uncertainty, [coverage]).iloc[0]
    return float(row.accuracy), int(row.correct), int(row.kept)


def plot_accuracy_coverage(curves: Mapping[str, pd.DataFrame], title: str = "Referring the least certain cases",
                           save: str | Path | None = None):
    """Accuracy against coverage, one line per way of ranking uncertainty.

    `curves` maps a name (e.g. "MC dropout spread") to an `accuracy_coverage` table. The
    x axis runs from full coverage (nothing referred) on the left to low coverage on the right.
    Taught in chapter 1.
    """
    from matplotlib.figure import Figure

    from .plotting import _finish

    if not curves:
        raise ValueError("no curves to plot")
    fig = Figure(figsize=(4.6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for index, (name, table) in enumerate(curves.items()):
        ax.plot(table["coverage"], table["accuracy"], marker=".", color=f"C{index}", label=name)
    ax.invert_xaxis()
    ax.set_xlabel("coverage (fraction of cases the model decides)")
    ax.set_ylabel("accuracy on the cases kept")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _finish(fig, save)


def plot_mc_predictions(p_positive, spread, correct, positive_name: str = "positive",
                        save: str | Path | None = None):
    """Each case's predictive mean P(positive) against its MC spread; wrong calls stand out.

    Cases near P = 0.5 or with a wide spread are the ones worth a second look; the plot
    shows whether the model's mistakes sit there. Taught in chapter 1.
    """
    from matplotlib.figure import Figure

    from .plotting import RIGHT_COLOUR, WRONG_COLOUR, _finish

    p_positive = np.asarray(p_positive, dtype=np.float64).ravel()
    spread = np.asarray(spread, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    fig = Figure(figsize=(4.6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for mask, colour, marker, label in ((correct, RIGHT_COLOUR, "o", "right"), (~correct, WRONG_COLOUR, "x", "wrong")):
        ax.scatter(p_positive[mask], spread[mask], c=colour, marker=marker, s=18, alpha=0.7,
                   label=f"{label} ({int(mask.sum())})")
    ax.axvline(0.5, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel(f"predictive mean P({positive_name})")
    ax.set_ylabel("spread across MC passes (std)")
    ax.set_xlim(-0.02, 1.02)
    ax.legend(fontsize=7)
    return _finish(fig, save)
