"""Near-duplicate images across splits, found with perceptual hashes.

Public datasets assembled from several sources often hold the same scan twice: resized,
re-encoded, slightly brightened. When one copy lands in training and the other in the
test split, the test score partly measures memory. A perceptual hash (here imagehash's
pHash: the signs of the lowest frequencies of the image's discrete cosine transform)
changes little under such edits, so two images whose hashes differ in only a few of
their 64 bits are almost surely the same picture. A hash is not mirror-invariant, and a
left-right flipped copy is a common edit (and a common augmentation someone saved), so audits
also compare each image with the mirror images of the others (`mirrored=True`, the default).

    hashes = perceptual_hashes(paths)                  # (N, 64) bits
    pairs = near_duplicate_pairs(test_hashes, train_hashes, max_distance=4)
    audit = audit_splits(table)                        # every pair of splits, and within each
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from ..data.images import read_image


def perceptual_hash(image: np.ndarray, hash_size: int = 8) -> np.ndarray:
    """pHash bits (hash_size**2 booleans) of a uint8 gray or RGB image array. Taught in chapter 2."""
    return imagehash.phash(Image.fromarray(np.asarray(image)).convert("L"), hash_size=hash_size).hash.ravel()


def perceptual_hashes(paths: Sequence, hash_size: int = 8, threads: int = 4, mirrored: bool = False):
    """(N, hash_size**2) bool array: the pHash of each image file, in order.

    With `mirrored`, a pair (hashes, hashes of the left-right mirrored images), each file read
    once. Taught in chapter 2.
    """
    def one(path):
        image = read_image(path, channels=1)
        if mirrored:
            return np.stack([perceptual_hash(image, hash_size), perceptual_hash(np.ascontiguousarray(image[:, ::-1]),
                                                                                 hash_size)])
        return perceptual_hash(image, hash_size)

    paths = [str(p) for p in paths]
    if not paths:
        empty = np.zeros((0, hash_size * hash_size), dtype=bool)
        return (empty, empty.copy()) if mirrored else empty
    with ThreadPoolExecutor(max_workers=threads) as pool:
        hashes = np.stack(list(pool.map(one, paths)))
    return (hashes[:, 0], hashes[:, 1]) if mirrored else hashes


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


def nearest_reference(query: np.ndarray, reference: np.ndarray, chunk: int = 512,
                      exclude_self: bool = False, reference_mirrored: np.ndarray | None = None,
                      return_mirrored: bool = False):
    """(index, distance) of each query hash's closest reference hash (ties: the lowest index).

    With `exclude_self`, query and reference are the same hashes and row i is not compared
    with itself (duplicates within one set), nor with its own mirror image. With
    `reference_mirrored` (the hashes of the mirrored reference images) a reference counts at the
    smaller of its two distances; `return_mirrored` adds a third array, True where the mirror
    was the closer. Taught in chapter 2.
    """
    if len(reference) == 0 or (exclude_self and len(reference) < 2):
        raise ValueError("no reference hashes to compare with")
    if exclude_self and len(query) != len(reference):
        raise ValueError(f"exclude_self needs the same hashes twice, got {len(query)} and {len(reference)}")
    if reference_mirrored is not None and len(reference_mirrored) != len(reference):
        raise ValueError(f"{len(reference_mirrored)} mirrored hashes for {len(reference)} reference hashes")
    candidates = reference if reference_mirrored is None else np.concatenate([reference, reference_mirrored])
    indices, distances = [], []
    for start in range(0, len(query), chunk):
        block = hamming_distances(query[start:start + chunk], candidates)
        if exclude_self:
            rows = np.arange(len(block))
            block[rows, start + rows] = np.iinfo(block.dtype).max
            if reference_mirrored is not None:
                block[rows, len(reference) + start + rows] = np.iinfo(block.dtype).max
        best = block.argmin(axis=1)
        indices.append(best)
        distances.append(block[np.arange(len(best)), best])
    if not indices:
        found = np.zeros(0, dtype=int), np.zeros(0, dtype=np.int32)
        return (*found, np.zeros(0, dtype=bool)) if return_mirrored else found
    index = np.concatenate(indices)
    found = index % len(reference), np.concatenate(distances)
    return (*found, index >= len(reference)) if return_mirrored else found


def near_duplicate_pairs(query: np.ndarray, reference: np.ndarray, max_distance: int = 4,
                         exclude_self: bool = False, reference_mirrored: np.ndarray | None = None) -> pd.DataFrame:
    """Query rows whose nearest reference hash differs in at most `max_distance` bits.

    Columns: query (row in `query`), reference (row in `reference`), distance (bits),
    mirrored (the match was the reference's mirror image; needs `reference_mirrored`);
    sorted by distance, then query. With `exclude_self` (query and reference the same
    hashes), a row's own hash does not count. Taught in chapter 2.
    """
    index, distance, mirrored = nearest_reference(query, reference, exclude_self=exclude_self,
                                                  reference_mirrored=reference_mirrored, return_mirrored=True)
    close = np.flatnonzero(distance <= max_distance)
    pairs = pd.DataFrame({"query": close, "reference": index[close], "distance": distance[close],
                          "mirrored": mirrored[close]})
    return pairs.sort_values(["distance", "query"], kind="stable").reset_index(drop=True)


@dataclass
class SplitAudit:
    """What `audit_splits` found.

    - `counts`: one row per pair of splits (`reference`, `query`: query rows with a near-duplicate
      among the reference rows) and per split against itself, with the rows of each, the
      near-duplicates found, how many were exact (distance 0) and their share of the query rows;
    - `pairs`: every flagged query row with its nearest partner: `row` and `partner` (labels of
      the table's index), `split`, `partner_split`, `distance`, `within` (same split),
      `mirrored` (the partner matched as a mirror image);
    - `leaked`: a boolean Series on the table's index, True for a row with a near-duplicate in a
      split before its own (a val or test row whose picture training saw): the rows to leave
      out for the metrics without near-duplicates, `table[~audit.leaked]`.

    Used by tl.near_duplicates.audit_splits (chapters 1 to 5).
    """
    counts: pd.DataFrame
    pairs: pd.DataFrame
    leaked: pd.Series


def audit_splits(table: pd.DataFrame, split_col: str = "split", path_col: str = "path", max_distance: int = 4,
                 order: Sequence[str] = ("train", "val", "test"), hash_size: int = 8,
                 threads: int = 4, mirrored: bool = True) -> SplitAudit:
    """Near-duplicate images between every pair of splits and within each split.

    Hashes every file once (perceptual_hashes), then for each pair of splits searches the later
    split's images among the earlier split's (train before val before test, as `order` says;
    splits it does not name come after, sorted) with near_duplicate_pairs, and each split
    among its own images (and, with `mirrored`, among their mirror images: a flipped copy counts).
    A row counts once per pair, matched to its nearest partner. When the
    counts are not zero, report the metrics on the rows `leaked` leaves out as the headline,
    beside the metrics on all rows. Taught in chapter 2; used by chapters 1 and 3.
    """
    if table.index.has_duplicates:
        raise ValueError("the table's index has duplicate labels; reset_index() it first")
    names = list(pd.unique(table[split_col].astype(str)))
    ranked = [name for name in order if name in names] + sorted(n for n in names if n not in order)
    hashes = perceptual_hashes(table[path_col].tolist(), hash_size=hash_size, threads=threads, mirrored=mirrored)
    hashes, flipped = hashes if mirrored else (hashes, None)
    split_of = table[split_col].astype(str).to_numpy()
    rows_of = {name: np.flatnonzero(split_of == name) for name in ranked}
    counts, pairs = [], []
    for position, query in enumerate(ranked):
        for reference in ranked[:position + 1]:
            q_rows, r_rows = rows_of[query], rows_of[reference]
            within = query == reference
            if within and len(q_rows) < 2:
                found = pd.DataFrame({"query": [], "reference": [], "distance": [], "mirrored": []}, dtype=int)
            else:
                found = near_duplicate_pairs(hashes[q_rows], hashes[r_rows], max_distance, exclude_self=within,
                                             reference_mirrored=None if flipped is None else flipped[r_rows])
            counts.append({"reference": reference, "query": query, "reference_rows": len(r_rows),
                           "query_rows": len(q_rows), "near_duplicates": len(found),
                           "exact": int((found["distance"] == 0).sum()),
                           "share": len(found) / len(q_rows) if len(q_rows) else float("nan")})
            pairs.append(pd.DataFrame({
                "row": table.index[q_rows[found["query"].to_numpy(dtype=int)]],
                "partner": table.index[r_rows[found["reference"].to_numpy(dtype=int)]],
                "split": query, "partner_split": reference,
                "distance": found["distance"].to_numpy(dtype=int), "within": within,
                "mirrored": found["mirrored"].to_numpy(dtype=bool)}))
    pairs = pd.concat(pairs, ignore_index=True)
    leaked = pd.Series(False, index=table.index, name="leaked")
    leaked.loc[pairs.loc[~pairs["within"], "row"].unique()] = True
    return SplitAudit(counts=pd.DataFrame(counts), pairs=pairs, leaked=leaked)


# --- chapter 2: the leaked images beside their twins ---------------------------------------

def plot_twins(audit: SplitAudit, table: pd.DataFrame, split: str = "test", count: int = 4,
               label_col: str = "label", path_col: str = "path", what: str = "images"):
    """Up to `count` images of `split` that have a near-duplicate in an earlier split, each beside
    that twin, titled with split, label and distance in bits (two pairs a row). `table` is the
    one the audit ran on. Returns the figure, or None (and prints a line saying so) when no image
    of `split` has a twin in an earlier split. Taught in chapter 2.
    """
    from .plotting import plot_image_grid

    twins = audit.pairs[(audit.pairs["split"] == split) & ~audit.pairs["within"]].head(count)
    if twins.empty:
        print(f"no {split} image has a near-duplicate in an earlier split at this distance")
        return None
    images, titles = [], []
    for twin in twins.itertuples(index=False):
        images += [read_image(table.loc[twin.row, path_col]), read_image(table.loc[twin.partner, path_col])]
        titles += [f"{split}: {table.loc[twin.row, label_col]}",
                   f"{twin.partner_split}: {table.loc[twin.partner, label_col]} ({twin.distance} bits)"]
    return plot_image_grid(images, ncols=4, titles=titles,
                           suptitle=f"{split.capitalize()} {what} and their nearest twin in an earlier split")


SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}


def describe_leaks(audit: SplitAudit, table: pd.DataFrame, split_col: str = "split",
                   label_col: str = "label", what: str = "images") -> str:
    """One line on what `audit_splits` found: for each split after the first, how many of its
    images have a near-duplicate in an earlier split (count and share), and how many of the
    cross-split pairs carry different labels. `table` is the one the audit ran on.
    Taught in chapter 2.
    """
    order = list(dict.fromkeys(audit.counts["query"]))
    words = [SPLIT_WORDS.get(name, name) for name in order]
    parts = []
    for position, name in enumerate(order[1:], start=1):
        leaked = audit.leaked[table[split_col].astype(str) == name].to_numpy()
        if len(leaked):
            parts.append(f"{words[position]} {what} with a near-duplicate in {' or '.join(words[:position])}: "
                         f"{leaked.sum()} of {len(leaked)} ({leaked.mean():.1%})")
    cross = audit.pairs[~audit.pairs["within"]]
    relabelled = (table.loc[cross["row"], label_col].to_numpy() != table.loc[cross["partner"], label_col].to_numpy())
    parts.append(f"{int(relabelled.sum())} of the {len(cross)} cross-split pairs carry different labels")
    return "; ".join(parts)
