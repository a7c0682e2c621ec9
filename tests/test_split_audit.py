"""Leakage audit between every pair of splits, on real four-class MRI slices copied to a temporary folder.

Val holds a byte-for-byte copy of a training image, test a resized, brightened PNG copy of
another training image (2 bits away) and a copy of one of its own images; everything else is
a different slice.
"""
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from tl_helpers.evaluate import near_duplicates as nd


@pytest.fixture(scope="module")
def split_table(shared_data, tmp_path_factory):
    root = shared_data / "brain_tumor_mri_4class" / "Training"
    folder = tmp_path_factory.mktemp("audit")
    originals = [sorted((root / c).glob("*.jpg"))[i] for i in (0, 7, 13)
                 for c in ("glioma", "meningioma", "notumor", "pituitary")]
    hashes = nd.perceptual_hashes(originals)
    distances = nd.hamming_distances(hashes, hashes)
    assert distances[~np.eye(len(originals), dtype=bool)].min() > 8, "the chosen slices must differ"
    rows = []
    for i, source in enumerate(originals[:10]):  # train 4, val 3, test 3 different slices
        split = "train" if i < 4 else "val" if i < 7 else "test"
        target = folder / f"{i:02d}_{source.name}"
        shutil.copy(source, target)
        rows.append((split, target, "original"))
    exact = folder / "val_exact_copy.jpg"
    shutil.copy(rows[0][1], exact)  # train row 0, again in val
    resized = folder / "test_resized_copy.png"
    smaller = Image.open(rows[2][1]).convert("L").resize((150, 150), Image.LANCZOS)
    ImageEnhance.Brightness(smaller).enhance(1.15).save(resized)  # train row 2, edited, in test
    within = folder / "test_within_copy.jpg"
    shutil.copy(rows[7][1], within)  # test row 7, twice in test
    rows += [("val", exact, "copy of 0"), ("test", resized, "copy of 2"), ("test", within, "copy of 7")]
    table = pd.DataFrame(rows, columns=["split", "path", "note"])
    return table.set_index(pd.Index([f"r{i}" for i in range(len(table))]))  # labels, not positions


def test_every_pair_of_splits_is_counted(split_table):
    audit = nd.audit_splits(split_table, max_distance=4)
    counts = audit.counts.set_index(["reference", "query"])
    assert list(counts.index) == [("train", "train"), ("train", "val"), ("val", "val"),
                                  ("train", "test"), ("val", "test"), ("test", "test")]
    found = counts["near_duplicates"].to_dict()
    assert found == {("train", "train"): 0, ("train", "val"): 1, ("val", "val"): 0,
                     ("train", "test"): 1, ("val", "test"): 0, ("test", "test"): 2}
    assert counts.loc[("train", "val"), "exact"] == 1  # the byte copy hashes identically
    assert counts.loc[("train", "test"), "query_rows"] == 5 and counts.loc[("train", "test"), "reference_rows"] == 4
    assert counts.loc[("train", "test"), "share"] == pytest.approx(1 / 5)


def test_flagged_rows_and_their_partners(split_table):
    audit = nd.audit_splits(split_table, max_distance=4)
    across = audit.pairs[~audit.pairs["within"]].set_index("row")
    assert across.loc["r10", "partner"] == "r0" and across.loc["r10", "distance"] == 0
    assert across.loc["r11", "partner"] == "r2" and across.loc["r11", "split"] == "test"
    assert 0 < across.loc["r11", "distance"] <= 4
    within = audit.pairs[audit.pairs["within"]]
    assert sorted(zip(within["row"], within["partner"])) == [("r12", "r7"), ("r7", "r12")]
    # leaked: rows whose picture an earlier split holds; the within-test copy is not a leak
    assert list(split_table.index[audit.leaked]) == ["r10", "r11"]
    assert len(split_table[~audit.leaked]) == len(split_table) - 2


def test_a_stricter_distance_misses_the_resized_copy_but_not_the_exact_one(split_table):
    audit = nd.audit_splits(split_table, max_distance=0)
    assert list(split_table.index[audit.leaked]) == ["r10"]
    assert audit.counts["near_duplicates"].tolist() == [0, 1, 0, 0, 0, 2]


def test_exclude_self_ignores_a_rows_own_hash():
    hashes = np.array([[0] * 64, [1] * 64, [0] * 63 + [1]], dtype=bool)
    pairs = nd.near_duplicate_pairs(hashes, hashes, max_distance=2, exclude_self=True)
    assert sorted(zip(pairs["query"], pairs["reference"])) == [(0, 2), (2, 0)]
    assert len(nd.near_duplicate_pairs(hashes, hashes, max_distance=2)) == 3  # each finds itself


# --- chapter 2: the leaked images beside their twins ---------------------------------------

def test_plot_twins_shows_each_leaked_image_beside_its_partner(split_table, capsys):
    table = split_table.assign(label=[f"label {i}" for i in range(len(split_table))])
    audit = nd.audit_splits(table, max_distance=4)
    fig = nd.plot_twins(audit, table, split="test", what="slices")
    # one test image (r11, the resized copy of r2) has a twin in an earlier split; r12's is within test
    distance = audit.pairs.set_index("row").loc["r11", "distance"]
    titles = [" ".join(ax.get_title().split()) for ax in fig.axes]  # titles wrap at spaces
    assert titles == ["test: label 11", f"train: label 2 ({distance} bits)"]
    assert fig.axes[0].images[0].get_array().shape[:2] == (150, 150)  # the copy itself, read from its file
    assert "Test slices and their nearest twin" in fig._suptitle.get_text()
    assert " ".join(nd.plot_twins(audit, table, split="val").axes[1].get_title().split()) == "train: label 0 (0 bits)"
    assert nd.plot_twins(audit, table, split="train") is None
    assert "no train image has a near-duplicate" in capsys.readouterr().out


def test_describe_leaks_counts_each_later_split_and_the_relabelled_pairs(split_table):
    labels = ["a"] * len(split_table)
    labels[10] = "b"  # r10, the val copy of r0, carries another label
    table = split_table.assign(label=labels)
    audit = nd.audit_splits(table, max_distance=4)
    assert nd.describe_leaks(audit, table, what="slices") == (
        "validation slices with a near-duplicate in training: 1 of 4 (25.0%); "
        "test slices with a near-duplicate in training or validation: 1 of 5 (20.0%); "
        "1 of the 2 cross-split pairs carry different labels")
