"""Shortcut check: file metadata read from headers, and a classifier that finds a planted shortcut."""
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tl_helpers.data.images import read_image
from tl_helpers.evaluate import shortcuts


def write_images(folder, specs, seed=0):
    """Noise images (label, width, height, mode, file type) written to `folder`; their table."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (label, width, height, mode, kind) in enumerate(specs):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        path = folder / f"{i:03d}.{kind}"
        Image.fromarray(pixels).convert(mode).save(path)
        rows.append((str(path), label))
    return pd.DataFrame(rows, columns=["path", "label"])


def test_metadata_from_headers_matches_the_decoded_files(shared_data, tmp_path):
    files = sorted((shared_data / "brain_mri_yes_no" / "no").iterdir())[:6]
    disguised = tmp_path / "really_png.jpg"  # a PNG named .jpg: the header says what it is
    Image.open(files[0]).convert("RGBA").save(disguised, format="PNG")
    meta = shortcuts.image_metadata([*files, disguised])
    for (_, row), path in zip(meta.iterrows(), [*files, disguised]):
        decoded = read_image(path, channels=3)
        assert (row["height"], row["width"]) == decoded.shape[:2]
        assert row["file_bytes"] == path.stat().st_size
    last = meta.iloc[-1]
    assert (last["format"], last["extension"], last["mode"], last["bit_depth"]) == ("PNG", ".jpg", "RGBA", 32)
    assert last["aspect"] == pytest.approx(last["width"] / last["height"])


def test_one_class_png_the_other_jpeg_is_found(tmp_path):
    rng = np.random.default_rng(1)
    sizes = rng.integers(60, 120, (60, 2))
    specs = [("tumour" if i % 2 else "normal", w, h, "RGB", "png" if i % 2 else "jpg")
             for i, (w, h) in enumerate(sizes)]
    check = shortcuts.shortcut_check(write_images(tmp_path, specs), n_boot=200)
    assert check.report["roc_auc"].value > 0.95 and check.report["roc_auc"].low > 0.9
    assert check.report["balanced_accuracy"].value > 0.9
    assert check.per_feature.loc["format", "roc_auc_value"] > 0.95
    assert check.per_feature.loc["width", "roc_auc_value"] < 0.75  # sizes were drawn alike
    assert check.best_feature in ("format", "extension", "bytes_per_pixel", "file_bytes")
    assert check.by_label.loc["tumour", "format=PNG"] == 1.0 and check.by_label.loc["normal", "format=JPEG"] == 1.0
    assert check.chance == 0.5


def test_balanced_metadata_gives_chance(tmp_path):
    rng = np.random.default_rng(2)
    specs = [(str(rng.choice(["tumour", "normal"])), int(rng.integers(40, 90)), int(rng.integers(40, 90)),
              str(rng.choice(["L", "RGB"])), str(rng.choice(["png", "jpg"]))) for _ in range(200)]
    check = shortcuts.shortcut_check(write_images(tmp_path, specs), n_boot=200)
    auc = check.report["roc_auc"]
    assert abs(auc.value - 0.5) < 0.15 and auc.low < 0.5 < auc.high
    assert check.per_feature["roc_auc_value"].max() < 0.7


def test_three_classes_one_from_another_source(tmp_path):
    # class c comes from a source that saves grey PNGs at one size; a and b are mixed alike
    rng = np.random.default_rng(3)
    specs = [(label, int(rng.integers(60, 120)), int(rng.integers(60, 120)), "RGB", str(rng.choice(["png", "jpg"])))
             for label in ("a", "b") for _ in range(25)]
    specs += [("c", 100, 100, "L", "png") for _ in range(25)]
    check = shortcuts.shortcut_check(write_images(tmp_path, specs), n_boot=100, n_boot_features=50)
    assert check.per_class.loc["c", "value"] > 0.95
    assert check.per_class.loc["a", "value"] < 0.8
    assert check.chance == pytest.approx(1 / 3)


def test_too_few_rows_or_one_class_is_an_error(tmp_path):
    table = write_images(tmp_path, [("a", 20, 20, "RGB", "png")] * 3 + [("b", 20, 20, "RGB", "png")] * 8)
    with pytest.raises(ValueError, match="fewer than n_folds"):
        shortcuts.shortcut_check(table)
    with pytest.raises(ValueError, match="two classes"):
        shortcuts.shortcut_check(table.assign(label="a"))


# --- chapter 2: what a shortcut check found, in words ------------------------------------

def test_describe_says_what_the_check_found(tmp_path):
    rng = np.random.default_rng(3)
    specs = [(label, int(rng.integers(60, 120)), int(rng.integers(60, 120)), "RGB", str(rng.choice(["png", "jpg"])))
             for label in ("a", "b") for _ in range(25)]
    specs += [("c", 100, 100, "L", "png") for _ in range(25)]
    check = shortcuts.shortcut_check(write_images(tmp_path, specs), n_folds=4, n_boot=100, n_boot_features=50)
    lines = shortcuts.describe(check, unit="scans").splitlines()
    auc = check.report["roc_auc"]
    assert lines[0].startswith(f"the class from the files' metadata alone (4-fold cross-validated, 75 scans): "
                               f"macro one-vs-rest ROC AUC {auc.value:.3f} ({auc.low:.3f}-{auc.high:.3f})")
    assert lines[1].startswith(f"the best single field: {check.best_feature}, ROC AUC")
    c = check.per_class.loc["c", "value"]
    assert lines[2].startswith("each class against the rest: a ") and lines[2].endswith(f"c {c:.3f}")
    assert lines[3].startswith("-> better than chance") and len(lines) == 4


def test_describe_of_two_classes_at_chance(tmp_path):
    rng = np.random.default_rng(2)
    specs = [(str(rng.choice(["tumour", "normal"])), int(rng.integers(40, 90)), int(rng.integers(40, 90)),
              str(rng.choice(["L", "RGB"])), str(rng.choice(["png", "jpg"]))) for _ in range(120)]
    lines = shortcuts.describe(shortcuts.shortcut_check(write_images(tmp_path, specs), n_boot=100)).splitlines()
    assert "(5-fold cross-validated, 120 files): ROC AUC" in lines[0] and "macro" not in lines[0]
    assert len(lines) == 3 and lines[2].startswith("-> not distinguishable from chance")


def test_coloured_share_counts_images_whose_channels_differ(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for k in range(6):
        gray = rng.integers(0, 255, (16, 16), dtype=np.uint8)
        Image.fromarray(np.stack([gray] * 3, axis=2)).save(tmp_path / f"gray{k}.png")  # equal channels
        tinted = np.stack([gray, gray, np.clip(gray.astype(int) + 20, 0, 255).astype(np.uint8)], axis=2)
        Image.fromarray(tinted).save(tmp_path / f"tint{k}.png")
        rows += [(str(tmp_path / f"gray{k}.png"), "gray"), (str(tmp_path / f"tint{k}.png"), "tinted" if k < 3 else "gray")]
    table = pd.DataFrame(rows, columns=["path", "label"])
    shares = shortcuts.coloured_share(table, per_class=20)
    assert shares.to_dict() == {"gray": pytest.approx(3 / 9), "tinted": 1.0}
    assert shortcuts.coloured_share(table, per_class=2, seed=1).index.tolist() == ["gray", "tinted"]


def test_score_vs_field_tells_a_model_that_reads_the_size_from_one_that_reads_the_image():
    rng = np.random.default_rng(0)
    is_positive = np.repeat([False, True], 60)
    height = np.where(is_positive, rng.normal(340, 60, 120), rng.normal(250, 60, 120))  # tall files: yes
    reads_size = 1 / (1 + np.exp(-(height - 295) / 30))  # a score made from the height alone
    reads_image = np.clip(0.25 + 0.5 * is_positive + rng.normal(0, 0.12, 120), 0, 1)  # blind to the height
    size = shortcuts.score_vs_field(reads_size, is_positive, height, n_boot=200)
    image = shortcuts.score_vs_field(reads_image, is_positive, height, n_boot=200)
    # both correlate with the height over all images, since the height carries the label...
    assert size.overall.value > 0.9 and image.overall.low > 0.1
    # ...but only the size reader keeps it inside a class
    assert (size.within_class.value > 0.99).all()
    assert (image.within_class.low < 0).all() and (image.within_class.high > 0).all()
    assert list(size.within_class.n) == [60, 60]
    # inside a height stratum the image reader still ranks; the size reader only as well as the height
    assert len(image.strata) == 3 and image.strata.n.sum() == 120
    assert (image.strata.model_roc_auc > 0.9).all()
    np.testing.assert_allclose(size.strata.model_roc_auc, size.strata.field_roc_auc)
    report = size.report()
    assert list(report) == ["overall", "within_0", "within_1"] and report["overall"] == size.overall
    text = image.describe("P(yes)")
    assert text.startswith("Spearman correlation of P(yes) with the image height:") and "height alone" in text
    with pytest.raises(ValueError):
        shortcuts.score_vs_field(reads_size[:5], is_positive, height)


def test_score_vs_field_leaves_a_one_class_stratum_undefined():
    is_positive = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1], dtype=bool)
    values = np.arange(12.0)  # the lowest third holds no positive
    table = shortcuts.score_vs_field(np.linspace(0, 1, 12), is_positive, values, n_boot=50).strata
    assert np.isnan(table.model_roc_auc.iloc[0]) and np.isnan(table.field_roc_auc.iloc[0])
    assert not np.isnan(table.model_roc_auc.iloc[2])
