"""Models that travel: the card checked both ways, calibrated output, ONNX without the frameworks, `tl`.

Small Keras and PyTorch models are exported for real (tl.model_cards.export_model writes
the model file, its ONNX twin, the card and README.md); each edited-card case of issue 26 is
a copy of that folder with one field changed by hand, and loading it must stop with a
ModelCardError naming the field. The framework-free predictor runs in a fresh interpreter
where importing TensorFlow, Keras or PyTorch raises, and must give the framework's
probabilities within 1e-4.
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
import yaml
from PIL import Image

import tl_helpers as tl
from tl_helpers.workflow import cli
from conftest import REPO, shared_data_dir
from test_predict_evaluate import tiny_classifier

SIZE = 32
ENV = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
ModelCardError = tl.model_cards.ModelCardError


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    """PNG and JPEG files at the input size (no resizing: the two predictors see the same pixels)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    files = []
    for index in range(4):
        pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        path = folder / f"scan{index}.png"
        Image.fromarray(pixels).save(path)
        files.append(str(path))
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(folder / "gray.png")
    return files + [str(folder / "gray.png")]


@pytest.fixture(scope="module")
def keras_binary(tmp_path_factory) -> Path:
    card = {"task": "binary", "name": "yes_no_tiny", "classes": ["no", "yes"], "input_size": SIZE,
            "preprocessing": "efficientnet_lite0", "threshold": 0.45, "temperature": 1.7,
            "metrics": tl.metrics.binary_report([0, 1, 0, 1, 1, 0], [0.1, 0.8, 0.6, 0.7, 0.4, 0.2], n_boot=50),
            "metrics_on": "test split, 6 scans", "data_source": "brain_mri_yes_no (synthetic)", "profile": "smoke"}
    return tl.model_cards.export_model(tiny_classifier(2), tmp_path_factory.mktemp("keras_binary"), card)


@pytest.fixture(scope="module")
def keras_multiclass(tmp_path_factory) -> Path:
    card = {"task": "multiclass", "name": "four_tiny", "classes": ["glioma", "meningioma", "notumor"],
            "input_size": SIZE, "preprocessing": "xception"}
    return tl.model_cards.export_model(tiny_classifier(3, seed=1), tmp_path_factory.mktemp("keras_multi"), card)


@pytest.fixture(scope="module")
def torch_binary(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    body = tl.backbones.get_backbone("efficientnet_lite0", "torch", weights=None, pooling=None)
    model = torch.nn.Sequential(body.model, tl.torch_training.classifier_head(body.feature_dim, hidden=16, classes=2))
    card = {"task": "binary", "name": "05_pcam_tiny", "classes": ["no tumour", "tumour"], "input_size": SIZE,
            "crop": 24, "preprocessing": "efficientnet_lite0", "architecture": "efficientnet_lite0+classifier_head",
            "architecture_options": {"hidden": 16, "dropout": 0.5}, "threshold": 0.5, "temperature": 0.7}
    return tl.model_cards.export_model(model, tmp_path_factory.mktemp("torch_binary"), card)


def edited(card_path: Path, tmp_path: Path, **changes) -> Path:
    """A copy of the export's folder whose card has `changes` (None: the key removed)."""
    folder = tmp_path / "copy"
    shutil.copytree(card_path.parent, folder)
    path = folder / card_path.name
    card = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    path.write_text(json.dumps(card))
    return path


# --- the card checked on load ----------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"classes": ["no", "yes", "maybe"]}, r"`classes` is \['no', 'yes', 'maybe'\]; expected two classes"),
    ({"classes": ["yes", "no"]}, r"`class_index` is \{'no': 0, 'yes': 1\}; expected \{'yes': 0, 'no': 1\}"),
    ({"classes": "no,yes"}, r"`classes` is 'no,yes'; expected a list of class names"),
    ({"classes": ["yes"]}, r"`classes` is \['yes'\]; expected at least two distinct class names"),
    ({"preprocessing": "resnet50"}, r"`preprocessing` 'resnet50' means input.channel_order = 'BGR', but .* 'RGB'"),
    ({"task": "segmentation"}, r"`task` is 'segmentation'; expected what the model is: it outputs one vector"),
    ({"model_file": "../../x.keras"}, r"`model_file` is '../../x.keras'; expected a plain file name"),
    ({"model_file": "/tmp/x.keras"}, r"`model_file` is '/tmp/x.keras'; expected a plain file name"),
    ({"input_size": "abc"}, r"`input_size` is 'abc'; expected a positive whole number"),
    ({"channels": 1}, r"`preprocessing, channels` .* means input.channel_order = 'L'"),
    ({"threshold": "high"}, r"`threshold` is 'high'; expected a probability"),
    ({"temperature": -1}, r"`temperature` is -1; expected a positive number"),
])
def test_an_edited_card_stops_with_the_field_and_both_values(keras_binary, tmp_path, changes, message):
    with pytest.raises(ModelCardError, match=message):
        tl.model_cards.load_model(edited(keras_binary, tmp_path, **changes))


def test_a_card_whose_numbers_were_edited_too_is_caught_by_the_model_shapes(keras_binary, keras_multiclass,
                                                                            tmp_path):
    card = json.loads(keras_binary.read_text())
    gray = dict(card["input"], channel_order="L", mean=[0.5], std=[0.5])
    with pytest.raises(ModelCardError, match=r"`channels` is 1; expected 3: the model's input has 3 channels"):
        tl.model_cards.load_model(edited(keras_binary, tmp_path / "a", channels=1, input=gray))
    classes = ["glioma", "meningioma", "notumor", "pituitary"]
    with pytest.raises(ModelCardError, match=r"`classes` is .*'pituitary'\]; expected 3 classes: the model has 3"):
        tl.model_cards.load_model(edited(keras_multiclass, tmp_path / "b", classes=classes,
                                         class_index={c: i for i, c in enumerate(classes)}))
    # swapped names with their class_index swapped too: the outputs carry no names, so this loads
    swapped = tl.model_cards.load_model(edited(keras_binary, tmp_path / "c", classes=["yes", "no"],
                                               class_index={"yes": 0, "no": 1}, positive_class="no"))
    assert swapped.classes == ["yes", "no"]


def test_a_changed_model_file_is_refused_by_its_sha256(keras_binary, tmp_path):
    path = edited(keras_binary, tmp_path)
    model_file = path.parent / json.loads(path.read_text())["model_file"]
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(ModelCardError, match=r"`sha256` of yes_no_tiny.keras is [0-9a-f]{64} in the card, but"):
        tl.model_cards.load_model(path)


def test_an_old_card_with_a_name_only_still_loads(keras_binary, torch_binary, tmp_path, images):
    """Format 1: no numbers, no sha256, `temperature_fitted_on_validation`, a pickled .pt state dict."""
    import torch

    expected = tl.model_cards.load_model(keras_binary).predict_proba(images)
    old = edited(keras_binary, tmp_path / "k", input=None, class_index=None, sha256=None, onnx_file=None,
                 temperature=None, temperature_fitted_on_validation=1.7, format_version=1)
    loaded = tl.model_cards.load_model(old)
    assert loaded.temperature == 1.7 and loaded.steps["scale"] == pytest.approx(1 / 255)
    np.testing.assert_allclose(loaded.predict_proba(images), expected, atol=1e-6, rtol=0)

    new = tl.model_cards.load_model(torch_binary, device="cpu")
    folder = tmp_path / "t"
    folder.mkdir()
    torch.save(new.model.state_dict(), folder / "old.pt")
    card = {key: value for key, value in new.card.items() if key not in ("input", "sha256", "onnx_file")}
    (folder / "old.card.json").write_text(json.dumps({**card, "model_file": "old.pt"}))
    np.testing.assert_allclose(tl.model_cards.load_model(folder / "old.card.json", device="cpu").predict_proba(images),
                               new.predict_proba(images), atol=1e-6, rtol=0)


# --- what export writes ----------------------------------------------------------------------

def test_the_card_carries_its_preprocessing_as_numbers_and_a_readme(keras_binary, torch_binary):
    card = json.loads(keras_binary.read_text())
    assert card["input"]["resize"]["size"] == [SIZE, SIZE] and card["input"]["layout"] == "NHWC"
    assert (card["input"]["channel_order"], card["input"]["mean"], card["input"]["std"]) == ("RGB", [0.5] * 3,
                                                                                            [0.5] * 3)
    assert card["class_index"] == {"no": 0, "yes": 1} and card["temperature"] == 1.7
    assert sorted(card["sha256"]) == ["yes_no_tiny.keras", "yes_no_tiny.onnx"]
    torch_card = json.loads(torch_binary.read_text())
    assert torch_card["model_file"].endswith(".safetensors") and torch_card["input"]["layout"] == "NCHW"
    assert torch_card["input"]["crop"] == {"rule": "center", "size": 24}

    text = (keras_binary.parent / "README.md").read_text()
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["license"] == "apache-2.0" and header["library_name"] == "keras"
    assert header["pipeline_tag"] == "image-classification" and header["datasets"] == ["navoneel/brain-mri-images-for-brain-tumor-detection"]
    result = header["model-index"][0]["results"][0]
    assert result["dataset"]["split"] == "test split, 6 scans"
    auc = next(m for m in result["metrics"] if m["type"] == "roc_auc")
    assert "95% CI" in auc["name"]
    assert "Not for diagnosis" in text and "Chakrabarty" in text


def test_the_numbers_reproduce_each_backbones_own_preprocessing():
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    for name in ("efficientnet_lite0", "xception", "efficientnetb3", "resnet50", "raw_pixels", "standardize"):
        numbers = tl.card_schema.preprocessing_numbers(name, "keras")
        np.testing.assert_allclose(tl.onnx_predict.normalize_pixels(pixels, numbers),
                                   tl.backbones.get_preprocess(name, "keras")(pixels), atol=1e-4, rtol=1e-6)


# --- calibrated output -----------------------------------------------------------------------

def test_predict_writes_calibrated_probabilities_and_says_so(keras_binary, images, tmp_path):
    from tl_helpers.evaluate.calibration import apply_temperature

    predictor = tl.model_cards.load_model(keras_binary)
    raw = predictor.predict_proba(images)
    out = tmp_path / "p.csv"
    done = subprocess.run([sys.executable, "-m", "tl_helpers", "predict", str(keras_binary), *images, "--out",
                           str(out), "--quiet"], env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "calibrated with the card's temperature 1.7" in done.stdout
    table = pd.read_csv(out)
    np.testing.assert_allclose(table["p_yes"], apply_temperature(raw[:, 1], 1.7), atol=1e-6)
    assert (table["temperature"] == 1.7).all()
    assert list(table["predicted"]) == ["yes" if p >= 0.45 else "no" for p in raw[:, 1]]  # threshold: raw

    assert tl.predict.main([str(keras_binary), *images, "--out", str(out), "--force", "--uncalibrated",
                            "--no-progress"]) == 0  # --force: the output exists (issue 27)
    table = pd.read_csv(out)
    np.testing.assert_allclose(table["p_yes"], raw[:, 1], atol=1e-6)
    assert table["temperature"].isna().all()


# --- ONNX without the frameworks -------------------------------------------------------------

BLOCKER = '''import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "torch"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Blocked())
'''


@pytest.mark.parametrize("export", ["keras_binary", "keras_multiclass", "torch_binary"])
def test_onnx_predicts_what_the_framework_does_without_importing_it(export, request, images, tmp_path):
    card_path = request.getfixturevalue(export)
    expected = tl.model_cards.load_model(card_path, device="cpu").predict_proba(images)
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    script = ("import sys\n"
              "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('not blocked')\n"
              "from tl_helpers.serve.onnx_predict import main\n"
              "code = main(sys.argv[1:])\n"
              "assert not {'tensorflow', 'keras', 'torch'} & set(sys.modules), 'a framework was imported'\n"
              "raise SystemExit(code)\n")
    out = tmp_path / "onnx.csv"
    env = dict(ENV, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    done = subprocess.run([sys.executable, "-c", script, str(card_path), *images, "--out", str(out), "--uncalibrated"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(out, comment="#")
    classes = json.loads(card_path.read_text())["classes"]
    found = table[[f"p_{c}" for c in classes]].to_numpy()
    assert np.abs(found - expected).max() < 1e-4
    assert out.read_text().startswith("# probabilities uncalibrated")


def test_onnx_resizing_stays_within_one_grey_level_of_the_framework():
    from tl_helpers.data.images import resize_image

    rng = np.random.default_rng(0)
    for shape, size in [((70, 90, 3), (32, 32)), ((20, 25), (32, 32)), ((64, 64, 3), (32, 32)), ((50, 40, 3), (32, 48))]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        ours = tl.onnx_predict.resize_pixels(image, size).astype(int)
        assert np.abs(ours - resize_image(image, size).astype(int)).max() <= 1, (shape, size)


def test_onnx_shrinking_is_opencvs_area_resize_pixel_for_pixel():
    """Shrinking (every chapter's case) matches the training loaders' OpenCV INTER_AREA exactly:
    by whole factors (its integer path, 2 x 2 rounded half up) and by any other ratio (its float
    tables). One grey level more or less moved chapter 2's probabilities by 2e-3."""
    from tl_helpers.data.images import resize_image

    rng = np.random.default_rng(1)
    cases = [((256, 256, 3), (192, 192)), ((256, 256), (128, 128)), ((256, 256, 3), (64, 64)), ((512, 384, 3), (96, 96)),
             ((1000, 1317), (48, 48)), ((630, 630, 3), (150, 150)), ((97, 131, 3), (32, 45))]
    for shape, size in cases:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        image[: shape[0] // 2] //= 7  # smooth regions too, where sums land on .5
        np.testing.assert_array_equal(tl.onnx_predict.resize_pixels(image, size), resize_image(image, size),
                                      err_msg=str((shape, size)))
    data = shared_data_dir()
    if data is not None:  # real scans and films at the chapters' sizes
        from tl_helpers.data.images import read_image

        for pattern, size in [("brain_tumor_mri_4class/Training/glioma/*.jpg", (192, 192)),
                              ("chest_xray/train/NORMAL/*.jpeg", (48, 48)), ("brain_mri_yes_no/yes/*", (96, 96))]:
            for path in sorted(data.glob(pattern))[:5]:
                image = read_image(path, channels=3)
                np.testing.assert_array_equal(tl.onnx_predict.resize_pixels(image, size), resize_image(image, size))


# --- one command -----------------------------------------------------------------------------

def test_the_tl_command_dispatches_and_documents(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tl {tl.__version__}"
    assert cli.translate_quiet("run", ["a.ipynb", "--quiet"]) == ["a.ipynb", "--no-progress"]
    assert cli.translate_quiet("predict", ["--no-progress", "c"]) == ["c", "--quiet"]
    assert cli.translate_quiet("data", ["list", "--quiet"]) == ["list"]
    assert cli.main(["nonsense"]) == 2
    for command, words in [("predict", ["p_<class>", "temperature", "example:", "--uncalibrated"]),
                           ("evaluate", ["class folders", "PCam", "LGG", "{value, low, high}", "example:"])]:
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        assert all(word in text for word in words), (command, text)
        assert "--no-progress" not in text  # the old spelling works but is not advertised
