"""Batches of (augmented) images for Keras and PyTorch, from a dataframe or class folders.

A dataframe row names an image file (`x_col`), its class (`y_col`) and, for segmentation,
its mask file (`mask_col`). Every example goes through the same steps:

    read (any format, the channels the model wants) -> resize to `image_size`
    -> one random affine transform + photometric changes (`tl_helpers.augment.Augment`),
       the mask moved identically -> float32 -> the backbone's own `preprocess`.

`KerasImageDataset` is a `keras.utils.PyDataset` (it works with every Keras backend);
`TorchImageDataset` and `make_torch_loader` serve PyTorch. Each framework is imported only
when its class is first used, so the PyTorch path never imports Keras. Randomness comes from a seed, so a run can be repeated exactly.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..data.images import convert_channels, decode_native, read_mask, resize_image
from .augment import Augment

CLASS_MODES = ("categorical", "binary", "sparse", None, "mask")


# --- reading one example ------------------------------------------------------------------

def load_example(path: str | Path, image_size: tuple[int, int], channels: int = 3,
                 augment: Augment | None = None, rng: np.random.Generator | None = None,
                 mask_path: str | Path | None = None):
    """One example: float32 HxWxC image with values 0..255, and float32 HxWx1 0/1 mask or None.

    Resizing comes before augmentation (as in Keras), so shifts are fractions of the target
    size and the affine warp works on the small image; a gray file is warped as one channel
    and only then repeated to the model's three (a third of the work). Used by chapters 1 and 5.
    """
    image = resize_image(decode_native(path), image_size)
    mask = read_mask(mask_path, image_size) if mask_path is not None else None
    if augment is not None:
        if rng is None:
            raise ValueError("load_example needs an rng to augment")
        if mask is None:
            image = augment.apply(rng, image)
        else:
            image, mask = augment.apply(rng, image, mask)
    image = convert_channels(image, channels).astype(np.float32)
    return image, (None if mask is None else mask.astype(np.float32))


def example_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The random stream of one example in one epoch: independent of batch order and threads.

    Used by tl.loaders.KerasImageDataset (chapters 1, 2 and 4).
    """
    return np.random.default_rng([seed, epoch, position])


_POOLS: dict = {}


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    # One pool per process and size: a pool made before a fork has no threads in the child.
    key = (os.getpid(), threads)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="tl-images")
    return _POOLS[key]


def load_examples(paths: Sequence, image_size: tuple[int, int], channels: int = 3,
                  augment: Augment | None = None, rngs: Sequence | None = None,
                  mask_paths: Sequence | None = None, threads: int | None = None) -> list:
    """`load_example` for each path, in parallel threads: a list of (image, mask or None).

    The one way a batch list is loaded (Keras batches, cached features, perturbed domains).
    `rngs[i]` draws example i's augmentation, so results do not depend on thread order.
    Used by chapters 1, 2 and 4.
    """
    paths = list(paths)
    if augment is not None and (rngs is None or len(rngs) != len(paths)):
        raise ValueError("load_examples needs one rng per path to augment")
    threads = threads if threads is not None else min(8, os.cpu_count() or 1)

    def load(i):
        return load_example(paths[i], image_size, channels, augment, rngs[i] if rngs is not None else None,
                            mask_paths[i] if mask_paths is not None else None)

    if threads <= 1 or len(paths) <= 1:
        return [load(i) for i in range(len(paths))]
    return list(_thread_pool(threads).map(load, range(len(paths))))


# --- labels -------------------------------------------------------------------------------

def encode_labels(values: Sequence, classes: Sequence | None = None) -> tuple[list, np.ndarray]:
    """Class names (given, or sorted unique values) and each value's index among them.

    Used by chapters 1 and 2.
    """
    values = list(values)
    classes = sorted(set(values)) if classes is None else list(classes)
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({str(v) for v in values if v not in index})
    if unknown:
        raise ValueError(f"labels not among classes {classes}: {unknown[:10]}")
    return classes, np.array([index[v] for v in values], dtype=np.int64)


# --- the table of examples shared by the Keras and PyTorch datasets -----------------------

def all_batches(data) -> tuple[np.ndarray, ...]:
    """Every batch of an unshuffled Keras dataset (`len(data)`, `data[i]`), concatenated part
    by part: (images, labels or masks) in table order. Used by chapter 4.
    """
    return tuple(np.concatenate(parts) for parts in zip(*(data[i] for i in range(len(data)))))


class _ImageTable:
    """Paths, labels and loading settings taken from a dataframe (one row per example)."""

    def _init_table(self, dataframe: pd.DataFrame, x_col: str, y_col: str | None, mask_col: str | None,
                    classes: Sequence | None, image_size: tuple[int, int], channels: int,
                    augment: Augment | None, preprocess: Callable | None, seed: int | None,
                    needs_labels: bool, needs_masks: bool):
        if len(dataframe) == 0:
            raise ValueError("the dataframe has no rows: no images to load")
        if needs_masks and mask_col is None:
            raise ValueError("masks are asked for but mask_col is None")
        for column in (x_col, mask_col, y_col if needs_labels else None):
            if column is not None and column not in dataframe.columns:
                raise ValueError(f"column {column!r} not in the dataframe (columns: {list(dataframe.columns)})")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {channels!r}")
        self.paths = dataframe[x_col].astype(str).tolist()
        self.mask_paths = dataframe[mask_col].astype(str).tolist() if mask_col is not None else None
        self.classes, self.labels = [], None
        if y_col is not None and y_col in dataframe.columns:
            self.classes, self.labels = encode_labels(dataframe[y_col], classes)
        self.class_indices = {name: i for i, name in enumerate(self.classes)}
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.channels = channels
        self.augment = augment
        self.preprocess = preprocess
        # No seed: draw one, and keep it, so that the run can still be repeated.
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)

    def load(self, position: int, rng: np.random.Generator | None):
        """Image and mask (or None) of the dataframe row at `position`."""
        mask_path = self.mask_paths[position] if self.mask_paths is not None else None
        return load_example(self.paths[position], self.image_size, self.channels,
                            self.augment, rng, mask_path)

    @classmethod
    def from_directory(cls, root: str | Path, **kwargs):
        """The dataset of a folder of class folders (`root/<class>/<image>`), hidden ones skipped."""
        from ..data.tables import list_class_images

        return cls(list_class_images(root), **kwargs)


def epoch_order(n: int, shuffle: bool, seed, epoch: int) -> np.ndarray:
    """The order of `n` examples in an epoch: as given, or a permutation fixed by (seed, epoch).

    Used by KerasImageDataset and tl.segmentation.ArrayBatches (chapter 4).
    """
    return np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)


# --- Keras (imported only when KerasImageDataset is used) ---------------------------------

def _define_keras_dataset():
    import keras

    class KerasImageDataset(_ImageTable, keras.utils.PyDataset):
        """Batches for `model.fit` / `predict` from a dataframe, with any Keras backend.

        class_mode: "categorical" (one-hot float32), "binary" (float32 0/1, two classes),
        "sparse" (int64 class index), "mask" (float32 NxHxWx1 masks from `mask_col`), or None
        (images only, for predict; `.labels` still holds the labels when `y_col` exists).
        Batches are float32 NxHxWxC, with values 0..255 before `preprocess` (the backbone's own
        function, given the whole batch). The last batch may be smaller. With `shuffle`, the
        order changes every epoch; order and augmentation are fixed by `seed`. `threads` load
        the images of a batch in parallel (OpenCV and the decoders release the GIL);
        `workers` / `use_multiprocessing` / `max_queue_size` are Keras' own, across batches.
        Used by chapters 1, 2 and 4.
        """

        def __init__(self, dataframe: pd.DataFrame, x_col: str = "path", y_col: str | None = "label",
                     mask_col: str | None = None, classes: Sequence | None = None,
                     class_mode: str | None = "categorical", image_size: tuple[int, int] = (224, 224),
                     channels: int = 3, batch_size: int = 32, shuffle: bool = True, seed: int | None = None,
                     augment: Augment | None = None, preprocess: Callable | None = None,
                     threads: int | None = None, workers: int = 1, use_multiprocessing: bool = False,
                     max_queue_size: int = 10):
            if class_mode not in CLASS_MODES:
                raise ValueError(f"class_mode must be one of {CLASS_MODES}, not {class_mode!r}")
            if batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, not {batch_size}")
            keras.utils.PyDataset.__init__(self, workers=workers, use_multiprocessing=use_multiprocessing,
                                           max_queue_size=max_queue_size)
            self._init_table(dataframe, x_col, y_col, mask_col, classes, image_size, channels, augment,
                             preprocess, seed, needs_labels=class_mode in ("categorical", "binary", "sparse"),
                             needs_masks=class_mode == "mask")
            if class_mode == "binary" and len(self.classes) != 2:
                raise ValueError(f"class_mode='binary' needs exactly 2 classes, found {self.classes}")
            self.class_mode = class_mode
            self.batch_size = int(batch_size)
            self.shuffle = shuffle
            self.threads = threads if threads is not None else min(8, os.cpu_count() or 1)
            self.epoch = 0
            self._order = self._epoch_order()

        def _epoch_order(self) -> np.ndarray:
            return epoch_order(len(self.paths), self.shuffle, self.seed, self.epoch)

        def __len__(self) -> int:
            return math.ceil(len(self.paths) / self.batch_size)

        def on_epoch_end(self):
            """Next epoch: new augmentation draws and, with shuffle, a new order.

            Keras calls this after every epoch and also when it resets its iterator (so `epoch`
            counts calls, not training epochs); each call moves to fresh draws all the same.
            """
            self.epoch += 1
            self._order = self._epoch_order()

        def batch_positions(self, index: int) -> np.ndarray:
            """The dataframe rows that make batch `index` of the current epoch."""
            if not 0 <= index < len(self):
                raise IndexError(f"batch index {index} out of range (0..{len(self) - 1})")
            return self._order[index * self.batch_size:(index + 1) * self.batch_size]

        def _load_batch(self, positions: np.ndarray) -> list:
            rngs = [example_rng(self.seed, self.epoch, int(p)) for p in positions] if self.augment is not None else None
            return load_examples([self.paths[p] for p in positions], self.image_size, self.channels, self.augment, rngs,
                                 None if self.mask_paths is None else [self.mask_paths[p] for p in positions],
                                 threads=self.threads)

        def __getitem__(self, index: int):
            positions = self.batch_positions(index)
            examples = self._load_batch(positions)
            images = np.stack([image for image, _ in examples])
            if self.preprocess is not None:
                images = np.asarray(self.preprocess(images), dtype=np.float32)
            if self.class_mode is None:
                return images
            if self.class_mode == "mask":
                return images, np.stack([mask for _, mask in examples])
            labels = self.labels[positions]
            if self.class_mode == "sparse":
                return images, labels
            if self.class_mode == "binary":
                return images, labels.astype(np.float32)
            return images, np.eye(len(self.classes), dtype=np.float32)[labels]

    KerasImageDataset.__module__ = __name__
    KerasImageDataset.__qualname__ = "KerasImageDataset"
    return KerasImageDataset


# --- PyTorch (imported only when these names are used) -----------------------------------

def _define_torch_dataset():
    import torch

    class TorchImageDataset(_ImageTable, torch.utils.data.Dataset):
        """A map-style PyTorch dataset over a dataframe of image paths.

        Items are (CxHxW float32 image, int class index), (image, 1xHxW float32 0/1 mask)
        when `mask_col` is given, or the image alone when there is neither label nor mask.
        Images hold 0..255 before `preprocess` (applied to the HxWxC float32 array).
        Augmentation draws from a per-process generator that `seed_worker` reseeds in each
        loader worker; use `make_torch_loader` so that runs repeat exactly. Taught in chapter 5.
        """

        def __init__(self, dataframe: pd.DataFrame, x_col: str = "path", y_col: str | None = "label",
                     mask_col: str | None = None, classes: Sequence | None = None,
                     image_size: tuple[int, int] = (224, 224), channels: int = 3,
                     augment: Augment | None = None, preprocess: Callable | None = None,
                     seed: int | None = None):
            self._init_table(dataframe, x_col, y_col, mask_col, classes, image_size, channels, augment,
                             preprocess, seed, needs_labels=False, needs_masks=False)
            self.reseed(self.seed)

        def reseed(self, *entropy: int):
            """Restart the augmentation stream from `entropy` (seed, worker seed, ...)."""
            self.rng = np.random.default_rng(list(entropy))

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, index: int):
            image, mask = self.load(int(index), self.rng if self.augment is not None else None)
            if self.preprocess is not None:
                image = np.asarray(self.preprocess(image), dtype=np.float32)
            image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
            if mask is not None:
                return image, torch.from_numpy(np.ascontiguousarray(mask.transpose(2, 0, 1)))
            if self.labels is not None:
                return image, int(self.labels[index])
            return image

    TorchImageDataset.__module__ = __name__
    TorchImageDataset.__qualname__ = "TorchImageDataset"  # so worker processes can unpickle it
    return TorchImageDataset


def seed_worker(worker_id: int):
    """DataLoader `worker_init_fn`: give each worker its own augmentation stream.

    torch seeds each worker from the loader's generator (a new base seed every epoch), so
    the streams are fixed by that generator and differ between workers and epochs.
    Used by tl.loaders.make_torch_loader (chapter 5).
    """
    import torch

    info = torch.utils.data.get_worker_info()
    dataset = info.dataset
    while hasattr(dataset, "dataset"):  # a Subset wraps the real dataset
        dataset = dataset.dataset
    dataset.reseed(dataset.seed, torch.initial_seed() % 2**63)


def seconds_to_load(dataset, count: int) -> float:
    """Seconds this process takes to prepare items 0 .. count-1 of `dataset` (read, decode,
    augment, normalise: one batch's worth when `count` is the batch size), in order.

    Used by chapter 5.
    """
    import time

    start = time.perf_counter()
    for index in range(count):
        dataset[index]
    return time.perf_counter() - start


def make_torch_loader(dataset, batch_size: int = 32, shuffle: bool = True, num_workers: int = 0,
                      seed: int = 0, drop_last: bool = False, **kwargs):
    """A DataLoader whose order and augmentation are fixed by `seed`, also with workers.

    Taught in chapter 5.
    """
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                       num_workers=num_workers, generator=generator,
                                       worker_init_fn=seed_worker, drop_last=drop_last, **kwargs)


_LAZY_CLASSES = {"KerasImageDataset": _define_keras_dataset, "TorchImageDataset": _define_torch_dataset}


def __getattr__(name):
    # Each framework is imported only when its dataset class is first asked for, so the
    # PyTorch path never imports Keras (and with it TensorFlow) and the other way round.
    if name in _LAZY_CLASSES:
        cls = _LAZY_CLASSES[name]()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
