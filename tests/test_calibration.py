"""tl.calibration: reliability, ECE, Brier score, temperature scaling, referral by uncertainty.

The calibrated source: outcomes drawn with exactly the stated probabilities. The over-confident
model: the same probabilities pushed towards 0 and 1 (logits times 3). Its ECE must be
higher, and a temperature fitted on one half must bring the other half's ECE down.
"""
from __future__ import annotations

import numpy as np
import pytest

import tl_helpers as tl

cal = tl.calibration


def source(count: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, count)
    y = (rng.uniform(size=count) < p).astype(int)
    logit = np.log(p / (1 - p))
    return y, p, 1 / (1 + np.exp(-3 * logit))  # labels, calibrated, over-confident


def test_ece_and_brier_by_hand():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.4, 0.05])  # confidences 0.9, 0.6, 0.6, 0.95; all correct
    table = cal.reliability_table(y, p, n_bins=10)
    assert list(table["count"]) == [0, 0, 0, 0, 0, 0, 2, 0, 0, 2]
    assert table["confidence"][6] == pytest.approx(0.6) and table["accuracy"][6] == 1.0
    assert cal.expected_calibration_error(y, p, n_bins=10) == pytest.approx((2 * 0.4 + 2 * 0.075) / 4)
    assert cal.brier_score(y, p) == pytest.approx(np.mean([0.01, 0.16, 0.16, 0.0025]))
    assert cal.brier_score(y, np.stack([1 - p, p], axis=1)) == pytest.approx(2 * cal.brier_score(y, p))
    assert cal.expected_calibration_error([0, 1], [[1.0, 0.0], [0.0, 1.0]]) == 0.0  # confidence 1 lands in the last bin


def test_an_over_confident_model_has_the_higher_ece_and_temperature_scaling_brings_it_down():
    y, calibrated, over = source()
    assert cal.expected_calibration_error(y, calibrated) < 0.03
    assert cal.expected_calibration_error(y, over) > 0.1
    assert cal.brier_score(y, over) > cal.brier_score(y, calibrated)
    fit, held_out = slice(0, 2000), slice(2000, None)
    temperature = cal.fit_temperature(over[fit], y[fit])
    assert 2.5 < temperature < 3.5  # the push was x3 on the logits
    scaled = cal.apply_temperature(over[held_out], temperature)
    before = cal.expected_calibration_error(y[held_out], over[held_out])
    after = cal.expected_calibration_error(y[held_out], scaled)
    assert after < before / 3
    assert np.array_equal(scaled >= 0.5, over[held_out] >= 0.5)  # the decisions do not change
    # logits in, (N, K) probabilities out: the same temperature and the same numbers
    logits = np.stack([np.zeros(2000), np.log(over[fit] / (1 - over[fit]))], axis=1)
    assert cal.fit_temperature(logits, y[fit], from_logits=True) == pytest.approx(temperature, rel=1e-3)
    np.testing.assert_allclose(cal.apply_temperature(logits, temperature, from_logits=True)[:, 1],
                               cal.apply_temperature(over[fit], temperature), atol=1e-9)
    report = cal.calibration_report(y[:500], over[:500], n_boot=100)
    assert report["ece"].low <= report["ece"].value <= report["ece"].high
    figure = cal.plot_reliability_diagram({"before": (y[held_out], over[held_out]),
                                           "after temperature scaling": (y[held_out], scaled)})
    assert "ECE" in figure.axes[0].get_legend().get_texts()[1].get_text()


def test_referral_compares_mc_spread_with_softmax_confidence():
    """Ten cases: the wrong ones have a wide MC spread but a confident mean; spread refers them first."""
    rng = np.random.default_rng(0)
    y = np.array([1] * 10)
    wrong = np.arange(10) >= 8
    centre = np.where(wrong, 0.2, 0.7)  # P(class 1): the two wrong cases are *confidently* wrong (0.8 for class 0)
    width = np.where(wrong, 0.15, 0.01)
    p1 = np.clip(centre + rng.normal(0, 1, (40, 10)) * width, 0.01, 0.99)
    samples = np.stack([1 - p1, p1], axis=2)
    curves = cal.compare_referral(y, samples, coverages=[1.0, 0.8])
    assert set(curves) == {"MC dropout spread", "softmax confidence"}
    spread, confidence = curves["MC dropout spread"], curves["softmax confidence"]
    assert spread["accuracy"].tolist() == [0.8, 1.0]  # referring 2 by spread removes both mistakes
    assert confidence["accuracy"].tolist()[1] < 1.0  # the confident mistakes stay
    assert tl.uncertainty.plot_accuracy_coverage(curves) is not None


def test_four_classes_over_confident_softmax_temperature_scaling_lowers_ece_and_keeps_the_calls():
    """Chapter 2's case: a 4-way softmax whose logits were multiplied by 2.5; T fitted on one half."""
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.5, (4000, 4))
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in calibrated])  # outcomes drawn with exactly these probabilities
    over = np.exp(2.5 * logits) / np.exp(2.5 * logits).sum(axis=1, keepdims=True)
    fit, held_out = slice(0, 2000), slice(2000, None)
    temperature = cal.fit_temperature(over[fit], y[fit])
    assert 2.0 < temperature < 3.0  # the push was x2.5 on the logits
    scaled = cal.apply_temperature(over[held_out], temperature)
    assert scaled.shape == (2000, 4) and np.allclose(scaled.sum(axis=1), 1.0)
    assert np.array_equal(scaled.argmax(axis=1), over[held_out].argmax(axis=1))  # the calls do not change
    before = cal.expected_calibration_error(y[held_out], over[held_out])
    after = cal.expected_calibration_error(y[held_out], scaled)
    assert before > 0.1 and after < before / 3
    assert cal.brier_score(y[held_out], scaled) < cal.brier_score(y[held_out], over[held_out])
