"""Operating points chosen on validation, sensitivity at fixed specificity, the spread over seeds.

The small example is worked by hand: five negatives scored 0.1 0.2 0.3 0.4 0.6 and five
positives scored 0.35 0.5 0.7 0.8 0.9; a sample is positive when p >= threshold.
"""
import json

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from tl_helpers.evaluate import metrics

Y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
P = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.35, 0.5, 0.7, 0.8, 0.9])


@pytest.mark.parametrize("goal, threshold, sensitivity, specificity", [
    # all five positives are >= 0.35 only; 0.1 0.2 0.3 of the negatives are below it
    (("sensitivity", 0.95), 0.35, 1.0, 0.6),
    # four of five positives (0.5 0.7 0.8 0.9) at most as high as 0.5; 0.6 is the one negative above
    (("sensitivity", 0.8), 0.5, 0.8, 0.8),
    # every negative below the threshold: above 0.6, and 0.7 is the next score
    (("specificity", 0.9), 0.7, 0.6, 1.0),
    (("specificity", 0.8), 0.5, 0.8, 0.8),
    # sensitivity + specificity - 1 is 0.6 at 0.35, 0.5 and 0.7 (and lower elsewhere): the higher wins
    ("youden", 0.7, 0.6, 1.0),
])
def test_choose_threshold_by_hand(goal, threshold, sensitivity, specificity):
    point = metrics.choose_threshold(Y, P, goal)
    assert point.threshold == threshold
    assert (point.sensitivity, point.specificity) == pytest.approx((sensitivity, specificity))
    # what it says it gave is what the report gives at that threshold
    report = metrics.binary_report(Y, P, threshold=point, n_boot=20)
    assert report["sensitivity"].value == pytest.approx(point.sensitivity)
    assert report["specificity"].value == pytest.approx(point.specificity)


def test_choose_threshold_goal_text_and_edges():
    assert metrics.choose_threshold(Y, P, ("sensitivity", 0.95)).goal == "sensitivity >= 0.95"
    # specificity 1 with a negative scored highest: nothing may be positive, threshold above every score
    y, p = np.array([0, 1, 0]), np.array([0.2, 0.5, 0.9])
    point = metrics.choose_threshold(y, p, ("specificity", 1.0))
    assert point.threshold > 0.9 and point.sensitivity == 0.0 and point.specificity == 1.0
    with pytest.raises(ValueError, match="both classes"):
        metrics.choose_threshold([1, 1], [0.2, 0.3], "youden")
    with pytest.raises(ValueError, match="unknown goal"):
        metrics.choose_threshold(Y, P, ("precision", 0.9))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        metrics.choose_threshold(Y, P, ("sensitivity", 95))


def test_sensitivity_at_specificity_by_hand_and_against_sklearn():
    assert metrics.sensitivity_at_specificity(Y, P, 0.9, n_boot=50).value == pytest.approx(0.6)
    assert metrics.sensitivity_at_specificity(Y, P, 0.8, n_boot=50).value == pytest.approx(0.8)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.2, 400), 0, 1), 2)  # ties on purpose
    fpr, tpr, _ = roc_curve(y, p)
    for target in (0.8, 0.9, 0.95):
        expected = tpr[fpr <= 1 - target + 1e-12].max()
        estimate = metrics.sensitivity_at_specificity(y, p, target, n_boot=200)
        assert estimate.value == pytest.approx(expected)
        assert estimate.low <= estimate.value <= estimate.high and estimate.high - estimate.low > 0.02
    assert np.isnan(metrics.sensitivity_at_specificity([1, 1, 1], [0.1, 0.2, 0.3]).value)


def test_binary_report_keeps_its_entries_and_adds_only_when_asked():
    plain = metrics.binary_report(Y, P, n_boot=50)
    assert list(plain) == ["accuracy", "sensitivity", "specificity", "balanced_accuracy", "roc_auc"]
    extended = metrics.binary_report(Y, P, n_boot=50, at_specificity=0.9)
    assert list(extended) == [*plain, "sensitivity_at_specificity_90"]
    assert all(extended[name] == plain[name] for name in plain)
    assert extended["sensitivity_at_specificity_90"].value == pytest.approx(0.6)
    point = metrics.choose_threshold(Y, P, ("sensitivity", 0.95))
    assert metrics.binary_report(Y, P, threshold=point, n_boot=50) == metrics.binary_report(Y, P, threshold=0.35, n_boot=50)


def test_spread():
    s = metrics.spread([1, 2, 3, 4])
    assert s == pytest.approx((2.5, np.sqrt(5 / 3), 1, 4, 4))
    assert metrics.spread([0.8, float("nan"), 0.9]).n == 2  # an undefined run shows as a smaller n
    one = metrics.spread([0.7])
    assert one.mean == 0.7 and np.isnan(one.sd) and one.n == 1
    assert metrics.spread([]).n == 0


def test_seed_spread_over_run_cards(tmp_path):
    def card(seed, accuracy, auc):
        return {"notebook": "01_x", "seed": seed, "metrics": {
            "test_accuracy": {"value": accuracy, "split": "test", "ci95": [0, 1]},
            "test_roc_auc": {"value": auc, "split": "test"}}}
    path = tmp_path / "01_x.json"
    path.write_text(json.dumps(card(2, 0.90, 0.99)))
    cards = [card(0, 0.80, 0.95), card(1, 0.85, 0.97), path]
    table = metrics.seed_spread(cards)
    assert list(table.index) == ["test_accuracy", "test_roc_auc"]
    assert table.loc["test_accuracy", "mean"] == pytest.approx(0.85)
    assert table.loc["test_accuracy", "sd"] == pytest.approx(0.05)
    assert table.loc["test_roc_auc", "n"] == 3 and table.loc["test_roc_auc", "seeds"] == [0, 1, 2]
    assert table.loc["test_accuracy", "mean ± sd"] == "0.850 ± 0.050"
    cards.append({"notebook": "02_y", "seed": 0, "metrics": {}})
    with pytest.raises(ValueError, match="different notebooks"):
        metrics.seed_spread(cards)


def test_spread_over_seeds_reads_only_this_version_of_the_chapter(tmp_path, monkeypatch, capsys):
    """The seed step's cards: same version key (profile, notebook source, helpers) count, one per seed;
    others are named and left out."""
    from tl_helpers.workflow.notebook import spread_over_seeds
    from tl_helpers.workflow.runcard import RunCard, helpers_source_hash, notebook_source_hash, version_key

    monkeypatch.setenv("TL_PROJECT_ROOT", str(tmp_path))
    (tmp_path / "_toc.yml").write_text("root: index\n")
    notebook = tmp_path / "notebooks" / "01_x.ipynb"
    notebook.parent.mkdir()
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "print(1)"}]}))
    this_version = notebook_source_hash(notebook)

    def write(folder, seed, auc, source=this_version, profile="cpu", helpers=helpers_source_hash()):
        path = tmp_path / folder / "01_x.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"notebook": "01_x", "profile": profile, "seed": seed, "source_sha256": source,
                  "helpers_sha256": helpers, "metrics": {"roc_auc": {"value": auc, "split": "test"}}}
        path.write_text(json.dumps({**record, "version_key": version_key(record)}))

    card = RunCard("01_x", "cpu", seed=0)
    card.metric("roc_auc", 0.90, split="test")
    write("results/cpu-seed1", 1, 0.80)
    assert spread_over_seeds(card, ["roc_auc"]) is None  # one other seed is not a spread
    assert "at least 2 are needed" in capsys.readouterr().out
    write("runs/cpu-seed2", 2, 0.70)
    write("runs/cpu-seed3", 3, 0.10, source="an older chapter")
    write("runs/cpu-seed4", 4, 0.15, helpers="older helpers")
    write("runs/cpu-seed1", 1, 0.55)  # the same seed again: the committed card in results/ wins
    write("runs/cpu-seed0", 0, 0.30)  # this run's own seed
    table = spread_over_seeds(card, ["roc_auc"])
    printed = capsys.readouterr().out
    assert table.loc["roc_auc", "seeds"] == [0, 1, 2]
    assert table.loc["roc_auc", "mean"] == pytest.approx(0.80)
    assert "left out (another version of the chapter): runs/cpu-seed3/01_x.json" in printed
    assert "left out (another version of the chapter): runs/cpu-seed4/01_x.json" in printed
    assert "left out (seed already used): runs/cpu-seed1/01_x.json" in printed
    assert "left out (this run): runs/cpu-seed0/01_x.json" in printed
    assert card.record["notes"][-1] == "spread over seeds [0, 1, 2]: roc_auc 0.800 ± 0.100"
    assert card.record["metrics"]["roc_auc_seed_mean"] == {"value": pytest.approx(0.80), "split": "test"}
    assert card.record["metrics"]["roc_auc_seed_sd"]["value"] == pytest.approx(0.10)


def test_seed_table_reads_one_row_per_card_sorted_by_seed(tmp_path, monkeypatch, capsys):
    """The previous version's seeds, shown beside this version's: one row per committed card."""
    from tl_helpers.workflow.notebook import seed_table

    monkeypatch.setenv("TL_PROJECT_ROOT", str(tmp_path))
    (tmp_path / "_toc.yml").write_text("root: index\n")
    for seed, metrics in ((2, {"val_roc_auc": 0.5}), (0, {"val_roc_auc": 0.93, "roc_auc": 0.97})):
        path = tmp_path / "results" / "cpu-v1" / f"seed{seed}" / "01_x.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"seed": seed, "commit": "abcdef0123456789",
                                    "metrics": {k: {"value": v, "split": "val"} for k, v in metrics.items()}}))
    table = seed_table("results/cpu-v1/seed*/01_x.json", ["val_roc_auc", "roc_auc"], what="previous version")
    assert list(table.index) == [0, 2]
    assert table.loc[0, "roc_auc"] == 0.97 and np.isnan(table.loc[2, "roc_auc"])  # a metric a card lacks
    assert table.loc[2, "val_roc_auc"] == 0.5 and table.loc[2, "version"] == "cpu-v1"
    assert "previous version: results/cpu-v1/seed0/01_x.json (seed 0, commit abcdef01)" in capsys.readouterr().out
    assert seed_table("results/nothing/*.json", ["roc_auc"]).empty
