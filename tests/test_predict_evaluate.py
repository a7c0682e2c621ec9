"""The command lines an exported model is used with: predict (tl.predict) and evaluate (tl.external).

End to end in fresh interpreters (`python -m ...`; the two-stage runs call the same `main`
in-process, to save two TensorFlow start-ups) on small exported Keras models and
synthetic sets in the datasets' own layouts (class folders, LGG patient folders, PCam);
what they write is checked against the same predictions made here in-process. Bad input
is checked in-process: each problem must stop with a message that names the file.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import tl_helpers as tl
from conftest import REPO

SIZE = 32
ENV = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *map(str, args)], env=ENV, cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=300)


def tiny_classifier(classes: int = 2, size: int = SIZE, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


@pytest.fixture(scope="module")
def yes_no(tmp_path_factory) -> Path:
    return tl.synthetic.synthesize("brain_mri_yes_no", tmp_path_factory.mktemp("yes_no") / "brain_mri_yes_no")


@pytest.fixture(scope="module")
def lgg(tmp_path_factory) -> Path:
    return tl.synthetic.synthesize("lgg_mri_segmentation", tmp_path_factory.mktemp("lgg") / "lgg_mri_segmentation")


@pytest.fixture(scope="module")
def classifier_card(tmp_path_factory) -> Path:
    card = {"task": "binary", "name": "yes_no_tiny", "classes": ["no", "yes"], "input_size": SIZE,
            "preprocessing": "efficientnet_lite0", "threshold": 0.45}
    return tl.model_cards.export_model(tiny_classifier(), tmp_path_factory.mktemp("classifier"), card)


@pytest.fixture(scope="module")
def two_stage_card(tmp_path_factory, lgg) -> Path:
    """Stage 1 and a small ResUNet; the stage-1 threshold is the median P(tumour), so half the slices go on."""
    stage1 = tiny_classifier(seed=1)
    slices = tl.data.lgg_slice_table(lgg, with_tumour=False)
    pixels = np.stack([image for image, _ in tl.loaders.load_examples(slices.image_path, (SIZE, SIZE))])
    p_tumour = stage1.predict(tl.backbones.preprocess_lite0(pixels), verbose=0)[:, 1]
    card = {"task": "two_stage", "name": "lgg_two_stage", "classes": ["no tumour", "tumour"], "input_size": SIZE,
            "preprocessing": "efficientnet_lite0", "threshold": float(np.median(p_tumour)),
            "segmenter": {"input_size": SIZE, "preprocessing": "standardize", "mask_threshold": 0.5}}
    segmenter = tl.segmentation.build_resunet((SIZE, SIZE, 3), filters=(4, 8))
    return tl.model_cards.export_model(stage1, tmp_path_factory.mktemp("two_stage"), card, segmenter=segmenter)


# --- predict ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, yes_no) -> Path:
    """A folder tree of every format: the synthetic JPEG/PNG files, a 16-bit PNG, an RGBA PNG, a gray TIFF."""
    folder = tmp_path_factory.mktemp("mixed") / "scans"
    shutil.copytree(yes_no / "yes", folder / "ward_a")
    nested = folder / "ward_b" / "deeper"
    nested.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 4096, (40, 50), dtype=np.uint16)).save(nested / "scan16.PNG")
    Image.fromarray(rng.integers(0, 255, (30, 30, 4), dtype=np.uint8), mode="RGBA").save(nested / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (64, 48), dtype=np.uint8)).save(nested / "gray.tif")
    (nested / "notes.txt").write_text("not an image")
    (nested / ".hidden.png").write_bytes(b"")
    return folder


def test_predict_writes_probabilities_and_labels_at_the_cards_threshold(tmp_path, classifier_card, mixed_folder):
    out = tmp_path / "preds.csv"
    done = run_cli("tl_helpers.serve.predict", classifier_card, mixed_folder, "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(out)
    files = sorted(str(f) for f in mixed_folder.rglob("*")
                   if tl.images.is_image_file(f) and not f.name.startswith("."))
    assert sorted(table["file"]) == files and len(files) == len(list((mixed_folder / "ward_a").iterdir())) + 3
    assert list(table.columns) == ["file", "p_no", "p_yes", "predicted", "temperature"]
    expected = tl.model_cards.load_model(classifier_card).predict_proba(table["file"].tolist())
    np.testing.assert_allclose(table[["p_no", "p_yes"]].to_numpy(), expected, atol=1e-5)
    assert (table["predicted"] == np.where(table["p_yes"] >= 0.45, "yes", "no")).all()
    assert "predict" in done.stderr  # the progress bar


def test_predict_stops_on_an_unreadable_file_with_one_line_naming_it(tmp_path, classifier_card, yes_no, capsys):
    folder = tmp_path / "in"
    shutil.copytree(yes_no / "no", folder)
    good = sorted(folder.iterdir())[0]
    broken = folder / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:200])  # a truncated JPEG
    assert tl.predict.main([str(classifier_card), str(folder), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and str(broken) in error[0]
    table = tl.predict.predict_files(classifier_card, [folder], skip_unreadable=True, progress=False)
    assert len(table) == len(list(folder.iterdir())) - 1 and str(broken) not in set(table["file"])
    assert "skipped" in capsys.readouterr().err
    with pytest.raises(tl.predict.PredictError, match="not found: .*missing.png"):
        tl.predict.predict_files(classifier_card, [folder / "missing.png"])


def test_a_missing_card_is_one_line_naming_it(tmp_path):
    done = run_cli("tl_helpers.serve.predict", tmp_path / "gone.card.json", tmp_path, "--out", tmp_path / "p.csv")
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: model card not found: {tmp_path / 'gone.card.json'}"


def test_two_stage_predict_writes_masks_overlays_and_tumour_areas(tmp_path, two_stage_card, lgg):
    patient = sorted((lgg / "kaggle_3m").glob("TCGA_*"))[0]
    out = tmp_path / "areas.csv"
    assert tl.predict.main([str(two_stage_card), str(patient), "--out", str(out), "--masks-dir",
                            str(tmp_path / "masks"), "--quiet"]) == 0  # in-process: the command line's own code
    table = pd.read_csv(out)
    slices = sorted(f for f in patient.glob("*.tif") if not f.stem.endswith("_mask"))  # masks are not inputs
    assert sorted(table["file"]) == sorted(map(str, slices))
    assert list(table.columns) == ["file", "p_tumour", "flagged", "tumour_pixels", "tumour_fraction", "mask_file",
                                   "overlay_file"]
    threshold = json.loads(two_stage_card.read_text())["stage1_threshold"]
    assert (table["flagged"] == (table["p_tumour"] >= threshold)).all()
    assert (table.loc[~table["flagged"], "tumour_pixels"] == 0).all()
    for row in table.itertuples():
        mask = np.asarray(Image.open(row.mask_file))
        assert mask.shape == tl.images.read_image(row.file, channels=1).shape  # the slice's own size
        assert set(np.unique(mask)) <= {0, 255} and int((mask == 255).sum()) == row.tumour_pixels
        assert row.tumour_fraction == pytest.approx(row.tumour_pixels / mask.size)
        assert Path(row.overlay_file).is_file() and Path(row.mask_file).parent.name == patient.name


# --- evaluate ---------------------------------------------------------------------------------

def test_evaluate_gives_the_chapters_metrics_with_intervals(tmp_path, classifier_card, yes_no):
    out = tmp_path / "report.json"
    done = run_cli("tl_helpers.evaluate", classifier_card, yes_no, "--out", out, "--n-boot", 200)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["layout"] == "class_folders" and report["task"] == "binary" and report["threshold"] == 0.45
    table = tl.data.class_folder_table(yes_no)
    assert report["examples"] == len(table) and report["counts"] == table.label.value_counts().sort_index().to_dict()
    p_yes = tl.model_cards.load_model(classifier_card).predict_proba(table.path.tolist())[:, 1]
    expected = tl.metrics.binary_report((table.label == "yes").astype(int), p_yes, threshold=0.45, n_boot=200)
    for name, estimate in expected.items():
        assert report["metrics"][name] == pytest.approx(estimate._asdict(), nan_ok=True), name
    assert "accuracy" in done.stdout and "95% low" in done.stdout


def test_evaluate_scores_the_two_stage_pipeline_per_patient(tmp_path, two_stage_card, lgg):
    out = tmp_path / "lgg.json"
    assert tl.external.main([str(two_stage_card), str(lgg / "kaggle_3m"), "--out", str(out), "--n-boot", "200",
                             "--quiet"]) == 0  # in-process: the command line's own code
    report = json.loads(out.read_text())
    slices = tl.data.lgg_slice_table(lgg)
    assert report["layout"] == "lgg" and report["examples"] == len(slices)
    assert report["counts"] == {"slices": len(slices), "patients": slices.patient.nunique(),
                                "tumour_slices": int(slices.has_tumour.sum())}
    predictor = tl.model_cards.load_model(two_stage_card)
    run = predictor.run_pipeline(slices.image_path.tolist())
    truth = np.stack([tl.images.read_mask(m, (SIZE, SIZE))[..., 0] for m in slices.mask_path])
    dice = tl.metrics.dice_scores(truth, run.masks >= 0.5)
    expected = tl.metrics.bootstrap_ci(np.mean, dice, n_boot=200, groups=slices.patient)
    # six patients: no interval (tl.metrics.MIN_GROUPS_FOR_INTERVAL), written as null in the JSON report
    assert report["metrics"]["dice_mean"] == pytest.approx(
        {name: None if np.isnan(value) else value for name, value in expected._asdict().items()})
    assert {"dice_tumour_slices_mean", "dice_per_patient_mean", "dice_volumetric_per_patient_mean", "stage1_accuracy",
            "stage1_roc_auc"} <= set(report["metrics"])
    volumes = tl.metrics.volumetric_dice(slices.patient, truth, run.masks >= 0.5)
    assert report["metrics"]["dice_volumetric_per_patient_mean"]["value"] == pytest.approx(volumes.dice.mean())


def test_evaluate_reads_the_pcam_layout_and_maps_label_1_to_the_positive_class(tmp_path, classifier_card):
    root = tmp_path / "pcam"
    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for index in range(12):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(root / "train" / f"p{index}.tif")
        rows.append((f"p{index}", index % 2))
    pd.DataFrame(rows, columns=["id", "label"]).to_csv(root / "train_labels.csv", index=False)
    result = tl.external.evaluate_folder(classifier_card, root, n_boot=50, progress=False)
    assert result["layout"] == "pcam" and result["counts"] == {"no": 6, "yes": 6}
    assert list(result["predictions"]["label"][:2]) == ["no", "yes"]

    (root / "train" / "stray.tif").write_bytes((root / "train" / "p0.tif").read_bytes())
    with pytest.raises(tl.external.EvaluationError, match="label missing: .*stray.tif"):
        tl.external.evaluate_folder(classifier_card, root, progress=False)


def test_bad_folders_stop_with_the_file_named(tmp_path, classifier_card, two_stage_card, yes_no, lgg, capsys):
    evaluate = tl.external.evaluate_folder
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(next((yes_no / "yes").iterdir()), loose)
    with pytest.raises(tl.external.EvaluationError, match=f"{loose}: unknown layout"):
        evaluate(classifier_card, loose)
    assert tl.external.main([str(classifier_card), str(loose)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: {loose}: unknown layout")

    extra = tmp_path / "extra"
    shutil.copytree(yes_no, extra)
    shutil.copytree(yes_no / "no", extra / "maybe")
    with pytest.raises(tl.external.EvaluationError, match="class folder .*maybe is not a class of the model"):
        evaluate(classifier_card, extra)

    unreadable = tmp_path / "unreadable"
    shutil.copytree(yes_no, unreadable)
    (unreadable / "yes" / "zero.jpg").write_bytes(b"")
    with pytest.raises(tl.images.ImageReadError, match="zero.jpg"):
        evaluate(classifier_card, unreadable, progress=False)

    with pytest.raises(tl.external.EvaluationError, match="a binary model is evaluated on class folders or PCam"):
        evaluate(classifier_card, lgg)

    broken = tmp_path / "lgg"
    shutil.copytree(lgg, broken)
    masks = sorted((broken / "kaggle_3m").glob("TCGA_*/*_mask.tif"))
    Image.fromarray(np.zeros((128, 128), np.uint8)).save(masks[0])
    with pytest.raises(tl.external.EvaluationError, match=f"mask size mismatch: {masks[0]} is 128x128"):
        evaluate(two_stage_card, broken)
    shutil.copy(lgg / masks[0].relative_to(broken), masks[0])
    masks[1].unlink()
    with pytest.raises(tl.external.EvaluationError, match="label missing: the mask of .* is not there"):
        evaluate(two_stage_card, broken)


# --- outputs and arguments checked before any work (issue 27) ----------------------------------

def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_an_output_onto_an_input_is_refused_and_the_scan_kept(tmp_path, classifier_card, yes_no, capsys):
    data_dir = tmp_path / "brain"
    shutil.copytree(yes_no, data_dir)
    scan = sorted((data_dir / "yes").iterdir())[0]
    before = scan.read_bytes()
    for force in ([], ["--force"]):  # --force replaces an old report, never an input
        assert tl.predict.main([str(classifier_card), str(data_dir / "yes"), "--out", str(scan), "--quiet",
                                *force]) == 2
        assert "is an input" in _one_error_line(capsys)
        assert tl.external.main([str(classifier_card), str(data_dir), "--out", str(scan), "--quiet", *force]) == 2
        assert "is an input" in _one_error_line(capsys)
        assert tl.predict.main([str(classifier_card), str(scan), "--out", str(scan), "--quiet", *force]) == 2
        _one_error_line(capsys)
    assert scan.read_bytes() == before
    assert tl.predict.main([str(classifier_card), str(data_dir / "yes"), "--out", str(classifier_card), "--quiet",
                            "--force"]) == 2  # nor the model card
    assert "is an input" in _one_error_line(capsys)


def test_an_output_that_cannot_be_written_is_one_line_before_any_work(tmp_path, classifier_card, yes_no, capsys,
                                                                      unwritable_folder, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(tl.predict, "load_model", no_work)
    monkeypatch.setattr(tl.external, "load_model", no_work)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("notes")
    cases = {tmp_path: "is a folder", a_file / "preds.csv": "is a file, not a folder",
             unwritable_folder / "preds.csv": f"cannot write to the output folder {unwritable_folder}"}
    for out, words in cases.items():
        assert tl.predict.main([str(classifier_card), str(yes_no / "no"), "--out", str(out), "--quiet"]) == 2
        assert words in _one_error_line(capsys), out
        assert tl.external.main([str(classifier_card), str(yes_no), "--out", str(out), "--quiet"]) == 2
        assert words in _one_error_line(capsys), out
    assert a_file.read_text() == "notes"


def test_a_masks_folder_that_must_not_be_written_is_one_line_before_any_work(tmp_path, classifier_card, yes_no,
                                                                            two_stage_card, capsys, monkeypatch):
    """--masks-dir (or its default beside --out, for a card that writes masks) is checked with --out."""
    monkeypatch.setattr(tl.predict, "load_model", lambda *a, **k: pytest.fail("the model loaded before the check"))
    out = tmp_path / "p.csv"  # its default masks folder: p_masks/
    a_file, earlier = tmp_path / "notes.txt", tmp_path / "p_masks" / "TCGA_1" / "slice_1_overlay.png"
    a_file.write_text("notes")
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"yesterday's overlay")
    cases = {a_file: "is a file, not a folder", a_file / "masks": "is a file, not a folder",
             yes_no / "no": "inside the input folder", earlier.parents[1]: "1 mask or overlay files of an earlier run"}
    for masks_dir, words in cases.items():
        assert tl.predict.main([str(classifier_card), str(yes_no), "--out", str(out), "--masks-dir",
                                str(masks_dir), "--quiet"]) == 2
        assert words in _one_error_line(capsys), masks_dir
    # a card that writes masks, given as its folder: read for its task only, the model never loads
    assert tl.predict.main([str(two_stage_card.parent), str(yes_no), "--out", str(out), "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert f"--masks-dir {earlier.parents[1]} already holds" in line and "--force" in line
    assert a_file.read_text() == "notes" and earlier.read_bytes() == b"yesterday's overlay"
    assert not out.exists() and list((yes_no / "no").glob("*_overlay.png")) == []


def test_an_existing_output_needs_force(tmp_path, classifier_card, yes_no, capsys):
    out = tmp_path / "preds.csv"
    out.write_text("yesterday's predictions\n")
    assert tl.predict.main([str(classifier_card), str(yes_no / "no"), "--out", str(out), "--quiet"]) == 2
    assert "already exists" in _one_error_line(capsys) and out.read_text() == "yesterday's predictions\n"
    assert tl.predict.main([str(classifier_card), str(yes_no / "no"), "--out", str(out), "--quiet", "--force"]) == 0
    assert len(pd.read_csv(out)) == len(list((yes_no / "no").iterdir()))
    report = tmp_path / "report.json"
    report.write_text("{}")
    assert tl.external.main([str(classifier_card), str(yes_no), "--out", str(report), "--quiet", "--n-boot", "10"]) == 2
    assert "--force" in _one_error_line(capsys) and report.read_text() == "{}"


@pytest.mark.parametrize("size", ["0", "-4", "two"])
def test_a_batch_size_below_one_is_refused_up_front(tmp_path, classifier_card, yes_no, capsys, size):
    out = tmp_path / "preds.csv"
    for command in (tl.predict.main, tl.external.main):
        with pytest.raises(SystemExit) as stop:  # argparse: a usage error, exit status 2
            command([str(classifier_card), str(yes_no), "--out", str(out), "--batch-size", size])
        assert stop.value.code == 2
        assert "--batch-size: expected a whole number >= 1" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(tl.predict.PredictError, match="batch_size must be a whole number >= 1, got 0"):
        tl.predict.predict_files(classifier_card, [yes_no / "no"], batch_size=0)
    with pytest.raises(tl.predict.PredictError, match="got -4"):
        tl.external.evaluate_folder(classifier_card, yes_no, batch_size=-4)


def test_evaluate_names_files_it_cannot_read(tmp_path, classifier_card, yes_no, capsys):
    data_dir = tmp_path / "brain"
    shutil.copytree(yes_no, data_dir)
    webp = data_dir / "yes" / "Y1.webp"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(webp)
    assert tl.external.main([str(classifier_card), str(data_dir), "--out", str(tmp_path / "r.json"), "--quiet"]) == 1
    line = _one_error_line(capsys)
    assert str(webp) in line and "1 file(s) are not images" in line
    webp.unlink()
    corrupt = data_dir / "no" / "N1.jpg"
    corrupt.write_bytes(b"\xff\xd8 not a jpeg")
    assert tl.external.main([str(classifier_card), str(data_dir), "--out", str(tmp_path / "r.json"), "--quiet"]) == 1
    assert str(corrupt) in _one_error_line(capsys)


def test_evaluate_refuses_pooled_splits_unless_one_is_chosen(tmp_path, classifier_card, yes_no, capsys):
    parent = tmp_path / "brain"
    for split in ("Training", "Testing"):
        shutil.copytree(yes_no, parent / split, ignore=shutil.ignore_patterns("*.json"))
    with pytest.raises(tl.external.EvaluationError, match=r"holds 2 splits \(Testing, Training\).*--split"):
        tl.external.evaluate_folder(classifier_card, parent, progress=False)
    chosen = tl.external.evaluate_folder(classifier_card, parent, split="Testing", n_boot=10, progress=False)
    given = tl.external.evaluate_folder(classifier_card, parent / "Testing", n_boot=10, progress=False)
    assert chosen["examples"] == given["examples"] == len(list((yes_no / "yes").iterdir())) + len(
        list((yes_no / "no").iterdir()))


def test_two_stage_export_carries_the_segmenter_as_onnx_with_its_hash(two_stage_card):
    """The segmenter travels as ONNX too; export checked its masks against Keras' (else no card)."""
    import hashlib

    card = json.loads(two_stage_card.read_text())
    onnx_name = card["segmenter"]["onnx_file"]
    assert onnx_name == "lgg_two_stage_segmenter.onnx"
    assert card["sha256"][onnx_name] == hashlib.sha256((two_stage_card.parent / onnx_name).read_bytes()).hexdigest()
    edited = dict(card, segmenter={**card["segmenter"], "onnx_file": "../elsewhere.onnx"})
    with pytest.raises(tl.model_cards.ModelCardError, match="segmenter.onnx_file"):
        tl.card_schema.check_card(edited, "a hand-edited card", loading=True)
