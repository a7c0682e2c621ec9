"""Splits on real tables: stratified, grouped by patient, no leaks."""
import pandas as pd
import pytest

from tl_helpers import data
from tl_helpers.data.splits import describe_splits, split_table


def test_stratified_split_keeps_class_shares(synthetic_sets):
    table = data.class_folder_table(synthetic_sets["brain_mri_yes_no"])
    out = split_table(table, fractions=(0.6, 0.2, 0.2), seed=1)
    counts = describe_splits(out)
    assert counts.loc["test", "total"] == 12 and counts.loc["train", "total"] == 36
    assert counts.loc["test", "yes"] / counts.loc["test", "total"] == pytest.approx(0.6, abs=0.05)
    assert split_table(table, seed=1).split.tolist() == split_table(table, seed=1).split.tolist()
    assert split_table(table, seed=1).split.tolist() != split_table(table, seed=2).split.tolist()


def test_grouped_split_never_shares_a_patient(synthetic_sets):
    table = data.class_folder_table(synthetic_sets["chest_xray"])
    table["patient"] = table.path.map(data.xray_patient_id)
    out = split_table(table, group_col="patient", seed=0)
    assert (out.groupby("patient").split.nunique() == 1).all()
    counts = describe_splits(out, group_col="patient")
    assert set(counts.index) == {"train", "val", "test"}
    assert counts.loc["train", "total"] > counts.loc["test", "total"]


@pytest.mark.shared_data
def test_grouped_split_on_real_lgg_patients(shared_data):
    slices = data.lgg_slice_table(shared_data / "lgg_mri_segmentation", with_tumour=False)
    out = split_table(slices.assign(label=1), group_col="patient", seed=0)
    counts = describe_splits(out, group_col="patient")
    assert counts["patients"].sum() == 20 and counts.loc["train", "patients"] >= 12


def test_describe_catches_a_leak():
    leaky = pd.DataFrame({"label": [0, 0, 1, 1], "patient": ["a", "a", "b", "c"], "split": ["train", "test", "train", "test"]})
    with pytest.raises(AssertionError, match="more than one split"):
        describe_splits(leaky, group_col="patient")


def test_bad_fractions():
    with pytest.raises(ValueError):
        split_table(pd.DataFrame({"label": [0, 1]}), fractions=(0.5, 0.2, 0.2))


# --- chapter 2: a dataset that may bring its own test folder -------------------------------

def folder_table(with_testing: bool) -> pd.DataFrame:
    rows = [("Training", f"{label}_{i}.png", label) for label in ("a", "b") for i in range(20)]
    rows += [("Testing", f"{label}_t{i}.png", label) for label in ("a", "b") for i in range(5)] if with_testing else []
    return pd.DataFrame(rows, columns=["split", "path", "label"])


def test_the_test_folder_stays_the_test_split():
    from tl_helpers.data.splits import split_with_test_folder

    table = folder_table(with_testing=True)
    out = split_with_test_folder(table, val_fraction=0.2, seed=3)
    assert set(out[out.split == "test"].path) == set(table[table.split == "Testing"].path)
    assert out[out.split == "val"].label.value_counts().to_dict() == {"a": 4, "b": 4}
    assert set(out[out.split != "test"].path) == set(table[table.split == "Training"].path)
    again = split_table(table[table.split == "Training"].drop(columns="split"), "label", (0.8, 0.2),
                        ("train", "val"), seed=3)
    assert set(out[out.split == "val"].path) == set(again[again.split == "val"].path)  # split_table's draw


def test_without_a_test_folder_all_three_are_carved():
    from tl_helpers.data.splits import split_with_test_folder

    out = split_with_test_folder(folder_table(with_testing=False), val_fraction=0.2, fractions=(0.5, 0.25, 0.25))
    assert out.split.value_counts().to_dict() == {"train": 20, "val": 10, "test": 10}
    with pytest.raises(ValueError, match="needs a 'split' column"):
        split_with_test_folder(out.drop(columns="split"), val_fraction=0.2)


def test_the_test_source_names_the_folder_or_the_carving():
    from tl_helpers.data.splits import test_folder_source

    assert test_folder_source(folder_table(with_testing=True)) == "Kaggle's Testing/ folder"
    carved = test_folder_source(folder_table(with_testing=False), (0.5, 0.25, 0.25), seed=7)
    assert carved.startswith("carved from Training/ (stratified by class, fractions (0.5, 0.25, 0.25), seed 7")
    assert "no Testing/ folder" in carved


# --- chapter 3: the official test folder, else a test split carved by patient ----------

def test_official_test_or_carved_keeps_the_folder_and_never_splits_a_patient(synthetic_sets):
    from tl_helpers.data.splits import official_test_or_carved

    table = data.class_folder_table(synthetic_sets["chest_xray"])
    table["patient"] = table.path.map(data.xray_patient_id)
    names = ["train_a", "train_b", "val", "test"]
    out, where = official_test_or_carved(table, "label", [0.35, 0.35, 0.15, 0.15], names,
                                       group_col="patient", seed=0)
    assert where == "the official test/ folder"
    given = set(table.path[table.split == "test"])
    assert set(out.path[out.split == "test"]) == given  # the folder, as it is
    assert set(out.split) == set(names)
    assert (out.groupby("patient").split.nunique() == 1).all()  # nobody straddles
    # a patient with a film in test/ loses their other films rather than leak them
    test_patients = set(table.patient[table.split == "test"])
    dropped = table[(table.split != "test") & table.patient.isin(test_patients)]
    assert len(out) == len(table) - len(dropped)

    carved, where = official_test_or_carved(table[table.split != "test"], "label",
                                          [0.35, 0.35, 0.15, 0.15], names, "patient", seed=0)
    assert where == "carved from train/, by patient"
    assert (carved.split == "test").any()
    assert (carved.groupby("patient").split.nunique() == 1).all()

    by_row, where = official_test_or_carved(table[table.split != "test"], "label",
                                          [0.35, 0.35, 0.15, 0.15], names, "patient", seed=0,
                                          carve_by_group=False)
    assert where == "carved from train/, by row"
    assert (by_row.groupby("patient").split.nunique() > 1).any()  # what grouping prevents
