"""Confidence intervals: known answers from the literature, and agreement with sklearn."""
import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from tl_helpers.evaluate import metrics


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


# --- grouped (patient) bootstrap ------------------------------------------------------------

def reference_patient_bootstrap(scores, patients, statistic=np.mean, n_boot=1000, seed=0, confidence=0.95):
    """The chapter-4 patient bootstrap written out plainly (the former segmentation.patient_bootstrap_ci)."""
    scores, patients = np.asarray(scores, dtype=np.float64), np.asarray(patients)
    groups = [scores[patients == p] for p in np.unique(patients)]
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(groups), len(groups))
        samples.append(statistic(np.concatenate([groups[i] for i in drawn])))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(statistic(scores)), float(low), float(high)


@pytest.mark.parametrize("statistic", [np.mean, np.median])
def test_grouped_bootstrap_equals_the_plain_patient_bootstrap(statistic):
    rng = np.random.default_rng(7)
    names = ["p3", "p1", "p10", "p2", "p7", "p12", "p5", "p11", "p4", "p9", "p8"]  # unsorted, more than 10
    patients = rng.choice(names, size=60)  # unequal group sizes
    scores = rng.random(60)
    expected = reference_patient_bootstrap(scores, patients, statistic, n_boot=300, seed=4)
    got = metrics.bootstrap_ci(statistic, scores, groups=patients, n_boot=300, seed=4)
    assert got == pytest.approx(expected, abs=1e-12, rel=0)
    assert got.low < got.value < got.high
    # resampling patients, not slices, gives another interval than the slice bootstrap
    assert got != metrics.bootstrap_ci(statistic, scores, n_boot=300, seed=4, stratified=False)


def test_grouped_bootstrap_with_two_arrays_moves_whole_groups():
    y_true = np.tile([0, 1, 0, 1, 1, 0, 0, 1], 3)
    y_pred = np.tile([0, 1, 1, 1, 0, 0, 0, 1], 3)
    patients = np.repeat([f"p{i}" for i in range(12)], 2)
    seen = []

    def accuracy(t, p):
        seen.append(len(t))
        return (t == p).mean()

    estimate = metrics.bootstrap_ci(accuracy, y_true, y_pred, groups=patients, n_boot=100, seed=0)
    assert estimate.value == pytest.approx(0.75)
    assert set(seen) == {24} and len(seen) > 1  # twelve patients of two slices each, every resample
    with pytest.raises(ValueError, match="group labels"):
        metrics.bootstrap_ci(np.mean, y_true, groups=patients[:5])


def test_grouped_bootstrap_of_one_group_gives_no_interval():
    with pytest.warns(metrics.FewGroupsWarning):
        estimate = metrics.bootstrap_ci(np.mean, [0.2, 0.4, 0.9], groups=["a", "a", "a"], n_boot=50)
    assert estimate.value == pytest.approx(0.5) and np.isnan(estimate.low) and np.isnan(estimate.high)


# --- masks: binarize and Dice -------------------------------------------------------------

def square(size=8, top=2, left=2, side=4):
    mask = np.zeros((size, size), np.float32)
    mask[top:top + side, left:left + side] = 1
    return mask


def test_binarize_treats_0_255_and_0_1_and_probabilities_alike():
    ones = np.stack([square(), square(left=3), np.zeros((8, 8), np.float32)])
    expected = ones.astype(bool)
    as_255 = (ones * 255).astype(np.uint8)
    as_int = ones.astype(np.int64)
    probabilities = ones * 0.9 + 0.05  # 0.95 inside, 0.05 outside
    for masks in (ones, as_255, as_int, probabilities, as_255[..., None], probabilities[..., None]):
        out = metrics.binarize(masks)
        assert out.dtype == bool and out.shape == (3, 8, 8)
        np.testing.assert_array_equal(out, expected)
    single = metrics.binarize(as_255[0])
    assert single.shape == (8, 8) and np.array_equal(single, expected[0])
    np.testing.assert_array_equal(metrics.binarize(probabilities, threshold=0.99), np.zeros_like(expected))
    assert not metrics.binarize(np.zeros((2, 4, 4), np.uint8)).any()


def test_dice_scores_of_known_masks():
    truth = np.stack([square(), square(), np.zeros((8, 8)), np.zeros((8, 8)), square()])
    # identical; shifted by 2 columns (8 of 16 pixels overlap); both empty; false alarm; missed
    pred = np.stack([square(), square(left=4), np.zeros((8, 8)), square(), np.zeros((8, 8))])
    scores = metrics.dice_scores(truth, pred)
    np.testing.assert_allclose(scores, [1.0, 0.5, 1.0, 0.0, 0.0])
    assert metrics.dice_scores(truth[2:3], pred[2:3], empty_score=np.nan)[0] != 1.0


def test_dice_scores_accepts_probabilities_with_a_channel_axis():
    truth = square()[None, ..., None]
    pred = (square() * 0.9 + 0.05)[None, ..., None]  # 0.95 inside, 0.05 outside
    assert metrics.dice_scores(truth, pred)[0] == 1.0
    with pytest.raises(ValueError):
        metrics.dice_scores(truth, np.zeros((1, 4, 4)))


def test_dice_scores_of_a_0_255_mask_against_probabilities():
    truth = (square() * 255).astype(np.uint8)[None]
    pred = square(left=4)[None, ..., None] * 0.8
    np.testing.assert_allclose(metrics.dice_scores(truth, pred), [0.5])


def test_bootstrap_of_one_array_of_values_has_a_real_interval():
    # four patients' Dice: an interval of the mean must have width (stratifying by value gave none)
    values = np.array([0.537, 0.727, 0.796, 0.883])
    estimate = metrics.bootstrap_ci(np.mean, values, seed=0)
    assert estimate.low < estimate.value < estimate.high
    assert estimate.low >= values.min() and estimate.high <= values.max()


# --- chapter 2: ROC AUC of a multiclass model, overall and per class --------------------------

def four_class_predictions(seed=7, n=300):
    """Labels, calls and probabilities of a fair four-class model: the true class gets a boost."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y_true] += 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, probabilities.argmax(1), probabilities


def test_multiclass_report_adds_the_macro_roc_auc_of_sklearn_with_probabilities():
    names = ["glioma", "meningioma", "notumor", "pituitary"]
    y_true, y_pred, probabilities = four_class_predictions()
    report = metrics.multiclass_report(y_true, y_pred, names, n_boot=200, probabilities=probabilities)
    expected = roc_auc_score(y_true, probabilities, multi_class="ovr", average="macro")
    assert report["roc_auc"].value == pytest.approx(expected)
    assert report["roc_auc"].low < expected < report["roc_auc"].high
    # the same bootstrap as writing it out with bootstrap_ci, resample for resample
    assert report["roc_auc"] == metrics.bootstrap_ci(metrics.macro_roc_auc, y_true, probabilities, n_boot=200)
    assert "roc_auc" not in metrics.multiclass_report(y_true, y_pred, names, n_boot=20)


def test_multiclass_report_refuses_probabilities_of_the_wrong_shape():
    y_true, y_pred, probabilities = four_class_predictions()
    with pytest.raises(ValueError, match=r"expected one row per label and one column per class, \(300, 4\)"):
        metrics.multiclass_report(y_true, y_pred, list("abcd"), n_boot=20, probabilities=probabilities[:, :3])


def test_per_class_report_agrees_with_sklearn_class_by_class():
    names = ["glioma", "meningioma", "notumor", "pituitary"]
    y_true, y_pred, probabilities = four_class_predictions()
    report = metrics.per_class_report([names[i] for i in y_true], y_pred, probabilities, names, n_boot=200)
    assert list(report) == ["sensitivity", "precision", "roc_auc_ovr"]
    sensitivity = recall_score(y_true, y_pred, average=None)
    precision = precision_score(y_true, y_pred, average=None)
    for k, name in enumerate(names):
        auc = roc_auc_score(y_true == k, probabilities[:, k])
        for measure, expected in (("sensitivity", sensitivity[k]), ("precision", precision[k]),
                                  ("roc_auc_ovr", auc)):
            estimate = report[measure][name]
            assert estimate.value == pytest.approx(expected)
            assert estimate.low < expected < estimate.high, (measure, name)


def test_per_class_report_gives_nan_where_a_class_is_never_called_or_absent():
    y_true = np.array([0, 0, 1, 1, 0, 1])
    y_pred = np.array([0, 1, 1, 1, 0, 0])  # class 2 is never called and never true
    probabilities = np.full((6, 3), 1 / 3)
    report = metrics.per_class_report(y_true, y_pred, probabilities, ["a", "b", "c"], n_boot=20)
    assert np.isnan(report["precision"]["c"].value) and np.isnan(report["sensitivity"]["c"].value)
    assert np.isnan(report["roc_auc_ovr"]["c"].value)
    assert report["roc_auc_ovr"]["a"].value == pytest.approx(0.5)  # equal probabilities: chance
    assert report["sensitivity"]["b"].value == pytest.approx(2 / 3)


# --- chapter 3: the noise of a small validation draw, and arms compared seed by seed ----

def test_subsample_range_is_the_spread_of_small_draws():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    called = np.where(rng.random(400) < 0.8, y, 1 - y)  # right about 80% of the time
    overall, low, high = metrics.subsample_range(y, called, 400, n_draws=50, seed=0)
    assert overall == low == high == (called == y).mean()  # every draw is every row
    overall, low, high = metrics.subsample_range(y, called, 112, n_draws=1000, seed=0)
    assert low < overall < high and 0.05 < high - low < 0.3
    _, low_big, high_big = metrics.subsample_range(y, called, 300, n_draws=1000, seed=0)
    assert high_big - low_big < high - low  # a bigger draw moves less
    draws = [np.random.default_rng(0).choice(400, 112, replace=False)]
    assert metrics.subsample_range(y, called, 112, n_draws=1, seed=0)[1] == pytest.approx(
        (called[draws[0]] == y[draws[0]]).mean())


def test_spread_table_shows_each_seed_then_mean_and_sd():
    auc = [metrics.Estimate(0.9, 0.8, 0.95), metrics.Estimate(0.7, 0.6, 0.8)]
    values = {"arm": {"roc_auc": auc, "plain": [1.0, 2.0]}, "one": {"roc_auc": [0.5],
                                                                   "plain": [3.0]}}
    table, spreads = metrics.spread_table(values)
    assert table.loc["arm", "roc_auc"] == "0.800 ± 0.141" and table.loc["one", "plain"] == "3.000"
    assert spreads["arm"]["plain"].sd == pytest.approx(np.std([1.0, 2.0], ddof=1))
    table, _ = metrics.spread_table(values, seeds=[4, 5])
    assert list(table.index) == [("arm", 4), ("arm", 5), ("arm", "mean ± sd"), ("one", "-"),
                                 ("one", "mean ± sd")]
    assert table.loc[("arm", 5), "roc_auc"] == f"{auc[1]}" == "0.700 (0.600-0.800)"


def test_paired_seed_comparison_claims_only_what_every_seed_agrees_on():
    values = {"a": [0.9, 0.8], "b": [0.7, 0.85], "c": [0.5]}
    table = metrics.paired_seed_comparison(values, {"a": "arm A", "c": "arm C"})
    assert list(table.index) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert table.loc[("a", "b"), "verdict"] == "the seeds disagree: no difference claimed"
    assert table.loc[("a", "c"), "verdict"] == "arm A better on every seed"
    assert table.loc[("b", "c"), "verdict"] == "b better on every seed"
    assert table.loc[("a", "c"), "ROC AUC difference per seed"] == "+0.400, +0.300"
    assert table.loc[("a", "b"), "mean"] == pytest.approx(((0.9 - 0.7) + (0.8 - 0.85)) / 2)


# --- chapter 5 (issue 23): roc_aucs ---
def test_roc_aucs_match_binary_report_and_follow_the_order_of_each_score():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 200), 0, 1)
    aucs = metrics.roc_aucs(y, {"p": p, "logit": np.log(p / (1 - p)), "reversed": -p},
                            n_boot=50, seed=1)
    assert aucs["p"] == metrics.binary_report(y, p, n_boot=50, seed=1)["roc_auc"]
    assert aucs["logit"].value == pytest.approx(aucs["p"].value)  # same order, same AUC
    assert aucs["reversed"].value == pytest.approx(1 - aucs["p"].value)
    assert aucs["p"].value == pytest.approx(roc_auc_score(y, p))


def test_a_wilson_interval_holds_its_proportion_at_the_edges():
    from tl_helpers.evaluate.metrics import proportion

    for n in (4, 10, 30, 101):
        none, every = proportion(0, n), proportion(n, n)
        assert none.low == 0.0 <= none.value and every.high == 1.0 >= every.value


def test_a_long_bootstrap_shows_its_progress_unless_turned_off(monkeypatch, capsys):
    bootstrap_ci = metrics.bootstrap_ci
    y, score = np.array([0, 1] * 20), np.linspace(0, 1, 40)
    monkeypatch.delenv("TL_PROGRESS", raising=False)
    bootstrap_ci(roc_auc_score, y, score, n_boot=300)
    assert "bootstrap" in capsys.readouterr().err
    bootstrap_ci(roc_auc_score, y, score, n_boot=100)  # short: no bar
    monkeypatch.setenv("TL_PROGRESS", "0")
    bootstrap_ci(roc_auc_score, y, score, n_boot=300)
    assert capsys.readouterr().err == ""


def test_the_bootstraps_fast_roc_auc_and_balanced_accuracy_give_scikit_learns_numbers():
    rng = np.random.default_rng(7)
    for n in (2, 5, 32, 300):
        for _ in range(50):
            y = rng.integers(0, 2, n)
            score = rng.integers(0, 6, n) / 5 if rng.random() < 0.5 else rng.random(n)  # ties half the time
            calls = (score >= 0.5).astype(int)
            assert metrics._balanced_accuracy(y, calls) == pytest.approx(balanced_accuracy_score(y, calls), abs=1e-12)
            if 0 < y.sum() < n:
                assert metrics._roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
            else:
                with pytest.raises(ValueError):
                    metrics._roc_auc(y, score)
    with pytest.raises(ValueError, match="NaN"):
        metrics._roc_auc([0, 1], [0.2, float("nan")])


def test_the_fast_macro_roc_auc_and_balanced_accuracy_give_scikit_learns_numbers_with_four_classes():
    rng = np.random.default_rng(11)
    for n in (8, 40, 400):
        for _ in range(30):
            y = np.concatenate([np.arange(4), rng.integers(0, 4, n - 4)])  # every class present
            logits = rng.normal(size=(n, 4)) + 2 * np.eye(4)[y] * rng.random()
            if rng.random() < 0.5:
                logits = np.round(logits)  # ties
            p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            calls = p.argmax(1)
            assert metrics.macro_roc_auc(y, p) == pytest.approx(
                roc_auc_score(y, p, multi_class="ovr", average="macro", labels=np.arange(4)), abs=1e-12)
            assert metrics._balanced_accuracy(y, calls) == pytest.approx(balanced_accuracy_score(y, calls), abs=1e-12)
    with pytest.raises(ValueError, match="sum up to 1"):
        metrics.macro_roc_auc([0, 1, 2], np.full((3, 3), 0.5))
    with pytest.raises(ValueError, match="one class"):  # class 2 has no case
        metrics.macro_roc_auc([0, 1, 0, 1], np.full((4, 3), 1 / 3))


def test_dice_estimates_resample_patients_and_give_few_patients_no_interval():
    rng = np.random.default_rng(0)
    for n_patients, has_interval in ((4, False), (12, True)):
        patients = np.repeat([f"P{i:02d}" for i in range(n_patients)], 5)
        truth = rng.random((len(patients), 16, 16)) > 0.6
        predicted = np.clip(truth + rng.normal(0, 0.6, truth.shape), 0, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metrics.FewGroupsWarning)
            report, dice, per_patient = metrics.dice_estimates(patients, truth, predicted, n_boot=200, seed=1)
        assert list(report) == ["dice_mean", "dice_per_patient_mean", "dice_volumetric_per_patient_mean"]
        assert np.array_equal(dice, metrics.dice_scores(truth, predicted))
        volumes = metrics.volumetric_dice(patients, truth, predicted)
        assert report["dice_volumetric_per_patient_mean"].value == pytest.approx(volumes.dice.mean())
        assert list(per_patient.columns) == ["patient", "slices", "mean_dice", "median_dice", "volumetric_dice"]
        for estimate in report.values():  # every interval resamples whole patients: none from 4
            assert np.isnan(estimate.low) != has_interval
