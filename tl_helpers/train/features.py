"""Frozen-backbone phase on cached features: run the backbone once, train the head on that.

The articles' first phase freezes the backbone and trains a small head, yet feeds every
batch of every epoch through the whole backbone again. With the backbone frozen (and in
inference mode) its output for an image never changes, so it can be computed once:
un-augmented (`views=0`), or for a fixed number of augmented views per image. Training
the head on those vectors then takes seconds per epoch instead of minutes.

Features are cached on disk (`.tl_cache/features` under the repository root, or
`$TL_CACHE_DIR/features`; gitignored) under a key made of everything that changes them:
each file's path, size and modification time; the backbone's weights (a hash of their
bytes, so two random initialisations never collide) and name; where its weights came
from; the image size; the preprocessing (its name and its output on a fixed probe
image); the number of views, the augmentation and its seed.

The head is its own Keras model taking the feature vector, so afterwards
`stack_head(backbone_model, head)` puts it on the backbone, weights shared, to fine-tune.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np

from .. import paths
from ..paths import progress
from .loaders import load_examples

CACHE_FORMAT = 1  # bump when the layout of cached arrays changes
def default_cache_dir() -> Path:
    """The feature cache folder (`tl_helpers.paths.cache_dir("features")`).

    Used by tl.features.extract_features (chapters 1, 2 and 4).
    """
    return paths.cache_dir("features")


def _file_identity(path) -> list:
    """A file as the cache sees it: absolute path, size, modification time (ns)."""
    stat = os.stat(path)
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def weights_fingerprint(model) -> str:
    """SHA-256 of a Keras model's weights: equal only for the very same numbers.

    Used by tl.features.extract_features (chapters 1, 2 and 4).
    """
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def preprocess_fingerprint(preprocess: Callable) -> str:
    """The preprocessing's name plus a hash of its output on a fixed probe image.

    Used by tl.features.extract_features (chapters 1, 2 and 4).
    """
    probe = np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3) % 256
    output = np.asarray(keras.ops.convert_to_numpy(preprocess(probe.copy())), dtype=np.float32)
    name = f"{getattr(preprocess, '__module__', '')}.{getattr(preprocess, '__qualname__', repr(preprocess))}"
    return f"{name}:{hashlib.sha256(output.tobytes()).hexdigest()[:16]}"


def feature_cache_key(model, preprocess: Callable, paths: Sequence, image_size: tuple[int, int],
                      views: int = 0, augment: Any = None, seed: int = 0,
                      extra: dict | None = None) -> tuple[str, dict]:
    """(hex key, the parts it was made of) for these files through this backbone.

    Used by tl.features.extract_features (chapters 1, 2 and 4).
    """
    parts = {
        "format": CACHE_FORMAT,
        "files": [_file_identity(p) for p in paths],
        "model_name": getattr(model, "name", type(model).__name__),
        # the same network on TensorFlow and on torch rounds differently: one backend's cached
        # features must not feed the other's run (a smoke run then called one scan differently)
        "keras_backend": keras.backend.backend(),
        "weights": weights_fingerprint(model),
        "preprocess": preprocess_fingerprint(preprocess),
        "image_size": list(image_size),
        "views": int(views),
        "augment": repr(augment) if views else None,
        "seed": int(seed) if views else None,
        "extra": extra or {},
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return key, parts


def _load_batch(paths, image_size, augment, view: int, first_index: int, seed: int) -> np.ndarray:
    """Images (float32, 0..255, RGB) for a batch; view v > 0 draws augmentation seed (seed, v, i)."""
    rngs = [np.random.default_rng([seed, view, first_index + i]) for i in range(len(paths))] if view else None
    examples = load_examples(paths, image_size, channels=3, augment=augment if view else None, rngs=rngs)
    return np.stack([image for image, _ in examples])


def _backbone_outputs(model, batch: np.ndarray, batch_size: int) -> np.ndarray:
    """model.predict_on_batch on a batch padded to `batch_size`.

    One input shape means one traced graph: a short last batch would trace (and compile)
    the whole backbone again, which costs more than running it on the padding.
    """
    count = len(batch)
    if count < batch_size:
        batch = np.concatenate([batch, np.zeros((batch_size - count,) + batch.shape[1:], batch.dtype)])
    return np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(batch)))[:count]


def _compute_features(model, preprocess, paths, image_size, batch_size, views, augment, seed):
    """Backbone outputs: (N, D) when views == 0, else (views, N, D)."""
    batch_size = max(1, min(batch_size, len(paths)))  # no padding beyond the data itself
    outputs = []
    bar = progress(desc="features", total=max(views, 1) * len(paths))
    for view in range(1, views + 1) if views else [0]:
        chunks = []
        for start in range(0, len(paths), batch_size):
            batch = _load_batch(paths[start:start + batch_size], image_size, augment, view, start, seed)
            chunks.append(_backbone_outputs(model, keras.ops.convert_to_numpy(preprocess(batch)), batch_size))
            bar.update(len(batch))
        outputs.append(np.concatenate(chunks).astype(np.float32))
    bar.close()
    return outputs[0] if not views else np.stack(outputs)


def _unpack_backbone(backbone, preprocess):
    """(keras model, preprocess, extra key parts) from a Backbone record or a bare model."""
    if hasattr(backbone, "model") and hasattr(backbone, "preprocess"):
        extra = {"name": getattr(backbone, "name", None), "weights_source": getattr(backbone, "weights_source", None)}
        return backbone.model, preprocess or backbone.preprocess, extra
    if preprocess is None:
        raise ValueError("a bare Keras model needs its preprocess function")
    return backbone, preprocess, {}


def extract_features(backbone, preprocess: Callable | None, paths: Sequence, image_size: tuple[int, int],
                     batch_size: int = 32, views: int = 0, augment=None, seed: int = 0,
                     cache_key_parts: dict | None = None, cache_dir: str | Path | None = None,
                     use_cache: bool = True, verbose: int = 0) -> np.ndarray:
    """Frozen-backbone features of image files, computed once and cached on disk.

    backbone: a `tl_helpers.backbones.Backbone` (its model and preprocess are used, and its
        name and weights source go into the key) or a Keras model with a pooled (N, D)
        output plus `preprocess` (RGB pixels 0..255 -> model input).
    views: 0 for the images as they are, giving (N, D); k > 0 for k augmented views of
        each image through `augment` (a `tl_helpers.augment.Augment`), giving (k, N, D).
        View v of image i always gets the same random transform for a given `seed`.
    cache_key_parts: anything else that should separate caches (e.g. a dataset version).

    Used by chapters 1, 2 and 4.
    """
    model, preprocess, extra = _unpack_backbone(backbone, preprocess)
    if views and augment is None:
        raise ValueError("views > 0 need an augment to make the views differ")
    paths = [str(p) for p in paths]
    image_size = tuple(image_size)
    cache_file = None
    if use_cache:
        key, parts = feature_cache_key(model, preprocess, paths, image_size, views, augment, seed,
                                       {**extra, **(cache_key_parts or {})})
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache_file = folder / f"{key}.npy"
        if cache_file.is_file():
            if verbose:
                print(f"features: loaded from the cache {cache_file}")
            return np.load(cache_file)
    features = _compute_features(model, preprocess, paths, image_size, batch_size, views, augment, seed)
    if cache_file is not None:
        _write_cache(cache_file, features, parts)
    return features


def _write_cache(cache_file: Path, features: np.ndarray, parts: dict) -> None:
    """Write array and description atomically (a reader never sees half a file)."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(f".{os.getpid()}.partial.npy")
    np.save(partial, features)
    os.replace(partial, cache_file)
    description = {key: value for key, value in parts.items() if key != "files"}
    description["file_count"] = len(parts["files"])
    description["shape"] = list(features.shape)
    cache_file.with_suffix(".json").write_text(json.dumps(description, indent=1, default=str))


def dense_head(feature_dim: int, outputs: int, hidden_units: Sequence[int] = (), dropout: float = 0.0,
               name: str = "head") -> keras.Model:
    """A head on a feature vector: optional Dense+ReLU layers, dropout, then the output layer.

    One output: sigmoid (binary); several: softmax. Taught in chapter 4.
    """
    inputs = keras.Input((feature_dim,), name=f"{name}_features")
    x = inputs
    for units in hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    activation = "sigmoid" if outputs == 1 else "softmax"
    return keras.Model(inputs, keras.layers.Dense(outputs, activation=activation)(x), name=name)


def _flatten_views(features: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
    """(views, N, D) features with N labels -> (views*N, D) with the labels repeated."""
    labels = np.asarray(labels)
    if features.ndim == 3:
        return features.reshape(-1, features.shape[-1]), np.concatenate([labels] * features.shape[0])
    return features, labels


def fit_head_on_features(head: keras.Model, x_train: np.ndarray, y_train, x_val: np.ndarray, y_val,
                         epochs: int, batch_size: int = 32, callbacks=None, verbose: int = 0,
                         seed: int | None = None):
    """Train a compiled head on features; (views, N, D) training features count as views*N examples.

    Returns the Keras History. `seed` (optional) fixes the shuffling order. Used by chapters 1, 2 and 4.
    """
    x_train, y_train = _flatten_views(x_train, y_train)
    x_val, y_val = _flatten_views(x_val, y_val)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return head.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
                    batch_size=batch_size, callbacks=callbacks, verbose=verbose, shuffle=True)


@dataclass
class FrozenPhase:
    """What `train_head_on_frozen_backbone` did: the history, the features, and timings."""

    history: Any
    train_features: np.ndarray
    val_features: np.ndarray
    feature_seconds: float
    fit_seconds: float


def train_head_on_frozen_backbone(backbone, preprocess, head: keras.Model, train_paths, y_train,
                                  val_paths, y_val, image_size: tuple[int, int], epochs: int,
                                  batch_size: int = 32, views: int = 0, augment=None, seed: int = 0,
                                  callbacks=None, cache_dir=None, cache_key_parts=None,
                                  extract_batch_size: int = 32, verbose: int = 0) -> FrozenPhase:
    """The whole frozen phase in one call: features (cached) for both splits, then the head.

    Training features are augmented views when `views` > 0; validation features never are.
    `head` must be compiled; `batch_size` is the head's, `extract_batch_size` the
    backbone's. See `extract_features` for the other arguments.
    """
    started = time.perf_counter()
    common = dict(image_size=image_size, batch_size=extract_batch_size, cache_dir=cache_dir,
                  cache_key_parts=cache_key_parts, verbose=verbose)
    train_features = extract_features(backbone, preprocess, train_paths, views=views, augment=augment,
                                      seed=seed, **common)
    val_features = extract_features(backbone, preprocess, val_paths, **common)
    feature_seconds = time.perf_counter() - started
    history = fit_head_on_features(head, train_features, y_train, val_features, y_val, epochs,
                                   batch_size, callbacks, verbose, seed)
    return FrozenPhase(history, train_features, val_features, feature_seconds,
                       time.perf_counter() - started - feature_seconds)


def stack_head(backbone_model: keras.Model, head: keras.Model, name: str = "backbone_with_head") -> keras.Model:
    """Backbone followed by the trained head, sharing its layers (and weights) for fine-tuning.

    The result takes the backbone's (preprocessed) input and predicts what the head
    predicted from the cached features of the same images. Taught in chapter 1.
    """
    return keras.Model(backbone_model.input, head(backbone_model.output), name=name)
