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

Stage 1 (the classifier) is cheap on cached features, so `cross_validate_head` retrains its
head fold by fold over whole patients: out-of-fold predictions for every slice, each fold's
threshold chosen on its own inner validation patients.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd
from keras import layers, ops

from ..data.splits import grouped_kfold
from ..evaluate.metrics import (Estimate, Spread, binary_report, bootstrap_ci, choose_threshold, dice_scores,
                                proportion, report_table, spread)
from ..evaluate.metrics import binarize, per_patient_dice, volumetric_dice  # noqa: F401 (tl.segmentation.*)
from ..evaluate.metrics import dice_estimates
from ..evaluate.metrics import _share_called  # the rate binary_report's grouped intervals use
from ..train.features import fit_head_on_features
from ..train.loaders import epoch_order
from ..train.keras_training import TimeBudget, TrainingRun, fit_keeping_best
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
    outputs = _unet_decoder(encoder.output, skips, decoder_filters, final_filters, momentum)
    return keras.Model(encoder.input, outputs, name=name)


def _unet_decoder(x, skips, decoder_filters, final_filters, momentum):
    """The decoder of build_pretrained_unet on tensors: the last map `x`, `skips` from 1/2 down."""
    for level in reversed(range(len(decoder_filters))):
        x = layers.UpSampling2D(2, name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = residual_block(x, decoder_filters[level], f"dec{level}", momentum)
    if final_filters:
        x = layers.UpSampling2D(2, name="full_up")(x)
        x = residual_block(x, final_filters, "full", momentum)
        return layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    x = layers.Conv2D(1, 1, activation="sigmoid", name="half_mask")(x)
    return layers.UpSampling2D(2, interpolation="bilinear", name="mask")(x)


def encoder_features(encoder: keras.Model, depth: int = 4, skip_layers: Sequence[str] | None = None) -> keras.Model:
    """What a U-Net's decoder reads from a frozen encoder, as one model: the skips at 1/2 ...
    1/2**depth of the input (`encoder_skip_layers`), then the last feature map.

    With the encoder frozen these outputs are the same every epoch, so they can be computed
    once per slice and the decoder alone trained on them (`build_unet_decoder`,
    `cross_validate_segmenter`). Taught in chapter 4.
    """
    names = list(skip_layers) if skip_layers is not None else encoder_skip_layers(encoder, depth)
    outputs = [encoder.get_layer(name).output for name in names] + [encoder.output]
    return keras.Model(encoder.input, outputs, name=f"{encoder.name}_features")


def build_unet_decoder(feature_shapes: Sequence[tuple], decoder_filters: Sequence[int] = (128, 64, 32, 16),
                       final_filters: int | None = None, momentum: float = 0.9,
                       name: str = "unet_decoder") -> keras.Model:
    """The decoder of `build_pretrained_unet` alone, fed the outputs of `encoder_features`
    (`feature_shapes`: their shapes without the batch axis, skips first, last map last).

    The same layers, names and defaults as the full U-Net's decoder, so that training it on
    cached features is training that U-Net with its encoder frozen (without augmentation:
    a cached feature cannot be rotated). Taught in chapter 4.
    """
    inputs = [keras.Input(tuple(shape), name=f"feature{i}") for i, shape in enumerate(feature_shapes)]
    if len(inputs) != len(decoder_filters) + 1:
        raise ValueError(f"{len(inputs)} feature maps for {len(decoder_filters)} decoder levels: give "
                         "one skip per level and the last map")
    outputs = _unet_decoder(inputs[-1], inputs[:-1], decoder_filters, final_filters, momentum)
    return keras.Model(inputs, outputs, name=name)


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


def run_line(label: str, run: TrainingRun, test_dice: Estimate) -> str:
    """One line on a segmenter's training: epochs, seconds (each), the best epoch, its soft
    validation Dice, and the test mean Dice. Taught in chapter 4.
    """
    best_val_dice = run.history.history["val_dice_coefficient"][run.best_epoch - 1]
    return (f"{label:22s} {run.epochs_run:3d} epochs in {run.seconds:4.0f} s "
            f"({run.seconds / run.epochs_run:5.1f} s each), best epoch {run.best_epoch}: soft "
            f"validation Dice {best_val_dice:.3f}; test mean Dice {test_dice.value:.3f}")


def fit_segmenter(model: keras.Model, train_data, val_data, checkpoint, patience: int,
                  epochs: int, learning_rate: float, seconds: float | None = None,
                  name: str = "segmenter", batch_size: int = 16, quiet: bool = False) -> TrainingRun:
    """Compile a segmenter (Adam, focal Tversky loss, Tversky and Dice metrics) and fit it for
    at most `epochs`, keeping the epoch of lowest validation loss (within `seconds` of
    training if given: a budget in seconds differs between machines, one in epochs does not).

    train_data, val_data: Keras datasets of (images, masks), or (inputs, masks) tuples of
    arrays (cached features), then batched by `batch_size` and the training data shuffled.
    Says in one line whether the time budget, or early stopping / the epoch limit, ended it
    (`quiet`: nothing printed). Gives the pretrained U-Net and the from-scratch ResUNet the
    same recipe. Taught in chapter 4.
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=focal_tversky_loss(),
                  metrics=[tversky, dice_coefficient])
    budget = [TimeBudget(seconds)] if seconds is not None else []
    if isinstance(train_data, tuple):  # arrays: batches drawn straight from memory
        train_data = ArrayBatches(*train_data, batch_size=batch_size, shuffle=True)
        val_data = ArrayBatches(*val_data, batch_size=batch_size, shuffle=False)
    run = fit_keeping_best(model, checkpoint, patience, name=name, extra_callbacks=budget, quiet=quiet,
                           epochs=epochs, x=train_data, validation_data=val_data)
    if not quiet:
        print("stopped by", "the time budget" if budget and budget[0].stopped_early
              else "early stopping or the epoch limit")
    return run


class ArrayBatches(keras.utils.PyDataset):
    """Batches of in-memory arrays for `fit`: `inputs` (one array or a list, e.g. cached
    encoder features) and `targets`, in a new seeded order every epoch when `shuffle`.

    Keras' own path for NumPy arrays (tf.data) costs about a second an epoch more on two
    cores (chapter 4's cross-validation trains 5 decoders); this hands over views. Used by
    `fit_segmenter`.
    """

    def __init__(self, inputs, targets, batch_size: int = 16, shuffle: bool = True, seed: int = 0):
        super().__init__()
        self.inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        self.targets, self.batch_size, self.shuffle, self.seed = targets, int(batch_size), shuffle, seed
        if any(len(x) != len(targets) for x in self.inputs):
            raise ValueError(f"inputs of {[len(x) for x in self.inputs]} rows for {len(targets)} targets")
        self.epoch = 0
        self._order = epoch_order(len(targets), shuffle, seed, self.epoch)

    def __len__(self) -> int:
        return -(-len(self.targets) // self.batch_size)

    def __getitem__(self, index: int):
        rows = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])
        batch = [x[rows] for x in self.inputs]
        return (tuple(batch) if len(batch) > 1 else batch[0]), self.targets[rows]

    def on_epoch_end(self):
        self.epoch += 1
        self._order = epoch_order(len(self.targets), self.shuffle, self.seed, self.epoch)


def pipeline_masks(flagged, pred_masks, threshold: float = 0.5) -> np.ndarray:
    """What the two-stage pipeline outputs: the segmenter's mask on flagged slices, empty elsewhere.

    Taught in chapter 4.
    """
    predicted = binarize(pred_masks, threshold)
    flagged = np.asarray(flagged, dtype=bool)
    if flagged.shape != predicted.shape[:1]:
        raise ValueError(f"{flagged.shape[0]} flags for {predicted.shape[0]} masks")
    return predicted & flagged[:, None, None]


def two_stage_masks(segmenter: keras.Model, images: np.ndarray, flagged,
                    batch_size: int = 32, threshold: float = 0.5) -> np.ndarray:
    """The pipeline on these slices: the segmenter runs on the flagged ones only, the others
    get an empty mask (`pipeline_masks`). Taught in chapter 4.
    """
    flagged = np.asarray(flagged, dtype=bool)
    masks = np.zeros((len(images), *segmenter.output.shape[1:]), np.float32)
    if flagged.any():
        masks[flagged] = segmenter.predict(images[flagged], batch_size=batch_size, verbose=0)
    return pipeline_masks(flagged, masks, threshold)


def best_to_worst(scores, rows, n: int) -> np.ndarray:
    """`n` of `rows` evenly spaced from the highest score to the lowest (ties keep row order):
    slices to show from the best segmented to the worst. Taught in chapter 4.
    """
    rows = np.asarray(rows)
    ordered = rows[np.argsort(-np.asarray(scores)[rows], kind="stable")]
    return ordered[np.linspace(0, len(ordered) - 1, max(1, n)).round().astype(int)]


def dice_report(patients, true_masks, pred_masks, seed: int = 0) -> tuple[dict[str, Estimate], pd.DataFrame]:
    """A segmenter's Dice on held-out slices, four ways, every interval resampling patients.

    dice_mean and dice_median over slices; dice_per_patient_mean (each patient's mean slice
    Dice, then their mean); dice_volumetric_per_patient_mean (`volumetric_dice`): the first and
    the last two from tl.metrics.dice_estimates. Returns the report and one row per patient
    (slices, mean_dice, median_dice, volumetric_dice). Taught in chapter 4.
    """
    patients = np.asarray(list(patients))
    three, dice, per_patient = dice_estimates(patients, true_masks, pred_masks, seed=seed)
    report = {"dice_mean": three["dice_mean"],
              "dice_median": bootstrap_ci(np.median, dice, groups=patients, seed=seed),
              **{name: three[name] for name in ("dice_per_patient_mean", "dice_volumetric_per_patient_mean")}}
    return report, per_patient


PIPELINE_OUTCOMES = ("tumour, flagged", "tumour, missed (Dice 0)", "no tumour, false alarm (Dice 0)",
                     "no tumour, flagged, nothing drawn (Dice 1)", "no tumour, not flagged (Dice 1)")


def pipeline_report(patients, true_masks, final_masks, has_tumour, flagged,
                    seed: int = 0) -> tuple[dict[str, Estimate], pd.DataFrame, pd.DataFrame]:
    """The two-stage pipeline scored on every slice (`final_masks` from `pipeline_masks`).

    has_tumour: the slice's label (from its full-size mask file; a resized mask can lose a
    tiny tumour); flagged: stage 1's call.

    Returns the report (pipeline_dice_mean over all slices, pipeline_dice_tumour_mean over
    the tumour slices, misses counting 0, pipeline_dice_volumetric_per_patient_mean; every
    interval resamples patients), one row per slice (patient, outcome, dice; the outcome is
    one of PIPELINE_OUTCOMES) and `volumetric_dice` per patient. Taught in chapter 4.
    """
    tumour, flagged = np.asarray(has_tumour, dtype=bool), np.asarray(flagged, dtype=bool)
    drawn = binarize(final_masks).any(axis=(1, 2))
    dice = dice_scores(true_masks, final_masks)
    volumes = volumetric_dice(patients, true_masks, final_masks)
    patients = np.asarray(list(patients))
    outcome = np.select([tumour & flagged, tumour & ~flagged, ~tumour & drawn, ~tumour & flagged],
                        PIPELINE_OUTCOMES[:4], PIPELINE_OUTCOMES[4])
    report = {
        "pipeline_dice_mean": bootstrap_ci(np.mean, dice, groups=patients, seed=seed),
        "pipeline_dice_tumour_mean": bootstrap_ci(np.mean, dice[tumour], groups=patients[tumour], seed=seed),
        "pipeline_dice_volumetric_per_patient_mean": bootstrap_ci(np.mean, volumes.dice, groups=volumes.patient,
                                                                  seed=seed),
    }
    return report, pd.DataFrame({"patient": patients, "outcome": outcome, "dice": dice}), volumes


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


# --- stage 1, cross-validated by patient ----------------------------------------------------

@dataclass
class OutOfFold:
    """A head cross-validated by patient: every slice predicted by the fold that never saw it.

    y_true: 0/1 per slice (table order); p_positive: its out-of-fold P(positive); called:
    its call at its own fold's threshold (chosen on that fold's inner validation patients);
    per_fold: one row per fold (test patients and slices, threshold, ROC AUC, sensitivity,
    specificity on the fold's test slices). Taught in chapter 4.
    """

    y_true: np.ndarray
    p_positive: np.ndarray
    called: np.ndarray
    per_fold: pd.DataFrame
    groups: np.ndarray | None = None

    def report(self, at_specificity: float | None = None, n_boot: int = 1000,
               seed: int = 0) -> dict[str, Estimate]:
        """Pooled over all slices, with 95% intervals: ROC AUC, the sensitivity and specificity
        of the per-fold calls and, with `at_specificity`, the sensitivity where the pooled ROC
        curve reaches it. With `groups` (the patients) every interval resamples whole patients
        (bootstrap); without, slices (bootstrap for ROC AUC, Wilson for the proportions)."""
        pooled = binary_report(self.y_true, self.p_positive, n_boot=n_boot, seed=seed,
                               at_specificity=at_specificity, groups=self.groups)
        positives, negatives = self.y_true == 1, self.y_true == 0
        if self.groups is not None:
            grouped = dict(n_boot=n_boot, seed=seed, groups=self.groups)
            rates = {name: bootstrap_ci(lambda t, c, label=label: _share_called(t, c, label), self.y_true,
                                        self.called, **grouped)
                     for name, label in (("sensitivity", 1), ("specificity", 0))}
        else:
            rates = {"sensitivity": proportion(int(self.called[positives].sum()), int(positives.sum())),
                     "specificity": proportion(int((~self.called[negatives]).sum()), int(negatives.sum()))}
        return {"roc_auc": pooled["roc_auc"], **rates,
                **{name: value for name, value in pooled.items() if name.startswith("sensitivity_at_")}}

    def spread(self, names: Sequence[str] = ("roc_auc", "sensitivity", "specificity")) -> dict[str, Spread]:
        """How much each number moves from fold to fold (tl.metrics.spread of `per_fold`)."""
        return {name: spread(self.per_fold[name]) for name in names}

    def record(self, card, prefix: str, split: str, what: str, at_specificity: float | None = None,
               seed: int = 0) -> tuple[dict[str, Estimate], pd.DataFrame]:
        """Put `report` on the run card under `prefix`, and the spread over folds in a note
        ("<what>, spread over the N patient folds: roc_auc m ± sd; ..."); returns the report
        and the spread as a table (rounded to 3 places) to display. Taught in chapter 4.
        """
        report = self.report(at_specificity=at_specificity, seed=seed)
        card.metrics(report, prefix=prefix, split=split)
        spreads = self.spread()
        card.note(f"{what}, spread over the {len(self.per_fold)} patient folds: " + "; ".join(
            f"{name} {value.mean:.3f} ± {value.sd:.3f}" for name, value in spreads.items()))
        return report, pd.DataFrame(spreads, index=Spread._fields).T.round(3)


def cross_validate_head(table: pd.DataFrame, features: np.ndarray, make_head: Callable[[], keras.Model],
                        goal, group_col: str = "patient", label_col: str = "has_tumour", n_folds: int = 5,
                        seed: int = 0, inner_val_fraction: float = 0.2, patience: int = 20, epochs: int = 15,
                        batch_size: int = 16, fold_boot: int = 200, checkpoint_dir=None) -> OutOfFold:
    """Out-of-fold predictions of a head on cached features, by whole patients (groups).

    The rows of `table` (one per slice, with `group_col` and 0/1 `label_col`) and of
    `features` go together. `tl.splits.grouped_kfold` deals the patients to `n_folds` folds;
    for each, Keras is seeded with `seed + fold` and `make_head()` gives a fresh compiled head
    with a two-way softmax, trained on the fold's training patients with the best epoch kept
    on its inner validation patients (`tl.keras_training.fit_keeping_best`), which also choose
    its threshold for `goal` (tl.metrics.choose_threshold). The fold's test patients are
    predicted once. Taught in chapter 4.
    """
    y_true = table[label_col].to_numpy().astype(int)
    targets = keras.utils.to_categorical(y_true, 2)
    folds = grouped_kfold(table, group_col, n_folds=n_folds, label_col=label_col, seed=seed,
                          inner_val_fraction=inner_val_fraction)
    checkpoint_dir = Path(checkpoint_dir or tempfile.mkdtemp(prefix="cross_validation_"))
    p_positive, called, rows = np.full(len(table), np.nan), np.zeros(len(table), bool), []
    for k, fold in enumerate(folds):
        train, val, test = fold["train"], fold["val"], fold["test"]
        keras.utils.set_random_seed(seed + k)
        head = make_head()
        fit_keeping_best(head, checkpoint_dir / f"fold{k}.weights.h5", patience, name=f"fold {k}",
                         fit=lambda callbacks: fit_head_on_features(
                             head, features[train], targets[train], features[val], targets[val],
                             epochs=epochs, batch_size=batch_size, callbacks=callbacks, seed=seed))
        point = choose_threshold(y_true[val], head.predict(features[val], verbose=0)[:, 1], goal)
        p_positive[test] = head.predict(features[test], verbose=0)[:, 1]
        called[test] = p_positive[test] >= point.threshold
        scores = binary_report(y_true[test], p_positive[test], threshold=point.threshold,
                               n_boot=fold_boot, seed=seed)
        rows.append({"fold": k, "test patients": table[group_col].iloc[test].nunique(),
                     "test slices": len(test), "threshold": point.threshold,
                     **{name: scores[name].value for name in ("roc_auc", "sensitivity", "specificity")}})
    return OutOfFold(y_true, p_positive, called, pd.DataFrame(rows).set_index("fold"),
                     table[group_col].to_numpy())


# --- stage 2, cross-validated by patient on the frozen encoder's cached features -------------

@dataclass
class SegmenterOutOfFold:
    """A segmenter cross-validated by patient: every slice's mask predicted by the fold that
    never saw its patient.

    patients, has_tumour: per slice (table order); true_masks: (N, H, W) 0/1; p_masks: (N, H,
    W) out-of-fold P(tumour) per pixel, on every slice (tumour or not, for the pipeline);
    per_fold: one row per fold (test patients, tumour slices, epochs, best epoch, seconds,
    the fold's Dice). Taught in chapter 4.
    """

    patients: np.ndarray
    has_tumour: np.ndarray
    true_masks: np.ndarray
    p_masks: np.ndarray
    per_fold: pd.DataFrame

    def report(self, seed: int = 0) -> tuple[dict[str, Estimate], pd.DataFrame]:
        """`dice_report` on the tumour slices of all patients, pooled out of fold (intervals
        resample patients)."""
        tumour = self.has_tumour
        return dice_report(self.patients[tumour], self.true_masks[tumour], self.p_masks[tumour], seed=seed)

    def pipeline(self, flagged, seed: int = 0) -> tuple[dict[str, Estimate], pd.DataFrame, pd.DataFrame]:
        """`pipeline_report` of the two stages out of fold: `flagged` per slice (stage 1's
        out-of-fold calls, `OutOfFold.called`, from the same folds), this segmenter's masks on
        the flagged slices, every slice of every patient scored."""
        final = pipeline_masks(flagged, self.p_masks)
        return pipeline_report(self.patients, self.true_masks, final, self.has_tumour, flagged, seed=seed)

    def record(self, card, flagged, split: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Put `report` on the run card as segmenter_cv_* and `pipeline(flagged)` as
        cv_pipeline_*, with the number of patients they rest on (`card.scored("cv", ...)`);
        print the pipeline's mean per-patient volumetric Dice; return both reports as one table
        and the per-fold table (rounded to 3 places) to display. Taught in chapter 4.
        """
        segmenter, _ = self.report(seed=seed)
        pipeline, _, volumes = self.pipeline(flagged, seed=seed)
        card.metrics(segmenter, prefix="segmenter_cv", split=split)
        card.metrics(pipeline, prefix="cv", split=split)
        card.scored("cv", len(volumes), what=f"patients, {len(self.per_fold)}-fold cross-validated")
        print(f"the pipeline out of fold: mean per-patient volumetric Dice "
              f"{pipeline['pipeline_dice_volumetric_per_patient_mean']} over {len(volumes)} patients")
        both = pd.concat({"segmenter": report_table(segmenter), "pipeline": report_table(pipeline)})
        return both.round(3), self.per_fold.round(3)


def cross_validate_segmenter(table: pd.DataFrame, features: Sequence[np.ndarray], true_masks: np.ndarray,
                             make_decoder: Callable[[], keras.Model] | None = None, group_col: str = "patient",
                             label_col: str = "has_tumour", n_folds: int = 5, seed: int = 0,
                             inner_val_fraction: float = 0.2, patience: int = 8, epochs: int = 20,
                             batch_size: int = 16, learning_rate: float = 1e-3,
                             checkpoint_dir=None) -> SegmenterOutOfFold:
    """Out-of-fold masks of a decoder trained on cached encoder features, by whole patients.

    The rows of `table` (one per slice), of each array in `features` (`encoder_features`
    outputs, computed once) and of `true_masks` go together. The folds are
    `tl.splits.grouped_kfold`'s with these arguments, the same as `cross_validate_head`'s on
    the same table and seed, so stage 1's out-of-fold calls pair with these masks. For each
    fold Keras is seeded with `seed + fold`, `make_decoder()` gives a fresh decoder (default:
    `build_unet_decoder` on the features' shapes), trained by
    `fit_segmenter` on the tumour slices of the fold's training patients for at most `epochs`,
    keeping the best epoch on its inner validation patients; then it draws every slice of the
    fold's test patients once. Taught in chapter 4.
    """
    features = [np.asarray(f) for f in features]
    truth = np.asarray(true_masks)
    truth = truth[..., 0] if truth.ndim == 4 else truth
    if any(len(f) != len(table) for f in features) or len(truth) != len(table):
        raise ValueError(f"{len(table)} slices in the table, but features of {[len(f) for f in features]} and "
                         f"{len(truth)} masks")
    if make_decoder is None:
        def make_decoder():
            return build_unet_decoder([f.shape[1:] for f in features])
    tumour = table[label_col].to_numpy().astype(bool)
    folds = grouped_kfold(table, group_col, n_folds=n_folds, label_col=label_col, seed=seed,
                          inner_val_fraction=inner_val_fraction)
    checkpoint_dir = Path(checkpoint_dir or tempfile.mkdtemp(prefix="segmenter_cv_"))
    p_masks, rows = np.zeros(truth.shape, np.float32), []
    patients = table[group_col].to_numpy()
    for k, fold in enumerate(folds):
        train, val, test = fold["train"], fold["val"], fold["test"]
        train, val = train[tumour[train]], val[tumour[val]]  # the segmenter learns on tumour slices
        keras.utils.set_random_seed(seed + k)
        decoder = make_decoder()
        run = fit_segmenter(decoder, (_rows(features, train), truth[train, ..., None]),
                            (_rows(features, val), truth[val, ..., None]), checkpoint_dir / f"fold{k}.weights.h5",
                            patience, epochs, learning_rate, batch_size=batch_size, quiet=True)
        p_masks[test] = decoder.predict(_rows(features, test), batch_size=batch_size, verbose=0)[..., 0]
        scored = test[tumour[test]]  # the fold's own values: no interval from its few patients
        rows.append({"fold": k, "test patients": len(set(patients[test])), "tumour slices": len(scored),
                     "epochs": run.epochs_run, "best epoch": run.best_epoch, "seconds": round(run.seconds, 1),
                     "dice_mean": float(dice_scores(truth[scored], p_masks[scored]).mean()),
                     "dice_volumetric_per_patient_mean": float(
                         volumetric_dice(patients[scored], truth[scored], p_masks[scored]).dice.mean())})
        print(f"fold {k}: {rows[-1]['test patients']} test patients, {len(scored)} tumour slices; "
              f"{run.epochs_run} epochs (best {run.best_epoch}) in {run.seconds:.1f} s; "
              f"mean Dice {rows[-1]['dice_mean']:.3f}")
    return SegmenterOutOfFold(patients, tumour, truth, p_masks, pd.DataFrame(rows).set_index("fold"))


def _rows(features: Sequence[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    return [f[rows] for f in features]


def head_val_roc_auc(make_head: Callable[[], keras.Model], x_train: np.ndarray, y_train,
                     x_val: np.ndarray, y_val, epochs: int, batch_size: int = 32, seed: int = 0,
                     groups=None):
    """Validation ROC AUC (an Estimate) of a fresh head trained on these features.

    Seeds Keras with `seed`, builds the head with `make_head()`, fits it on the one-hot
    `y_train` for `epochs` (`fit_head_on_features`, no early stopping) and scores the
    positive column (the last) against the one-hot `y_val`, the interval resampling `groups`
    (the validation patients) when given. Compares two feature sets (two
    preprocessings, say) at equal cost. Used by chapter 4 (stage 1's preprocessing comparison).
    """
    keras.utils.set_random_seed(seed)
    head = make_head()
    fit_head_on_features(head, x_train, y_train, x_val, y_val, epochs=epochs,
                         batch_size=batch_size, seed=seed)
    positive = np.asarray(y_val)[:, -1].astype(int)
    return binary_report(positive, head.predict(x_val, verbose=0)[:, -1], seed=seed, groups=groups)["roc_auc"]
