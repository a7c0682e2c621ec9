"""Train / validation / test splits that do not leak.

Two of the articles' mistakes live here: a test set too small to say anything (20 images),
and one patient's images on both sides of a split. `split_table` makes stratified splits,
optionally grouped (every row of a group, e.g. a patient, lands in the same split), and
`describe_splits` prints what each split holds, so a chapter can say it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def split_table(table: pd.DataFrame, label_col: str = "label", fractions=(0.7, 0.15, 0.15),
                names=("train", "val", "test"), group_col: str | None = None, seed: int = 0) -> pd.DataFrame:
    """A copy of `table` with a `split` column: stratified by `label_col`, grouped by `group_col`.

    Without groups each class is cut in the given fractions (rounded, at least one row per
    class in every split that gets a positive fraction when the class has enough rows). With
    groups, whole groups are assigned: groups are ordered at random within their majority
    label and dealt to the splits to approach the fractions, so that labels stay balanced
    across splits as far as whole groups allow. Used by chapters 1, 4 and 5.
    """
    if len(fractions) != len(names) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions {fractions} must match names {names} and sum to 1")
    rng = np.random.default_rng(seed)
    out = table.copy()
    out["split"] = ""
    if group_col is None:
        for _, index in out.groupby(label_col, sort=True).groups.items():
            order = rng.permutation(np.asarray(index))
            bounds = _bounds(len(order), fractions)
            for name, (start, stop) in zip(names, bounds):
                out.loc[order[start:stop], "split"] = name
        return out
    groups = out.groupby(group_col, sort=True)
    majority = groups[label_col].agg(lambda s: s.value_counts().index[0])
    sizes = groups.size()
    for _, members in majority.groupby(majority, sort=True):
        ids = rng.permutation(members.index.to_numpy())
        target = np.asarray(fractions) * sizes[ids].sum()
        taken = np.zeros(len(names))
        for group in ids:
            # the split furthest below its share of this label's rows takes the next group
            choice = int(np.argmax(target - taken))
            taken[choice] += sizes[group]
            out.loc[out[group_col] == group, "split"] = names[choice]
    return out


def _bounds(n: int, fractions) -> list[tuple[int, int]]:
    """Cut n rows by fractions; every positive fraction gets a row when n allows."""
    exact = np.asarray(fractions, dtype=float) * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable"):  # largest remainders get the rest
        if counts.sum() < n:
            counts[i] += 1
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0 and n >= len(fractions):
            counts[i] = 1
            counts[int(np.argmax(counts))] -= 1
    edges = np.concatenate([[0], np.cumsum(counts)])
    return list(zip(edges[:-1], edges[1:]))


def describe_splits(table: pd.DataFrame, label_col: str = "label", group_col: str | None = None) -> pd.DataFrame:
    """Rows per split and label (and groups per split when `group_col` is given). Used by chapters 1 to 5.

    Used by every chapter.
    """
    counts = pd.crosstab(table["split"], table[label_col])
    counts["total"] = counts.sum(axis=1)
    if group_col is not None:
        counts[f"{group_col}s"] = table.groupby("split")[group_col].nunique()
        shared = table.groupby(group_col)["split"].nunique()
        if (shared > 1).any():
            raise AssertionError(f"{int((shared > 1).sum())} {group_col}(s) fall in more than one split")
    return counts



def grouped_kfold(table: pd.DataFrame, group_col: str, n_folds: int = 5, label_col: str | None = None,
                  seed: int = 0, inner_val_fraction: float = 0.15) -> list[dict[str, np.ndarray]]:
    """Patient-level k-fold: every group (patient) tested exactly once, by a model that never saw it.

    Whole groups are dealt to `n_folds` folds: the groups of each majority `label_col` in random
    order (by `seed`), each to the fold furthest below its share of that label's rows (ties: the
    fold with the fewest rows), so labels stay balanced as far as whole groups allow and no fold
    is empty. For fold k the test rows are fold k's; the other folds' rows are split by
    `split_table`, by whole groups and stratified, into training and an inner validation of
    about `inner_val_fraction` of them (for early stopping and choices; 0 for none).
    Returns one dict per fold, {"train", "val", "test"}: sorted row positions (for
    `table.iloc[...]` or feature arrays in table order). Taught in chapter 4; used by chapter 5.
    """
    if group_col not in table:
        raise ValueError(f"no column {group_col!r} in the table")
    if table[group_col].isna().any():
        raise ValueError(f"{int(table[group_col].isna().sum())} rows have no {group_col}")
    n_groups = table[group_col].nunique()
    if not 2 <= n_folds <= n_groups:
        raise ValueError(f"n_folds must be between 2 and the number of groups ({n_groups}), got {n_folds}")
    if not 0 <= inner_val_fraction < 1:
        raise ValueError(f"inner_val_fraction must be in [0, 1), got {inner_val_fraction}")
    stratum = "__stratum__"
    work = table.reset_index(drop=True)
    work = work.assign(**{stratum: work[label_col] if label_col is not None else 0})
    rng = np.random.default_rng(seed)
    groups = work.groupby(group_col, sort=True)
    majority = groups[stratum].agg(lambda s: s.value_counts().index[0])
    sizes = groups.size()
    rows_in_fold = np.zeros(n_folds)
    fold_of_group = {}
    for _, members in majority.groupby(majority, sort=True):
        ids = rng.permutation(members.index.to_numpy())
        target = sizes[ids].sum() / n_folds
        taken = np.zeros(n_folds)
        for group in ids:
            deficit = target - taken
            candidates = np.flatnonzero(deficit == deficit.max())
            choice = int(candidates[np.argmin(rows_in_fold[candidates])])
            taken[choice] += sizes[group]
            rows_in_fold[choice] += sizes[group]
            fold_of_group[group] = choice
    fold_of = work[group_col].map(fold_of_group).to_numpy()
    folds = []
    for k in range(n_folds):
        pool = work[fold_of != k]
        if inner_val_fraction > 0:
            inner = split_table(pool, stratum, fractions=(1 - inner_val_fraction, inner_val_fraction),
                                names=("train", "val"), group_col=group_col, seed=seed + 1 + k)["split"]
            train, val = inner.index[inner == "train"].to_numpy(), inner.index[inner == "val"].to_numpy()
        else:
            train, val = pool.index.to_numpy(), np.zeros(0, dtype=int)
        folds.append({"train": np.sort(train), "val": np.sort(val), "test": np.flatnonzero(fold_of == k)})
    return folds


# --- chapter 2: a dataset that may bring its own test folder -------------------------------

def split_with_test_folder(table: pd.DataFrame, val_fraction: float, fractions=(0.7, 0.15, 0.15),
                           test_folder: str = "Testing", train_folder: str = "Training",
                           label_col: str = "label", seed: int = 0) -> pd.DataFrame:
    """train / val / test splits of a table whose `split` column names the dataset's folders.

    When rows sit in `test_folder`, they are the test split, untouched, and a stratified
    `val_fraction` of the `train_folder` rows becomes validation. Without such rows, train,
    validation and test are carved from every row in `fractions`, stratified by `label_col`
    (split_table). Returns a new table with `split` set to train, val or test.
    Taught in chapter 2.
    """
    if "split" not in table.columns:
        raise ValueError("the table needs a 'split' column naming each file's folder "
                         "(tl.data.class_folder_table gives one)")
    names = ("train", "val", "test")
    if not (table["split"] == test_folder).any():
        return split_table(table.drop(columns="split"), label_col, fractions, names, seed=seed)
    return official_test_or_carved(table[table["split"].isin([train_folder, test_folder])], label_col,
                                   (1 - val_fraction, val_fraction, 0), names, seed=seed,
                                   test_folder=test_folder)[0]  # validation from train_folder alone


def test_folder_source(table: pd.DataFrame, fractions=(0.7, 0.15, 0.15), seed: int = 0,
                       test_folder: str = "Testing", train_folder: str = "Training") -> str:
    """Where `split_with_test_folder` took the test split from, in words, for the printout and
    the run card: the dataset's own `test_folder`, or carved from `train_folder` (with the
    fractions and seed). Taught in chapter 2.
    """
    if (table["split"] == test_folder).any():
        return f"Kaggle's {test_folder}/ folder"
    return (f"carved from {train_folder}/ (stratified by class, fractions {tuple(fractions)}, seed {seed}; "
            f"this copy of the dataset has no {test_folder}/ folder, and the files name no patient)")


# --- chapter 3: the official test folder, else a test split carved by group -----------

def official_test_or_carved(table: pd.DataFrame, label_col: str, fractions, names,
                          group_col: str | None = None, seed: int = 0,
                          carve_by_group: bool = True, test_folder: str = "test") -> tuple[pd.DataFrame, str]:
    """Splits `table` (with a `split` column from its folders) into `names`, the last the test.

    Rows from the folder `test_folder` are the test split as given, and the other rows (less
    any `group_col` group that also has a row there, so no group straddles) are split by
    `split_table` with the other fractions rescaled to sum to 1. Without such rows the test
    split is carved too, with all `fractions`. `carve_by_group=False` deals rows one by one
    (to show what grouping prevents). Returns the table (carved rows first) and a phrase
    saying where the test split came from. Used by chapter 3 (and by split_with_test_folder).
    """
    official = table[table.split == test_folder].drop(columns="split").assign(split=names[-1])
    pool = table[table.split != test_folder]
    if group_col is not None:
        pool = pool[~pool[group_col].isin(official[group_col])]
    pool = pool.drop(columns="split")
    if len(official):
        k = len(names) - 1
        names, fractions = names[:k], list(np.array(fractions[:k]) / sum(fractions[:k]))
    out = split_table(pool, label_col, fractions, names, seed=seed,
                      group_col=group_col if carve_by_group else None)
    by = group_col if carve_by_group and group_col else "row"
    where = "the official test/ folder" if len(official) else f"carved from train/, by {by}"
    return pd.concat([out, official], ignore_index=True), where
