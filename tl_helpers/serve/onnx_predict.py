"""An exported model without TensorFlow, Keras or PyTorch: its ONNX file, its card, numpy and Pillow.

    python -m tl_helpers.serve.onnx_predict MODEL_CARD IMAGES... [--out preds.csv] [--uncalibrated]

or, for a reader without this package, this one file copied beside the model
(`python onnx_predict.py MODEL_CARD IMAGES...`): it imports nothing from `tl_helpers`, and
needs only onnxruntime, numpy and Pillow. In Python, the five lines a reader needs:

    from onnx_predict import OnnxPredictor
    model = OnnxPredictor("02_brain_tumor.card.json")
    p = model.predict_proba(["scan1.jpg", "scan2.png"])      # (N, classes), calibrated
    print(model.classes)
    print(model.labels_from_proba(model.predict_proba(["scan1.jpg"], calibrated=False)))

The card's `input` block says, in numbers, what the network was fed (steps in this order):
read as RGB (or gray) 0..255; `head_crop` (chapter 2: cut to the head, not available here:
give images already cropped); `resize` to `size` ([height, width]; `area` averaging when
shrinking both sides, else `bilinear` with half-pixel centres, rounded to uint8: OpenCV's
INTER_AREA / INTER_LINEAR); `crop` (`center`, `size` pixels square); reorder to
`channel_order`; multiply by `scale`; subtract `mean` and divide by `std` per channel (in
`channel_order`), or, for `normalize: per_image`, by the image's own mean and standard
deviation; `layout` NHWC or NCHW, float32. Probabilities: softmax (or sigmoid) of logits
when the card's `outputs` is "logits"; the card's `temperature` (fitted on validation)
divides the logits unless `calibrated=False`. The ONNX file's sha256 must match the card's.
Used by readers of the exported models, tl.model_cards (the numeric steps) and the tests.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

CHANNEL_ORDERS = ("RGB", "BGR", "L")
STANDARDIZE_EPSILON = 1e-6  # as tl.backbones.standardize_images


def sha256_of(path: str | Path) -> str:
    """The file's sha256 (hex). Used by tl.model_cards (export and load) and OnnxPredictor."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the numeric preprocessing ----------------------------------------------------------------

def _axis_weights(source: int, target: int) -> np.ndarray:
    """(target, source) bilinear weights along one axis (OpenCV's INTER_LINEAR: half-pixel
    centres, clamped at the borders)."""
    weights = np.zeros((target, source), np.float64)
    scale = source / target
    for out in range(target):
        position = min(max((out + 0.5) * scale - 0.5, 0.0), source - 1)
        low = int(np.floor(position))
        high = min(low + 1, source - 1)
        weights[out, low] += 1 - (position - low)
        weights[out, high] += position - low
    return weights


def _area_table(source: int, target: int) -> np.ndarray:
    """(target, source) float32 weights of OpenCV's INTER_AREA along one axis, as its
    computeResizeAreaTab makes them: each output pixel averages the source pixels its cell
    covers, partly covered ones by the covered share (the same float32 numbers, so that the
    result rounds as OpenCV's does)."""
    scale = source / target
    weights = np.zeros((target, source), np.float32)
    for out in range(target):
        start = out * scale
        stop = start + scale
        cell = min(scale, source - start)
        first, last = int(np.ceil(start)), min(int(np.floor(stop)), source - 1)
        first = min(first, last)
        if first - start > 1e-3:
            weights[out, first - 1] = np.float32((first - start) / cell)
        weights[out, first:last] = np.float32(1.0 / cell)
        if stop - last > 1e-3:
            weights[out, last] = np.float32(min(min(stop - last, 1.0), cell) / cell)
    return weights


def _resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV's INTER_AREA on uint8, shrinking: its integer path when both sides shrink by
    whole factors (2 x 2 cells rounded half up), else its float32 tables, one axis at a time."""
    rows, cols = image.shape[0] / height, image.shape[1] / width
    if rows.is_integer() and cols.is_integer():
        step_y, step_x = int(rows), int(cols)
        sums = image.astype(np.int64).reshape(height, step_y, width, step_x, *image.shape[2:]).sum(axis=(1, 3))
        if step_y == step_x == 2:
            return ((sums + 2) >> 2).astype(np.uint8)
        out = sums.astype(np.float32) * np.float32(1.0 / (step_y * step_x))
    else:
        across = np.einsum("jk...,lk->jl...", image.astype(np.float32), _area_table(image.shape[1], width))
        out = np.einsum("ij,jl...->il...", _area_table(image.shape[0], height), across.astype(np.float32))
    return np.clip(np.rint(out.astype(np.float32)), 0, 255).astype(np.uint8)


def resize_pixels(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """HxW(xC) uint8 -> size (height, width) uint8: area averaging when both sides shrink, else bilinear.

    Shrinking gives OpenCV's INTER_AREA pixel for pixel (the training loaders use OpenCV; a
    test compares them on real images); enlarging is within one grey level of its
    INTER_LINEAR (its fixed-point rounding). Used by OnnxPredictor.
    """
    height, width = int(size[0]), int(size[1])
    if image.shape[:2] == (height, width):
        return image
    if height < image.shape[0] and width < image.shape[1]:
        return _resize_area(image, height, width)
    rows = _axis_weights(image.shape[0], height)
    cols = _axis_weights(image.shape[1], width)
    out = np.einsum("ij,jk...,lk->il...", rows, image.astype(np.float64), cols)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def center_crop_pixels(image: np.ndarray, size: int | None) -> np.ndarray:
    """The central size x size pixels (the extra pixel of an odd border at the bottom / right).

    Same rule as tl.torch_training.center_crop. Used by OnnxPredictor and tl.model_cards.
    """
    if not size:
        return image
    height, width = image.shape[:2]
    if not 0 < size <= min(height, width):
        raise ValueError(f"crop size {size} does not fit an image of {height}x{width}")
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image[top:top + size, left:left + size]


def normalize_pixels(pixels: np.ndarray, steps: dict) -> np.ndarray:
    """float32 NHWC pixels 0..255 (RGB, or gray with one channel) -> the network's input, from the card's numbers.

    Channel order, then x * scale, then (x - mean) / std per channel, or each image on its own
    scale (`normalize: per_image`); the layout (NHWC / NCHW) is left to the caller.
    Used by tl.model_cards.Predictor and OnnxPredictor.
    """
    x = np.asarray(pixels, dtype=np.float32)
    if steps.get("normalize") == "per_image":
        axes = tuple(range(1, x.ndim))
        return (x - x.mean(axis=axes, keepdims=True)) / np.maximum(x.std(axis=axes, keepdims=True),
                                                                   STANDARDIZE_EPSILON)
    if steps.get("channel_order", "RGB") == "BGR":
        x = x[..., ::-1]
    x = x * np.float32(steps.get("scale", 1.0))
    mean = np.asarray(steps.get("mean", [0.0]), np.float32)
    std = np.asarray(steps.get("std", [1.0]), np.float32)
    return ((x - mean) / std).astype(np.float32)


def probabilities(outputs: np.ndarray, kind: str, temperature: float | None = None) -> np.ndarray:
    """(N, K) probabilities from a classifier's outputs: logits or probabilities, one sigmoid unit or K.

    `temperature` divides the logits (of probabilities: their logarithms, the same thing up to a
    constant per row). Used by OnnxPredictor and tl.model_cards.Predictor.
    """
    out = np.asarray(outputs, np.float64)
    single = out.ndim == 2 and out.shape[1] == 1
    if kind != "logits":  # back to logits only when a temperature must divide them
        if temperature is None:
            return np.concatenate([1.0 - out, out], axis=1) if single else out
        clipped = np.clip(out, 1e-12, 1.0)
        out = np.log(clipped) - np.log1p(-np.minimum(clipped, 1 - 1e-12)) if single else np.log(clipped)
    if temperature is not None:
        out = out / float(temperature)
    if single:
        p = 1.0 / (1.0 + np.exp(-out))
        return np.concatenate([1.0 - p, p], axis=1)
    out = out - out.max(axis=1, keepdims=True)
    e = np.exp(out)
    return e / e.sum(axis=1, keepdims=True)


# --- the predictor ---------------------------------------------------------------------------

def _read_pixels(item, channels: int) -> np.ndarray:
    """uint8 HxWx3 (RGB) or HxW (gray) from a file (Pillow; 16-bit scaled to 8) or an array."""
    if isinstance(item, (str, Path)):
        from PIL import Image

        with Image.open(item) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float64)
                top = 65535.0 if array.max() > 255 else 255.0
                image = Image.fromarray(np.round(array / top * 255.0).astype(np.uint8))
            array = np.asarray(image.convert("L" if channels == 1 else "RGB"))
        return array
    array = np.asarray(item)
    if array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[..., :-1]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if channels == 3 and array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if channels == 1 and array.ndim == 3:
        array = np.round(array[..., 0] * 0.299 + array[..., 1] * 0.587 + array[..., 2] * 0.114)
    return np.clip(array, 0, 255).astype(np.uint8)


class OnnxPredictor:
    """An exported model's ONNX file, run by onnxruntime, fed as its card says.

    Attributes: card, classes, threshold, temperature, input (the card's numeric steps).
    Used by readers of the exported models and `tl predict --onnx`.
    """

    def __init__(self, card_path: str | Path):
        import onnxruntime

        self.card_path = Path(card_path)
        self.card = json.loads(self.card_path.read_text())
        name = self.card.get("onnx_file")
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"{self.card_path}: the card names no ONNX file beside it (onnx_file: {name!r})")
        file = self.card_path.parent / name
        expected = (self.card.get("sha256") or {}).get(name)
        if expected and sha256_of(file) != expected:
            raise ValueError(f"{file}: sha256 {sha256_of(file)} differs from the card's {expected}: "
                             "the file was changed or replaced after export")
        self.input = self.card["input"]
        if self.input.get("head_crop"):
            print(f"note: {self.card_path.name} expects images cropped to the head first "
                  f"(size {self.input['head_crop']['size']}); give crops", file=sys.stderr)
        self.classes = list(self.card["classes"])
        self.threshold = self.card.get("threshold")
        self.temperature = self.card.get("temperature")
        self.session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        self._input_name = self.session.get_inputs()[0].name

    def prepare(self, images: Sequence) -> np.ndarray:
        """The network's input for image files or arrays (the card's steps, in order)."""
        steps, channels = self.input, 1 if self.input.get("channel_order") == "L" else 3
        pixels = []
        for item in images:
            image = resize_pixels(_read_pixels(item, channels), steps["resize"]["size"])
            image = center_crop_pixels(image, (steps.get("crop") or {}).get("size"))
            pixels.append(image[..., None] if image.ndim == 2 else image)
        batch = normalize_pixels(np.stack(pixels).astype(np.float32), steps)
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2) if steps.get("layout") == "NCHW" else batch)

    def predict_proba(self, images: Sequence, calibrated: bool = True, batch_size: int = 32) -> np.ndarray:
        """(N, K) class probabilities in the card's class order (the card's temperature unless calibrated=False)."""
        images = list(images)
        parts = []
        for start in range(0, len(images), batch_size):
            outputs = self.session.run(None, {self._input_name: self.prepare(images[start:start + batch_size])})[0]
            parts.append(probabilities(outputs, self.card.get("outputs", "probabilities"),
                                       self.temperature if calibrated else None))
        return np.concatenate(parts)

    def labels_from_proba(self, probabilities_: np.ndarray) -> list[str]:
        """Binary: P(positive) >= the card's threshold (on uncalibrated probabilities); else the most probable."""
        if self.card["task"] == "binary":
            return [self.classes[int(p >= float(self.threshold))] for p in probabilities_[:, 1]]
        return [self.classes[int(i)] for i in np.asarray(probabilities_).argmax(axis=1)]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tl_helpers.serve.onnx_predict CARD IMAGES...`: a CSV of probabilities; 1 on bad input.

    Used by readers of the exported models (no TensorFlow, Keras or PyTorch needed).
    """
    parser = argparse.ArgumentParser(prog="onnx_predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("card", help="the model card (<name>.card.json) beside its .onnx file")
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, TIFF, BMP)")
    parser.add_argument("--out", default=None, help="CSV to write (default: standard output)")
    parser.add_argument("--uncalibrated", action="store_true", help="raw probabilities, without the temperature")
    args = parser.parse_args(argv)
    try:
        model = OnnxPredictor(args.card)
        calibrated = model.temperature is not None and not args.uncalibrated
        p = model.predict_proba(args.images, calibrated=calibrated)
        labels = model.labels_from_proba(p if not calibrated else model.predict_proba(args.images, calibrated=False))
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    handle = open(args.out, "w", newline="") if args.out else sys.stdout
    handle.write(f"# probabilities {'calibrated: temperature %.4g' % model.temperature if calibrated else 'uncalibrated'}\n")
    writer = csv.writer(handle)
    writer.writerow(["file", *[f"p_{c}" for c in model.classes], "predicted"])
    for file, row, label in zip(args.images, p, labels):
        writer.writerow([file, *[f"{v:.6f}" for v in row], label])
    if args.out:
        handle.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
