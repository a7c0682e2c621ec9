"""tl.data (registry, tables, integrity, downloads, load) and tl.synthetic on real files: synthetic sets, bad data, the shared data."""
from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tl_helpers import data
from tl_helpers.data import synthetic
from tl_helpers.data.images import read_image


# --- the synthetic sets ----------------------------------------------------------------

def test_every_synthetic_set_verifies_and_says_synthetic(synthetic_sets):
    for name, root in synthetic_sets.items():
        report = data.verify(name, root)
        assert report.ok, str(report)
        assert report.source.startswith("SYNTHETIC"), name


def test_yes_no_mixes_endings_modes_and_sizes(synthetic_sets):
    files = [f for d in ("yes", "no") for f in (synthetic_sets["brain_mri_yes_no"] / d).iterdir()]
    assert {f.suffix for f in files} == {".jpg", ".JPG", ".jpeg", ".png"}
    modes = {Image.open(f).mode for f in files}
    sizes = {Image.open(f).size for f in files}
    assert modes == {"L", "RGB"} and len(sizes) > len(files) // 2
    # a dark border surrounds the head: the frame's edge is near black
    image = read_image(files[0], channels=1)
    assert image[:5].mean() < 20 and image[image.shape[0] // 2, image.shape[1] // 2] > 60


def test_chest_xray_layout_imbalance_and_patient_ids(synthetic_sets):
    table = data.class_folder_table(synthetic_sets["chest_xray"])
    assert set(table.split) == {"train", "val", "test"}
    train = table[table.split == "train"].label.value_counts()
    assert train["PNEUMONIA"] / train["NORMAL"] == pytest.approx(3, rel=0.2)
    patients = table.path.map(data.xray_patient_id)
    pneumonia = table.label == "PNEUMONIA"
    assert patients[pneumonia].nunique() < pneumonia.sum()  # several films per child
    assert all(p.startswith("person") for p in patients[pneumonia])


def test_lgg_slices_masks_and_csv(synthetic_sets):
    root = synthetic_sets["lgg_mri_segmentation"]
    table = data.lgg_slice_table(root)
    assert 0.2 < table.has_tumour.mean() < 0.6  # many slices without tumour
    image, mask = read_image(table.image_path[0], channels=None), read_image(table.mask_path[0], channels=None)
    assert image.shape == (256, 256, 3) and mask.shape == (256, 256)
    assert set(np.unique(read_image(table[table.has_tumour].mask_path.iloc[0], channels=None))) == {0, 255}
    csv = pd.read_csv(root / "kaggle_3m" / "data.csv")
    assert set(csv.Patient) == set(table.patient)
    assert all(p.count("_") == 2 for p in table.patient)


def test_pcam_tifs_and_labels(synthetic_sets):
    table = data.pcam_table(synthetic_sets["pcam"])
    assert set(table.label) == {0, 1} and all(table.path.str.endswith(".tif"))
    assert read_image(table.path[0]).shape == (96, 96, 3)


def test_synthesis_is_deterministic_by_seed(tmp_path):
    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for f in sorted(root.rglob("*")):
            if f.is_file():
                h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
        return h.hexdigest()

    a = synthetic.synthesize("pcam", tmp_path / "a", seed=3)
    b = synthetic.synthesize("pcam", tmp_path / "b", seed=3)
    c = synthetic.synthesize("pcam", tmp_path / "c", seed=4)
    assert digest(a) == digest(b) != digest(c)


def _features(paths, size=24):
    """Small gray thumbnails, flattened: the input of the 'small model' below."""
    import cv2

    return np.stack([cv2.resize(read_image(p, channels=1), (size, size), interpolation=cv2.INTER_AREA).ravel()
                     for p in paths]).astype(np.float32) / 255.0


@pytest.mark.parametrize("name", ["brain_mri_yes_no", "brain_tumor_mri_4class", "chest_xray", "pcam"])
def test_synthetic_classes_are_learnable_but_not_trivial(tmp_path, name):
    """A small model (logistic regression on 24x24 thumbnails) lands above chance, below perfect."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = synthetic.synthesize(name, tmp_path / name, seed=1, size="medium")
    if name == "pcam":
        table = data.pcam_table(root).rename(columns={"label": "y"})
    else:
        table = data.class_folder_table(root).rename(columns={"label": "y"})
    x, y = _features(table.path), table.y.to_numpy()
    chance = pd.Series(y).value_counts(normalize=True).max()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    accuracy = cross_val_score(model, x, y, cv=5).mean()
    assert chance + 0.08 < accuracy < 0.99, f"{name}: accuracy {accuracy:.3f}, chance {chance:.3f}"


# --- bad data --------------------------------------------------------------------------

@pytest.fixture
def yes_no_copy(synthetic_sets, tmp_path) -> Path:
    root = tmp_path / "brain_mri_yes_no"
    shutil.copytree(synthetic_sets["brain_mri_yes_no"], root)
    return root


def _problem_paths(report) -> set[str]:
    return {p.path for p in report.problems}


def test_missing_class_folder(yes_no_copy):
    shutil.rmtree(yes_no_copy / "no")
    report = data.verify("brain_mri_yes_no", yes_no_copy)
    assert str(yes_no_copy / "no") in _problem_paths(report)
    with pytest.raises(data.DataLayoutError, match="missing class folder"):
        report.raise_if_problems()


def test_zero_byte_non_image_and_checkpoints_are_named(yes_no_copy):
    (yes_no_copy / "yes" / "Y999.jpg").write_bytes(b"")
    (yes_no_copy / "no" / "notes.txt").write_text("scanner log")
    (yes_no_copy / ".ipynb_checkpoints").mkdir()
    (yes_no_copy / "yes" / ".DS_Store").write_bytes(b"\0")  # hidden files are harmless
    report = data.verify("brain_mri_yes_no", yes_no_copy)
    messages = {p.path: p.message for p in report.problems}
    assert set(messages) == {str(yes_no_copy / "yes" / "Y999.jpg"), str(yes_no_copy / "no" / "notes.txt"),
                             str(yes_no_copy / ".ipynb_checkpoints")}
    assert "0 bytes" in messages[str(yes_no_copy / "yes" / "Y999.jpg")]
    assert "not an image" in messages[str(yes_no_copy / "no" / "notes.txt")]
    assert "not a class" in messages[str(yes_no_copy / ".ipynb_checkpoints")]
    # listing never takes the checkpoint folder for a class
    assert set(data.list_class_images(yes_no_copy).label) == {"yes", "no"}


def test_lgg_mask_of_wrong_size_and_missing_mask(synthetic_sets, tmp_path):
    root = tmp_path / "lgg"
    shutil.copytree(synthetic_sets["lgg_mri_segmentation"], root)
    table = data.lgg_slice_table(root, with_tumour=False)
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(table.mask_path[0])
    Path(table.mask_path[1]).unlink()
    report = data.verify("lgg_mri_segmentation", root)
    messages = {p.path: p.message for p in report.problems}
    assert "must match" in messages[table.mask_path[0]] and "128x128" in messages[table.mask_path[0]]
    assert "without its mask" in messages[table.image_path[1]]


def test_pcam_label_without_image(synthetic_sets, tmp_path):
    root = tmp_path / "pcam"
    shutil.copytree(synthetic_sets["pcam"], root)
    gone = next((root / "train").iterdir())
    gone.unlink()
    report = data.verify("pcam", root)
    assert any(gone.stem in p.path and "no image file" in p.message for p in report.problems)


def _with_official_valid(synthetic_sets, tmp_path, count=6) -> Path:
    """A copy of the synthetic PCam set with an official_valid/ set made of `count` of its patches."""
    root = tmp_path / "pcam"
    shutil.copytree(synthetic_sets["pcam"], root)
    table = data.pcam_table(root).head(count)
    (root / "official_valid").mkdir()
    for row in table.itertuples():
        shutil.copy(row.path, root / "official_valid" / f"valid_{row.id}.tif")
    table.assign(id="valid_" + table.id)[["id", "label"]].to_csv(root / "official_valid_labels.csv", index=False)
    return root


def test_pcam_official_valid_is_an_extra_set_that_a_kaggle_copy_may_lack(synthetic_sets, tmp_path):
    assert "slide" in data.extra_set("pcam", "official_valid")["about"]
    with pytest.raises(KeyError, match="official_valid"):
        data.extra_set("pcam", "official_test")
    kaggle_only = synthetic_sets["pcam"]
    assert data.pcam_table(kaggle_only, "official_valid", missing_ok=True).empty
    with pytest.raises(data.DatasetNotFoundError, match="official_valid_labels.csv"):
        data.pcam_table(kaggle_only, "official_valid")
    assert "official_valid" not in data.verify("pcam", kaggle_only).counts
    root = _with_official_valid(synthetic_sets, tmp_path)
    official = data.pcam_table(root, "official_valid", missing_ok=True)
    assert len(official) == 6 and all(official.id.str.startswith("valid_"))
    assert all(Path(p).parent.name == "official_valid" for p in official.path)
    report = data.verify("pcam", root)
    assert report.ok, str(report)
    assert sum(report.counts["official_valid"].values()) == 6
    assert any("official_valid/" in note for note in report.notes)


def test_a_damaged_official_valid_set_is_named(synthetic_sets, tmp_path):
    root = _with_official_valid(synthetic_sets, tmp_path)
    gone = next((root / "official_valid").iterdir())
    gone.unlink()
    report = data.verify("pcam", root)
    assert any(gone.stem in p.path and "official_valid_labels.csv" in p.message for p in report.problems)
    (root / "official_valid_labels.csv").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="official_valid_labels.csv"):
        data.pcam_table(root, "official_valid", missing_ok=True)  # half a set is not "absent"


def test_missing_dataset_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_DATA_DIR", str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.locate("chest_xray")
    message = str(error.value)
    assert str(tmp_path / "chest_xray") in message and "TL_DATA_DIR" in message
    assert "paultimothymooney/chest-xray-pneumonia" in message and "{train,val,test}" in message


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A fresh TL_CACHE_DIR: synthetic sets are made there, never under the repository."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("TL_CACHE_DIR", str(folder))
    return folder


def test_dataset_root_makes_synthetic_once_in_the_cache_not_the_data_dir(tmp_path, cache_dir):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    first = data.dataset_root("pcam", synthetic=True, data_dir=data_dir)
    assert first == cache_dir / "synthetic" / "pcam-smoke-seed0"
    stamp = (first / "train_labels.csv").stat().st_mtime_ns
    again = data.dataset_root("pcam", synthetic=True, data_dir=data_dir)
    assert again == first and (again / "train_labels.csv").stat().st_mtime_ns == stamp
    assert data.is_synthetic(first)
    assert list(data_dir.iterdir()) == []  # nothing written into the reader's data folder
    other = data.dataset_root("pcam", synthetic=True, data_dir=data_dir, seed=2)
    assert other == cache_dir / "synthetic" / "pcam-smoke-seed2" and other != first


def test_dataset_root_remakes_a_stale_synthetic_set(cache_dir):
    root = data.dataset_root("pcam", synthetic=True)
    marker = root / data.SYNTHETIC_MARKER
    meta = json.loads(marker.read_text())
    marker.write_text(json.dumps({**meta, "generator_version": "an older one"}))
    (root / "left_over.txt").write_text("from the old generator")
    again = data.dataset_root("pcam", synthetic=True)
    assert again == root and not (root / "left_over.txt").exists()
    assert json.loads(marker.read_text())["generator_version"] == meta["generator_version"]


@pytest.mark.parametrize("damage", ['{"generator_version": 2, "se', "[]", ""])
def test_a_corrupt_synthetic_marker_in_the_cache_is_rebuilt(cache_dir, damage):
    """A marker truncated by a full disk (or not an object) was a JSONDecodeError with no path (issue 27)."""
    root = data.dataset_root("pcam", synthetic=True)
    marker = root / data.SYNTHETIC_MARKER
    good = marker.read_text()
    marker.write_text(damage)
    again = data.load("pcam", synthetic=True)
    assert Path(again.root) == root and marker.read_text() == good and again.ok


# --- load: the one call a chapter makes ---------------------------------------------------

def test_load_synthetic_returns_the_verified_report_of_the_dataset_folder(cache_dir):
    report = data.load("chest_xray", synthetic=True, seed=1)
    assert isinstance(report, data.VerifyReport) and report.ok
    assert Path(report.root) == cache_dir / "synthetic" / "chest_xray-smoke-seed1"
    assert Path(report.root) == data.dataset_root("chest_xray", synthetic=True, seed=1)
    assert report.source.startswith("SYNTHETIC") and report.counts["train"]["PNEUMONIA"] > 0


def test_load_real_folder_and_stops_on_a_damaged_one(synthetic_sets, tmp_path, cache_dir):
    data_dir = tmp_path / "data"
    shutil.copytree(synthetic_sets["brain_mri_yes_no"], data_dir / "brain_mri_yes_no")
    report = data.load("brain_mri_yes_no", synthetic=False, data_dir=data_dir)
    assert report.ok and Path(report.root) == data_dir / "brain_mri_yes_no"
    broken = sorted((data_dir / "brain_mri_yes_no" / "yes").iterdir())[0]
    broken.write_bytes(b"")
    with pytest.raises(data.DataLayoutError) as error:
        data.load("brain_mri_yes_no", synthetic=False, data_dir=data_dir)
    assert str(broken) in str(error.value)
    # deep=False checks layout and counts only: the empty file is still an image by name
    assert data.load("brain_mri_yes_no", synthetic=False, data_dir=data_dir, deep=False).ok
    shutil.rmtree(data_dir / "brain_mri_yes_no" / "no")
    with pytest.raises(data.DataLayoutError, match="missing class folder"):
        data.load("brain_mri_yes_no", synthetic=False, data_dir=data_dir, deep=False)
    with pytest.raises(data.DatasetNotFoundError):
        data.load("pcam", synthetic=False, data_dir=data_dir)
    assert not (cache_dir / "synthetic").exists()  # real data never makes a synthetic set


# --- download and install ----------------------------------------------------------------

def test_download_without_credentials_fails_at_once(tmp_path, monkeypatch):
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kaggle/access_token
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-config"))
    with pytest.raises(data.DownloadError, match="kaggle.json"):
        data.download("pcam", data_dir=tmp_path)


def test_download_without_network_fails_fast(tmp_path, monkeypatch):
    from tl_helpers.data import downloads

    monkeypatch.setenv("KAGGLE_USERNAME", "reader")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    monkeypatch.setattr(downloads, "KAGGLE_HOST", ("127.0.0.1", 9))  # a closed local port, never the network
    import kagglehub

    monkeypatch.setattr(kagglehub, "dataset_download", lambda *a, **k: pytest.fail("kagglehub called offline"))
    with pytest.raises(data.DownloadError, match="cannot reach 127.0.0.1:9") as error:
        data.download("chest_xray", data_dir=tmp_path, timeout=3)
    assert "install chest_xray ZIP" in str(error.value)


def test_install_from_kaggle_style_zip(synthetic_sets, tmp_path):
    """The LGG zip holds kaggle_3m/ twice; install keeps one copy in the expected place."""
    source = synthetic_sets["lgg_mri_segmentation"] / "kaggle_3m"
    archive = tmp_path / "lgg-mri-segmentation.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in source.rglob("*"):
            z.write(f, Path("kaggle_3m") / f.relative_to(source))
            z.write(f, Path("lgg-mri-segmentation/kaggle_3m") / f.relative_to(source))
    target = data.install_from_zip("lgg_mri_segmentation", archive, data_dir=tmp_path / "d")
    assert sorted(p.name for p in target.iterdir()) == ["MANIFEST.json", "kaggle_3m"]
    assert data.verify("lgg_mri_segmentation", target).ok
    with pytest.raises(data.DownloadError, match="already exists"):
        data.install_from_zip("lgg_mri_segmentation", archive, data_dir=tmp_path / "d")


# --- small helpers -------------------------------------------------------------------------

@pytest.mark.parametrize("name, patient", [("person12_bacteria_48.jpeg", "person12"), ("IM-0115-0001.jpeg", "IM-0115"),
                                           ("NORMAL2-IM-0955-0001.jpeg", "NORMAL2-IM-0955"),
                                           ("person1000_virus_1681.jpeg", "person1000")])
def test_xray_patient_id(name, patient):
    assert data.xray_patient_id(name) == patient


def test_xray_patient_id_rejects_other_names():
    with pytest.raises(ValueError, match="no patient id"):
        data.xray_patient_id("scan.jpeg")


def test_sample_per_class_keeps_columns_and_counts(synthetic_sets):
    table = data.class_folder_table(synthetic_sets["brain_tumor_mri_4class"])
    samples = data.sample_per_class(table, 3, seed=0)
    assert list(samples.columns) == list(table.columns)
    assert samples.label.value_counts().to_dict() == {c: 3 for c in table.label.unique()}


# --- the real data beside the repository -------------------------------------------------

# The counts that ../shared/data/README.md lists for each folder.
SHARED_COUNTS = {
    "brain_mri_yes_no": {"all": {"no": 98, "yes": 155}},
    "brain_tumor_mri_4class": {"Training": {"glioma": 1321, "meningioma": 1339, "notumor": 1591, "pituitary": 1457}},
    "chest_xray": {"train": {"NORMAL": 1341, "PNEUMONIA": 3875}},
    "lgg_mri_segmentation": {"patients": 20, "slices": 737},
    "pcam": {"train": {"0": 6000, "1": 6000}, "official_valid": {"0": 1500, "1": 1500}},
}


@pytest.mark.shared_data
@pytest.mark.parametrize("name", list(SHARED_COUNTS))
def test_verify_passes_on_the_shared_real_data(shared_data, name):
    report = data.verify(name, shared_data / name)
    assert report.ok, str(report)
    assert report.source == "real data"
    for key, expected in SHARED_COUNTS[name].items():
        assert report.counts[key] == expected


@pytest.mark.shared_data
def test_shared_pcam_tif_samples_read(shared_data):
    tifs = sorted((shared_data / "pcam" / "kaggle_tif_samples").glob("*.tif"))
    assert len(tifs) == 18
    assert all(read_image(t).shape == (96, 96, 3) for t in tifs)


def test_verify_report_is_json_friendly(synthetic_sets):
    report = data.verify("chest_xray", synthetic_sets["chest_xray"])
    json.dumps({"counts": report.counts, "sizes": report.size_summary()})


def test_dataset_root_never_deletes_a_folder_it_did_not_make(tmp_path, cache_dir):
    foreign = cache_dir / "synthetic" / "pcam-smoke-seed0"
    foreign.mkdir(parents=True)
    (foreign / "my_notes.txt").write_text("keep me")
    with pytest.raises(data.DataLayoutError, match="left alone"):
        data.dataset_root("pcam", synthetic=True, data_dir=tmp_path)
    assert (foreign / "my_notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # nothing made beside it
