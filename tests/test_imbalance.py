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
