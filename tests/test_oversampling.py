"""Balancing by augmented copies, on real MRI files (synthetic when absent)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tl_helpers.train.augment import Augment
from tl_helpers.data.images import read_image
from tl_helpers.techniques.oversampling import add_augmented_copies, copies_needed
from tests.conftest import shared_data_dir

AUGMENT = Augment(rotation_range=20, width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)


@pytest.fixture(scope="module")
def unbalanced(synthetic_sets):
    """5 glioma, 2 pituitary and 4 notumor training files."""
    root = (shared_data_dir() / "brain_tumor_mri_4class" if shared_data_dir()
            else synthetic_sets["brain_tumor_mri_4class"]) / "Training"
    rows = [(str(p), c) for c, n in (("glioma", 5), ("pituitary", 2), ("notumor", 4))
            for p in sorted((root / c).glob("*.jpg"))[:n]]
    return pd.DataFrame(rows, columns=["path", "label"])


def test_copies_needed():
    labels = pd.Series(["a"] * 5 + ["b"] * 2 + ["c"] * 4)
    assert copies_needed(labels) == {"a": 0, "b": 3, "c": 1}
    assert copies_needed(labels, target=6) == {"a": 1, "b": 4, "c": 2}


def test_copies_balance_the_classes_and_are_real_augmented_files(unbalanced, tmp_path):
    copies = add_augmented_copies(unbalanced, tmp_path, AUGMENT, seed=0)
    balanced = pd.concat([unbalanced, copies], ignore_index=True)
    assert balanced.label.value_counts().to_dict() == {"glioma": 5, "pituitary": 5, "notumor": 5}
    assert copies.augmented.all() and set(copies.source_path) <= set(unbalanced.path)
    pituitary = copies[copies.label == "pituitary"]
    assert pituitary.source_path.nunique() == 2  # both originals used before any repeats
    for path, source in zip(copies.path, copies.source_path):
        copy, original = read_image(path, channels=None), read_image(source, channels=None)
        assert copy.shape == original.shape
        assert not np.array_equal(copy, original)  # it was transformed
        assert tmp_path in Path(path).parents  # written beside nothing of the data set


def test_copies_are_reproducible_and_reused(unbalanced, tmp_path):
    first = add_augmented_copies(unbalanced, tmp_path / "a", AUGMENT, seed=3)
    second = add_augmented_copies(unbalanced, tmp_path / "b", AUGMENT, seed=3)
    for p, q in zip(first.path, second.path):
        assert np.array_equal(read_image(p, channels=None), read_image(q, channels=None))
    stamps = [Path(p).stat().st_mtime_ns for p in first.path]
    again = add_augmented_copies(unbalanced, tmp_path / "a", AUGMENT, seed=3)
    assert [Path(p).stat().st_mtime_ns for p in again.path] == stamps
    other = add_augmented_copies(unbalanced, tmp_path / "a", AUGMENT, seed=4)
    assert set(other.path).isdisjoint(first.path)


def test_empty_table_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no rows"):
        add_augmented_copies(pd.DataFrame(columns=["path", "label"]), tmp_path, AUGMENT)
