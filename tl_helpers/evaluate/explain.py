"""Where a classifier looks: Grad-CAM heat maps, and how much of the heat falls in a region.

`grad_cam(model, images)` gives one heat map per image, in [0, 1], at the input's size:

- PyTorch models: the maintained `grad-cam` package (`pytorch_grad_cam.GradCAM`), on the
  last module that outputs a feature map larger than 1x1 (or the `layer` given), scoring
  the class logit;
- Keras models: the same computation written here with `keras.ops`: the feature map A of
  the last layer with a spatial output (or `layer`), the gradient of the class score
  with respect to A, channel weights = the gradient's spatial mean, heat = ReLU(sum of
  weighted channels), scaled to [0, 1] by its own minimum and maximum (as pytorch_grad_cam
  does) and resized to the input. The score is the class logit when the model ends in
  logits, and log P(class) when it ends in softmax or sigmoid (for two classes the same
  map as the logit difference, after scaling). Keras 3 has no backend-neutral gradient,
  so only that one step is written per backend behind `_keras_gradient`: a
  `tf.GradientTape` on TensorFlow, `torch.autograd.grad` on torch (JAX is not supported).

`heat_share_inside(heatmap, mask)` is the share of the heat inside a region (chapter 5:
the centre 32x32 that defines a PCam label, `centre_mask`; chapter 4: the true tumour
mask). A map that ignores the region would put about the region's area share there.
`tl.plotting.plot_heatmap_overlay` draws the maps over the images.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from ..data.images import resize_image


# --- regions and the share of heat inside them ------------------------------------------------

def box_mask(shape: tuple[int, int], top: int, left: int, height: int, width: int) -> np.ndarray:
    """A boolean HxW mask that is True inside the box (top, left, height, width).

    Used by chapters 4 and 5 (regions for tl.explain.heat_share_inside).
    """
    mask = np.zeros(tuple(shape[:2]), bool)
    mask[max(0, top):top + height, max(0, left):left + width] = True
    return mask


def centre_mask(shape: tuple[int, int], size: int) -> np.ndarray:
    """The central size x size box of an HxW image as a boolean mask (PCam: 32 of 96).

    The odd pixel of an odd border goes bottom / right, as tl.torch_training.center_crop.
    Used by chapter 5.
    """
    height, width = shape[:2]
    if not 0 < size <= min(height, width):
        raise ValueError(f"a centre of {size} pixels does not fit {height}x{width}")
    return box_mask((height, width), int(round((height - size) / 2.0)), int(round((width - size) / 2.0)), size, size)


def heat_share_inside(heatmap, mask) -> float | np.ndarray:
    """Share of the heat inside `mask`: sum(heat * mask) / sum(heat), per map.

    heatmap: HxW, or NxHxW for N maps (then `mask` is NxHxW, or one HxW for all). Masks may
    be boolean, 0/1 or 0/255; a map of another size is resized to the mask's first. A map
    without heat gives NaN. Compare with the region's area share (`mask.mean()`): heat
    spread evenly would put exactly that much inside. Used by chapters 1, 2 and 5.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    single = heat.ndim == 2
    heat = heat[None] if single else heat
    region = np.asarray(mask)
    region = (region > (127 if region.max(initial=0) > 1 else 0)) if region.dtype != bool else region
    region = np.broadcast_to(region, (len(heat),) + region.shape[-2:]) if region.ndim == 2 else region
    if len(region) != len(heat):
        raise ValueError(f"{len(heat)} heat maps but {len(region)} masks")
    if heat.shape[1:] != region.shape[1:]:
        heat = np.stack([resize_image(h.astype(np.float32), region.shape[1:]) for h in heat]).astype(np.float64)
    heat = np.clip(heat, 0, None)
    total = heat.sum(axis=(1, 2))
    inside = (heat * region).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
    return float(share[0]) if single else share


# --- Grad-CAM -------------------------------------------------------------------------------

def _maps_with_heat(share) -> tuple[np.ndarray, np.ndarray]:
    """`heat_share_inside`'s shares as float64 and which of them come from a map with any heat
    (NaN: a map without heat, left out of every summary). Used by heat_share_summary,
    describe_heat_share and heat_share_table."""
    share = np.asarray(share, dtype=np.float64)
    return share, ~np.isnan(share)


def _area_shares(regions) -> np.ndarray:
    """Each region's share of its image (N x H x W masks): what heat spread evenly would put inside."""
    return (np.asarray(regions) > 0).mean(axis=(1, 2))


def heat_share_summary(heatmaps, masks) -> tuple[float | None, str]:
    """Where Grad-CAM looked, against the true masks: the median share and one line saying so.

    `heat_share_inside` per map; maps without heat are left out of the median (None when
    every map is empty). The line also gives the masks' median area (the share heat spread
    evenly would reach), how many maps put more than half their heat inside, and how many put
    more inside than the mask's area. Used by chapter 4.
    """
    share, has_heat = _maps_with_heat(heat_share_inside(heatmaps, masks))
    area = _area_shares(masks)
    if not has_heat.any():
        return None, f"none of the {len(share)} Grad-CAM maps has any heat"
    median = float(np.median(share[has_heat]))
    above = int((share[has_heat] > area[has_heat]).sum())
    return median, (f"median share of the Grad-CAM heat inside the true mask {median:.2f} "
                    f"(over {has_heat.sum()} of {len(share)} slices whose map has heat), "
                    f"where the mask covers a median {np.median(area):.3f} of the slice; more "
                    f"than half the heat inside on {int((share > 0.5).sum())} slices; more "
                    f"heat inside than its area would give on {above}")


def _scale_and_resize(cams: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """ReLU'd maps to [0, 1] by their own min and max, then to `size` (as pytorch_grad_cam)."""
    out = []
    for cam in cams:
        cam = cam - cam.min()
        cam = cam / (1e-7 + cam.max())
        out.append(resize_image(cam.astype(np.float32), size))
    return np.stack(out).astype(np.float32)


def keras_to_numpy(tensor) -> np.ndarray:
    """`keras.ops.convert_to_numpy`, without the DeprecationWarning TensorFlow's tensors raise under NumPy 2.

    Used by tl.explain and tl.model_cards (exported Keras models).
    """
    import warnings

    import keras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # EagerTensor.__array__ takes no `copy`
        return np.asarray(keras.ops.convert_to_numpy(tensor))


def keras_output_kind(model) -> str:
    """'probabilities' when the output comes from a softmax or sigmoid, else 'logits'.

    Looks at the last layer with an activation, passing over the weightless layers that only
    move or resize values (a U-Net's final bilinear upsampling of its sigmoid mask, say):
    their output stays a probability. Used by tl.explain and tl.model_cards (exported Keras models).
    """
    layer = model
    while hasattr(layer, "layers") and layer.layers:
        layers = [item for item in layer.layers if not _passes_values_on(item)] or layer.layers
        layer = layers[-1]
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    return "probabilities" if activation in ("softmax", "sigmoid") else "logits"


def _passes_values_on(layer) -> bool:
    """A weightless layer that resizes, reshapes or crops: probabilities in, probabilities out."""
    return type(layer).__name__ in ("UpSampling2D", "Resizing", "Reshape", "Flatten", "Cropping2D", "Permute")


def _class_targets(class_index, count: int, scores: np.ndarray) -> np.ndarray:
    if class_index is None:
        return scores.argmax(axis=1) if scores.shape[1] > 1 else (scores[:, 0] > 0).astype(int)
    if np.isscalar(class_index):
        return np.full(count, int(class_index))
    targets = np.asarray(class_index, dtype=int)
    if len(targets) != count:
        raise ValueError(f"{len(targets)} class indices for {count} images")
    return targets


def _torch_feature_layer(model, batch):
    """The last module (by when it finishes) whose output is a feature map larger than 1x1."""
    import torch

    finished = []
    hooks = [module.register_forward_hook(
        lambda module, args, output: finished.append(module)
        if isinstance(output, torch.Tensor) and output.ndim == 4 and min(output.shape[-2:]) > 1 else None)
        for module in model.modules() if module is not model]
    try:
        with torch.no_grad():
            model(batch[:1])
    finally:
        for hook in hooks:
            hook.remove()
    if not finished:
        raise ValueError("the model has no module with a spatial feature map; Grad-CAM needs one")
    return finished[-1]


def _grad_cam_torch(model, batch, class_index, layer) -> np.ndarray:
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    batch = torch.as_tensor(np.asarray(batch, dtype=np.float32)) if not isinstance(batch, torch.Tensor) else batch
    device = next(model.parameters()).device
    batch = batch.to(device)
    was_training = model.training
    model.eval()
    if layer is None:
        layer = _torch_feature_layer(model, batch)
    elif isinstance(layer, str):
        layer = model.get_submodule(layer)
    try:
        with torch.no_grad():
            logits = model(batch).float().cpu().numpy()
        targets = _class_targets(class_index, len(batch), logits)
        # an input that requires grad: gradients reach the feature map even when the body is frozen
        with GradCAM(model=model, target_layers=[layer]) as cam:
            maps = cam(input_tensor=batch.detach().clone().requires_grad_(True),
                       targets=[ClassifierOutputTarget(int(c)) for c in targets])
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return np.asarray(maps, dtype=np.float32)


def _keras_feature_layer(model, name: str | None):
    if name is not None:
        return model.get_layer(name)
    for layer in reversed(model.layers):
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4 and shape[1] and shape[2] and min(shape[1], shape[2]) > 1:
            return layer
    raise ValueError("the model has no layer with a spatial feature map (N, h, w, C); Grad-CAM needs one")


def _keras_gradient(score_and_features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run `score_and_features(watch)` and differentiate its score by its feature map, per backend.

    `score_and_features(watch)` returns (score, features, outputs), calling `watch(tensor)`
    on the tensor the gradient must flow from (and using what it returns in its place).
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            def watch(tensor):
                tape.watch(tensor)
                return tensor

            score, features, outputs = score_and_features(watch)
        grads = tape.gradient(score, features)
    elif backend == "torch":
        import torch

        with torch.enable_grad():
            score, features, outputs = score_and_features(lambda tensor: tensor.detach().requires_grad_(True))
            grads = torch.autograd.grad(score, features)[0]
    else:
        raise NotImplementedError(f"Grad-CAM for Keras runs on the tensorflow and torch backends, not {backend!r}")
    return (keras_to_numpy(features).astype(np.float64), keras_to_numpy(grads).astype(np.float64),
            keras_to_numpy(outputs))


def _grad_cam_keras(model, batch, class_index, layer_name) -> np.ndarray:
    import keras
    from keras import ops

    batch = np.asarray(batch, dtype=np.float32)
    layer = _keras_feature_layer(model, layer_name)
    probabilities = keras_output_kind(model) == "probabilities"
    try:  # the layer's output is a tensor of the model's own graph: one model gives both, input watched
        both = keras.Model(model.inputs, [layer.output, model.outputs[0]])

        def forward(watch):
            features, outputs = both(watch(ops.convert_to_tensor(batch)), training=False)
            return features, outputs
    except (ValueError, AttributeError):  # a backbone nested inside: top-level layers in turn, map watched
        layers = [item for item in model.layers if not isinstance(item, keras.layers.InputLayer)]

        def forward(watch):
            x, features = ops.convert_to_tensor(batch), None
            for item in layers:
                x = item(x, training=False)
                if item is layer:
                    x = features = watch(x)
            return features, x

        reached = keras_to_numpy(forward(lambda tensor: tensor)[1])
        if not np.allclose(reached, keras_to_numpy(model(batch, training=False)), atol=1e-4):
            raise ValueError(f"cannot reach layer {layer.name!r}: the model's top-level layers are not a chain. "
                             "Name a layer of the outer model (`layer=`), or build the model flat "
                             "(tl.features.stack_head does)")
    targets = {}

    def score_and_features(watch):
        features, outputs = forward(watch)
        if "chosen" not in targets:
            targets["chosen"] = _class_targets(class_index, len(batch), keras_to_numpy(outputs))
        chosen = targets["chosen"]
        if outputs.shape[-1] == 1:  # one unit: class 1 is its value, class 0 the complement
            unit = outputs[:, 0]
            positive = ops.convert_to_tensor(chosen == 1)
            score = (ops.where(positive, ops.log(unit + 1e-7), ops.log(1.0 - unit + 1e-7)) if probabilities
                     else ops.where(positive, unit, -unit))
        else:
            onehot = ops.convert_to_tensor(np.eye(outputs.shape[-1], dtype=np.float32)[chosen])
            picked = ops.sum(outputs * onehot, axis=-1)
            score = ops.log(picked + 1e-7) if probabilities else picked
        return ops.sum(score), features, outputs

    features, grads, _ = _keras_gradient(score_and_features)
    weights = grads.mean(axis=(1, 2))  # (N, C): the gradient's spatial mean
    cams = np.maximum((features * weights[:, None, None, :]).sum(axis=-1), 0.0)
    return _scale_and_resize(cams, batch.shape[1:3])


def grad_cam(model, images, class_index: int | Sequence[int] | None = None, layer=None,
             batch_size: int = 16) -> np.ndarray:
    """Grad-CAM heat maps, (N, H, W) float32 in [0, 1] at the input's height and width.

    model: a `Predictor` from tl.model_cards.load_model (then `images` are files or arrays,
        prepared by the predictor), a torch.nn.Module or a keras.Model (then `images` is the
        model-ready batch: NCHW for PyTorch, NHWC for Keras, preprocessed).
    class_index: the class whose evidence is mapped: None for each image's predicted class,
        one index for all, or one per image.
    layer: the feature map to use: a module or its dotted name (PyTorch), a layer name
        (Keras); default the last one with a spatial output larger than 1x1.
    batch_size: images per forward and backward pass.
    Used by chapters 1, 2, 4 and 5.
    """
    if hasattr(model, "prepare") and hasattr(model, "framework"):  # a Predictor from tl.model_cards.load_model
        network, framework, prepare = model.model, model.framework, model.prepare
    else:
        network, prepare = model, (lambda batch: batch)
        keras = sys.modules.get("keras")  # a Keras model is also a torch Module on the torch backend
        framework = "keras" if keras is not None and isinstance(model, keras.Model) else "torch"
    run = _grad_cam_torch if framework == "torch" else _grad_cam_keras
    items = images if not isinstance(images, (list, tuple)) else list(images)
    count = len(items)
    targets = None if class_index is None or np.isscalar(class_index) else np.asarray(class_index, dtype=int)
    if targets is not None and len(targets) != count:
        raise ValueError(f"{len(targets)} class indices for {count} images")
    maps = [run(network, prepare(items[start:start + batch_size]),
                class_index if targets is None else targets[start:start + batch_size], layer)
            for start in range(0, count, batch_size)]
    return np.concatenate(maps)


# --- chapter 2: the heat inside a region, in words ---------------------------------------

def describe_heat_share(share, regions, region: str = "the region", unit: str = "images") -> str:
    """One line on where the Grad-CAM heat falls: the median share inside `region` and its
    quartiles over the maps with any heat, beside the median share of the image the region
    covers (what heat spread evenly would give), and on how many maps less than half is inside.

    share: tl.explain.heat_share_inside's output, one per map (NaN: a map without heat, left
    out); regions: the masks it was measured with (N x H x W). Taught in chapter 2; used by chapter 1.
    """
    share, has_heat = _maps_with_heat(share)
    regions = np.asarray(regions)
    if regions.ndim != 3 or len(regions) != len(share):
        raise ValueError(f"{len(share)} shares but regions of shape {regions.shape}: expected one "
                         "H x W mask per share")
    area = np.median(_area_shares(regions))
    heated = share[has_heat]
    if not len(heated):
        return (f"no Grad-CAM map of the {len(share)} {unit} has any heat (no positive evidence "
                f"for the called class anywhere); {region} covers a median {area:.2f} of the image")
    low, median, high = np.quantile(heated, [0.25, 0.5, 0.75])
    return (f"share of the Grad-CAM heat inside {region}: median {median:.2f} (quartiles {low:.2f} "
            f"to {high:.2f}) over {len(heated)} {unit}, where {region} covers a median {area:.2f} of "
            f"the image; below half on {int((heated < 0.5).sum())} {unit}")


# --- chapter 5 (issue 23): the share of heat inside a region, per group of maps ------------------

def heat_share_table(share, area_share: float, groups: dict):
    """Per group of maps (a boolean mask over `share`, from `heat_share_inside`): how many maps
    have heat, the median share of heat inside the region with its quartiles, and on what
    fraction of them the share exceeds `area_share` (what heat spread evenly would put
    there). Maps without heat (NaN) and empty groups are left out. Used by chapter 5.
    """
    import pandas as pd

    share, has_heat = _maps_with_heat(share)
    rows = {}
    for name, members in groups.items():
        values = share[np.asarray(members, dtype=bool) & has_heat]
        if len(values):
            low, median, high = np.percentile(values, [25, 50, 75])
            rows[name] = {"maps with heat": len(values), "median share inside": median,
                          "quartile 1": low, "quartile 3": high,
                          "share above the area's": float((values > area_share).mean())}
    return pd.DataFrame.from_dict(rows, orient="index")


def case_titles(shown, y_true, called, class_names: Sequence[str], p=None, more=None) -> list[str]:
    """A title per shown case (indices from tl.protocol.gradcam_cases): "right: <true class>"
    or "WRONG: <true class>", with more than two classes what it was called ("as <class>"),
    and with `p` (one probability per case) the model's probability, e.g. "WRONG: tumour, p 0.31";
    `more`: a few words per case (indexed as `y_true`) put last, e.g. "in 40%".
    Used by chapters 1, 2, 4 and 5.
    """
    as_called = len(class_names) > 2  # two classes: WRONG already says what it was called
    titles = []
    for i in shown:
        truth, call = int(y_true[i]), int(called[i])
        title = f"{'right' if call == truth else 'WRONG'}: {class_names[truth]}"
        title += f" as {class_names[call]}" if as_called and call != truth else ""
        title += f", p {float(p[i]):.2f}" if p is not None else ""
        titles.append(title + (f", {more[i]}" if more is not None else ""))
    return titles
