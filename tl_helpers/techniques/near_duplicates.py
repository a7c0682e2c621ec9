"""Near-duplicate images across splits, found with perceptual hashes.

Public datasets assembled from several sources often hold the same scan twice: resized,
re-encoded, slightly brightened. When one copy lands in training and the other in the
test split, the test score partly measures memory. A perceptual hash (here imagehash's
pHash: the signs of the lowest frequencies of the image's discrete cosine transform)
changes little under such edits, so two images whose hashes differ in only a few of
their 64 bits are almost surely the same picture.

    hashes = perceptual_hashes(paths)                  # (N, 64) bits
    pairs = near_duplicate_pairs(test_hashes, train_hashes, max_distance=4)
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from ..data.images import read_image


def perceptual_hash(image: np.ndarray, hash_size: int = 8) -> np.ndarray:
    """pHash bits (hash_size**2 booleans) of a uint8 gray or RGB image array. Taught in chapter 2."""
    return imagehash.phash(Image.fromarray(np.asarray(image)).convert("L"), hash_size=hash_size).hash.ravel()


def perceptual_hashes(paths: Sequence, hash_size: int = 8, threads: int = 4) -> np.ndarray:
    """(N, hash_size**2) bool array: the pHash of each image file, in order. Taught in chapter 2."""
    def one(path):
        return perceptual_hash(read_image(path, channels=1), hash_size)

    paths = [str(p) for p in paths]
    if not paths:
        return np.zeros((0, hash_size * hash_size), dtype=bool)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return np.stack(list(pool.map(one, paths)))


def hamming_distances(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(Nq, Nr) int array: how many bits differ between every query hash and every reference hash.

    Taught in chapter 2.
    """
    query, reference = np.atleast_2d(query).astype(bool), np.atleast_2d(reference).astype(bool)
    if query.shape[1] != reference.shape[1]:
        raise ValueError(f"hashes of different lengths: {query.shape[1]} and {reference.shape[1]} bits")
    packed_q, packed_r = np.packbits(query, axis=1), np.packbits(reference, axis=1)
    distances = np.zeros((len(packed_q), len(packed_r)), dtype=np.int32)
    for byte in range(packed_q.shape[1]):  # one byte column at a time keeps memory at Nq x Nr
        distances += np.bitwise_count(packed_q[:, byte, None] ^ packed_r[None, :, byte])
    return distances


def nearest_reference(query: np.ndarray, reference: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(index, distance) of each query hash's closest reference hash (ties: the lowest index).

    Taught in chapter 2.
    """
    if len(reference) == 0:
        raise ValueError("no reference hashes to compare with")
    indices, distances = [], []
    for start in range(0, len(query), chunk):
        block = hamming_distances(query[start:start + chunk], reference)
        best = block.argmin(axis=1)
        indices.append(best)
        distances.append(block[np.arange(len(best)), best])
    if not indices:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=np.int32)
    return np.concatenate(indices), np.concatenate(distances)


def near_duplicate_pairs(query: np.ndarray, reference: np.ndarray, max_distance: int = 4) -> pd.DataFrame:
    """Query rows whose nearest reference hash differs in at most `max_distance` bits.

    Columns: query (row in `query`), reference (row in `reference`), distance (bits);
    sorted by distance, then query. Taught in chapter 2.
    """
    index, distance = nearest_reference(query, reference)
    close = np.flatnonzero(distance <= max_distance)
    pairs = pd.DataFrame({"query": close, "reference": index[close], "distance": distance[close]})
    return pairs.sort_values(["distance", "query"], kind="stable").reset_index(drop=True)
