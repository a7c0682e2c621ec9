"""Crop a brain MRI slice to the head: the dark frame around it carries no information.

Scans come with wide black margins, and the head sits in them at different places and
sizes. Cropping every image to the head's bounding box, then resizing, lets the network
spend its pixels on anatomy. The recipe (the one chapter 2's article uses):

    grayscale -> Gaussian blur -> binary threshold -> erode, then dilate (removes specks)
    -> the largest outer contour -> its extreme left / right / top / bottom points -> crop.

Images with nothing above the threshold (an all-black frame, an empty slice) have no
contour: `brain_bounding_box` returns None for them and `crop_to_brain` returns the
image uncropped (resized when asked), rather than failing a whole dataset on one file.
`crop_image_files` applies the crop to files once and keeps the results on disk.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import cv2
import imutils
import numpy as np
import pandas as pd

from ..data.images import read_image

DEFAULT_THRESHOLD = 45  # gray level; MRI background sits well below, tissue well above
DEFAULT_BLUR = 5  # Gaussian kernel size (odd)
DEFAULT_ITERATIONS = 2  # erosions, then as many dilations


def _gray(image: np.ndarray) -> np.ndarray:
    """uint8 HxW from an HxW, HxWx1 or HxWx3 (RGB) array."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if image.ndim != 2:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {image.shape}")
    return image.astype(np.uint8, copy=False)


def foreground_mask(image: np.ndarray, threshold: int = DEFAULT_THRESHOLD, blur: int = DEFAULT_BLUR,
                    iterations: int = DEFAULT_ITERATIONS) -> np.ndarray:
    """uint8 0/255 mask of the bright parts: blurred, thresholded, eroded then dilated.

    Blurring first merges scanner noise into the background; erosion removes the specks
    and thin lines (text, rulers) the threshold lets through, and dilation gives the
    surviving shapes back their size. Taught in chapter 2; used by chapter 1.
    """
    gray = cv2.GaussianBlur(_gray(image), (blur, blur), 0)
    mask = cv2.threshold(gray, threshold, 255, cv2.THRESH_BINARY)[1]
    mask = cv2.erode(mask, None, iterations=iterations)
    return cv2.dilate(mask, None, iterations=iterations)


def brain_bounding_box(image: np.ndarray, threshold: int = DEFAULT_THRESHOLD, blur: int = DEFAULT_BLUR,
                       iterations: int = DEFAULT_ITERATIONS) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the largest bright shape, right/bottom exclusive; None if none.

    The box runs from the shape's extreme points: its leftmost, rightmost, topmost and
    bottommost contour pixels. Taught in chapter 2.
    """
    mask = foreground_mask(image, threshold, blur, iterations)
    contours = imutils.grab_contours(cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE))
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    points = largest[:, 0, :]  # (n, 2) as (x, y)
    left, top = int(points[:, 0].min()), int(points[:, 1].min())
    right, bottom = int(points[:, 0].max()) + 1, int(points[:, 1].max()) + 1
    return left, top, right, bottom


def crop_to_brain(image: np.ndarray, size: int | tuple[int, int] | None = None, margin: int = 0,
                  threshold: int = DEFAULT_THRESHOLD, blur: int = DEFAULT_BLUR,
                  iterations: int = DEFAULT_ITERATIONS) -> np.ndarray:
    """The image cut to the head's bounding box (plus `margin` pixels), resized to `size`.

    size: (height, width), an int for a square, or None to keep the cropped size. Works on
    gray and RGB uint8 arrays and keeps their channels. An image with no bright shape (all
    black, say) is returned uncropped, resized to `size` when one is given. Taught in chapter 2.
    """
    box = brain_bounding_box(image, threshold, blur, iterations)
    cropped = np.asarray(image)
    if box is not None:
        left, top, right, bottom = box
        height, width = cropped.shape[:2]
        cropped = cropped[max(0, top - margin):min(height, bottom + margin),
                          max(0, left - margin):min(width, right + margin)]
    if size is None:
        return cropped.copy()
    height, width = (size, size) if isinstance(size, int) else size
    shrinking = height <= cropped.shape[0] and width <= cropped.shape[1]
    resized = cv2.resize(cropped, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return resized.reshape((height, width) + cropped.shape[2:])


def _cache_folder_name(size, margin, threshold, blur, iterations) -> str:
    """A folder name that changes whenever a crop setting does."""
    settings = json.dumps([list(size) if size is not None else None, margin, threshold, blur, iterations])
    return "crop-" + hashlib.sha256(settings.encode()).hexdigest()[:12]


def crop_image_files(table: pd.DataFrame, out_dir: str | Path, size: int | tuple[int, int] | None = None,
                     margin: int = 0, path_col: str = "path", keep_folders: int = 2,
                     threshold: int = DEFAULT_THRESHOLD, blur: int = DEFAULT_BLUR,
                     iterations: int = DEFAULT_ITERATIONS) -> pd.DataFrame:
    """Crop every image of `table[path_col]` once and save it; a copy of table pointing at the crops.

    Crops go to `out_dir/crop-<settings hash>/<last keep_folders folders>/<name>.png`
    (PNG: lossless, so saving adds no second round of JPEG artefacts). A crop already
    there is reused, not rewritten, so its file (and any feature cache keyed on it) stays
    valid across runs. The copy keeps the original path in `source_path`. Taught in chapter 2.
    """
    size_pair = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    folder = Path(out_dir) / _cache_folder_name(size_pair, margin, threshold, blur, iterations)
    new_paths = []
    for source in table[path_col].astype(str):
        source_path = Path(source)
        target = folder.joinpath(*source_path.parts[-(keep_folders + 1):-1], source_path.stem + ".png")
        if not target.is_file():
            image = read_image(source_path, channels=None)
            cropped = crop_to_brain(image, size_pair, margin, threshold, blur, iterations)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.stem + ".partial.png")
            bgr = cropped if cropped.ndim == 2 else cv2.cvtColor(cropped, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(partial), bgr):
                raise OSError(f"could not write the cropped image {partial}")
            partial.replace(target)  # a reader never sees half a file
        new_paths.append(str(target))
    out = table.copy()
    out["source_path"] = table[path_col].astype(str).values
    out[path_col] = new_paths
    return out


def crop_examples(paths: Sequence, size: int | tuple[int, int] | None = None, **settings):
    """[(original, cropped)] image pairs for a before/after figure. Taught in chapter 2.

    Used by chapter 2.
    """
    pairs = []
    for path in paths:
        image = read_image(path, channels=3)
        pairs.append((image, crop_to_brain(image, size, **settings)))
    return pairs
