"""Are the probabilities honest? Reliability, calibration error, Brier score, temperature scaling.

A classifier that says 0.9 should be right about 9 times in 10 when it says so. Conventions:

- Probabilities are (N, K) in class order, or a 1-D P(positive) for a binary model (then
  read as the two columns [1 - p, p]).
- Reliability and ECE are *top-label*: each case's confidence is its largest probability
  and it counts as correct when that class is the true one. Cases fall into `n_bins`
  equal-width bins of confidence on [0, 1] (default 10), bin k holding [k/n, (k+1)/n) and
  the last one 1.0 too.
  ECE = sum over bins of (cases in bin / N) * |accuracy - mean confidence|.
- Brier score: for a 1-D P(positive), mean (p - y)^2; for (N, K), the mean over cases of
  the sum over classes of (p_k - [y = k])^2 (twice the 1-D value for two classes).
- Temperature scaling divides the logits by one number T fitted on the validation split
  (minimum negative log-likelihood, a bounded 1-D search over log T); T > 1 softens
  over-confident probabilities. It never changes which class is most probable. Given
  probabilities instead of logits, their logarithms serve as logits (softmax is the same).

`compare_referral` asks chapter 1's question: handing the least certain cases to a person,
is the MC-dropout spread a better guide than the softmax confidence?
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from ..paths import BookWarning
import pandas as pd

from .metrics import Estimate, bootstrap_ci

DEFAULT_BINS = 10
TEMPERATURE_BOUNDS = (0.05, 20.0)
# Below this many cases ECE gets no interval: with 10 bins most hold a handful of cases, the
# binned |accuracy - confidence| is biased upwards, and a bootstrap of it sits around that bias
# (chapter 1's 36 test images gave ECE 0.036 with an "interval" of 0.034-0.157).
MIN_CASES_FOR_ECE_INTERVAL = 100


class TemperatureAtBoundWarning(BookWarning):
    """The fitted temperature reached a bound of its search: the model may be constant or degenerate.

    Raised (as a warning) by tl.calibration.fit_temperature (chapters 1 to 5).
    """


def _as_matrix(probabilities) -> np.ndarray:
    """(N, K) probabilities; a 1-D P(positive) becomes [1 - p, p]."""
    values = np.asarray(probabilities, dtype=np.float64)
    if values.ndim == 1:
        return np.stack([1.0 - values, values], axis=1)
    if values.ndim != 2:
        raise ValueError(f"probabilities must be (N,) or (N, K), got shape {values.shape}")
    return values


def _labels(y_true, count: int) -> np.ndarray:
    labels = np.asarray(y_true).astype(int).ravel()
    if len(labels) != count:
        raise ValueError(f"{len(labels)} labels for {count} predictions")
    return labels


def reliability_table(y_true, probabilities, n_bins: int = DEFAULT_BINS) -> pd.DataFrame:
    """One row per equal-width confidence bin: low, high, count, confidence (mean), accuracy.

    Top-label: confidence is the largest probability; a bin without cases has NaN means.
    Taught in chapter 1 (used by every classifier chapter).
    """
    matrix = _as_matrix(probabilities)
    labels = _labels(y_true, len(matrix))
    confidence = matrix.max(axis=1)
    correct = matrix.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.floor(confidence * n_bins).astype(int), 0, n_bins - 1)  # [k/n, (k+1)/n); 1.0 in the last
    rows = []
    for b in range(n_bins):
        members = index == b
        rows.append({"low": edges[b], "high": edges[b + 1], "count": int(members.sum()),
                     "confidence": float(confidence[members].mean()) if members.any() else float("nan"),
                     "accuracy": float(correct[members].mean()) if members.any() else float("nan")})
    return pd.DataFrame(rows)


def expected_calibration_error(y_true, probabilities, n_bins: int = DEFAULT_BINS) -> float:
    """Top-label ECE with `n_bins` equal-width bins: sum of (count / N) |accuracy - confidence|.

    0 for a perfectly calibrated model. Taught in chapter 1 (used by every classifier chapter).
    """
    table = reliability_table(y_true, probabilities, n_bins)
    used = table[table["count"] > 0]
    return float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum() / table["count"].sum())


def brier_score(y_true, probabilities) -> float:
    """Mean squared error of the probabilities (see the module's note on 1-D and (N, K)).

    Taught in chapter 1 (used by every classifier chapter).
    """
    values = np.asarray(probabilities, dtype=np.float64)
    labels = _labels(y_true, len(values))
    if values.ndim == 1:
        return float(np.mean((values - labels) ** 2))
    onehot = np.eye(values.shape[1])[labels]
    return float(np.mean(np.sum((values - onehot) ** 2, axis=1)))


def calibration_report(y_true, probabilities, n_bins: int = DEFAULT_BINS, n_boot: int = 1000,
                       seed: int = 0, groups=None) -> dict[str, Estimate]:
    """ECE and Brier score with 95% percentile-bootstrap intervals (tl.metrics.bootstrap_ci).

    Below MIN_CASES_FOR_ECE_INTERVAL cases the ECE comes without an interval (NaN bounds; see
    the constant's note); the Brier score, a plain mean, keeps its interval. With `groups`
    (a patient per case) both intervals resample whole patients, and fewer than 10 give none.
    Record it with `card.metrics(report, prefix=...)`. Taught in chapter 1.
    """
    labels = np.asarray(y_true).astype(int).ravel()
    values = np.asarray(probabilities, dtype=np.float64)
    options = dict(n_boot=n_boot, seed=seed, groups=groups)
    ece = (bootstrap_ci(lambda y, p: expected_calibration_error(y, p, n_bins), labels, values, **options)
           if len(labels) >= MIN_CASES_FOR_ECE_INTERVAL
           else Estimate(expected_calibration_error(labels, values, n_bins), float("nan"), float("nan")))
    return {"ece": ece, "brier": bootstrap_ci(brier_score, labels, values, **options)}


# --- temperature scaling ------------------------------------------------------------------------

def _as_logits(values, from_logits: bool) -> tuple[np.ndarray, bool]:
    """(N, K) logits, and whether the input was a 1-D P(positive) (or a 1-D logit)."""
    values = np.asarray(values, dtype=np.float64)
    one_d = values.ndim == 1
    if from_logits:
        return (np.stack([np.zeros_like(values), values], axis=1) if one_d else values), one_d
    return np.log(np.clip(_as_matrix(values), 1e-12, 1.0)), one_d


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(values, y_true, from_logits: bool = False, bounds=TEMPERATURE_BOUNDS) -> float:
    """The temperature T that minimises the negative log-likelihood of softmax(logits / T).

    `values`: validation logits (from_logits=True), or probabilities (N, K) / 1-D P(positive).
    T is searched on a log scale within `bounds` (scipy's bounded scalar minimiser).
    Taught in chapter 1; used by chapter 2.
    """
    from scipy.optimize import minimize_scalar

    logits, _ = _as_logits(values, from_logits)
    labels = _labels(y_true, len(logits))
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_probs[rows, labels].mean())

    found = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-5})
    temperature = float(np.exp(found.x))
    if not bounds[0] * 1.01 < temperature < bounds[1] / 1.01:
        warnings.warn(f"the fitted temperature {temperature:.3g} sits at a bound of its search {tuple(bounds)}: the "
                      "validation predictions are near-constant or separate perfectly; the calibration is not "
                      "meaningful", TemperatureAtBoundWarning, stacklevel=2)
    return temperature


def apply_temperature(values, temperature: float, from_logits: bool = False) -> np.ndarray:
    """Probabilities after dividing the logits by `temperature`, in the form given (1-D stays 1-D).

    Used by chapter 2.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    logits, one_d = _as_logits(values, from_logits)
    probabilities = _softmax(logits / float(temperature))
    return probabilities[:, 1] if one_d else probabilities


# --- figures and referral -----------------------------------------------------------------------

def plot_reliability_diagram(curves: Mapping[str, tuple], n_bins: int = DEFAULT_BINS,
                             title: str = "Reliability (top-label)", save: str | Path | None = None):
    """Accuracy against mean confidence per bin, one line per model; the diagonal is perfect.

    `curves` maps a name ("before", "after temperature scaling") to (y_true, probabilities).
    The legend gives each curve's ECE; point sizes follow the bin counts.
    Used by chapter 2.
    """
    from matplotlib.figure import Figure

    from .plotting import LABEL_PT, _finish

    if not curves:
        raise ValueError("no curves to plot")
    fig = Figure(figsize=(4.6, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1, label="perfectly calibrated")
    for index, (name, (y_true, probabilities)) in enumerate(curves.items()):
        table = reliability_table(y_true, probabilities, n_bins)
        used = table[table["count"] > 0]
        ece = expected_calibration_error(y_true, probabilities, n_bins)
        ax.plot(used["confidence"], used["accuracy"], color=f"C{index}", label=f"{name} (ECE {ece:.3f})")
        ax.scatter(used["confidence"], used["accuracy"], color=f"C{index}",
                   s=12 + 60 * used["count"] / used["count"].max())
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean confidence in bin")
    ax.set_ylabel("accuracy in bin")
    ax.set_title(f"{title}, {n_bins} equal-width bins", fontsize=LABEL_PT)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, save)


def compare_referral(y_true, mc_samples, probabilities=None, coverages=None) -> dict[str, pd.DataFrame]:
    """Accuracy on the cases kept when the least certain are referred: MC spread vs softmax confidence.

    mc_samples: (passes, N, K) from tl.uncertainty.mc_predict. Both rankings keep the same
    predictions (the argmax of the MC mean), so only the choice of who is referred differs:
    by the MC spread (tl.uncertainty.predictive_summary) or by 1 - the softmax confidence of
    `probabilities` (a deterministic pass, N x K; default: the MC mean). Returns
    {"MC dropout spread": table, "softmax confidence": table} of tl.uncertainty.accuracy_coverage
    tables, ready for tl.uncertainty.plot_accuracy_coverage. Taught in chapter 1.
    """
    from .uncertainty import accuracy_coverage, predictive_summary

    summary = predictive_summary(mc_samples)
    predicted = summary["predicted"].to_numpy()
    confidence = summary["confidence"].to_numpy() if probabilities is None else _as_matrix(probabilities).max(axis=1)
    if len(confidence) != len(predicted):
        raise ValueError(f"{len(confidence)} probabilities for {len(predicted)} MC predictions")
    return {"MC dropout spread": accuracy_coverage(y_true, predicted, summary["spread"].to_numpy(), coverages),
            "softmax confidence": accuracy_coverage(y_true, predicted, 1.0 - confidence, coverages)}
