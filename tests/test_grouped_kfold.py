"""Patient-level k-fold (tl.splits.grouped_kfold): on the real LGG slices and on a table built to be hard."""
import numpy as np
import pandas as pd
import pytest

from tl_helpers.data import splits
from tl_helpers.data.tables import lgg_slice_table


def check_folds(table, folds, group_col):
    """Every group tested exactly once; within a fold no group on two sides; every row used in each fold."""
    groups = table[group_col].to_numpy()
    tested = np.concatenate([groups[f["test"]] for f in folds])
    assert sorted(pd.unique(tested)) == sorted(pd.unique(groups))
    assert len(tested) == len(table)  # each row, hence each group, tested once
    for fold in folds:
        sides = [set(groups[fold[part]]) for part in ("train", "val", "test")]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        every = np.sort(np.concatenate([fold["train"], fold["val"], fold["test"]]))
        assert np.array_equal(every, np.arange(len(table)))
        assert len(fold["test"]) > 0 and len(fold["train"]) > 0


@pytest.fixture(scope="module")
def lgg(shared_data):
    return lgg_slice_table(shared_data / "lgg_mri_segmentation")


def test_real_patients_are_each_tested_once(lgg):
    folds = splits.grouped_kfold(lgg, "patient", n_folds=5, label_col="has_tumour", seed=0)
    assert len(folds) == 5
    check_folds(lgg, folds, "patient")
    assert all(len(f["val"]) > 0 for f in folds)  # 16 training patients leave room for an inner validation
    # stratified as far as whole patients allow: each fold's tumour share near the whole set's
    overall = lgg["has_tumour"].mean()
    shares = [lgg["has_tumour"].to_numpy()[f["test"]].mean() for f in folds]
    assert max(abs(s - overall) for s in shares) < 0.2


def test_deterministic_by_seed_and_different_across_seeds(lgg):
    first = splits.grouped_kfold(lgg, "patient", n_folds=4, label_col="has_tumour", seed=3)
    again = splits.grouped_kfold(lgg, "patient", n_folds=4, label_col="has_tumour", seed=3)
    other = splits.grouped_kfold(lgg, "patient", n_folds=4, label_col="has_tumour", seed=4)
    assert all(np.array_equal(a[p], b[p]) for a, b in zip(first, again) for p in ("train", "val", "test"))
    assert any(not np.array_equal(a["test"], b["test"]) for a, b in zip(first, other))


def test_few_groups_of_uneven_size_still_fill_every_fold():
    # 7 patients, one with 40 rows; labels by patient; an index that is not 0..n-1
    sizes = {"p0": 40, "p1": 3, "p2": 5, "p3": 2, "p4": 6, "p5": 4, "p6": 1}
    label = {"p0": "a", "p1": "a", "p2": "b", "p3": "b", "p4": "a", "p5": "b", "p6": "b"}
    rows = [(p, label[p]) for p, n in sizes.items() for _ in range(n)]
    table = pd.DataFrame(rows, columns=["patient", "label"], index=np.arange(len(rows)) * 10 + 7)
    for n_folds in (2, 5, 7):
        folds = splits.grouped_kfold(table, "patient", n_folds=n_folds, label_col="label", seed=1)
        check_folds(table, folds, "patient")
    folds = splits.grouped_kfold(table, "patient", n_folds=3, inner_val_fraction=0)
    assert all(len(f["val"]) == 0 for f in folds)
    with pytest.raises(ValueError, match="number of groups"):
        splits.grouped_kfold(table, "patient", n_folds=8)
    with pytest.raises(ValueError, match="no column"):
        splits.grouped_kfold(table, "subject")
