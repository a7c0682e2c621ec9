"""A second imaging domain made from the first: a FIXED perturbed copy of every image.

Chapter 3 simulates "the same kind of films from a worse scanner" by perturbing X-rays
(rotation, shear, zoom, flips, brightness...). Drawn afresh every epoch, such changes are
augmentation; drawn once per image and kept, they are a domain: a model can be trained,
validated and tested on it, and the test images stay the same from run to run.

- `load_image_array`: images named by a table, read once, resized, as one uint8 array;
- `perturbed_copy`: the fixed perturbed copy of such an array, each image's draw keyed by
  a name (its file name), so that it does not depend on the order or the split it is in.

Small datasets (a few thousand images at 100-150 pixels: hundreds of MB as uint8) fit in
memory, and reading each file once instead of once per epoch saves the decoding.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from ..train.augment import Augment
from ..train.loaders import load_examples


def load_image_array(paths: Sequence[str | Path], image_size: tuple[int, int], channels: int = 3,
                     threads: int | None = None) -> np.ndarray:
    """Read the images at `paths`, resized to `image_size` = (height, width): uint8 NxHxWxC.

    The training loaders' decoding and resizing (`tl.loaders.load_examples`), kept as uint8.
    Taught in chapter 3.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no image paths given")
    examples = load_examples(paths, (int(image_size[0]), int(image_size[1])), channels, threads=threads)
    return np.stack([image for image, _ in examples]).astype(np.uint8)


def stable_key(name) -> int:
    """An integer key for a name that is the same in every run and process (CRC-32).

    Python's own `hash` of a string changes between processes, so it cannot seed a draw.
    Integers are kept as they are. Taught in chapter 3.
    """
    if isinstance(name, (int, np.integer)):
        return int(name)
    return zlib.crc32(str(name).encode("utf-8"))


def perturbed_copy(images: np.ndarray, augment: Augment, seed: int = 0, keys: Sequence | None = None) -> np.ndarray:
    """A fixed perturbed copy of `images` (NxHxWxC or NxHxW, any dtype the augmenter takes).

    Image i is changed by one draw of `augment` from a generator seeded with
    (seed, stable_key(keys[i])): with the images' file names as keys, an image gets the same
    perturbation whatever table, split or order it comes in; without keys the key is i.
    The input is not modified. Taught in chapter 3.
    """
    images = np.asarray(images)
    keys = range(len(images)) if keys is None else list(keys)
    if len(keys) != len(images):
        raise ValueError(f"{len(keys)} keys for {len(images)} images")
    out = np.empty_like(images)
    for index, (image, key) in enumerate(zip(images, keys)):
        rng = np.random.default_rng([int(seed), stable_key(key)])
        out[index] = augment.apply(rng, image)
    return out
