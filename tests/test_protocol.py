"""The evaluation protocol (tl.protocol), Estimate formatting, the run card taking an
Estimate, and the one stopwatch (tl.timing)."""
from __future__ import annotations

import numpy as np
import pytest

import tl_helpers as tl
from tl_helpers.evaluate.metrics import Estimate
from tl_helpers.workflow.runcard import RunCard


def predictions(seed=0, n=120):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 * y + rng.normal(0.25, 0.2, n), 0, 1)
    return y, p


def test_an_estimate_formats_itself():
    e = Estimate(0.9449, 0.92401, 0.96)
    assert f"{e}" == "0.945 (0.924-0.960)"
    assert str(e) == "0.945 (0.924-0.960)"
    assert f"{e:.1%}" == "94.5% (92.4%-96.0%)"
    assert f"{Estimate(0.5, float('nan'), float('nan'))}" == "0.500"
    assert f"{Estimate(0.038, -0.0561, 0.13)}" == "0.038 (-0.056 to 0.130)"  # a difference


def test_the_run_card_takes_an_estimate_with_its_interval():
    card = RunCard("nb", "smoke")
    card.metric("roc_auc", Estimate(0.9, 0.8, 0.95), split="test")
    assert card.record["metrics"]["roc_auc"] == {"value": 0.9, "split": "test", "ci95": [0.8, 0.95]}
    with pytest.raises(ValueError, match="carries its own interval"):
        card.metric("roc_auc", Estimate(0.9, 0.8, 0.95), ci=(0, 1))


def test_the_protocol_chooses_on_validation_and_scores_the_test_split_once():
    y_val, p_val = predictions(1)
    y_test, p_test = predictions(2)
    protocol = tl.protocol.BinaryProtocol(("sensitivity", 0.95), seed=3, at_specificity=0.9)
    with pytest.raises(RuntimeError, match="choose_on_validation comes first"):
        protocol.score_test(y_test, p_test)
    protocol.choose_on_validation(y_val, p_val)
    assert protocol.point == tl.metrics.choose_threshold(y_val, p_val, ("sensitivity", 0.95))
    assert protocol.temperature == tl.calibration.fit_temperature(p_val, y_val)
    scores = protocol.score_test(y_test, p_test)
    assert scores.at_point == tl.metrics.binary_report(y_test, p_test, threshold=protocol.point, seed=3,
                                                       at_specificity=0.9)
    assert scores.at_half == tl.metrics.binary_report(y_test, p_test, seed=3, at_specificity=0.9)
    with pytest.raises(tl.protocol.SecondLookError):
        protocol.score_test(y_test, p_test)
    assert protocol.score_test(y_test, p_test, second_look=True).count == len(y_test)
    table = scores.table()
    assert table.loc["roc_auc", "threshold 0.5"] == format(scores.at_half["roc_auc"])
    assert table.loc["roc_auc"].iloc[1] == ""  # threshold-free: shown once


def test_scores_go_on_the_card_under_the_chapter_names():
    y, p = predictions(4)
    protocol = tl.protocol.BinaryProtocol("youden").choose_on_validation(y, p)
    card = RunCard("nb", "smoke")
    protocol.score_test(y, p).record(card, main="point", prefix="stage1", other_prefix="stage1_at_half",
                                     other_names=["sensitivity", "specificity"])
    assert list(card.record["metrics"]) == ["stage1_accuracy", "stage1_sensitivity", "stage1_specificity",
                                            "stage1_balanced_accuracy", "stage1_roc_auc",
                                            "stage1_at_half_sensitivity", "stage1_at_half_specificity"]


def test_groups_make_the_intervals_resample_whole_patients():
    """Ten patients whose slices all share one label and one score: 200 slices carry the
    information of 10 draws, and only a grouped interval is as wide as that."""
    rng = np.random.default_rng(0)
    patient_label = np.array([0, 1] * 5)
    patient_score = np.clip(patient_label * 0.3 + rng.normal(0.35, 0.2, 10), 0, 1)
    groups = np.repeat(np.arange(10), 20)
    y, p = patient_label[groups], patient_score[groups]
    plain = tl.metrics.binary_report(y, p, seed=0)
    grouped = tl.metrics.binary_report(y, p, seed=0, groups=groups)
    for name in ("accuracy", "roc_auc"):
        assert grouped[name].value == pytest.approx(plain[name].value)
        assert grouped[name].high - grouped[name].low > 2 * (plain[name].high - plain[name].low)


def test_gradcam_cases_draw_right_answers_and_take_the_first_wrong_ones(capsys):
    correct = np.array([True, True, False, True, False, True, True, False])
    shown = tl.protocol.gradcam_cases(correct, 2, rng=0)
    assert len(shown) == 4 and all(correct[shown[:2]]) and shown[2:] == [2, 4]
    assert shown == tl.protocol.gradcam_cases(correct, 2, rng=np.random.default_rng(0))
    assert "shown: 2 of 5 correct cases, 2 of 3 mistakes" in capsys.readouterr().out


def test_compare_calibration_records_each_version(tmp_path):
    y, p = predictions(5)
    card = RunCard("nb", "smoke")
    reports = tl.protocol.compare_calibration(y, {"raw": ("softmax", p), "scaled": ("temperature_scaled", p ** 2)},
                                              card=card, n_boot=50, plot=False)
    assert set(card.record["metrics"]) == {"softmax_ece", "softmax_brier", "temperature_scaled_ece",
                                           "temperature_scaled_brier"}
    assert reports["raw"]["brier"].value == pytest.approx(tl.calibration.brier_score(y, p))


def test_the_stopwatch_adds_up_stages_on_an_injected_clock():
    ticks = iter([0.0, 2.0, 10.0, 13.5])
    clock = tl.timing.Stopwatch(clock=lambda: next(ticks))
    with clock("phase 1"):
        pass
    with clock("phase 1"):
        pass
    clock.add("training", 4.0)
    assert clock == {"phase 1": 5.5, "training": 4.0}
    table = clock.table(sort=True)
    assert list(table.index) == ["phase 1", "training", "total of these"]
    assert table.loc["total of these", "seconds"] == 9.5


# chapter 3: the scores at 0.5 recorded under a suffix (`<prefix>_sensitivity_at_half`)
def test_scores_at_half_go_on_the_card_under_a_suffix():
    y, p = predictions(5)
    protocol = tl.protocol.BinaryProtocol(("sensitivity", 0.95), at_specificity=0.9).choose_on_validation(y, p)
    scores = protocol.score_test(y, p)
    assert scores.at_point["sensitivity"] != scores.at_half["sensitivity"]  # the two thresholds differ here
    card = RunCard("nb", "smoke")
    assert scores.record_with_suffix(card, prefix="domain_a") is scores
    metrics = card.record["metrics"]
    assert sorted(metrics) == sorted([f"domain_a_{name}" for name in scores.at_point]
                                     + ["domain_a_sensitivity_at_half", "domain_a_specificity_at_half"])
    for name in ("sensitivity", "specificity"):
        at_half = scores.at_half[name]
        assert metrics[f"domain_a_{name}_at_half"] == {"value": at_half.value, "split": "test",
                                                       "ci95": [at_half.low, at_half.high]}
        assert metrics[f"domain_a_{name}"]["value"] == scores.at_point[name].value


# --- chapter 5 (issue 23): the reliability diagram is shown in a notebook -----------------------

def test_compare_calibration_shows_its_diagram_in_a_notebook_only(monkeypatch):
    import IPython
    import IPython.display
    from matplotlib.figure import Figure

    y, p = predictions(5)
    versions = {"raw": ("softmax", p), "scaled": ("temperature_scaled", p ** 2)}
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # a script: nothing to show in
    tl.protocol.compare_calibration(y, versions, n_boot=20)
    assert shown == []
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Shell", (), {"kernel": object()})())
    tl.protocol.compare_calibration(y, versions, n_boot=20)
    assert len(shown) == 1 and isinstance(shown[0], Figure)
    assert [line.get_label() for line in shown[0].axes[0].lines][1:] == [
        f"raw (ECE {tl.calibration.expected_calibration_error(y, p):.3f})",
        f"scaled (ECE {tl.calibration.expected_calibration_error(y, p ** 2):.3f})"]


def test_another_test_set_is_scored_with_the_same_threshold_and_leaves_the_test_split_alone():
    y_val, p_val = predictions(1)
    y_other, p_other = predictions(5, n=200)
    protocol = tl.protocol.BinaryProtocol(("sensitivity", 0.95), seed=3, at_specificity=0.9)
    with pytest.raises(RuntimeError, match="choose_on_validation comes first"):
        protocol.score_other_test_set(y_other, p_other)
    protocol.choose_on_validation(y_val, p_val)
    other = protocol.score_other_test_set(y_other, p_other)
    assert other.point == protocol.point and other.count == 200
    assert other.at_point == tl.metrics.binary_report(y_other, p_other, threshold=protocol.point, seed=3,
                                                      at_specificity=0.9)
    assert other.at_half == tl.metrics.binary_report(y_other, p_other, seed=3, at_specificity=0.9)
    assert protocol.scores is None  # the test split is still unscored: score_test works once
    protocol.score_test(*predictions(2))
    card = RunCard("nb", "smoke")
    other.record(card, prefix="official_valid", other_prefix="official_valid_operating_point",
                 split="official_valid")
    assert card.record["metrics"]["official_valid_roc_auc"]["split"] == "official_valid"
    assert "official_valid_operating_point_sensitivity" in card.record["metrics"]


def test_held_out_sets_side_by_side_share_the_threshold_rows():
    y_val, p_val = predictions(1)
    protocol = tl.protocol.BinaryProtocol(("sensitivity", 0.95), seed=3, at_specificity=0.9)
    protocol.choose_on_validation(y_val, p_val)
    patch, other = protocol.score_test(*predictions(2)), protocol.score_other_test_set(*predictions(6, n=80))
    table = tl.protocol.scores_side_by_side({"patch split": patch, "other slides": other})
    assert list(table.columns) == ["patch split", "other slides"]
    assert table.loc["ROC AUC", "other slides"] == format(other.at_half["roc_auc"])
    assert table.loc["patches"].tolist() == ["120", "80"]
    chosen = f"sensitivity at {protocol.point.threshold:.3f} (chosen on validation)"
    assert table.loc[chosen, "patch split"] == format(patch.at_point["sensitivity"])
    assert table.loc["specificity at 0.5", "other slides"] == format(other.at_half["specificity"])
    assert "sensitivity at specificity 90" in table.index


def test_paired_roc_auc_table_compares_every_pair_seed_by_seed():
    from tl_helpers.evaluate.metrics import paired_roc_auc_table

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    good = [y + rng.normal(0, 0.5, 120) for _ in range(2)]  # two seeds of a good arm
    poor = [y + rng.normal(0, 3.0, 120) for _ in range(2)]
    one = rng.normal(0, 1, 120)  # one model, no better than chance, for every seed
    table, first = paired_roc_auc_table(y, {"good": good, "poor": poor, "one": one[None]}, [5, 6],
                                        groups=np.arange(120) // 4, labels={"good": "(g)"}, n_boot=200)
    assert list(table.index) == [("(g)", "poor"), ("(g)", "one"), ("poor", "one")]
    assert list(table.columns) == ["seed 5", "seed 6"]
    assert set(first) == {("good", "poor"), ("good", "one"), ("poor", "one")}
    better = first[("good", "one")]
    assert better.value > 0.3 and better.low > 0  # the interval excludes 0: told apart
    assert table.loc[("(g)", "one"), "seed 5"] == str(better)
