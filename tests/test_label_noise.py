"""Cross-label twins (tl.label_noise): pairs across splits whose labels disagree, told apart by
their pixels, and what a model called them."""
import cv2
import numpy as np
import pandas as pd
import pytest

import tl_helpers as tl
from tl_helpers.data.images import read_image
from tl_helpers.evaluate import label_noise as ln


@pytest.fixture(scope="module")
def twins_table(synthetic_sets, tmp_path_factory):
    """Training scans, then val/test scans: a re-encoded copy of a training scan under another
    label, a mirrored copy under another label, a copy under the same label, and new scans."""
    folder = tmp_path_factory.mktemp("twins")
    root = synthetic_sets["brain_tumor_mri_4class"] / "Training"
    sources = [sorted((root / c).glob("*.jpg"))[i] for c in ("glioma", "meningioma", "notumor", "pituitary")
               for i in (0, 3)]
    rows = []
    for k, path in enumerate(sources):
        rows.append((str(path), path.parent.name, "train"))
    images = [np.squeeze(read_image(p, channels=1)) for p in sources]

    def save(name, image):
        target = folder / f"{name}.png"
        cv2.imwrite(str(target), image)
        return str(target)

    jpeg = cv2.imdecode(cv2.imencode(".jpg", images[0], [cv2.IMWRITE_JPEG_QUALITY, 80])[1], cv2.IMREAD_GRAYSCALE)
    rows.append((save("relabelled_copy", jpeg), "pituitary", "test"))  # glioma in training
    rows.append((save("mirrored_copy", np.ascontiguousarray(images[2][:, ::-1])), "notumor", "val"))  # meningioma
    rows.append((save("same_label_copy", images[4]), "notumor", "test"))  # leakage, not noise
    rows.append((str(sorted((root / "pituitary").glob("*.jpg"))[6]), "pituitary", "test"))  # new
    return pd.DataFrame(rows, columns=["path", "label", "split"])


def test_pixel_gap_is_near_zero_for_one_picture_and_large_for_two(twins_table):
    paths = twins_table.path
    assert ln.pixel_gap(paths[0], paths[8]) < ln.SAME_PICTURE_GAP  # a JPEG copy
    assert ln.pixel_gap(paths[2], paths[9], mirrored=True) < 1.0  # the mirror, undone
    assert ln.pixel_gap(paths[2], paths[9]) > ln.pixel_gap(paths[2], paths[9], mirrored=True)
    assert ln.pixel_gap(paths[0], paths[6]) > ln.SAME_PICTURE_GAP  # two scans


def test_cross_label_twins_keeps_only_pairs_across_splits_with_two_labels(twins_table):
    audit = tl.near_duplicates.audit_splits(twins_table, max_distance=4)
    twins = ln.cross_label_twins(audit, twins_table)
    assert sorted(twins.row) == [8, 9]  # the same-label copy (row 10) is leakage, not listed
    found = twins.set_index("row")
    assert found.loc[8, ["label", "partner_label", "partner", "split"]].tolist() == ["pituitary", "glioma", 0, "test"]
    assert found.loc[9, "partner"] == 2 and found.loc[9, "mirrored"]
    assert found.same_picture.all()
    line = ln.describe_twins(twins, "scans")
    assert line.startswith("2 pairs across splits carry two labels; 2 of them are one picture saved twice")
    assert "glioma / pituitary 1" in line and "test 1" in line and "val 1" in line
    assert ln.plot_pairs(twins, twins_table) is not None


def test_calls_on_twins_say_whose_label_the_model_gave(twins_table):
    audit = tl.near_duplicates.audit_splits(twins_table, max_distance=4)
    twins = ln.cross_label_twins(audit, twins_table)
    classes = ["glioma", "meningioma", "notumor", "pituitary"]
    calls = ln.calls_on_twins(twins, twins_table, "test", [0, 2, 3], classes)  # test rows 8, 10, 11
    assert calls.to_dict("records") == [{"label": "pituitary", "twin's label": "glioma", "called": "glioma",
                                         "call agrees with": "the twin's", "same picture": True}]
    with pytest.raises(ValueError, match="2 calls for the 3 rows"):
        ln.calls_on_twins(twins, twins_table, "test", [0, 1], classes)


def test_no_cross_label_pair_says_so(twins_table, capsys):
    table = twins_table[twins_table.path.str.contains("relabelled|mirrored") == False].reset_index(drop=True)  # noqa: E712
    twins = ln.cross_label_twins(tl.near_duplicates.audit_splits(table), table)
    assert twins.empty and ln.describe_twins(twins).startswith("no near-duplicate pair")
    assert ln.plot_pairs(twins, table) is None and "no near-duplicate pair" in capsys.readouterr().out
