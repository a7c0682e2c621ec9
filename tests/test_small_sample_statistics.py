"""The statistics' refusals and paired comparisons (issue 24, item 5): no interval from a handful
of patients or cases, warnings for degenerate thresholds and temperatures, a paired bootstrap,
mirrored near-duplicates, and seed pooling that never mixes versions."""
import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tl_helpers.evaluate import calibration, metrics
from tl_helpers.evaluate import near_duplicates as nd


def _patients(count, per_patient=20, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(count), per_patient)
    y = rng.integers(0, 2, len(groups))
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, len(groups)), 0, 1)
    return y, p, groups


def test_grouped_bootstrap_refuses_an_interval_from_few_groups():
    y, p, groups = _patients(4)
    with pytest.warns(metrics.FewGroupsWarning, match="4 groups are too few"):
        estimate = metrics.bootstrap_ci(metrics._roc_auc, y, p, groups=groups)
    assert estimate.value == pytest.approx(metrics._roc_auc(y, p))
    assert np.isnan(estimate.low) and np.isnan(estimate.high)
    assert f"{estimate}" == f"{estimate.value:.3f}"  # the value alone, no "(nan-nan)"
    y, p, groups = _patients(metrics.MIN_GROUPS_FOR_INTERVAL)
    with warnings.catch_warnings():
        warnings.simplefilter("error", metrics.FewGroupsWarning)
        estimate = metrics.bootstrap_ci(metrics._roc_auc, y, p, groups=groups, n_boot=200)
    assert estimate.low < estimate.value < estimate.high


def test_binary_report_by_patient_gives_values_without_intervals():
    y, p, groups = _patients(3)
    with pytest.warns(metrics.FewGroupsWarning):
        report = metrics.binary_report(y, p, groups=groups, n_boot=50)
    assert all(np.isnan(e.low) for e in report.values())


def test_card_stores_no_interval_for_nan_bounds(tmp_path):
    from tl_helpers.workflow.runcard import RunCard
    card = RunCard("01_x", "smoke")
    card.metric("stage1_roc_auc", metrics.Estimate(0.9, float("nan"), float("nan")))
    card.metric("roc_auc", metrics.Estimate(0.9, 0.8, 0.95))
    assert "ci95" not in card.record["metrics"]["stage1_roc_auc"]
    assert card.record["metrics"]["roc_auc"]["ci95"] == [0.8, 0.95]
    json.dumps(card.record, allow_nan=False)  # valid JSON: no NaN written


def test_per_group_values_and_their_description():
    y = np.array([0, 1, 0, 1, 1, 1, 0, 0])
    p = np.array([0.1, 0.9, 0.8, 0.2, 0.7, 0.6, 0.3, 0.4])
    groups = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    values = metrics.per_group_values(metrics._roc_auc, y, p, groups)
    assert list(values.index) == ["a", "b", "c", "d"]
    assert values["a"] == 1.0 and values["b"] == 0.0
    assert np.isnan(values["c"]) and np.isnan(values["d"])  # one class only: undefined
    text = metrics.describe_groups(values, "patients")
    assert text.startswith("mean 0.500, range 0.000-1.000 over 2 patients")
    assert "2 more where it is undefined" in text and "too few for a 95% interval" in text
    with pytest.raises(ValueError, match="groups"):
        metrics.per_group_values(metrics._roc_auc, y, p)


def test_paired_difference_is_narrower_than_the_two_intervals():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    shared = rng.normal(0, 1, 300)  # what both models get right or wrong alike
    a = y * 1.2 + shared + rng.normal(0, 0.3, 300)
    b = y * 1.0 + shared + rng.normal(0, 0.3, 300)
    difference = metrics.paired_roc_auc_difference(y, a, b, n_boot=400)
    auc_a = metrics.binary_report(y, a, n_boot=400)["roc_auc"]
    auc_b = metrics.binary_report(y, b, n_boot=400)["roc_auc"]
    assert difference.value == pytest.approx(auc_a.value - auc_b.value)
    assert difference.high - difference.low < 0.5 * ((auc_a.high - auc_a.low) + (auc_b.high - auc_b.low))
    assert difference.low > 0  # the better model is told apart on the same cases
    same = metrics.paired_roc_auc_difference(y, a, a, n_boot=100)
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="pair the same cases"):
        metrics.paired_difference(metrics._roc_auc, y, a, b[:-1])


def test_constant_predictions_are_flagged():
    y = np.array([0, 0, 1, 1, 0, 1])
    dead = np.full(6, 0.5)  # a collapsed model: the same score for every case
    with pytest.warns(metrics.ConstantPredictionWarning, match="calls every validation case positive"):
        point = metrics.choose_threshold(y, dead, ("sensitivity", 0.95))
    with pytest.warns(metrics.ConstantPredictionWarning, match="every case is called positive"):
        metrics.binary_report(y, dead, threshold=point, n_boot=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", metrics.ConstantPredictionWarning)
        metrics.choose_threshold(y, np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7]), ("sensitivity", 0.95))


def test_temperature_at_its_bound_is_flagged():
    y = np.array([0, 1] * 20)
    with pytest.warns(calibration.TemperatureAtBoundWarning):
        calibration.fit_temperature(np.full(40, 0.5), y)  # constant: no temperature helps
    with warnings.catch_warnings():
        warnings.simplefilter("error", calibration.TemperatureAtBoundWarning)
        rng = np.random.default_rng(0)
        logits = 2.0 * (y - 0.5) + rng.normal(0, 1.5, 40)  # overlapping classes: some mistakes
        temperature = calibration.fit_temperature(1 / (1 + np.exp(-logits)), y)
    assert 0.1 < temperature < 10


def test_ece_has_no_interval_below_the_stated_count():
    rng = np.random.default_rng(2)
    y, p = rng.integers(0, 2, 36), rng.uniform(0, 1, 36)
    few = calibration.calibration_report(y, p, n_boot=100)
    assert few["ece"].value == pytest.approx(calibration.expected_calibration_error(y, p))
    assert np.isnan(few["ece"].low) and few["brier"].low < few["brier"].high
    n = calibration.MIN_CASES_FOR_ECE_INTERVAL
    y, p = rng.integers(0, 2, n), rng.uniform(0, 1, n)
    assert calibration.calibration_report(y, p, n_boot=100)["ece"].low < np.inf


def test_audit_finds_a_mirrored_copy(shared_data, tmp_path):
    root = shared_data / "brain_tumor_mri_4class" / "Training" / "glioma"
    sources = sorted(root.glob("*.jpg"))[:3]
    rows = []
    for i, source in enumerate(sources):
        target = tmp_path / f"{i}.jpg"
        shutil.copy(source, target)
        rows.append(("train" if i < 2 else "test", target))
    flipped = tmp_path / "test_flipped.png"
    image = Image.open(sources[1]).convert("L")
    image.transpose(Image.FLIP_LEFT_RIGHT).save(flipped)
    rows.append(("test", flipped))
    table = pd.DataFrame(rows, columns=["split", "path"])
    plain = nd.perceptual_hashes([sources[1], flipped])
    if nd.hamming_distances(plain[:1], plain[1:])[0, 0] <= 4:
        pytest.skip("this slice is its own mirror image to the hash: pick another")
    audit = nd.audit_splits(table, max_distance=4)
    found = audit.pairs[~audit.pairs["within"]]
    assert list(found["row"]) == [3] and list(found["partner"]) == [1] and bool(found["mirrored"].iloc[0])
    assert list(audit.leaked[audit.leaked].index) == [3]
    unmirrored = nd.audit_splits(table, max_distance=4, mirrored=False)
    assert not unmirrored.leaked.any()


def test_seed_spread_refuses_to_pool_versions():
    def card(seed, key, profile="cpu"):
        return {"notebook": "01_x", "seed": seed, "profile": profile, "version_key": key,
                "metrics": {"roc_auc": {"value": 0.9 + seed / 100, "split": "test"}}}
    assert metrics.seed_spread([card(0, "a"), card(1, "a")]).loc["roc_auc", "n"] == 2
    with pytest.raises(ValueError, match="different versions"):
        metrics.seed_spread([card(0, "a"), card(1, "b")])
    with pytest.raises(ValueError, match="different versions"):
        metrics.seed_spread([card(0, "a"), card(1, "a", profile="smoke")])


def test_version_key_follows_the_helper_package(monkeypatch):
    from tl_helpers.workflow import runcard
    record = {"notebook": "01_x", "profile": "cpu", "source_sha256": "s", "helpers_sha256": runcard.helpers_source_hash()}
    key = runcard.version_key(record)
    assert key == runcard.version_key(dict(record)) and len(key) == 16
    assert runcard.version_key({**record, "helpers_sha256": "changed"}) != key
    assert runcard.version_key({**record, "profile": "smoke"}) != key


def test_version_key_follows_the_settings_but_not_the_seed_or_folders():
    """Two runs of one profile with another `-p EPOCHS=` (or an edited profile file) are two
    versions: a seed spread must not pool them. The seed and the folders are not settings."""
    from tl_helpers.workflow import runcard
    parameters = {"PROFILE": "cpu", "SEED": 0, "EPOCHS": 4, "DATA_DIR": "/a/data", "MODEL_DIR": None}
    record = {"notebook": "01_x", "profile": "cpu", "source_sha256": "s", "helpers_sha256": "h",
              "parameters": parameters}
    key = runcard.version_key(record)
    other_seed = {**parameters, "SEED": 7, "DATA_DIR": "/b/data", "MODEL_DIR": "runs/cpu-seed7/models"}
    assert runcard.version_key({**record, "parameters": other_seed}) == key
    assert runcard.version_key({**record, "parameters": {**parameters, "EPOCHS": 5}}) != key


def test_calls_by_group_gives_each_patients_own_sensitivity_and_specificity():
    y = np.array([1, 1, 0, 0, 1, 0, 0])
    called = np.array([1, 0, 1, 0, 1, 0, 0], bool)
    table = metrics.calls_by_group(y, called, ["b", "b", "b", "b", "a", "a", "c"])
    assert list(table.index) == ["a", "b", "c"]
    assert table.cases.tolist() == [2, 4, 1] and table.positives.tolist() == [1, 2, 0]
    np.testing.assert_allclose(table.sensitivity, [1.0, 0.5, np.nan])  # c has no tumour slice
    np.testing.assert_allclose(table.specificity, [1.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="group labels"):
        metrics.calls_by_group(y, called, ["a"])


def test_calibration_intervals_resample_patients_when_given():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.6 + rng.normal(0.2, 0.2, 300), 0, 1)
    by_case = calibration.calibration_report(y, p, seed=0)
    by_patient = calibration.calibration_report(y, p, seed=0, groups=np.repeat(np.arange(30), 10))
    assert by_patient["brier"].value == pytest.approx(by_case["brier"].value)
    assert by_patient["brier"] != by_case["brier"]  # other resamples: whole patients
    with pytest.warns(metrics.FewGroupsWarning):
        few = calibration.calibration_report(y, p, seed=0, groups=np.repeat(np.arange(3), 100))
    assert np.isnan(few["ece"].low) and np.isnan(few["brier"].high)


def test_few_groups_warning_is_said_once_a_run_however_the_filters_move():
    """Python's "once" forgot what it had shown whenever code touched the filters, so the count of
    repeated lines in a notebook's output changed with the code around it (nbval saw it)."""
    from tl_helpers.paths import show_book_warnings_briefly

    with warnings.catch_warnings(record=True) as shown:  # what reaches the page, in order
        saved = warnings.showwarning, warnings.formatwarning
        try:
            show_book_warnings_briefly()
            for _ in range(3):
                metrics.bootstrap_ci(np.mean, np.arange(4.0), groups=[0, 0, 1, 1])
                with warnings.catch_warnings():  # what bootstrap_ci and others do inside
                    warnings.simplefilter("ignore", RuntimeWarning)
            metrics.bootstrap_ci(np.mean, np.arange(6.0), groups=[0, 0, 1, 1, 2, 2])
        finally:
            warnings.showwarning, warnings.formatwarning = saved
    said = [str(w.message) for w in shown if w.category is metrics.FewGroupsWarning]
    assert len(said) == 2 and said[0].startswith("2 groups") and said[1].startswith("3 groups")
