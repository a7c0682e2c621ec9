"""tl.model_cards: a model and its card leave the notebook and come back predicting the same.

Round trips on real image files (../shared/data when present, else the synthetic yes/no
set, plus a 16-bit PNG and an RGBA PNG): the loaded predictor, which re-creates the
preprocessing from the card's name alone, must give the probabilities computed here by
hand from the model in memory (to 1e-5). A Keras card also loads under KERAS_BACKEND=torch
(a fresh interpreter), a PyTorch card loads where Keras cannot be imported, and export
refuses what would not come back the same.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tl_helpers as tl
from conftest import REPO, shared_data_dir

SIZE = 64


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> list[str]:
    """Real files of every kind the datasets hold (JPEG/PNG/TIFF, gray/RGB), a 16-bit and an RGBA PNG."""
    folder = tmp_path_factory.mktemp("odd_images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 65535, (70, 90), dtype=np.uint16)).save(folder / "gray16.png")
    Image.fromarray(rng.integers(0, 255, (50, 40, 4), dtype=np.uint8), mode="RGBA").save(folder / "rgba.png")
    data = shared_data_dir()
    if data is not None:
        yes_no = data / "brain_mri_yes_no"
        files = sorted((yes_no / "yes").iterdir())[:3] + [yes_no / "yes" / "Y92.png", yes_no / "no" / "no 9.png"]
        files += sorted((data / "pcam" / "kaggle_tif_samples").glob("*.tif"))[:1]
        files += sorted((data / "lgg_mri_segmentation" / "kaggle_3m").glob("TCGA_*/*_10.tif"))[:1]
    else:
        root = tl.synthetic.synthesize("brain_mri_yes_no", tmp_path_factory.mktemp("yes_no") / "set")
        files = sorted(root.rglob("*.jpg"))[:4] + sorted(root.rglob("*.png"))[:2]
    files = [str(f) for f in files if Path(f).is_file()] + [str(folder / "gray16.png"), str(folder / "rgba.png")]
    assert len(files) >= 6
    return files


def by_hand(files, size=SIZE):
    """float32 0..255 RGB pixels at size x size, read and resized as training does (tl.loaders)."""
    return np.stack([image for image, _ in tl.loaders.load_examples(files, (size, size), threads=1)])


@pytest.fixture(scope="module")
def keras_export(tmp_path_factory, image_files):
    import keras

    backbone = tl.backbones.get_backbone("efficientnet_lite0", "keras", weights="imagenet",
                                         input_shape=(SIZE, SIZE, 3), pooling="avg")
    keras.utils.set_random_seed(0)
    model = tl.features.stack_head(backbone.model, tl.features.dense_head(backbone.feature_dim, 2, hidden_units=(8,)))
    report = tl.metrics.binary_report([0, 1, 0, 1, 1], [0.1, 0.8, 0.6, 0.7, 0.4], n_boot=50)
    card = {"task": "binary", "name": "yes_no_lite0", "classes": ["no", "yes"], "input_size": SIZE,
            "preprocessing": "efficientnet_lite0", "threshold": 0.35, "metrics": report,
            "data_source": "brain_mri_yes_no (real, ../shared/data)", "profile": "smoke"}
    folder = tmp_path_factory.mktemp("keras_export")
    card_path = tl.model_cards.export_model(model, folder, card)
    expected = np.asarray(model.predict(backbone.preprocess(by_hand(image_files)), verbose=0), np.float64)
    return card_path, expected


def test_a_keras_model_and_its_card_come_back_predicting_the_same(keras_export, image_files):
    card_path, expected = keras_export
    assert card_path.name == "yes_no_lite0.card.json"
    assert (card_path.parent / "yes_no_lite0.keras").is_file()
    card = json.loads(card_path.read_text())
    assert card["task"] == "binary" and card["classes"] == ["no", "yes"] and card["positive_class"] == "yes"
    assert card["input_size"] == [SIZE, SIZE] and card["channels"] == 3
    assert card["preprocessing"] == "efficientnet_lite0" and card["threshold"] == 0.35
    assert card["framework"] == "keras" and card["outputs"] == "probabilities"
    auc = card["metrics"]["roc_auc"]
    assert auc["low"] <= auc["value"] <= auc["high"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert card["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)

    predictor = tl.model_cards.load_model(card_path)
    probabilities = predictor.predict_proba(image_files, batch_size=3)
    assert probabilities.shape == (len(image_files), 2)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5, rtol=0)
    # arrays in any form give what their files give (gray 2-D, RGBA)
    arrays = [tl.images.read_image(f, channels=None) for f in image_files]
    np.testing.assert_allclose(predictor.predict_proba(arrays), expected, atol=1e-5, rtol=0)
    labels = predictor.predict(image_files)
    assert labels == ["yes" if p >= 0.35 else "no" for p in expected[:, 1]]


def test_a_keras_card_loads_under_the_torch_backend(keras_export, image_files):
    card_path, expected = keras_export
    script = ("import json, sys, keras, tl_helpers as tl\n"
              "p = tl.model_cards.load_model(sys.argv[1])\n"
              "print(json.dumps({'backend': keras.backend.backend(), "
              "'p': p.predict_proba(sys.argv[2:]).tolist()}))\n")
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", script, str(card_path), *image_files], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "torch"
    np.testing.assert_allclose(np.array(result["p"]), expected, atol=1e-5, rtol=0)


def test_a_pytorch_model_comes_back_from_its_state_dict_and_architecture(tmp_path, image_files):
    import torch
    from torch import nn

    torch.manual_seed(0)
    body = tl.backbones.get_backbone("efficientnet_lite0", "torch", weights=None, pooling=None)
    model = nn.Sequential(body.model, tl.torch_training.classifier_head(body.feature_dim, hidden=16, classes=2))
    model.train()  # export must not care, nor change it
    card = {"task": "binary", "name": "pcam_lite0", "classes": ["normal", "tumour"], "input_size": SIZE, "crop": 48,
            "preprocessing": "efficientnet_lite0", "architecture": "efficientnet_lite0+classifier_head",
            "architecture_options": {"hidden": 16, "dropout": 0.5}, "threshold": 0.5}
    card_path = tl.model_cards.export_model(model, tmp_path, card)
    assert model.training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "pcam_lite0.card.json", "pcam_lite0.onnx",
                                                        "pcam_lite0.safetensors"]
    written = json.loads(card_path.read_text())
    assert written["framework"] == "torch" and written["outputs"] == "logits" and written["crop"] == 48

    # by hand: centre 48 of the 64-pixel image, Lite0's normalisation, softmax of the logits
    pixels = by_hand(image_files)[:, 8:56, 8:56] / 255.0
    batch = torch.from_numpy(((pixels - 0.5) / 0.5).transpose(0, 3, 1, 2).astype(np.float32))
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(batch), dim=1).numpy()
    # loaded where Keras and TensorFlow cannot even be imported (the PyTorch path)
    script = ("import json, sys\n"
              "sys.modules['keras'] = None\n"
              "sys.modules['tensorflow'] = None\n"
              "import tl_helpers as tl\n"
              "p = tl.model_cards.load_model(sys.argv[1], device='cpu')\n"
              "print(json.dumps({'crop': p.crop, 'p': p.predict_proba(sys.argv[2:]).tolist()}))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", script, str(card_path), *image_files], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["crop"] == 48
    np.testing.assert_allclose(np.array(result["p"]), expected, atol=1e-5, rtol=0)


def test_export_refuses_what_would_not_come_back(tmp_path):
    import keras
    import torch

    body = tl.backbones.get_backbone("efficientnet_lite0", "torch", weights=None, pooling=None)
    model = torch.nn.Sequential(body.model, tl.torch_training.classifier_head(body.feature_dim, hidden=16, classes=2))
    card = {"task": "binary", "classes": ["a", "b"], "input_size": 32, "preprocessing": "efficientnet_lite0",
            "architecture": "efficientnet_lite0+classifier_head"}
    with pytest.raises(tl.model_cards.ModelCardError, match="does not fit architecture"):
        tl.model_cards.export_model(model, tmp_path / "a", card)  # hidden 512 by default, the model has 16
    with pytest.raises(tl.model_cards.ModelCardError, match="needs `architecture`"):
        tl.model_cards.export_model(model, tmp_path / "b", {**card, "architecture": None})
    with pytest.raises(tl.model_cards.ModelCardError, match="two classes"):
        tl.model_cards.export_model(model, tmp_path / "c", {**card, "classes": ["a", "b", "c"]})

    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    three = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    keras_card = {"task": "binary", "classes": ["a", "b"], "input_size": 16, "preprocessing": "xception"}
    with pytest.raises(tl.model_cards.ModelCardError,
                       match=r"`classes` is \[.a., .b.\]; expected 3 classes: the model has 3 outputs"):
        tl.model_cards.export_model(three, tmp_path / "d", keras_card)
    noisy = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(tl.uncertainty.MCDropout(0.5)(pooled)))
    with pytest.raises(tl.model_cards.ModelCardError, match="predicts differently"):
        tl.model_cards.export_model(noisy, tmp_path / "e", keras_card)  # MC dropout: random at inference
    assert list((tmp_path / "e").iterdir()) == []  # nothing left behind to be used


def test_loading_names_the_missing_or_broken_file(tmp_path):
    with pytest.raises(tl.model_cards.ModelCardError, match="model card not found: .*nowhere.card.json"):
        tl.model_cards.load_model(tmp_path / "nowhere.card.json")
    broken = tmp_path / "broken.card.json"
    broken.write_text("{not json")
    with pytest.raises(tl.model_cards.ModelCardError, match="cannot read model card .*broken.card.json"):
        tl.model_cards.load_model(broken)
    partial = tmp_path / "partial.card.json"
    partial.write_text(json.dumps({"task": "binary"}))
    with pytest.raises(tl.model_cards.ModelCardError, match="lacks"):
        tl.model_cards.load_model(partial)
    orphan = tmp_path / "orphan.card.json"
    orphan.write_text(json.dumps({"task": "binary", "framework": "torch", "model_file": "orphan.pt",
                                  "classes": ["a", "b"], "input_size": [8, 8], "preprocessing": "efficientnet_lite0",
                                  "architecture": "efficientnet_lite0+classifier_head"}))
    with pytest.raises(tl.model_cards.ModelCardError, match="model file not found: .*orphan.pt"):
        tl.model_cards.load_model(orphan)


def test_the_preprocessing_comes_back_by_name_alone():
    pixels = np.full((1, 4, 4, 3), 255.0, np.float32)
    assert tl.backbones.get_preprocess("efficientnet_lite0")(pixels).max() == pytest.approx(1.0)
    assert tl.backbones.get_preprocess("xception")(pixels * 0).min() == pytest.approx(-1.0)
    assert tl.backbones.get_preprocess("standardize") is tl.segmentation.standardize_images
    raw = tl.backbones.get_preprocess("raw_pixels")(pixels.astype(np.uint8))  # chapter 3: the CNN rescales itself
    assert raw.dtype == np.float32 and raw.max() == 255.0
    normalize = tl.backbones.get_preprocess("resnet50", "torch")
    assert tuple(normalize.mean) == tl.backbones.IMAGENET_MEAN_RGB
    with pytest.raises(ValueError, match="no torch preprocessing 'xception'"):
        tl.backbones.get_preprocess("xception", "torch")


def test_a_sigmoid_mask_upsampled_after_its_activation_counts_as_probabilities():
    import keras

    from tl_helpers.evaluate.explain import keras_output_kind

    inputs = keras.Input((8, 8, 3))
    half = keras.layers.Conv2D(1, 1, activation="sigmoid")(keras.layers.MaxPooling2D(2)(inputs))
    upsampled = keras.Model(inputs, keras.layers.UpSampling2D(2, interpolation="bilinear")(half))
    assert keras_output_kind(upsampled) == "probabilities"  # chapter 4's U-Net: sigmoid, then bilinear x2
    logits = keras.Model(inputs, keras.layers.UpSampling2D(2)(keras.layers.Conv2D(1, 1)(keras.layers.MaxPooling2D(2)(inputs))))
    assert keras_output_kind(logits) == "logits"


class _RunsCode:
    """A pickled object that would run code when unpickled: it creates the file it names."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickled_pt_that_would_run_code_is_refused_in_one_line(tmp_path, image_files):
    import torch

    card_path = tmp_path / "evil.card.json"
    card_path.write_text(json.dumps({
        "task": "binary", "name": "evil", "framework": "torch", "model_file": "evil.pt", "classes": ["a", "b"],
        "input_size": [SIZE, SIZE], "preprocessing": "efficientnet_lite0",
        "architecture": "efficientnet_lite0+classifier_head",
        "architecture_options": {"hidden": 16}, "threshold": 0.5, "outputs": "logits"}))
    ran = tmp_path / "payload-ran"
    torch.save({"weight": torch.zeros(1), "payload": _RunsCode(ran)}, tmp_path / "evil.pt")
    with pytest.raises(tl.model_cards.ModelCardError, match=r"refused to load .*evil.pt: it holds pickled") as error:
        tl.model_cards.load_model(card_path, device="cpu")
    assert "weights_only" not in str(error.value) and "\n" not in str(error.value)
    done = subprocess.run([sys.executable, "-m", "tl_helpers.serve.predict", str(card_path), *image_files, "--out",
                           str(tmp_path / "p.csv"), "--quiet"], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "weights_only" not in done.stderr
    assert done.stderr.strip().startswith("error: refused to load") and len(done.stderr.strip().splitlines()) == 1
    assert not ran.exists()  # the payload never ran
