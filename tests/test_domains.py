"""The fixed perturbed domain: loading images once, and perturbing each image the same way every time."""
from pathlib import Path

import cv2
import numpy as np
import pytest

import tl_helpers  # noqa: F401  (first: it loads triton before TensorFlow)
from tl_helpers.train.augment import Augment
from tl_helpers.techniques.domains import load_image_array, perturbed_copy, stable_key

# The chapter's perturbation (the article's settings).
DAMAGE = Augment(rotation_range=30, shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
                 channel_shift_range=0.9, brightness_range=(0.5, 1.5))


@pytest.fixture
def xray_paths(shared_data) -> list[Path]:
    folder = shared_data / "chest_xray" / "train"
    if not folder.is_dir():
        pytest.skip("no chest_xray/train in the shared data")
    return sorted((folder / "NORMAL").glob("*.jpeg"))[:3] + sorted((folder / "PNEUMONIA").glob("*.jpeg"))[:3]


def test_load_image_array_reads_real_xrays_at_the_asked_size(xray_paths):
    images = load_image_array(xray_paths, (96, 80))
    assert images.shape == (6, 96, 80, 3) and images.dtype == np.uint8
    # the films are gray: the three channels agree, and the picture is not blank
    assert np.array_equal(images[..., 0], images[..., 2])
    assert images.std() > 20


def test_load_image_array_matches_a_direct_resize_and_threads_change_nothing(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        picture = rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)
        paths.append(tmp_path / f"im{i}.png")
        cv2.imwrite(str(paths[-1]), picture)
    threaded = load_image_array(paths, (30, 25), threads=3)
    serial = load_image_array(paths, (30, 25), threads=1)
    assert np.array_equal(threaded, serial)
    expected = cv2.resize(cv2.cvtColor(cv2.imread(str(paths[2])), cv2.COLOR_BGR2RGB), (25, 30),
                          interpolation=cv2.INTER_AREA)
    assert np.array_equal(threaded[2], expected)
    gray = load_image_array(paths, (30, 25), channels=1)
    assert gray.shape == (4, 30, 25, 1)


def test_perturbed_copy_is_fixed_by_seed_and_key_not_by_order(xray_paths):
    images = load_image_array(xray_paths, (64, 64))
    names = [p.name for p in xray_paths]
    copy = perturbed_copy(images, DAMAGE, seed=3, keys=names)
    assert copy.shape == images.shape and copy.dtype == images.dtype
    assert np.array_equal(copy, perturbed_copy(images, DAMAGE, seed=3, keys=names))
    # the same image, listed in another order (another table or split), gets the same damage
    order = [4, 0, 5, 2, 1, 3]
    reordered = perturbed_copy(images[order], DAMAGE, seed=3, keys=[names[i] for i in order])
    assert np.array_equal(reordered, copy[order])
    # every image is changed, and another seed changes it differently
    assert all(not np.array_equal(a, b) for a, b in zip(copy, images))
    other = perturbed_copy(images, DAMAGE, seed=4, keys=names)
    assert all(not np.array_equal(a, b) for a, b in zip(copy, other))


def test_perturbed_copy_leaves_the_input_alone_and_no_change_is_identity():
    images = np.random.default_rng(1).integers(0, 256, (5, 20, 20, 3), dtype=np.uint8)
    before = images.copy()
    perturbed_copy(images, DAMAGE, seed=0)
    assert np.array_equal(images, before)
    assert np.array_equal(perturbed_copy(images, Augment(), seed=0), images)


def test_perturbed_copy_rejects_a_wrong_number_of_keys():
    with pytest.raises(ValueError, match="3 keys for 2 images"):
        perturbed_copy(np.zeros((2, 8, 8, 3), np.uint8), DAMAGE, keys=["a", "b", "c"])


def test_stable_key_is_crc32_of_the_name_and_keeps_integers():
    assert stable_key("person12_bacteria_48.jpeg") == 0x8063646F  # zlib.crc32, fixed across processes
    assert stable_key("IM-0115-0001.jpeg") == stable_key("IM-0115-0001.jpeg")
    assert stable_key(7) == 7 and stable_key(np.int64(7)) == 7
