"""The model card's schema: one set of key names and rules, checked on export and on load.

A card is JSON (`<name>.card.json`). `check_card(card, where)` returns it completed and
normalised, or stops with `ModelCardError` naming the field, the value found and the value
expected; `check_model_shapes` compares the loaded network with the card (task, number of
classes, input size, channels). The keys:

| key | rule |
|---|---|
| task | binary, multiclass, segmentation or two_stage |
| classes | a list of at least two distinct names, in the model's output order (binary: negative, positive) |
| class_index | {class: output column}, written at export; must agree with `classes` |
| input_size | [height, width], positive integers (one integer: a square) |
| channels | 1 or 3 |
| preprocessing | a backbone's name (`tl.backbones.get_preprocess`), "standardize" or "raw_pixels" |
| input | the preprocessing as numbers (see tl_helpers/serve/onnx_predict.py): resize, crop, channel order, scale, mean, std, layout |
| crop | centre crop after resizing (pixels) or null |
| head_crop | {"size": pixels, ...} (chapter 2: tl.cropping.crop_to_brain before resizing) or null |
| threshold | binary: P(positive) at which the call is positive, in [0, 1] |
| temperature | positive number fitted on validation, or null (old cards: `temperature_fitted_on_validation`) |
| framework | keras or torch |
| model_file, onnx_file | plain file names in the card's folder |
| sha256 | {file name: sha256} of every model file |

What no check can catch: two class names swapped together with their `class_index` (the
model's outputs carry no names). Used by tl.model_cards (export_model and load_model).
"""
from __future__ import annotations

import math
from pathlib import PurePosixPath, PureWindowsPath

TASKS = ("binary", "multiclass", "segmentation", "two_stage")
MASK_TASKS = ("segmentation", "two_stage")  # their models write mask files
FRAMEWORKS = ("keras", "torch")
CARD_SUFFIX = ".card.json"

# the preprocessing names (tl.backbones.get_preprocess) as numbers: x[channel_order] * scale, then (x - mean) / std
_LITE0 = {"channel_order": "RGB", "scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
_IMAGENET = {"channel_order": "RGB", "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
NORMALIZATION = {
    "keras": {"efficientnet_lite0": _LITE0,
              "xception": {"channel_order": "RGB", "scale": 1 / 127.5, "mean": [1.0, 1.0, 1.0], "std": [1.0, 1.0, 1.0]},
              "efficientnetb3": {"channel_order": "RGB", "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
              "resnet50": {"channel_order": "BGR", "scale": 1.0, "mean": [103.939, 116.779, 123.68],
                           "std": [1.0, 1.0, 1.0]},
              "raw_pixels": {"channel_order": "RGB", "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
              "standardize": {"normalize": "per_image"}},
    "torch": {"efficientnet_lite0": _LITE0, "resnet50": _IMAGENET},
}
NUMBER_TOLERANCE = 1e-6  # card numbers are JSON decimals


class ModelCardError(ValueError):
    """A model card that cannot be used: missing, unreadable, inconsistent; the message names the file and field.

    Used by chapters 1 to 5 (raised by tl.model_cards.export_model and load_model).
    """


def _fail(where, field: str, found, expected: str):
    raise ModelCardError(f"{where}: `{field}` is {found!r}; expected {expected}")


def _positive_int(value, where, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        _fail(where, field, value, "a positive whole number")
    return int(value)


def size_pair(value, where, field: str) -> list[int]:
    """[height, width] from one positive integer or a pair; ModelCardError naming `field` otherwise.

    Used by tl.model_cards (card input sizes).
    """
    if value is None:
        _fail(where, field, value, "pixels: one number, or [height, width]")
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            _fail(where, field, value, "one number, or [height, width]")
        return [_positive_int(v, where, field) for v in value]
    return [_positive_int(value, where, field)] * 2


def plain_file_name(value, where, field: str) -> str:
    """`value` if it is a file name in the card's own folder (no folder part, no `..`, not absolute).

    Used by tl.model_cards (model_file, onnx_file, the segmenter's model_file).
    """
    if not isinstance(value, str) or not value or value in (".", "..") or value.startswith(".") or \
            len(PurePosixPath(value).parts) != 1 or len(PureWindowsPath(value).parts) != 1:
        _fail(where, field, value, "a plain file name in the card's folder (no '/', no '..', not absolute)")
    return value


def check_classes(value, task: str, where) -> list[str]:
    """The class names: a list of at least two distinct strings (binary and two_stage: exactly two).

    Used by tl.model_cards (export and load).
    """
    if not isinstance(value, list) or not all(isinstance(c, str) and c for c in value):
        _fail(where, "classes", value, 'a list of class names, e.g. ["no", "yes"]')
    if len(value) < 2 or len(set(value)) != len(value):
        _fail(where, "classes", value, "at least two distinct class names, in the model's output order")
    if task in ("binary", "two_stage") and len(value) != 2:
        _fail(where, "classes", value, f"two classes for a {task} card (negative first, positive second)")
    return list(value)


def preprocessing_numbers(name: str, framework: str, where="card") -> dict:
    """The normalisation a preprocessing name stands for, as numbers (see NORMALIZATION).

    Used by tl.model_cards (written into the card at export; checked against the name on load).
    """
    table = NORMALIZATION.get(framework, {})
    if name not in table:
        _fail(where, "preprocessing", name, f"one of {sorted(table)} for a {framework} model")
    return dict(table[name])


def input_steps(card: dict, framework: str, where="card") -> dict:
    """The card's `input` block: every preprocessing step with its numbers, derived from the card's fields.

    Used by tl.model_cards (export, and load of old cards that carry only a name).
    """
    steps = {"resize": {"rule": "area when shrinking both sides, else bilinear (OpenCV INTER_AREA / INTER_LINEAR)",
                        "size": list(card["input_size"])},
             "crop": {"rule": "center", "size": card["crop"]} if card.get("crop") else None,
             "head_crop": card.get("head_crop"),
             **preprocessing_numbers(card["preprocessing"], framework, where),
             "layout": "NCHW" if framework == "torch" else "NHWC", "dtype": "float32",
             "pixels": "0..255 before scaling"}
    if card.get("channels", 3) == 1 and "channel_order" in steps:
        steps.update(channel_order="L", mean=steps["mean"][:1], std=steps["std"][:1])
    return steps


def _same_numbers(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_numbers(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_numbers(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=NUMBER_TOLERANCE, abs_tol=NUMBER_TOLERANCE)
    return a == b


def _check_temperature(card: dict, where) -> None:
    old = card.pop("temperature_fitted_on_validation", None)
    value = card.get("temperature", old)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
                              or not math.isfinite(value)):
        _fail(where, "temperature", value, "a positive number (fitted on validation) or null")
    card["temperature"] = None if value is None else float(value)


def check_card(card: dict, where="card", loading: bool = False) -> dict:
    """The card completed and checked: ModelCardError naming the field and both values on any disagreement.

    `loading`: the card comes from a file, so the fields export writes (framework, model_file,
    input numbers, class_index) are checked too. Used by tl.model_cards (export_model, load_model).
    """
    if not isinstance(card, dict):
        raise ModelCardError(f"{where}: a model card is a JSON object, not {type(card).__name__}")
    card = dict(card)
    if card.get("task") not in TASKS:
        _fail(where, "task", card.get("task"), f"one of {TASKS}")
    task = card["task"]
    card["name"] = str(card.get("name") or "model")
    plain_file_name(card["name"], where, "name")
    card["input_size"] = size_pair(card.get("input_size"), where, "input_size")
    channels = card.get("channels", 3)
    if channels not in (1, 3) or isinstance(channels, bool):
        _fail(where, "channels", channels, "1 (gray) or 3 (RGB)")
    card["channels"] = int(channels)
    if not isinstance(card.get("preprocessing"), str) or not card["preprocessing"]:
        _fail(where, "preprocessing", card.get("preprocessing"),
              "the backbone's name (e.g. 'efficientnet_lite0'), or 'standardize' for a segmenter")
    card.setdefault("crop", None)
    if card["crop"] is not None:
        card["crop"] = _positive_int(card["crop"], where, "crop")
        if card["crop"] > min(card["input_size"]):
            _fail(where, "crop", card["crop"], f"at most the input size {card['input_size']}")
    card.setdefault("head_crop", None)
    if card["head_crop"] is not None:
        if not isinstance(card["head_crop"], dict):
            _fail(where, "head_crop", card["head_crop"], '{"size": pixels} or null')
        _positive_int(card["head_crop"].get("size"), where, "head_crop.size")
    if task == "segmentation":
        card.setdefault("classes", ["background", "tumour"])
        card.setdefault("mask_threshold", 0.5)
    card["classes"] = check_classes(card.get("classes"), task, where)
    index = {name: position for position, name in enumerate(card["classes"])}
    if loading and "class_index" in card and card["class_index"] != index:
        _fail(where, "class_index", card["class_index"], f"{index}, the order of `classes` {card['classes']}")
    card["class_index"] = index
    if task in ("binary", "two_stage"):
        threshold = card.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            _fail(where, "threshold", threshold, "a probability between 0 and 1")
        card["threshold"] = float(threshold)
        positive = card.setdefault("positive_class", card["classes"][1])
        if positive != card["classes"][1]:
            _fail(where, "positive_class", positive, f"the second class, {card['classes'][1]!r}")
    else:
        card.setdefault("threshold", None)
    _check_temperature(card, where)
    if task == "two_stage":
        card["stage1_threshold"] = float(card.get("stage1_threshold", card["threshold"]))
        segmenter = dict(card.get("segmenter") or {})
        segmenter["input_size"] = size_pair(segmenter.get("input_size"), where, "segmenter.input_size")
        segmenter.setdefault("channels", 3)
        segmenter.setdefault("preprocessing", "standardize")
        segmenter.setdefault("mask_threshold", 0.5)
        card["segmenter"] = segmenter
    for key in ("metrics", "data_source", "profile"):
        card.setdefault(key, None)
    if loading:
        _check_written_fields(card, where)
    return card


def _check_written_fields(card: dict, where) -> None:
    """The fields export writes: framework, file names, the input numbers against the preprocessing name."""
    if card.get("framework") not in FRAMEWORKS:
        _fail(where, "framework", card.get("framework"), f"one of {FRAMEWORKS}")
    plain_file_name(card.get("model_file"), where, "model_file")
    if card.get("onnx_file") is not None:
        plain_file_name(card["onnx_file"], where, "onnx_file")
    if card["task"] == "two_stage":
        plain_file_name(card["segmenter"].get("model_file"), where, "segmenter.model_file")
        if card["segmenter"].get("onnx_file") is not None:
            plain_file_name(card["segmenter"]["onnx_file"], where, "segmenter.onnx_file")
    expected = input_steps(card, card["framework"], where)
    if "input" not in card:  # an old card: the name is all there is
        card["input"] = expected
        return
    written = card["input"]
    sources = {"resize": ("input_size",), "crop": ("crop",), "head_crop": ("head_crop",), "layout": ("framework",)}
    for key, value in expected.items():
        if not _same_numbers(written.get(key), value):
            fields = sources.get(key) or (("preprocessing", "channels") if card["channels"] != 3 else ("preprocessing",))
            shown = ", ".join(repr(card.get(field)) for field in fields)
            raise ModelCardError(
                f"{where}: `{', '.join(fields)}` {shown} means input.{key} = {value!r}, but the card's input.{key} "
                f"(written at export) is {written.get(key)!r}: the card was edited; put back the value the model "
                "was trained with")


def check_model_shapes(card: dict, where, input_shape, output_shape) -> None:
    """The network against its card: task (a vector per image or a mask), classes, input size, channels.

    `input_shape` (N, H, W, C) or (N, C, H, W) after the card's layout, entries None where free;
    `output_shape` the network's output shape. Used by tl.model_cards.load_model.
    """
    segmenting = card["task"] == "segmentation"
    if segmenting != (len(output_shape) == 4):
        kind = "a mask per image (a segmenter)" if len(output_shape) == 4 else "one vector per image (a classifier)"
        _fail(where, "task", card["task"], f"what the model is: it outputs {kind}, shape {tuple(output_shape)}")
    if not segmenting:
        width, classes = output_shape[-1], len(card["classes"])
        if width is not None and width != classes and not (width == 1 and classes == 2):
            _fail(where, "classes", card["classes"], f"{width} classes: the model has {width} outputs")
    if input_shape is None:
        return
    nchw = card.get("input", {}).get("layout") == "NCHW"
    height, width, channels = (input_shape[2], input_shape[3], input_shape[1]) if nchw else input_shape[1:4]
    if channels is not None and channels != card["channels"]:
        _fail(where, "channels", card["channels"], f"{channels}: the model's input has {channels} channels")
    size = card.get("crop") or None
    expected = [size, size] if size else card["input_size"]
    if None not in (height, width) and [height, width] != list(expected):
        _fail(where, "input_size" if not size else "crop", card["crop"] if size else card["input_size"],
              f"{[height, width]}: the model's input is {height}x{width}")
