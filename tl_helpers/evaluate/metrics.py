"""Metrics with 95% confidence intervals, because validation sets here are small.

A chapter's validation set holds tens to a few hundred images; "accuracy 0.87" on 50
images means little without its interval. Proportions (accuracy, sensitivity,
specificity, per-class recall) get the Wilson score interval, which behaves at 0 and 1
where the normal approximation does not. Metrics that are not a single proportion
(balanced accuracy, ROC AUC, macro-F1) get a percentile bootstrap, stratified by class by
default so that every resample keeps the class counts (and an AUC stays defined).

Every estimate is an `Estimate(value, low, high)`, a named tuple.

A decision threshold is chosen on validation for a stated goal (`choose_threshold`) and then
applied to test; `sensitivity_at_specificity` reads the ROC curve at a fixed specificity.
Results over several seeds are summarised by `spread` and `seed_spread`.

Two refusals keep small samples honest. A bootstrap over groups (patients, slides) with fewer
than `MIN_GROUPS_FOR_INTERVAL` groups gives no interval (a percentile interval over 3 or 4
patients is mostly an artefact of which patients there are): the value comes with NaN bounds and
a `FewGroupsWarning`, and `per_group_values` / `describe_groups` show the groups themselves. A
threshold that calls every case one class raises a `ConstantPredictionWarning`.
Two models scored on the same cases are compared by `paired_difference` (a paired bootstrap).
"""
from __future__ import annotations

import warnings
from statistics import NormalDist
from typing import Callable, NamedTuple, Sequence

import numpy as np

from ..paths import BookWarning, SaidOnceWarning, progress

# Fewer groups than this give no bootstrap interval (tl.metrics.bootstrap_ci with `groups`).
MIN_GROUPS_FOR_INTERVAL = 10


class FewGroupsWarning(SaidOnceWarning):
    """A grouped bootstrap was asked for with fewer than MIN_GROUPS_FOR_INTERVAL groups.

    Raised (as a warning) by tl.metrics.bootstrap_ci; chapter 4 shows per-patient values instead.
    """


class ConstantPredictionWarning(BookWarning):
    """A threshold calls every case the same class: accuracy then measures the class mix.

    Raised (as a warning) by tl.metrics.choose_threshold and binary_report (chapters 1, 3, 4, 5).
    """


class Estimate(NamedTuple):
    """A metric's point value and the bounds of its confidence interval.

    Used by chapters 1 to 5 (every value of a report).
    """
    value: float
    low: float
    high: float

    def __format__(self, spec: str) -> str:
        """`f"{e}"` gives `0.945 (0.924-0.960)`; `f"{e:.1%}"` formats all three numbers alike.

        A negative bound (a difference) reads `0.038 (-0.056 to 0.130)`, not `(-0.056-0.130)`.
        """
        spec = spec or ".3f"
        if np.isnan(self.low) and np.isnan(self.high):
            return f"{self.value:{spec}}"
        dash = " to " if min(self.low, self.high) < 0 else "-"
        return f"{self.value:{spec}} ({self.low:{spec}}{dash}{self.high:{spec}})"

    def __str__(self) -> str:
        return format(self)


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes/n; (nan, nan) when n is 0.

    Used by tl.metrics.proportion (chapters 1 to 5).
    """
    if n == 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half_width = z / denominator * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # the interval holds p; rounding alone put the low end of 0 of 10 at 2.8e-17, above it
    return float(min(p, max(0.0, centre - half_width))), float(max(p, min(1.0, centre + half_width)))


def proportion(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """successes/n with its Wilson interval (NaN throughout when n is 0).

    Taught in chapter 1.
    """
    value = successes / n if n else float("nan")
    return Estimate(float(value), *wilson_interval(successes, n, confidence))


def _resample_indices(y_true: np.ndarray, rng: np.random.Generator, stratified: bool) -> np.ndarray:
    """Indices of one bootstrap resample; stratified keeps each class's count."""
    if not stratified:
        return rng.integers(0, len(y_true), len(y_true))
    parts = [rng.choice(members, size=len(members), replace=True)
             for members in (np.flatnonzero(y_true == label) for label in np.unique(y_true))]
    return np.concatenate(parts)


def _group_members(groups: np.ndarray) -> list[np.ndarray]:
    """The indices of each group's members, in the order of np.unique (found once per bootstrap)."""
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.cumsum(np.bincount(inverse))[:-1])


def _resample_groups(members: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Indices of one bootstrap resample of whole groups (as many groups as there are)."""
    return np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])


def bootstrap_ci(metric_fn: Callable, y_true, y_score_or_pred=None, n_boot: int = 1000, seed: int = 0,
                 stratified: bool = True, confidence: float = 0.95, groups=None) -> Estimate:
    """Percentile-bootstrap interval of metric_fn(y_true, y_score_or_pred), or of metric_fn(y_true).

    Resamples with replacement `n_boot` times: whole `groups` when given (patients, slides:
    the unit that was sampled, so that correlated examples move together; with fewer than
    MIN_GROUPS_FOR_INTERVAL groups no interval is given: NaN bounds and a FewGroupsWarning),
    else examples,
    within each class of y_true when `stratified` (labels and scores given; a single array of
    values is resampled plainly). Resamples where the metric is undefined
    (raises ValueError or gives NaN) are dropped. The value is the metric on the full data.
    With a single second argument left out, `metric_fn` gets one array (e.g. `np.mean` of
    per-slice Dice scores). Taught in chapter 1 (examples) and chapter 4 (patients).
    """
    y_true = np.asarray(y_true)
    arrays = [y_true] if y_score_or_pred is None else [y_true, np.asarray(y_score_or_pred)]
    if len(arrays) == 2 and len(y_true) != len(arrays[1]):
        raise ValueError(f"y_true has {len(y_true)} samples but the scores/predictions {len(arrays[1])}")
    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != len(y_true):
            raise ValueError(f"{len(groups)} group labels for {len(y_true)} samples")
    value = float(metric_fn(*arrays))
    if groups is not None and len(np.unique(groups)) < MIN_GROUPS_FOR_INTERVAL:
        warnings.warn(f"{len(np.unique(groups))} groups are too few for a {confidence:.0%} interval (at least "
                      f"{MIN_GROUPS_FOR_INTERVAL} needed): the value alone is given; show the groups' own "
                      "values with tl.metrics.per_group_values", FewGroupsWarning, stacklevel=2)
        return Estimate(value, float("nan"), float("nan"))
    # One array is a sample of values (Dice per slice, per patient), not class labels:
    # stratifying by its distinct values would resample each value onto itself.
    stratified = stratified and y_score_or_pred is not None
    rng = np.random.default_rng(seed)
    members = _group_members(groups) if groups is not None else None
    samples = []
    for _ in progress(range(n_boot), "bootstrap", enabled=n_boot >= 200):
        index = _resample_groups(members, rng) if groups is not None else _resample_indices(y_true, rng, stratified)
        try:
            with warnings.catch_warnings():
                # A resample without some class makes sklearn warn "not defined"; it is dropped.
                warnings.simplefilter("ignore")
                sample = float(metric_fn(*(array[index] for array in arrays)))
        except ValueError:
            continue
        if not np.isnan(sample):
            samples.append(sample)
    if not samples:
        return Estimate(value, float("nan"), float("nan"))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Estimate(value, float(low), float(high))


def per_group_values(metric_fn: Callable, y_true, y_score_or_pred=None, groups=None):
    """metric_fn on each group's own samples: a pandas Series indexed by group (sorted).

    What to show instead of an interval when there are too few groups (tl.metrics.bootstrap_ci):
    e.g. the ROC AUC of each test patient's slices. A group where the metric is undefined (one
    class only, for an AUC) gets NaN. Used by chapter 4.
    """
    import pandas as pd

    if groups is None:
        raise ValueError("per_group_values needs `groups` (one group label per sample)")
    y_true, groups = np.asarray(y_true), np.asarray(groups)
    arrays = [y_true] if y_score_or_pred is None else [y_true, np.asarray(y_score_or_pred)]
    if any(len(array) != len(groups) for array in arrays):
        raise ValueError(f"{len(groups)} group labels for {len(y_true)} samples")
    values = {}
    for group in np.unique(groups):
        members = groups == group
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values[group] = float(metric_fn(*(array[members] for array in arrays)))
        except ValueError:
            values[group] = float("nan")
    return pd.Series(values, dtype=np.float64)


def calls_by_group(y_true, called, groups):
    """Each group's own share of cases called right: a pandas DataFrame indexed by group (sorted)
    with columns cases, positives, sensitivity and specificity (NaN where the group has no case
    of that class). What to show beside a table without intervals when there are too few
    groups (tl.metrics.bootstrap_ci). Used by chapter 4.
    """
    import pandas as pd

    y_true, called = np.asarray(y_true).astype(int), np.asarray(called).astype(bool)
    groups = np.asarray(groups)
    if not len(y_true) == len(called) == len(groups):
        raise ValueError(f"{len(y_true)} labels, {len(called)} calls and {len(groups)} group labels")
    counts = pd.DataFrame({"group": groups, "positive": y_true == 1}).groupby("group").positive.agg(
        cases="size", positives="sum")
    return counts.assign(**{name: per_group_values(lambda t, c, label=label: _share_called(t, c, label),
                                                   y_true, called, groups)
                            for name, label in (("sensitivity", 1), ("specificity", 0))})


def describe_groups(values, what: str = "patients", digits: int = 3) -> str:
    """One line for a few per-group values: mean, range and count, and whether an interval is given.

    e.g. "mean 0.736, range 0.610-0.930 over 4 patients (too few for a 95% interval)".
    NaN values (metric undefined in a group) are counted apart. Used by chapter 4.
    """
    values = np.asarray(list(getattr(values, "values", values)), dtype=np.float64)
    defined = values[~np.isnan(values)]
    undefined = len(values) - len(defined)
    if not len(defined):
        return f"undefined in all {len(values)} {what}"
    text = (f"mean {defined.mean():.{digits}f}, range {defined.min():.{digits}f}-{defined.max():.{digits}f} "
            f"over {len(defined)} {what}")
    if undefined:
        text += f" ({undefined} more where it is undefined)"
    if len(values) < MIN_GROUPS_FOR_INTERVAL:
        text += f" (too few for a 95% interval: at least {MIN_GROUPS_FOR_INTERVAL} needed)"
    return text


def paired_difference(metric_fn: Callable, y_true, score_a, score_b, n_boot: int = 1000, seed: int = 0,
                      stratified: bool = True, confidence: float = 0.95, groups=None) -> Estimate:
    """metric(a) - metric(b) for two models scored on the same cases, with a paired bootstrap interval.

    Both models are scored on the same resample each time (the cases, or whole `groups`), so
    what the two share (the hard cases, the easy ones) cancels out: the interval of the
    difference is much narrower than the two models' own intervals side by side suggest. An
    interval that excludes 0 supports "a differs from b" at this test set's size.
    Taught in chapter 3.
    """
    y_true, score_a, score_b = np.asarray(y_true), np.asarray(score_a), np.asarray(score_b)
    if not len(y_true) == len(score_a) == len(score_b):
        raise ValueError(f"{len(y_true)} labels, {len(score_a)} and {len(score_b)} scores: pair the same cases")
    both = np.stack([score_a, score_b], axis=1)  # (N, 2) or (N, 2, K): a resample keeps each case's pair
    return bootstrap_ci(lambda t, s: float(metric_fn(t, s[:, 0]) - metric_fn(t, s[:, 1])), y_true, both,
                        n_boot=n_boot, seed=seed, stratified=stratified, confidence=confidence, groups=groups)


def paired_roc_auc_difference(y_true, p_a, p_b, n_boot: int = 1000, seed: int = 0, groups=None) -> Estimate:
    """ROC AUC of a minus ROC AUC of b on the same cases (tl.metrics.paired_difference). Used by chapter 3."""
    y_true, p_a = _binary_arrays(y_true, p_a)
    _, p_b = _binary_arrays(y_true, p_b)
    return paired_difference(_roc_auc, y_true, p_a, p_b, n_boot=n_boot, seed=seed, groups=groups)


def paired_roc_auc_table(y_true, scores: dict, seeds, groups=None, labels: dict | None = None,
                         n_boot: int = 1000, seed: int = 0):
    """Every pair of arms compared on the same cases, seed by seed, by a paired bootstrap.

    `scores` is {arm: [P(positive) per seed]}, every array for the cases of `y_true`; an arm
    with a single array (one model) stands for every seed. Returns `(table, first)`: `table`
    has a row per pair of arms (in `scores`' order, named by `labels`) and a column per seed
    holding the ROC AUC of the first arm minus the second's with its 95% interval
    (`paired_roc_auc_difference`, whole `groups` resampled when given); `first` maps each
    (first arm, second arm) to the first seed's Estimate, for the run card. Used by chapter 3.
    """
    import itertools

    import pandas as pd

    labels, seeds = labels or {}, list(seeds)
    table, first = {}, {}
    for a, b in itertools.combinations(scores, 2):
        row = {}
        for k, one_seed in enumerate(seeds):
            p_a, p_b = (scores[arm][k if len(scores[arm]) > 1 else 0] for arm in (a, b))
            row[f"seed {one_seed}"] = paired_roc_auc_difference(y_true, p_a, p_b, n_boot=n_boot, seed=seed,
                                                                 groups=groups)
        first[(a, b)] = row[f"seed {seeds[0]}"]
        table[(labels.get(a, a), labels.get(b, b))] = {name: str(e) for name, e in row.items()}
    return pd.DataFrame(table).T, first


def _balanced_accuracy(y_true, y_pred) -> float:
    """scikit-learn's balanced_accuracy_score (the mean recall of the classes present in
    y_true), without its input checks: a bootstrap calls it a thousand times an interval
    (tests/test_metrics.py compares the two, with two classes and with four)."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    recalls = [float((y_pred[y_true == label] == label).mean()) for label in np.unique(y_true)]
    if not recalls:
        raise ValueError("no cases")
    return float(np.mean(recalls))


def _roc_auc(y_true, p_positive) -> float:
    """Binary ROC AUC as the Mann-Whitney statistic (ranks, ties counting half): the number
    scikit-learn's roc_auc_score gives, about 20 times faster, which the bootstraps' thousands
    of resamples feel (tests/test_metrics.py compares the two). ValueError with one class."""
    from scipy.stats import rankdata

    y_true = np.asarray(y_true).ravel() == 1
    p_positive = np.asarray(p_positive, dtype=np.float64).ravel()
    positives, negatives = int(y_true.sum()), int((~y_true).sum())
    if not positives or not negatives:
        raise ValueError("Only one class present in y_true. ROC AUC score is not defined in that case.")
    if np.isnan(p_positive).any():
        raise ValueError("Input contains NaN.")
    ranks = rankdata(p_positive)
    return float((ranks[y_true].sum() - positives * (positives + 1) / 2) / (positives * negatives))


class OperatingPoint(NamedTuple):
    """A decision threshold chosen on validation, and what it gave there.

    `goal` says what it was chosen for ("sensitivity >= 0.95", "specificity >= 0.9",
    "youden"); `sensitivity` and `specificity` are its values on the validation split it was
    chosen on (optimistic there; the test split says what it is worth). Taught in chapter 1;
    used by chapters 3, 4 and 5 (tl.metrics.choose_threshold, binary_report).
    """
    threshold: float
    goal: str
    sensitivity: float
    specificity: float


def _operating_curve(y_true: np.ndarray, p_positive: np.ndarray):
    """Every distinct threshold (each score, and one above the highest) with its sensitivity and
    specificity when a sample is called positive at p >= threshold; thresholds ascending."""
    scores = np.unique(p_positive)
    thresholds = np.append(scores, np.nextafter(scores[-1], np.inf))
    positives = np.sort(p_positive[y_true == 1])
    negatives = np.sort(p_positive[y_true == 0])
    # positives called positive: those >= threshold; negatives called negative: those < threshold
    sensitivity = (len(positives) - np.searchsorted(positives, thresholds, side="left")) / len(positives)
    specificity = np.searchsorted(negatives, thresholds, side="left") / len(negatives)
    return thresholds, sensitivity, specificity


def _binary_arrays(y_true, p_positive) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(int).ravel()
    p_positive = np.asarray(p_positive, dtype=np.float64).ravel()
    if len(y_true) != len(p_positive):
        raise ValueError(f"{len(y_true)} labels but {len(p_positive)} scores")
    if not set(np.unique(y_true)) <= {0, 1}:
        raise ValueError(f"labels must be 0/1, got {sorted(set(np.unique(y_true)))}")
    return y_true, p_positive


def choose_threshold(y_val, p_val, goal="youden") -> OperatingPoint:
    """The threshold on P(positive) that meets a stated goal on the validation split.

    `goal` is one of
    - `("sensitivity", 0.95)`: the highest threshold whose validation sensitivity is at least
      0.95 (a screening stage: miss few, then call as few negatives positive as that allows);
    - `("specificity", 0.90)`: the lowest threshold whose validation specificity is at least
      0.90 (the most sensitivity that false-alarm rate allows);
    - `"youden"`: the threshold with the largest sensitivity + specificity - 1 (ties: the higher).
    Thresholds are validation scores (a sample is positive when p >= threshold), or one just
    above the highest score (nothing positive). Choose on validation, report on test with
    `binary_report(y_test, p_test, threshold=point)`. Taught in chapter 1.
    """
    y_val, p_val = _binary_arrays(y_val, p_val)
    if not ((y_val == 1).any() and (y_val == 0).any()):
        raise ValueError("choosing a threshold needs validation examples of both classes")
    thresholds, sensitivity, specificity = _operating_curve(y_val, p_val)
    if isinstance(goal, str):
        if goal != "youden":
            raise ValueError(f"unknown goal {goal!r}: use 'youden', ('sensitivity', x) or ('specificity', x)")
        best = int(np.flatnonzero(sensitivity + specificity == (sensitivity + specificity).max())[-1])
        label = "youden"
    else:
        kind, target = goal
        if not 0 < float(target) <= 1:
            raise ValueError(f"the target of {kind} must be in (0, 1], got {target}")
        target = float(target)
        if kind == "sensitivity":  # sensitivity falls as the threshold rises: the last one meeting it
            best = int(np.flatnonzero(sensitivity >= target - 1e-12)[-1])
        elif kind == "specificity":  # specificity rises with the threshold: the first one meeting it
            best = int(np.flatnonzero(specificity >= target - 1e-12)[0])
        else:
            raise ValueError(f"unknown goal {kind!r}: use 'youden', ('sensitivity', x) or ('specificity', x)")
        label = f"{kind} >= {target:g}"
    if sensitivity[best] in (0.0, 1.0) and specificity[best] == 1.0 - sensitivity[best]:
        called = "positive" if sensitivity[best] == 1.0 else "negative"
        warnings.warn(f"the threshold chosen for {label} ({thresholds[best]:.4g}) calls every validation case "
                      f"{called}: the model does not separate the classes on validation", ConstantPredictionWarning,
                      stacklevel=2)
    return OperatingPoint(float(thresholds[best]), label, float(sensitivity[best]), float(specificity[best]))


def _sensitivity_at_specificity(y_true, p_positive, specificity: float) -> float:
    """Sensitivity at the lowest threshold whose specificity is at least `specificity`."""
    if not ((y_true == 1).any() and (y_true == 0).any()):
        return float("nan")
    _, sensitivities, specificities = _operating_curve(y_true, p_positive)
    return float(sensitivities[np.flatnonzero(specificities >= specificity - 1e-12)[0]])


def sensitivity_at_specificity(y_true, p_positive, specificity: float = 0.90, n_boot: int = 1000,
                               seed: int = 0, groups=None) -> Estimate:
    """Sensitivity where the ROC curve reaches `specificity`, with a bootstrap interval.

    The threshold is the lowest that keeps at least that share of negatives negative on these
    same data, so this describes the ranking (as ROC AUC does), not a threshold fixed in
    advance. The interval resamples within each class (tl.metrics.bootstrap_ci). NaN when a
    class is absent. Taught in chapter 1; used by chapters 3, 4 and 5.
    """
    y_true, p_positive = _binary_arrays(y_true, p_positive)
    if not 0 < specificity <= 1:
        raise ValueError(f"specificity must be in (0, 1], got {specificity}")
    if not ((y_true == 1).any() and (y_true == 0).any()):
        return Estimate(float("nan"), float("nan"), float("nan"))
    return bootstrap_ci(lambda t, p: _sensitivity_at_specificity(t, p, specificity), y_true, p_positive,
                        n_boot=n_boot, seed=seed, groups=groups)


def _share_called(y_true, y_pred, label: int) -> float:
    """The share of the samples of class `label` called `label` (sensitivity, specificity)."""
    members = y_true == label
    return float((y_pred[members] == label).mean()) if members.any() else float("nan")


def binary_report(y_true, p_positive, threshold: float | OperatingPoint = 0.5, n_boot: int = 1000,
                  seed: int = 0, at_specificity: float | None = None, groups=None) -> dict[str, Estimate]:
    """Accuracy, sensitivity, specificity (Wilson), balanced accuracy and ROC AUC (bootstrap).

    `y_true` is 0/1 with 1 the positive (diseased) class; `p_positive` is P(positive); a
    sample is called positive when p_positive >= threshold. `threshold` may be an
    OperatingPoint from `choose_threshold` on validation (its threshold is used). With
    `at_specificity` (e.g. 0.9) the report adds `sensitivity_at_specificity_90`
    (tl.metrics.sensitivity_at_specificity). Undefined entries (a class absent) are NaN.
    With `groups` (a patient id per sample) every interval, proportions included, resamples
    whole groups: slices of one patient are not independent draws. Used by chapters 1, 3 and 5.
    """
    if isinstance(threshold, OperatingPoint):
        threshold = threshold.threshold
    y_true = np.asarray(y_true).astype(int).ravel()
    p_positive = np.asarray(p_positive, dtype=np.float64).ravel()
    y_pred = (p_positive >= threshold).astype(int)
    positives, negatives = y_true == 1, y_true == 0
    both_classes = positives.any() and negatives.any()
    if both_classes and len(np.unique(y_pred)) == 1:
        warnings.warn(f"at threshold {threshold:.4g} every case is called {'positive' if y_pred[0] else 'negative'}: "
                      "sensitivity and specificity are 1 and 0 by construction", ConstantPredictionWarning,
                      stacklevel=2)
    nan = Estimate(float("nan"), float("nan"), float("nan"))
    if groups is not None:
        grouped = dict(n_boot=n_boot, seed=seed, groups=groups)
        report = {
            "accuracy": bootstrap_ci(lambda t, p: float((t == p).mean()), y_true, y_pred, **grouped),
            "sensitivity": bootstrap_ci(lambda t, p: _share_called(t, p, 1), y_true, y_pred, **grouped),
            "specificity": bootstrap_ci(lambda t, p: _share_called(t, p, 0), y_true, y_pred, **grouped),
            "balanced_accuracy": bootstrap_ci(_balanced_accuracy, y_true, y_pred, **grouped) if both_classes else nan,
            "roc_auc": bootstrap_ci(_roc_auc, y_true, p_positive, **grouped) if both_classes else nan,
        }
        if at_specificity is not None:
            report[f"sensitivity_at_specificity_{100 * at_specificity:g}"] = sensitivity_at_specificity(
                y_true, p_positive, at_specificity, **grouped)
        return report
    report = {
        "accuracy": proportion(int((y_pred == y_true).sum()), len(y_true)),
        "sensitivity": proportion(int(y_pred[positives].sum()), int(positives.sum())),
        "specificity": proportion(int((1 - y_pred[negatives]).sum()), int(negatives.sum())),
        "balanced_accuracy": bootstrap_ci(_balanced_accuracy, y_true, y_pred, n_boot=n_boot, seed=seed) if both_classes else nan,
        "roc_auc": bootstrap_ci(_roc_auc, y_true, p_positive, n_boot=n_boot, seed=seed) if both_classes else nan,
    }
    if at_specificity is not None:
        report[f"sensitivity_at_specificity_{100 * at_specificity:g}"] = sensitivity_at_specificity(
            y_true, p_positive, at_specificity, n_boot=n_boot, seed=seed)
    return report


def _macro_f1(y_true, y_pred) -> float:
    from sklearn.metrics import f1_score

    return f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true), zero_division=0)


def class_indices(values, class_names: Sequence[str]) -> np.ndarray:
    """Class indices from labels that are indices already or names in class_names.

    Used by tl.metrics.multiclass_report and tl.plotting (chapters 1, 2, 4 and 5).
    """
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return values.astype(int)
    lookup = {str(name): index for index, name in enumerate(class_names)}
    unknown = sorted({str(v) for v in values} - set(lookup))
    if unknown:
        raise ValueError(f"labels {unknown} are not among class_names {list(class_names)}")
    return np.array([lookup[str(v)] for v in values])


def multiclass_report(y_true, y_pred, class_names: Sequence[str], n_boot: int = 1000,
                      seed: int = 0, probabilities=None) -> dict:
    """Accuracy (Wilson), macro-F1 (bootstrap) and each class's recall (Wilson); with
    `probabilities` (N, classes) also the macro one-vs-rest ROC AUC (stratified bootstrap).

    Labels are class indices or names. Macro-F1 averages over the classes present in
    y_true. Returns {"accuracy": Estimate, "macro_f1": Estimate, "recall": {name: Estimate}},
    plus "roc_auc" (tl.metrics.macro_roc_auc) when probabilities are given.
    Taught in chapter 2.
    """
    y_true = class_indices(y_true, class_names)
    y_pred = class_indices(y_pred, class_names)
    recall = {}
    for index, name in enumerate(class_names):
        members = y_true == index
        recall[str(name)] = proportion(int((y_pred[members] == index).sum()), int(members.sum()))
    report = {
        "accuracy": proportion(int((y_true == y_pred).sum()), len(y_true)),
        "macro_f1": bootstrap_ci(_macro_f1, y_true, y_pred, n_boot=n_boot, seed=seed),
        "recall": recall,
    }
    if probabilities is not None:
        probabilities = _class_probabilities(probabilities, y_true, class_names)
        report["roc_auc"] = bootstrap_ci(macro_roc_auc, y_true, probabilities, n_boot=n_boot, seed=seed)
    return report


def report_table(report: dict):
    """A report as a pandas DataFrame (rows = metrics, columns value / low / high).

    Used by chapter 4.
    """
    import pandas as pd

    rows = {}
    for name, entry in report.items():
        if isinstance(entry, dict):
            rows.update({f"{name} {inner}": estimate for inner, estimate in entry.items()})
        else:
            rows[name] = entry
    return pd.DataFrame.from_dict({k: tuple(v) for k, v in rows.items()}, orient="index",
                                  columns=list(Estimate._fields))


# --- the spread over seeds -------------------------------------------------------------

class Spread(NamedTuple):
    """Mean, sample standard deviation, range and count of one number over repeated runs.

    Used by tl.metrics.spread and seed_spread (chapters 1 to 5).
    """
    mean: float
    sd: float
    min: float
    max: float
    n: int


def spread(values) -> Spread:
    """Mean, sd (n - 1 in the denominator), min, max and n of `values`, NaNs left out.

    n counts the values used, so a run whose metric was undefined shows as a smaller n;
    sd is NaN below two values. For a metric measured with several seeds, the sd is the
    seed-to-seed spread, which a single run's interval does not include. Taught in chapter 1;
    used by chapters 2 to 5.
    """
    values = np.asarray(list(values), dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return Spread(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return Spread(float(values.mean()), sd, float(values.min()), float(values.max()), int(len(values)))


def seed_spread(cards, names: Sequence[str] | None = None):
    """The spread over seeds of each metric that a set of run cards recorded.

    `cards` are run cards of one notebook run with different seeds: dicts (RunCard.record, or a
    card's JSON loaded), RunCard objects, or paths to `<notebook>.json`. Returns a pandas
    DataFrame, one row per metric (`names`, else every metric any card has), with its split,
    mean, sd, min, max, n (cards that recorded it), the seeds, and `mean ± sd` as text.
    Raises ValueError when the cards come from different notebooks, profiles or versions (their
    `version_key`: notebook source and helper package), so that a spread never pools a changed
    recipe with the old one. Taught in chapter 1;
    used by chapters 2 to 5.
    """
    import json
    from pathlib import Path

    import pandas as pd

    records = []
    for card in cards:
        if isinstance(card, (str, Path)):
            card = json.loads(Path(card).read_text())
        records.append(getattr(card, "record", card))
    if not records:
        raise ValueError("no run cards to summarise")
    notebooks = sorted({str(r.get("notebook")) for r in records})
    if len(notebooks) > 1:
        raise ValueError(f"run cards of different notebooks ({', '.join(notebooks)}): a spread over "
                         "seeds compares runs of one notebook")
    versions = sorted({f"{r.get('profile')} {r.get('version_key', 'without a version key')}" for r in records})
    if len(versions) > 1:
        raise ValueError(f"run cards of different versions ({'; '.join(versions)}): a spread over seeds pools runs "
                         "of one profile, notebook source and helper package; re-run the seeds with one version")
    if names is None:
        names = list(dict.fromkeys(name for r in records for name in r.get("metrics", {})))
    rows = []
    for name in names:
        entries = [(r.get("seed"), r["metrics"][name]) for r in records if name in r.get("metrics", {})]
        splits = sorted({str(entry.get("split")) for _, entry in entries})
        s = spread(entry["value"] for _, entry in entries)
        rows.append({"metric": name, "split": ", ".join(splits), **s._asdict(),
                     "seeds": [seed for seed, _ in entries], "mean ± sd": f"{s.mean:.3f} ± {s.sd:.3f}"})
    return pd.DataFrame(rows, columns=["metric", "split", *Spread._fields, "seeds", "mean ± sd"]).set_index("metric")


# --- segmentation: Dice on thresholded masks ------------------------------------------

def binarize(masks, threshold: float = 0.5) -> np.ndarray:
    """Boolean (N, H, W) masks from (N, H, W) or (N, H, W, 1) masks: probabilities, 0/1 or 0/255.

    Values above 1 mean an 8-bit mask file (0/255) and are scaled to [0, 1] first.
    Also takes a single HxW mask (then HxW out). Taught in chapter 4.
    """
    masks = np.asarray(masks)
    if masks.ndim in (3, 4) and masks.shape[-1] == 1:
        masks = masks[..., 0]
    values = masks.astype(np.float32, copy=False)
    if values.size and values.max() > 1.0:
        values = values / 255.0
    return values > threshold


def _dice_from_counts(overlap, sizes, empty_score: float) -> np.ndarray:
    """2 * overlap / sizes, and `empty_score` where both masks are empty (sizes 0)."""
    overlap, sizes = np.asarray(overlap), np.asarray(sizes)
    return np.where(sizes > 0, 2.0 * overlap / np.maximum(sizes, 1), float(empty_score)).astype(np.float64)


def dice_scores(true_masks, pred_masks, threshold: float = 0.5, empty_score: float = 1.0) -> np.ndarray:
    """Dice = 2|T and P| / (|T| + |P|) per slice, masks thresholded at `threshold`.

    When a slice's true and predicted masks are both empty, Dice is 0/0; it scores
    `empty_score` (1: the slice was rightly left empty). A non-empty prediction on an
    empty true mask, or an empty prediction on a tumour, scores 0. Taught in chapter 4.
    """
    truth, predicted = binarize(true_masks, threshold), binarize(pred_masks, threshold)
    if truth.shape != predicted.shape:
        raise ValueError(f"true masks {truth.shape} and predictions {predicted.shape} differ in shape")
    overlap = np.logical_and(truth, predicted).sum(axis=(1, 2))
    total = truth.sum(axis=(1, 2)) + predicted.sum(axis=(1, 2))
    return _dice_from_counts(overlap, total, empty_score)


def volumetric_dice(patients: Sequence, true_masks, pred_masks, threshold: float = 0.5,
                    empty_score: float = 1.0) -> "pd.DataFrame":
    """One Dice per patient over the whole stack: 2 sum|T and P| / (sum|T| + sum|P|), sums over its slices.

    The 3-D Dice of Buda et al. (2019): a large tumour section weighs more than a small
    one, unlike the mean of slice Dice. A patient whose true and predicted stacks are both
    empty scores `empty_score`. Returns columns patient, slices, dice (sorted by patient).
    Taught in chapter 4 (as tl.segmentation.volumetric_dice); used by tl.external (LGG folders).
    """
    import pandas as pd

    truth, predicted = binarize(true_masks, threshold), binarize(pred_masks, threshold)
    if truth.shape != predicted.shape:
        raise ValueError(f"true masks {truth.shape} and predicted masks {predicted.shape} differ in shape")
    patients = np.asarray(list(patients))
    if len(patients) != len(truth):
        raise ValueError(f"{len(patients)} patients for {len(truth)} masks")
    axes = tuple(range(1, truth.ndim))
    frame = pd.DataFrame({"patient": patients, "overlap": np.logical_and(truth, predicted).sum(axis=axes),
                          "sizes": truth.sum(axis=axes) + predicted.sum(axis=axes)})
    sums = frame.groupby("patient").agg(slices=("overlap", "size"), overlap=("overlap", "sum"), sizes=("sizes", "sum"))
    dice = _dice_from_counts(sums.overlap, sums.sizes, empty_score)
    return pd.DataFrame({"patient": sums.index, "slices": sums.slices.to_numpy(), "dice": dice}).reset_index(drop=True)


def per_patient_dice(patients: Sequence, scores: Sequence) -> "pd.DataFrame":
    """One row per patient: slices scored and their mean and median Dice (sorted by patient).

    Taught in chapter 4 (as tl.segmentation.per_patient_dice); used by tl.external.
    """
    import pandas as pd

    frame = pd.DataFrame({"patient": list(patients), "dice": np.asarray(scores, dtype=np.float64)})
    return frame.groupby("patient").dice.agg(slices="size", mean_dice="mean", median_dice="median").reset_index()


def dice_estimates(patients, true_masks, pred_masks, threshold: float = 0.5, n_boot: int = 1000,
                   seed: int = 0) -> tuple[dict[str, Estimate], np.ndarray, "pd.DataFrame"]:
    """Predicted masks against true ones on held-out slices, every interval resampling whole
    patients (fewer than MIN_GROUPS_FOR_INTERVAL patients: no interval).

    Returns the report (dice_mean over slices; dice_per_patient_mean, each patient's mean slice
    Dice, then their mean; dice_volumetric_per_patient_mean, `volumetric_dice`), each slice's
    Dice, and one row per patient (slices, mean_dice, median_dice, volumetric_dice). Masks are
    binarised at `threshold`. Used by tl.segmentation.dice_report (chapter 4) and tl.external.
    """
    patients = np.asarray(list(patients))
    dice = dice_scores(true_masks, pred_masks, threshold)
    volumes = volumetric_dice(patients, true_masks, pred_masks, threshold)
    per_patient = per_patient_dice(patients, dice)
    report = {  # one value per patient below: each its own group, so few patients give no interval
        "dice_mean": bootstrap_ci(np.mean, dice, groups=patients, n_boot=n_boot, seed=seed),
        "dice_per_patient_mean": bootstrap_ci(np.mean, per_patient.mean_dice, groups=per_patient.patient,
                                              n_boot=n_boot, seed=seed),
        "dice_volumetric_per_patient_mean": bootstrap_ci(np.mean, volumes.dice, groups=volumes.patient,
                                                         n_boot=n_boot, seed=seed),
    }
    return report, dice, per_patient.assign(volumetric_dice=volumes.dice.to_numpy())


# --- chapter 2: ROC AUC of a multiclass model, overall and per class ----------------------

def _class_probabilities(probabilities, y_true: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """`probabilities` as an (N, classes) array, or a one-line error saying what is wrong."""
    probabilities = np.asarray(probabilities)
    if probabilities.shape != (len(y_true), len(class_names)):
        raise ValueError(f"probabilities have shape {probabilities.shape}; expected one row per label and "
                         f"one column per class, ({len(y_true)}, {len(class_names)}), in class_names' order")
    return probabilities


def macro_roc_auc(y_true, probabilities) -> float:
    """The mean over the classes of each class's ROC AUC against the rest (one-vs-rest, macro).

    y_true: class indices; probabilities: (N, classes), one column per class, rows summing to
    1. 0.5 is chance. scikit-learn's roc_auc_score(multi_class="ovr", average="macro") to
    1e-12, by ranks (tl.metrics._roc_auc): the bootstraps call it a thousand times an interval.
    ValueError when a class has no case. Used by tl.metrics.multiclass_report (chapter 2) and
    tl.shortcuts (chapters 1 and 2).
    """
    y_true, probabilities = np.asarray(y_true).ravel(), np.asarray(probabilities, dtype=np.float64)
    if not np.allclose(1, probabilities.sum(axis=1)):
        raise ValueError("Target scores need to be probabilities for multiclass roc_auc, i.e. they "
                         "should sum up to 1.0 over classes")
    return float(np.mean([_roc_auc((y_true == k).astype(int), probabilities[:, k])
                          for k in range(probabilities.shape[1])]))


def per_class_report(y_true, y_pred, probabilities, class_names: Sequence[str], n_boot: int = 1000,
                     seed: int = 0) -> dict[str, dict[str, Estimate]]:
    """Per class: sensitivity and precision (Wilson), one-vs-rest ROC AUC (bootstrap).

    Of the examples of a class, the share called that class (sensitivity, or recall); of the
    examples called it, the share that are (precision); how well its column of
    `probabilities` separates it from the other classes over every threshold (ROC AUC, the
    bootstrap stratified by the class against the rest). Labels are class indices or names.
    Returns {"sensitivity": {name: Estimate}, "precision": {...}, "roc_auc_ovr": {...}}, ready
    for `card.metrics(report[measure], prefix=measure)`. A class never called has NaN
    precision; a class absent from (or alone in) y_true has NaN sensitivity or ROC AUC.
    Taught in chapter 2.
    """
    y_true = class_indices(y_true, class_names)
    y_pred = class_indices(y_pred, class_names)
    probabilities = _class_probabilities(probabilities, y_true, class_names)
    nan = Estimate(float("nan"), float("nan"), float("nan"))
    report = {"sensitivity": {}, "precision": {}, "roc_auc_ovr": {}}
    for index, name in enumerate(class_names):
        truly, called = y_true == index, y_pred == index
        hits = int((truly & called).sum())
        report["sensitivity"][str(name)] = proportion(hits, int(truly.sum()))
        report["precision"][str(name)] = proportion(hits, int(called.sum()))
        report["roc_auc_ovr"][str(name)] = (
            bootstrap_ci(_roc_auc, truly.astype(int), probabilities[:, index], n_boot=n_boot, seed=seed)
            if truly.any() and not truly.all() else nan)
    return report


# --- chapter 3: the noise of a small validation draw, and arms compared seed by seed ----

def subsample_range(y_true, y_pred, size: int, n_draws: int = 1000, seed: int = 0,
                    middle: float = 95.0) -> tuple[float, float, float]:
    """Accuracy on all rows, and the middle `middle`% of it over `n_draws` subsets of `size`.

    Each subset is drawn without replacement (all rows when `size` exceeds them), as a
    validation of a few random batches is: the range shows how far one such draw moves
    the accuracy it reports. Returns (accuracy on all rows, low, high). Used by chapter 3.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    draws = [rng.choice(len(y_true), size=min(size, len(y_true)), replace=False)
             for _ in range(n_draws)]
    tail = (100 - middle) / 2
    low, high = np.percentile([(y_pred[d] == y_true[d]).mean() for d in draws],
                              [tail, 100 - tail])
    return float((y_pred == y_true).mean()), float(low), float(high)


def spread_table(values: dict, seeds: Sequence | None = None, digits: int = 3):
    """Mean ± sd over seeds per arm and metric: `values` is {arm: {metric: [one per seed]}}.

    The numbers may be Estimates (their `.value` is used). Returns (a DataFrame of texts,
    arms by metrics, each "mean ± sd", or the mean alone for an arm with one run; {arm:
    {metric: Spread}}). With `seeds`, the table also shows every run: rows (arm, seed) with
    each number's own text (an Estimate's interval), then (arm, "mean ± sd"); an arm with one
    run has its row labelled "-". Used by chapter 3.
    """
    import pandas as pd

    number = lambda v: getattr(v, "value", v)  # noqa: E731 - an Estimate or a plain number
    spreads = {arm: {name: spread([number(v) for v in vs]) for name, vs in metrics.items()}
               for arm, metrics in values.items()}
    text = {}
    for arm, metrics in values.items():
        runs = max(len(vs) for vs in metrics.values())
        for i in range(runs if seeds is not None else 0):
            text[(arm, seeds[i] if runs > 1 else "-")] = {
                name: f"{vs[i]}" for name, vs in metrics.items()}
        text[(arm, "mean ± sd") if seeds is not None else arm] = {
            name: f"{s.mean:.{digits}f} ± {s.sd:.{digits}f}" if s.n > 1
            else f"{s.mean:.{digits}f}" for name, s in spreads[arm].items()}
    return pd.DataFrame(text).T, spreads


def paired_seed_comparison(values: dict, labels: dict | None = None, what: str = "ROC AUC"):
    """Every pair of arms (in `values`' order) compared seed by seed: differences, mean, verdict.

    `values` is {arm: [one number per seed]}; an arm with fewer numbers (one model, say)
    has them repeated to stand for every seed. An arm is called better only when it wins on
    every seed. Returns a DataFrame indexed by (first, second) arm with the per-seed
    differences, their mean (not rounded) and the verdict (arms named by `labels`).
    Used by chapter 3.
    """
    import itertools

    import pandas as pd

    labels = labels or {}
    n = max(len(v) for v in values.values())
    rows = {}
    for first, second in itertools.combinations(values, 2):
        differences = np.resize(values[first], n) - np.resize(values[second], n)
        better = (first if (differences > 0).all() else second if (differences < 0).all()
                  else None)
        rows[(first, second)] = {
            f"{what} difference per seed": ", ".join(f"{d:+.3f}" for d in differences),
            "mean": float(differences.mean()),
            "verdict": f"{labels.get(better, better)} better on every seed" if better
            else "the seeds disagree: no difference claimed"}
    return pd.DataFrame(rows).T.astype({"mean": float})


# --- chapter 5 (issue 23): one ROC AUC per named score of the same examples ---
def roc_aucs(y_true, scores: dict, n_boot: int = 1000, seed: int = 0) -> dict[str, Estimate]:
    """ROC AUC with its bootstrap interval for each named score of the same examples.

    `scores` maps a name to one score per example (a probability, a logit, ...); each AUC
    is `binary_report(y_true, score, n_boot=n_boot, seed=seed)["roc_auc"]`, so the numbers
    equal a report's and the scores can be compared side by side. Used by chapter 5.
    """
    return {name: binary_report(y_true, score, n_boot=n_boot, seed=seed)["roc_auc"]
            for name, score in scores.items()}
