"""Balanced class weights: every class weighs the same in total."""
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from tl_helpers.techniques.imbalance import balanced_class_weights


def test_weights_match_scikit_learn_and_equalise_class_totals():
    labels = np.array([0] * 25 + [1] * 75)  # the chest X-rays' 1:3
    weights = balanced_class_weights(labels)
    assert weights == pytest.approx({0: 2.0, 1: 100 / 150})
    reference = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    assert [weights[0], weights[1]] == pytest.approx(list(reference))
    assert weights[0] * 25 == pytest.approx(weights[1] * 75)
    assert all(type(k) is int for k in weights)  # Keras wants plain ints as keys


def test_names_and_an_explicit_class_list():
    weights = balanced_class_weights(["NORMAL", "PNEUMONIA", "PNEUMONIA"], classes=["NORMAL", "PNEUMONIA"])
    assert weights == pytest.approx({"NORMAL": 1.5, "PNEUMONIA": 0.75})


def test_a_class_without_samples_or_an_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="no samples"):
        balanced_class_weights([0, 0, 1], classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not among"):
        balanced_class_weights([0, 1, 2], classes=[0, 1])
    with pytest.raises(ValueError, match="no labels"):
        balanced_class_weights([])


# chapter 3: the stream of weighted batches
def test_weighted_batches_pass_over_every_row_once_per_pass_with_balanced_weights():
    from itertools import islice

    from tl_helpers.techniques.imbalance import weighted_batches

    y = np.array([0] * 3 + [1] * 7)
    x = np.arange(10) * 10  # x tells which row a sample came from
    batches = list(islice(weighted_batches(x, y, batch_size=4, seed=1), 5))  # 20 rows: two passes,
    # the third batch ends one pass and starts the next
    assert all(len(bx) == len(by) == len(bw) == 4 for bx, by, bw in batches)
    rows = np.concatenate([bx for bx, _, _ in batches]) // 10
    assert sorted(rows[:10]) == list(range(10)) and sorted(rows[10:]) == list(range(10))
    assert list(rows[:10]) != list(rows[10:])  # each pass in a new order
    labels = np.concatenate([by for _, by, _ in batches])
    weights = np.concatenate([bw for _, _, bw in batches])
    assert np.array_equal(labels, y[rows])
    assert weights[labels == 0].sum() == pytest.approx(weights[labels == 1].sum())  # classes weigh alike
    again = next(weighted_batches(x, y, batch_size=4, seed=1))
    assert np.array_equal(again[0], batches[0][0])
    assert not np.array_equal(next(weighted_batches(x, y, batch_size=4, seed=2))[0], again[0])
