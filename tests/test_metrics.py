"""Confidence intervals: known answers from the literature, and agreement with sklearn."""
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score, roc_auc_score

from tl_helpers import metrics


@pytest.mark.parametrize("successes, n, low, high", [
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score).
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_interval_matches_published_values(successes, n, low, high):
    got = metrics.wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_edges_and_errors():
    assert metrics.wilson_interval(10, 10)[1] == 1.0
    assert all(np.isnan(metrics.wilson_interval(0, 0)))
    wider = metrics.wilson_interval(5, 10, confidence=0.99)
    narrower = metrics.wilson_interval(5, 10, confidence=0.90)
    assert wider[0] < narrower[0] and wider[1] > narrower[1]
    with pytest.raises(ValueError):
        metrics.wilson_interval(11, 10)


def test_bootstrap_of_accuracy_agrees_with_the_normal_approximation_on_large_n():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 2000)
    y_pred = np.where(rng.random(2000) < 0.8, y_true, 1 - y_true)
    accuracy = float((y_true == y_pred).mean())
    estimate = metrics.bootstrap_ci(lambda t, p: (t == p).mean(), y_true, y_pred, n_boot=1000, seed=1)
    half = 1.96 * np.sqrt(accuracy * (1 - accuracy) / 2000)
    assert estimate.value == accuracy
    assert estimate.low == pytest.approx(accuracy - half, abs=0.004)
    assert estimate.high == pytest.approx(accuracy + half, abs=0.004)


def test_stratified_bootstrap_keeps_class_counts_and_is_reproducible():
    y_true = np.array([0] * 30 + [1] * 5)
    scores = np.linspace(0, 1, 35)
    seen = []

    def positives(t, s):
        seen.append(int(t.sum()))
        return t.mean()

    metrics.bootstrap_ci(positives, y_true, scores, n_boot=50, seed=0)
    assert set(seen) == {5}
    first = metrics.bootstrap_ci(roc_auc_score, y_true, scores, n_boot=200, seed=3)
    again = metrics.bootstrap_ci(roc_auc_score, y_true, scores, n_boot=200, seed=3)
    assert first == again
    unstratified = []
    metrics.bootstrap_ci(lambda t, s: unstratified.append(int(t.sum())) or 0.0, y_true, scores,
                         n_boot=50, seed=0, stratified=False)
    assert len(set(unstratified)) > 1


def test_bootstrap_drops_resamples_where_the_metric_is_undefined():
    # Unstratified resamples of 1 positive in 6 often lack it; AUC is then undefined.
    y_true = np.array([0, 0, 0, 0, 0, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])
    estimate = metrics.bootstrap_ci(roc_auc_score, y_true, scores, n_boot=200, stratified=False)
    assert estimate == (1.0, 1.0, 1.0)


def test_binary_report_agrees_with_sklearn():
    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 2, 300)
    p_positive = np.clip(rng.normal(0.35 + 0.3 * y_true, 0.2), 0, 1)
    report = metrics.binary_report(y_true, p_positive, threshold=0.5, n_boot=300)
    y_pred = (p_positive >= 0.5).astype(int)
    assert report["accuracy"].value == pytest.approx((y_pred == y_true).mean())
    assert report["sensitivity"].value == pytest.approx(recall_score(y_true, y_pred))
    assert report["specificity"].value == pytest.approx(recall_score(y_true, y_pred, pos_label=0))
    assert report["balanced_accuracy"].value == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert report["roc_auc"].value == pytest.approx(roc_auc_score(y_true, p_positive))
    positives = int(y_true.sum())
    assert report["sensitivity"][1:] == pytest.approx(
        metrics.wilson_interval(int(y_pred[y_true == 1].sum()), positives))
    for estimate in report.values():
        assert estimate.low <= estimate.value <= estimate.high
    table = metrics.report_table(report)
    assert list(table.columns) == ["value", "low", "high"]
    assert table.loc["roc_auc", "value"] == report["roc_auc"].value


def test_binary_report_with_one_class_gives_nan_not_a_crash():
    report = metrics.binary_report([1, 1, 1], [0.9, 0.2, 0.8])
    assert report["sensitivity"].value == pytest.approx(2 / 3)
    assert np.isnan(report["specificity"].value)
    assert np.isnan(report["roc_auc"].value)


def test_multiclass_report_agrees_with_sklearn_and_accepts_names():
    rng = np.random.default_rng(5)
    names = ["glioma", "meningioma", "notumor", "pituitary"]
    y_true = rng.integers(0, 4, 400)
    y_pred = np.where(rng.random(400) < 0.75, y_true, rng.integers(0, 4, 400))
    report = metrics.multiclass_report([names[i] for i in y_true], [names[i] for i in y_pred], names, n_boot=300)
    assert report["macro_f1"].value == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    per_class = recall_score(y_true, y_pred, average=None)
    for name, expected in zip(names, per_class):
        assert report["recall"][name].value == pytest.approx(expected)
        assert report["recall"][name].low < expected < report["recall"][name].high
    assert report["accuracy"].value == pytest.approx((y_true == y_pred).mean())
    assert "recall pituitary" in metrics.report_table(report).index
