"""Cropping to the brain: real MRI slices (synthetic ones when the real data is absent)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tl_helpers.techniques import cropping
from tl_helpers.data.images import read_image
from tests.conftest import shared_data_dir


def border_mean(image: np.ndarray, width: int = 4) -> float:
    """Mean gray level of the image's outer frame."""
    frame = np.ones(image.shape[:2], bool)
    frame[width:-width, width:-width] = False
    return float(image[frame].mean())


def yes_no_images(synthetic_sets, count=6, dark_border=True):
    """Brain slices from the real yes/no set (else its look-alike) with a dark (or a light) border."""
    root = (shared_data_dir() / "brain_mri_yes_no") if shared_data_dir() else synthetic_sets["brain_mri_yes_no"]
    paths = sorted(p for p in (root / "yes").iterdir() if not p.name.startswith("."))
    chosen = [p for p in paths if (border_mean(read_image(p, channels=1)) < 20) == dark_border]
    return chosen[:count]


def test_crop_removes_dark_border_and_keeps_the_head(synthetic_sets):
    for path in yes_no_images(synthetic_sets):
        image = read_image(path, channels=3)
        left, top, right, bottom = cropping.brain_bounding_box(image)
        cropped = cropping.crop_to_brain(image)
        assert cropped.shape == (bottom - top, right - left, 3)
        assert cropped.size < image.size  # the border went
        # what was cut away is mostly background: most bright pixels stay inside (some
        # images carry a second, smaller shape, e.g. text, that the crop drops)
        bright = cropping.foreground_mask(image) > 0
        assert bright[top:bottom, left:right].sum() >= 0.8 * bright.sum()
        assert cropped.mean() > image.mean()  # less black around the head


def test_white_background_is_kept_whole(synthetic_sets):
    # a real scan (Y89) sits on a white frame: all of it is "foreground", so nothing is cut
    root = (shared_data_dir() / "brain_mri_yes_no") if shared_data_dir() else synthetic_sets["brain_mri_yes_no"]
    white = [p for p in sorted((root / "yes").iterdir()) if border_mean(read_image(p, channels=1)) > 240]
    if not white:
        pytest.skip("no white-framed scan in this copy of the data")
    for path in white:
        image = read_image(path, channels=3)
        assert cropping.crop_to_brain(image).shape == image.shape


def test_box_touches_the_shape_on_all_four_sides():
    image = np.zeros((100, 120), np.uint8)
    image[20:60, 30:90] = 200  # a bright rectangle on black
    box = cropping.brain_bounding_box(image)
    # the blur spreads the edge by about a pixel before thresholding
    assert np.allclose(box, (30, 20, 90, 60), atol=1)
    assert cropping.crop_to_brain(image).shape == (box[3] - box[1], box[2] - box[0])


def test_largest_shape_wins_over_a_small_speck():
    image = np.zeros((100, 100, 3), np.uint8)
    image[10:14, 80:84] = 255  # a speck (survives erosion barely or not at all)
    image[40:90, 10:60] = 180  # the head
    assert np.allclose(cropping.brain_bounding_box(image), (10, 40, 60, 90), atol=1)


def test_resize_and_channels_are_kept(synthetic_sets):
    path = yes_no_images(synthetic_sets, 1)[0]
    gray = np.squeeze(read_image(path, channels=1))
    assert cropping.crop_to_brain(gray, size=64).shape == (64, 64)
    assert cropping.crop_to_brain(read_image(path, channels=3), size=(48, 64)).shape == (48, 64, 3)


def test_all_black_image_is_returned_uncropped():
    black = np.zeros((50, 70, 3), np.uint8)
    assert cropping.brain_bounding_box(black) is None
    assert np.array_equal(cropping.crop_to_brain(black), black)
    assert cropping.crop_to_brain(black, size=32).shape == (32, 32, 3)


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="HxW"):
        cropping.crop_to_brain(np.zeros((2, 3, 4, 5), np.uint8))


def test_crop_image_files_writes_once_and_reuses(synthetic_sets, tmp_path):
    paths = yes_no_images(synthetic_sets, 3)
    table = pd.DataFrame({"path": [str(p) for p in paths], "label": "yes"})
    out = cropping.crop_image_files(table, tmp_path, size=40)
    assert list(out.source_path) == list(table.path)
    assert all(Path(p).is_file() and Path(p).suffix == ".png" for p in out.path)
    assert read_image(out.path[0], channels=None).shape[:2] == (40, 40)
    stamps = [Path(p).stat().st_mtime_ns for p in out.path]
    again = cropping.crop_image_files(table, tmp_path, size=40)
    assert list(again.path) == list(out.path)
    assert [Path(p).stat().st_mtime_ns for p in again.path] == stamps  # reused, not rewritten
    other = cropping.crop_image_files(table, tmp_path, size=32)  # other settings, other folder
    assert set(other.path).isdisjoint(out.path)
