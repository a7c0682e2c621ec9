"""backbones, lite0, weights: the Lite0 Keras port against PyTorch, preprocessing, missing-weight errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Imported before keras on purpose: tl_helpers loads triton first (see _import_triton_before_tensorflow).
from tl_helpers.data.images import is_image_file, read_image
from tl_helpers.train import backbones as bb
from tl_helpers.train import lite0, weights

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TL_SHARED_DATA", REPO.parent / "shared" / "data"))
CAT_CLASSES = {281, 282, 285}      # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {967, 968}        # espresso, cup
MAX_LOGIT_DIFF = 1e-3


def _resize(image: np.ndarray, size: int = 224) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _run_keras(model, batch) -> np.ndarray:
    """Inference by a direct call: model.predict would first compile a graph (seconds)."""
    import keras

    return keras.ops.convert_to_numpy(model(batch, training=False))


def _keras_logits(model, images_uint8):
    return _run_keras(model, bb.preprocess_lite0(images_uint8))


def _torch_logits(model, images_uint8):
    import torch

    batch = torch.from_numpy(np.array(images_uint8)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        return model(bb.torch_normalize_lite0()(batch / 255.0)).numpy()


@pytest.fixture(scope="module")
def lite0_models():
    """The two Lite0 classifiers (1000 logits), built once for the module."""
    return lite0.build_lite0_keras(weights="imagenet"), lite0.build_lite0_torch(weights="imagenet")


@pytest.fixture(scope="module")
def photographs():
    import skimage.data

    return {"cat": _resize(skimage.data.chelsea()), "coffee": _resize(skimage.data.coffee())}


# ---------------------------------------------------------------- Lite0 port equivalence

def test_lite0_keras_matches_torch_on_random_inputs(lite0_models):
    keras_model, torch_model = lite0_models
    pixels = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    keras_logits = _keras_logits(keras_model, pixels)
    torch_logits = _torch_logits(torch_model, pixels)
    assert keras_logits.shape == torch_logits.shape == (3, 1000)
    assert np.abs(keras_logits - torch_logits).max() < MAX_LOGIT_DIFF
    assert torch_logits.std() > 0.1  # real, varied logits, not a degenerate all-equal output


@pytest.mark.parametrize("photo, expected", [("cat", CAT_CLASSES), ("coffee", COFFEE_CLASSES)])
def test_lite0_both_frameworks_agree_and_recognise_photograph(lite0_models, photographs,
                                                              photo, expected):
    keras_model, torch_model = lite0_models
    image = photographs[photo][None]
    keras_logits, torch_logits = _keras_logits(keras_model, image), _torch_logits(torch_model, image)
    assert np.abs(keras_logits - torch_logits).max() < MAX_LOGIT_DIFF
    for logits in (keras_logits, torch_logits):
        top5 = [index for index, _, _ in weights.top_k_classes(logits[0], k=5)]
        assert expected & set(top5), f"{photo}: top 5 {top5} has none of {expected}"
        assert top5[0] in expected


def test_lite0_uses_the_network_the_weights_were_trained_in(lite0_models, photographs):
    """TF "SAME" padding and BN epsilon 1e-3 (tf_efficientnet_lite0) give the cat 0.79;
    timm's symmetric-padding efficientnet_lite0 (epsilon 1e-5) runs too but gives 0.62."""
    keras_model, torch_model = lite0_models
    for logits in (_keras_logits(keras_model, photographs["cat"][None]),
                   _torch_logits(torch_model, photographs["cat"][None])):
        index, _, probability = weights.top_k_classes(logits[0], k=1)[0]
        assert index == 285 and probability > 0.75


@pytest.mark.shared_data
def test_lite0_keras_matches_torch_on_dataset_images(lite0_models):
    folders = [SHARED_DATA / "brain_tumor_mri_4class" / "Training" / "glioma",
               SHARED_DATA / "chest_xray" / "train" / "PNEUMONIA"]
    if not all(folder.is_dir() for folder in folders):
        pytest.skip(f"real data not found under {SHARED_DATA}")
    files = [sorted(p for p in folder.iterdir() if is_image_file(p))[0] for folder in folders]
    images = np.stack([_resize(read_image(path, channels=3)) for path in files])
    keras_model, torch_model = lite0_models
    difference = np.abs(_keras_logits(keras_model, images) - _torch_logits(torch_model, images))
    assert difference.max() < MAX_LOGIT_DIFF


def test_headless_lite0_gives_same_features_in_both_frameworks():
    import torch

    keras_backbone = bb.get_backbone("efficientnet_lite0", "keras", input_shape=(96, 96, 3))
    torch_backbone = bb.get_backbone("efficientnet_lite0", "torch")
    images = np.random.default_rng(1).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    keras_features = _run_keras(keras_backbone.model, keras_backbone.prepare_batch(images))
    with torch.no_grad():
        torch_features = torch_backbone.model(torch_backbone.prepare_batch(images)).numpy()
    assert keras_features.shape == torch_features.shape == (2, 1280)
    assert np.abs(keras_features - torch_features).max() < MAX_LOGIT_DIFF
    for backbone in (keras_backbone, torch_backbone):
        assert backbone.feature_dim == 1280 and backbone.default_size == 224
        assert lite0.LITE0_PACKAGE in backbone.weights_source
        assert lite0.lite0_weights_file().name in backbone.weights_source  # the file, not this machine's path
        assert str(lite0.lite0_weights_file().parent) not in backbone.weights_source


def test_lite0_feature_map_without_pooling():
    backbone = bb.get_backbone("efficientnet_lite0", "keras", weights=None, pooling=None,
                               input_shape=(64, 64, 3))
    assert backbone.model.output_shape == (None, 2, 2, 1280)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet50"])
def test_torch_stage_outputs_one_cell_per_stride_pixels(name):
    import torch

    body = bb.get_backbone(name, "torch", weights=None, pooling=None).model
    sides = {}
    hooks = [bb.torch_stage(body, name, stride).register_forward_hook(
        lambda module, args, output, stride=stride: sides.__setitem__(stride, tuple(output.shape[-2:])))
        for stride in (8, 16, 32)]
    with torch.no_grad():
        last = body(torch.zeros(1, 3, 96, 96))
    for hook in hooks:
        hook.remove()
    assert sides == {8: (12, 12), 16: (6, 6), 32: (3, 3)}
    assert tuple(last.shape[-2:]) == (3, 3)  # stride 32 is the last map
    with pytest.raises(ValueError, match="no stage of stride 4"):
        bb.torch_stage(body, name, 4)


def test_lite0_port_stops_on_a_shape_mismatch():
    model = lite0.build_lite0_keras(weights=None, include_top=False, input_shape=(32, 32, 3))
    tensors = lite0.lite0_file_tensors()
    key, array = tensors[1]  # the stem's BatchNorm weight, 32 values
    tensors[1] = (key, array[:16])
    with pytest.raises(ValueError, match=r"_bn0\.weight"):
        lite0._port_lite0_weights(model, tensors)


# Keras fixes its backend and its home folder (KERAS_HOME) when imported, so one
# subprocess with KERAS_BACKEND=torch and an empty KERAS_HOME checks both the Lite0 port
# under the torch backend and the missing-weights messages of keras.applications.
KERAS_SUBPROCESS = """
import json, sys
import numpy as np
import tl_helpers as tl
import keras
image = np.load(sys.argv[1])
logits = keras.ops.convert_to_numpy(tl.lite0.build_lite0_keras()(tl.backbones.preprocess_lite0(image)))
messages = {}
for name in ("xception", "efficientnetb3", "resnet50"):
    try:
        tl.backbones.get_backbone(name, "keras", weights="imagenet", timeout=5)
        messages[name] = None
    except tl.weights.WeightsUnavailableError as error:
        messages[name] = str(error)
print(json.dumps({"backend": keras.backend.backend(), "logits": logits.tolist(),
                  "messages": messages}))
"""
DAMAGED_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


@pytest.fixture(scope="module")
def keras_torch_backend_run(tmp_path_factory, photographs):
    """Run KERAS_SUBPROCESS once: KERAS_BACKEND=torch, KERAS_HOME empty but for a damaged file."""
    keras_home = tmp_path_factory.mktemp("keras_home")
    (keras_home / "models").mkdir()
    (keras_home / "models" / DAMAGED_FILE).write_bytes(b"not an h5 file")
    image_file = keras_home / "cat.npy"
    np.save(image_file, photographs["cat"][None])
    environment = dict(os.environ, KERAS_BACKEND="torch", KERAS_HOME=str(keras_home))
    result = subprocess.run([sys.executable, "-c", KERAS_SUBPROCESS, str(image_file)],
                            env=environment, cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return keras_home, json.loads(result.stdout.strip().splitlines()[-1])


def test_lite0_keras_port_runs_under_the_torch_backend(keras_torch_backend_run, lite0_models,
                                                       photographs):
    _, report = keras_torch_backend_run
    assert report["backend"] == "torch"
    keras_logits = np.asarray(report["logits"])
    torch_logits = _torch_logits(lite0_models[1], photographs["cat"][None])
    assert np.abs(keras_logits - torch_logits).max() < MAX_LOGIT_DIFF
    assert int(keras_logits[0].argmax()) in CAT_CLASSES


def test_missing_keras_weights_stop_with_instructions(keras_torch_backend_run):
    keras_home, report = keras_torch_backend_run
    messages, folder = report["messages"], str(keras_home / "models")
    for name, file_name in (("xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                            ("efficientnetb3", "efficientnetb3_notop.h5")):
        assert messages[name] is not None, f"{name} built without its weights"
        assert file_name in messages[name] and folder in messages[name]
        assert "https://storage.googleapis.com/" in messages[name]
        assert "copy it to" in messages[name]
    assert "damaged" in messages["resnet50"]
    assert str(keras_home / "models" / DAMAGED_FILE) in messages["resnet50"]


# ---------------------------------------------------------------- preprocessing

def test_each_keras_backbone_has_its_own_preprocessing():
    red = np.array([[[[255, 0, 0], [0, 0, 0]]]], dtype=np.uint8)  # one red, one black pixel
    np.testing.assert_allclose(bb.preprocess_xception(red)[0, 0], [[1, -1, -1], [-1, -1, -1]])
    np.testing.assert_allclose(bb.preprocess_lite0(red)[0, 0], [[1, -1, -1], [-1, -1, -1]])
    np.testing.assert_allclose(bb.preprocess_efficientnet(red)[0, 0], [[255, 0, 0], [0, 0, 0]])
    caffe = bb.preprocess_resnet50_caffe(red)[0, 0]
    np.testing.assert_allclose(caffe[0], [-103.939, -116.779, 255 - 123.68], rtol=1e-6)
    np.testing.assert_allclose(caffe[1], [-103.939, -116.779, -123.68], rtol=1e-6)
    for function in (bb.preprocess_xception, bb.preprocess_efficientnet,
                     bb.preprocess_resnet50_caffe, bb.preprocess_lite0):
        assert function(red).dtype == np.float32


def test_keras_preprocessing_accepts_backend_tensors():
    import keras

    pixels = np.random.default_rng(2).integers(0, 256, (2, 4, 4, 3)).astype(np.uint8)
    from_tensor = keras.ops.convert_to_numpy(
        bb.preprocess_resnet50_caffe(keras.ops.convert_to_tensor(pixels)))
    np.testing.assert_allclose(from_tensor, bb.preprocess_resnet50_caffe(pixels), rtol=1e-6)


def test_torch_preprocessing_normalises_zero_to_one_tensors():
    import torch

    batch = torch.ones(1, 3, 2, 2)  # white, after ToTensor
    resnet = bb.torch_normalize_imagenet()(batch)[0, :, 0, 0].numpy()
    expected = (1 - np.array(bb.IMAGENET_MEAN_RGB)) / np.array(bb.IMAGENET_STD_RGB)
    np.testing.assert_allclose(resnet, expected, rtol=1e-6)
    np.testing.assert_allclose(bb.torch_normalize_lite0()(batch).numpy(), 1.0)


# ---------------------------------------------------------------- ImageNet names

def test_imagenet_class_names_are_stored_offline():
    names = weights.imagenet_class_names()
    assert len(names) == 1000
    assert weights.imagenet_class_name(285) == "Egyptian cat"
    assert weights.imagenet_class_name(967) == "espresso"
    logits = np.zeros(1000)
    logits[[968, 281]] = [5.0, 3.0]
    top = weights.top_k_classes(logits, k=2)
    assert [index for index, _, _ in top] == [968, 281]
    assert top[0][1] == "cup" and top[0][2] > top[1][2]


# ---------------------------------------------------------------- random weights and errors

@pytest.mark.parametrize("name, framework, size", [
    ("xception", "keras", 71), ("efficientnetb3", "keras", 32), ("resnet50", "keras", 32),
    ("resnet50", "torch", 32)])
def test_random_weights_build_every_article_backbone(name, framework, size):
    backbone = bb.get_backbone(name, framework, weights=None, input_shape=(size, size, 3))
    images = np.random.default_rng(3).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    if framework == "keras":
        features = _run_keras(backbone.model, backbone.prepare_batch(images))
    else:
        import torch

        with torch.no_grad():
            features = backbone.model(backbone.prepare_batch(images)).numpy()
    assert features.shape == (1, backbone.feature_dim)
    assert backbone.weights_source == "random (weights=None)"
    assert backbone.preprocess is not None and backbone.framework == framework


def test_unknown_backbone_or_framework_is_refused():
    with pytest.raises(ValueError, match="xception"):
        bb.get_backbone("xception", "torch")
    with pytest.raises(ValueError, match="framework"):
        bb.get_backbone("resnet50", "jax")


def test_missing_torch_weights_stop_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert bb.WeightsUnavailableError is weights.WeightsUnavailableError  # re-exported, one class
    with pytest.raises(bb.WeightsUnavailableError) as caught:
        bb.get_backbone("resnet50", "torch", weights="imagenet", timeout=5)
    message = str(caught.value)
    folder = tmp_path / "hub" / "checkpoints"
    assert "resnet50-0676ba61.pth" in message
    assert str(folder) in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert "copy it to" in message
    assert not any(folder.glob("*.part"))  # no half-written file left behind


def test_a_placed_torch_weight_file_is_used_offline(tmp_path, monkeypatch):
    import torch
    from torchvision.models import resnet50

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = resnet50(weights=None).state_dict()
    state["conv1.weight"] = torch.full_like(state["conv1.weight"], 0.25)  # recognisable
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / "resnet50-0676ba61.pth")
    backbone = bb.get_backbone("resnet50", "torch", weights="imagenet", timeout=5)
    assert torch.all(backbone.model.conv1.weight == 0.25)
    assert "resnet50-0676ba61.pth" in backbone.weights_source and str(folder) not in backbone.weights_source
    assert "IMAGENET1K_V1" in backbone.weights_source




def test_import_order_guard_tells_a_blocked_tensorflow_from_a_loaded_one(monkeypatch):
    import importlib.util
    import types

    if importlib.util.find_spec("triton") is None:
        pytest.skip("no triton here: the guard has nothing to guard")
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # blocked: `import tensorflow` fails
    weights.check_import_order()
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))  # loaded before triton
    with pytest.raises(RuntimeError, match="before triton"):
        weights.check_import_order()
