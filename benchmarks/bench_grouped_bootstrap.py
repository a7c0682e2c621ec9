"""How long a grouped (patient-level) bootstrap interval takes, as chapter 3's paired table uses it.

    .venv/bin/python benchmarks/bench_grouped_bootstrap.py

Chapter 3 computes 18 paired ROC AUC differences (6 pairs of arms x 3 seeds) over about 750 test
films from about 420 patients, 1,000 resamples each. The members of each group are now found once
per interval (tl_helpers/evaluate/metrics.py: _group_members); before, every resample searched the
whole group array once per group. Prints the seconds per interval both ways, on the same resamples
(the intervals are identical), which says whether finding the groups or scoring the resamples
(two ROC AUCs each) is what costs.
"""
from __future__ import annotations

import time

import numpy as np

from tl_helpers.evaluate import metrics


def old_resample(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    return np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])


def main(n_cases: int = 750, n_groups: int = 420, n_boot: int = 1000) -> None:
    rng = np.random.default_rng(0)
    groups = rng.integers(0, n_groups, n_cases)
    y = rng.integers(0, 2, n_cases)
    a, b = y + rng.normal(0, 1, n_cases), y + rng.normal(0, 1.2, n_cases)
    started = time.perf_counter()
    new = metrics.paired_roc_auc_difference(y, a, b, n_boot=n_boot, seed=0, groups=groups)
    new_seconds = time.perf_counter() - started
    original = metrics._resample_groups
    metrics._resample_groups = lambda members, rng: old_resample(groups, rng)  # the old way
    metrics_group_members = metrics._group_members
    metrics._group_members = lambda g: None
    try:
        started = time.perf_counter()
        old = metrics.paired_roc_auc_difference(y, a, b, n_boot=n_boot, seed=0, groups=groups)
        old_seconds = time.perf_counter() - started
    finally:
        metrics._resample_groups, metrics._group_members = original, metrics_group_members
    print(f"{n_cases} cases, {len(np.unique(groups))} groups, {n_boot} resamples: members searched "
          f"per resample {old_seconds:.2f} s, found once {new_seconds:.2f} s "
          f"({old_seconds / new_seconds:.1f}x); same interval: {tuple(old) == tuple(new)}")


if __name__ == "__main__":
    main()
