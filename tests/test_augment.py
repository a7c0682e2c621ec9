"""tl_helpers.train.augment on real images and masks: identity, flips, alignment, Keras parity."""
import os
from pathlib import Path

import numpy as np
import pytest

from tl_helpers.train.augment import Augment, affine_matrix, warp
from tl_helpers.data.images import read_image

SHARED = Path(os.environ.get("TL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BRAIN = SHARED / "brain_tumor_mri_4class" / "Training" / "glioma"
LGG = SHARED / "lgg_mri_segmentation" / "kaggle_3m"
needs_data = pytest.mark.skipif(not BRAIN.is_dir() or not LGG.is_dir(), reason="shared real data absent")

STRONG = Augment(rotation_range=30, width_shift_range=0.15, height_shift_range=0.15, zoom_range=0.25,
                 shear_range=15, horizontal_flip=True, vertical_flip=True)


@pytest.fixture(scope="module")
def brain_image():
    return read_image(sorted(BRAIN.glob("*.jpg"))[0])


@pytest.fixture(scope="module")
def tumour_mask():
    """A real LGG mask (0/255) with a sizeable tumour."""
    for path in sorted(LGG.glob("TCGA_*/*_mask.tif")):
        mask = read_image(path, channels=1)
        if (mask > 0).sum() > 800:
            return mask
    pytest.skip("no LGG mask with a tumour found")


@needs_data
def test_identity_settings_return_the_input_unchanged(brain_image, tumour_mask):
    image, mask = brain_image, tumour_mask[:brain_image.shape[0], :brain_image.shape[1]]
    out_image, out_mask = Augment().apply(np.random.default_rng(0), image, mask)
    assert out_image.dtype == image.dtype and np.array_equal(out_image, image)
    assert np.array_equal(out_mask, mask)


@needs_data
@pytest.mark.parametrize("setting, flipped", [("horizontal_flip", lambda a: a[:, ::-1]),
                                              ("vertical_flip", lambda a: a[::-1])])
def test_a_flip_flips_the_image_half_of_the_time(brain_image, setting, flipped):
    augment = Augment(**{setting: True})
    outcomes = []
    for seed in range(20):
        out = augment.apply(np.random.default_rng(seed), brain_image)
        if np.array_equal(out, flipped(brain_image)):
            outcomes.append("flipped")
        elif np.array_equal(out, brain_image):
            outcomes.append("same")
        else:
            outcomes.append("other")
    assert "other" not in outcomes
    assert 4 <= outcomes.count("flipped") <= 16


@needs_data
def test_image_and_mask_stay_aligned_under_random_transforms(tumour_mask):
    # The image's content IS the mask: after the same transform they must coincide.
    image = np.repeat(tumour_mask[..., None], 3, axis=2)
    for seed in range(5):
        out_image, out_mask = STRONG.apply(np.random.default_rng(seed), image, tumour_mask)
        assert not np.array_equal(out_mask, tumour_mask)  # it really moved
        from_image = out_image[..., 0] > 127
        from_mask = out_mask > 127
        iou = (from_image & from_mask).sum() / (from_image | from_mask).sum()
        assert iou > 0.95, f"seed {seed}: IoU {iou:.3f}"


@needs_data
def test_the_alignment_check_detects_a_different_transform(tumour_mask):
    image = np.repeat(tumour_mask[..., None], 3, axis=2)
    out_image = STRONG.apply(np.random.default_rng(1), image)
    _, other_mask = STRONG.apply(np.random.default_rng(2), image, tumour_mask)
    from_image, from_mask = out_image[..., 0] > 127, other_mask > 127
    assert (from_image & from_mask).sum() / (from_image | from_mask).sum() < 0.9


@needs_data
@pytest.mark.parametrize("high", [255, 1])
def test_masks_stay_binary(tumour_mask, high):
    mask = (tumour_mask > 0).astype(np.uint8) * high
    image = np.zeros(mask.shape + (3,), np.uint8)
    for seed in range(5):
        _, out = STRONG.apply(np.random.default_rng(seed), image, mask)
        assert set(np.unique(out)) <= {0, high}
        assert out.shape == mask.shape and out.dtype == mask.dtype


@needs_data
def test_the_same_seed_gives_the_same_result(brain_image):
    augment = Augment(rotation_range=20, zoom_range=0.2, brightness_range=(0.7, 1.3), channel_shift_range=20)
    first = augment.apply(np.random.default_rng(7), brain_image)
    again = augment.apply(np.random.default_rng(7), brain_image)
    other = augment.apply(np.random.default_rng(8), brain_image)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@needs_data
def test_geometry_matches_keras_apply_transform_on_a_square_image(brain_image):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    image = brain_image[:160, :160].astype(np.float32)
    keras_out = ImageDataGenerator().apply_transform(
        image, {"theta": 25, "tx": 7, "ty": -5, "shear": 10, "zx": 1.2, "zy": 0.9, "flip_horizontal": True})
    ours = warp(image, affine_matrix(160, 160, angle=25, shift=(7, -5), shear=10, zoom=(1.2, 0.9),
                                     flip_horizontal=True))
    difference = np.abs(ours - keras_out)
    assert difference.mean() < 0.5 and difference.max() < 4  # interpolation rounding only


def test_zoom_above_one_shows_more_of_the_image():
    image = np.zeros((101, 101), np.uint8)
    image[40:61, 40:61] = 255  # a 21-pixel square in the middle
    zoomed_out = warp(image, affine_matrix(101, 101, zoom=(2.0, 2.0)))
    zoomed_in = warp(image, affine_matrix(101, 101, zoom=(0.5, 0.5)))
    assert 80 <= (zoomed_out > 127).sum() <= 150  # about (21/2)^2
    assert 1600 <= (zoomed_in > 127).sum() <= 1900  # about 42^2


def test_a_shift_moves_the_content_and_repeats_the_border():
    image = np.tile(np.arange(50, dtype=np.uint8), (30, 1))  # value = column index
    shifted = warp(image, affine_matrix(30, 50, shift=(10, 0)))
    assert np.array_equal(shifted[:, :40], image[:, 10:])
    assert (shifted[:, 40:] == 49).all()  # Keras' fill_mode "nearest"


def test_a_quarter_turn_is_a_rotation_about_the_centre():
    image = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    turned = warp(image, affine_matrix(64, 64, angle=90))
    assert np.allclose(turned, np.rot90(image, 1)) or np.allclose(turned, np.rot90(image, -1))


def test_photometric_changes_touch_the_image_only():
    image = np.full((8, 8, 3), 100, np.uint8)
    image[0, 0] = (10, 20, 250)
    mask = np.eye(8, dtype=np.uint8)
    out, out_mask = Augment(brightness_range=(0.5, 0.5)).apply(np.random.default_rng(0), image, mask)
    assert out[1, 1].tolist() == [50, 50, 50] and out[0, 0].tolist() == [5, 10, 125]
    assert np.array_equal(out_mask, mask)
    shifted = Augment(channel_shift_range=40).apply(np.random.default_rng(0), image)
    delta = shifted.astype(int) - image
    assert delta[1, 1, 0] != 0 and (delta[1:, 1:] == delta[1, 1, 0]).all()  # one shift, all channels
    assert shifted.min() >= image.min() and shifted.max() <= image.max()  # clipped to the image's range


def test_zoom_range_float_means_one_plus_or_minus():
    augment = Augment(zoom_range=0.2)
    for seed in range(20):
        matrix = augment.draw(np.random.default_rng(seed), 50, 50).matrix
        assert 0.8 <= matrix[0, 0] <= 1.2 and 0.8 <= matrix[1, 1] <= 1.2
    assert Augment(zoom_range=(1.5, 1.5)).draw(np.random.default_rng(0), 50, 50).matrix[0, 0] == 1.5


@pytest.mark.parametrize("settings", [{"rotation_range": -1}, {"zoom_range": (1.2, 0.8)},
                                      {"brightness_range": (1.5, 0.5)}, {"zoom_range": 0.0, "shear_range": -3}])
def test_invalid_settings_are_refused(settings):
    with pytest.raises(ValueError):
        Augment(**settings)
