"""Tumour segmentation: a ResUNet, the Tversky family of losses, and honest Dice scoring.

Model and losses are Keras 3 code on `keras.ops` only, so they run on every backend:

- `build_resunet`: a U-Net whose encoder and decoder blocks are residual blocks (two 3x3
  convolutions with batch norm, plus a 1x1 projection of the block's input added to them),
  joined level by level by skip connections, trained from scratch (the article's model);
- `build_pretrained_unet`: the transfer-learning way: a U-Net whose encoder is an
  ImageNet-pretrained backbone (`tl.backbones.get_backbone(..., pooling=None).model`),
  with skip connections taken from the backbone's own layers at 1/2, 1/4, 1/8 and 1/16 of
  the input (`encoder_skip_layers`) and a light decoder of residual blocks; it is fed the
  backbone's own preprocessing;
- `tversky_index`, `focal_tversky_loss`, `dice_coefficient`: soft (probability) versions,
  one value per image, for training and for Keras' progress metrics.

Scoring works on thresholded masks in NumPy and states its conventions, because they
decide the numbers:

- `tl.metrics.dice_scores` (the book's one Dice): one Dice per slice; a slice whose true
  and predicted masks are both empty scores `empty_score` (1 by default);
- `tversky_scores`: the Tversky index per slice, the loss's own measure;
- `per_patient_dice`: the mean Dice of each patient's slices, so that a patient with
  many slices does not outweigh one with few;
- `volumetric_dice`: one Dice per patient over the whole stack of slices (intersections
  and mask sizes summed over the patient's slices), the 3-D Dice of Buda et al. (2019);
- `pipeline_masks`: the two-stage pipeline's output: the segmenter's mask where the
  classifier flagged the slice, an empty mask elsewhere. Scored with `dice_scores`, a
  tumour slice the classifier missed gets 0, and so does a tumour-free slice it flagged
  when the segmenter then draws something;
- intervals resample patients, not slices (slices of one patient are not independent):
  `tl.metrics.bootstrap_ci(np.mean, scores, groups=patients)`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd
from keras import layers, ops

from ..evaluate.metrics import binarize, volumetric_dice  # noqa: F401 (tl.segmentation.volumetric_dice)
from ..train.backbones import standardize_images  # noqa: F401 (tl.segmentation.standardize_images;
# it lives with the other preprocessings, so that an exported segmenter finds it by name)

# Tversky weights: alpha on false negatives, 1 - alpha on false positives. 0.7 favours
# recall of small tumours; gamma < 1 makes the focal version push harder on hard images.
TVERSKY_ALPHA = 0.7
FOCAL_GAMMA = 0.75
SMOOTH = 1.0


# --- the model ----------------------------------------------------------------------------

def residual_block(x, filters: int, name: str, momentum: float = 0.99):
    """conv3x3-BN-ReLU-conv3x3-BN plus a 1x1-conv-BN projection of the input, then ReLU.

    `momentum` is the BatchNormalization layers' (Keras' default 0.99: their running
    statistics, used when predicting, settle only after some hundreds of steps). Taught in chapter 4.
    """
    shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(x)
    shortcut = layers.BatchNormalization(name=f"{name}_proj_bn", momentum=momentum)(shortcut)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1", momentum=momentum)(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2", momentum=momentum)(y)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def build_resunet(input_shape: tuple[int, int, int] = (256, 256, 3),
                  filters: Sequence[int] = (16, 32, 64, 128, 256), name: str = "resunet") -> keras.Model:
    """A residual U-Net: one probability per pixel (sigmoid), same height and width as the input.

    `filters` gives the channels per level, the last being the bottleneck: with the default
    five levels the image is halved four times, so height and width must be multiples of 16.
    Each encoder level is a residual block whose output is kept for the decoder (skip
    connection) and then max-pooled; each decoder level upsamples, concatenates the skip of
    the same size and applies a residual block. Taught in chapter 4.
    """
    downsamplings = len(filters) - 1
    if input_shape[0] % 2 ** downsamplings or input_shape[1] % 2 ** downsamplings:
        raise ValueError(f"input size {input_shape[:2]} must be a multiple of {2 ** downsamplings}")
    inputs = keras.Input(tuple(input_shape), name="image")
    x, skips = inputs, []
    for level, width in enumerate(filters[:-1]):
        x = residual_block(x, width, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = residual_block(x, filters[-1], "bottleneck")
    for level in reversed(range(downsamplings)):
        x = layers.UpSampling2D(2, name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = residual_block(x, filters[level], f"dec{level}")
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    return keras.Model(inputs, outputs, name=name)


# The block outputs at 1/2, 1/4, 1/8 and 1/16 of the input: what a U-Net on these backbones
# takes as skips (the layers after them in build order, such as Lite0's next expansion to
# six times the channels, would make the decoder costly and add nothing).
SKIP_LAYERS = {
    "efficientnet_lite0": ("block0_0_project_bn", "block1_1_add", "block2_1_add", "block4_2_add"),
    "resnet50": ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out"),
}


def encoder_skip_layers(encoder: keras.Model, depth: int = 4) -> list[str]:
    """Names of the encoder layers whose outputs become the U-Net's skip connections.

    One per scale 1/2, 1/4, ..., 1/2**depth of the input. For the book's backbones, their
    block outputs at those scales (`SKIP_LAYERS`: ResNet50 conv1_relu, conv2_block3_out,
    conv3_block4_out, conv4_block6_out; EfficientNet-Lite0 the last block of each
    stride); for another encoder, the last layer (in build order) with that height and
    width. Taught in chapter 4.
    """
    height, width = encoder.input.shape[1:3]
    if height is None or width is None:
        raise ValueError("the encoder needs a fixed input size to find its skip layers")
    known = SKIP_LAYERS.get(encoder.name)
    names = []
    for level in range(1, depth + 1):
        size = (height // 2 ** level, width // 2 ** level)
        if known and level <= len(known):
            found = [known[level - 1]]
        else:
            found = [layer.name for layer in encoder.layers
                     if not isinstance(layer, keras.layers.InputLayer)
                     and len(getattr(layer.output, "shape", ())) == 4 and tuple(layer.output.shape[1:3]) == size]
        if not found or tuple(encoder.get_layer(found[-1]).output.shape[1:3]) != size:
            raise ValueError(f"encoder {encoder.name} has no layer at 1/{2 ** level} of its input ({size})")
        names.append(found[-1])
    return names


def build_pretrained_unet(encoder: keras.Model, decoder_filters: Sequence[int] = (128, 64, 32, 16),
                          final_filters: int | None = None, freeze_batchnorm: bool = True, train_encoder: bool = True,
                          momentum: float = 0.9,
                          skip_layers: Sequence[str] | None = None, name: str = "pretrained_unet") -> keras.Model:
    """A U-Net on a pretrained encoder: one tumour probability per pixel, at the input size.

    encoder: a headless backbone ending in its last feature map, at 1/32 of the input
        (`tl.backbones.get_backbone(name, input_shape=..., pooling=None).model`); its
        ImageNet weights are the transfer. Inputs must be preprocessed as the backbone's
        (`backbone.preprocess`), and height and width must be multiples of 32.
    decoder_filters: channels of the decoder's residual blocks at 1/16, 1/8, 1/4 and 1/2;
        each upsamples by 2, concatenates the skip of that size (`encoder_skip_layers`) and
        applies `residual_block`. A 1x1 convolution with a sigmoid gives the mask at 1/2 of
        the input, upsampled bilinearly to full size; with `final_filters`, an upsampling
        and a residual block of that many channels at full size come first (on a CPU, the
        full-size block costs more than the whole encoder).
    freeze_batchnorm: the encoder's BatchNormalization layers keep their ImageNet
        statistics (batches of 16 MRI slices would estimate them badly); every other
        encoder weight is fine-tuned with the decoder, unless `train_encoder` is False
        (then the encoder is frozen whole and only the decoder learns).
    momentum: of the decoder's BatchNormalization (0.9: its running statistics, which
        predictions use, settle within the few hundred steps a small data set gives).
    Taught in chapter 4.
    """
    height, width = encoder.input.shape[1:3]
    if height % 32 or width % 32:
        raise ValueError(f"input size {(height, width)} must be a multiple of 32")
    skip_layers = list(skip_layers) if skip_layers is not None else encoder_skip_layers(encoder, len(decoder_filters))
    if len(skip_layers) != len(decoder_filters):
        raise ValueError(f"{len(skip_layers)} skip layers for {len(decoder_filters)} decoder levels")
    for layer in encoder.layers:
        if not train_encoder or (freeze_batchnorm and isinstance(layer, keras.layers.BatchNormalization)):
            layer.trainable = False
    skips = [encoder.get_layer(layer_name).output for layer_name in skip_layers]
    x = encoder.output
    for level in reversed(range(len(decoder_filters))):
        x = layers.UpSampling2D(2, name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = residual_block(x, decoder_filters[level], f"dec{level}", momentum)
    if final_filters:
        x = layers.UpSampling2D(2, name="full_up")(x)
        x = residual_block(x, final_filters, "full", momentum)
        outputs = layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    else:
        x = layers.Conv2D(1, 1, activation="sigmoid", name="half_mask")(x)
        outputs = layers.UpSampling2D(2, interpolation="bilinear", name="mask")(x)
    return keras.Model(encoder.input, outputs, name=name)


# --- soft scores and losses (keras.ops: any backend) ------------------------------------

def _per_image_sums(y_true, y_pred):
    """True positives, false negatives and false positives per image, soft (from probabilities)."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    axes = tuple(range(1, len(y_pred.shape)))
    true_pos = ops.sum(y_true * y_pred, axis=axes)
    false_neg = ops.sum(y_true * (1.0 - y_pred), axis=axes)
    false_pos = ops.sum((1.0 - y_true) * y_pred, axis=axes)
    return true_pos, false_neg, false_pos


def tversky_index(y_true, y_pred, alpha: float = TVERSKY_ALPHA, smooth: float = SMOOTH):
    """Soft Tversky index per image: (TP + s) / (TP + alpha FN + (1 - alpha) FP + s).

    alpha = 0.5 gives the soft Dice coefficient. `smooth` keeps empty masks defined (an
    empty prediction of an empty mask scores 1). Taught in chapter 4.
    """
    true_pos, false_neg, false_pos = _per_image_sums(y_true, y_pred)
    return (true_pos + smooth) / (true_pos + alpha * false_neg + (1.0 - alpha) * false_pos + smooth)


def dice_coefficient(y_true, y_pred, smooth: float = SMOOTH):
    """Soft Dice per image (the Tversky index with alpha = 1/2); a Keras metric. Taught in chapter 4."""
    return tversky_index(y_true, y_pred, alpha=0.5, smooth=smooth)


def tversky(y_true, y_pred):
    """The Tversky index with the default alpha, as a Keras metric (its name shows in logs).

    Taught in chapter 4.
    """
    return tversky_index(y_true, y_pred)


def focal_tversky_loss(alpha: float = TVERSKY_ALPHA, gamma: float = FOCAL_GAMMA,
                       smooth: float = SMOOTH) -> Callable:
    """The loss (1 - Tversky index) ** gamma, per image; Keras averages it over the batch.

    Taught in chapter 4.
    """
    def focal_tversky(y_true, y_pred):
        index = tversky_index(y_true, y_pred, alpha, smooth)
        return ops.power(ops.maximum(1.0 - index, 0.0), gamma)

    return focal_tversky


# --- scoring thresholded masks (NumPy) ----------------------------------------------------

def tversky_scores(true_masks, pred_masks, alpha: float = TVERSKY_ALPHA, threshold: float = 0.5,
                   empty_score: float = 1.0) -> np.ndarray:
    """The Tversky index TP / (TP + alpha FN + (1 - alpha) FP) per slice, on thresholded masks.

    Taught in chapter 4.
    """
    truth, predicted = binarize(true_masks, threshold), binarize(pred_masks, threshold)
    true_pos = np.logical_and(truth, predicted).sum(axis=(1, 2)).astype(np.float64)
    false_neg = np.logical_and(truth, ~predicted).sum(axis=(1, 2))
    false_pos = np.logical_and(~truth, predicted).sum(axis=(1, 2))
    denominator = true_pos + alpha * false_neg + (1 - alpha) * false_pos
    return np.where(denominator > 0, true_pos / np.maximum(denominator, 1e-12), float(empty_score))


def pipeline_masks(flagged, pred_masks, threshold: float = 0.5) -> np.ndarray:
    """What the two-stage pipeline outputs: the segmenter's mask on flagged slices, empty elsewhere.

    Taught in chapter 4.
    """
    predicted = binarize(pred_masks, threshold)
    flagged = np.asarray(flagged, dtype=bool)
    if flagged.shape != predicted.shape[:1]:
        raise ValueError(f"{flagged.shape[0]} flags for {predicted.shape[0]} masks")
    return predicted & flagged[:, None, None]


def per_patient_dice(patients: Sequence, scores: Sequence) -> pd.DataFrame:
    """One row per patient: slices scored and their mean and median Dice (sorted by patient).

    Taught in chapter 4.
    """
    frame = pd.DataFrame({"patient": list(patients), "dice": np.asarray(scores, dtype=np.float64)})
    return frame.groupby("patient").dice.agg(slices="size", mean_dice="mean", median_dice="median").reset_index()


# --- stage 1's frozen part -----------------------------------------------------------------

def pooled_flat_features(backbone_model: keras.Model, pool_size: int = 4,
                         name: str = "frozen_pool_flatten") -> keras.Model:
    """Backbone feature map -> AveragePooling2D(pool_size) -> Flatten, as one frozen model.

    Pooling and flattening have no weights, so they belong to the frozen part whose output
    can be cached; the trainable head starts at the Dense layer. The pool shrinks to the
    feature map's size when the map is smaller (small smoke-test images). Taught in chapter 4.
    """
    height, width = backbone_model.output.shape[1:3]
    pool = (min(pool_size, height), min(pool_size, width))
    x = layers.AveragePooling2D(pool, name="avg_pool")(backbone_model.output)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(backbone_model.input, x, name=name)
