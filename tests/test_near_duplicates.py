"""Near-duplicate search with perceptual hashes, on real MRI slices (synthetic when absent)."""
import cv2
import numpy as np
import pytest

from tl_helpers.evaluate import near_duplicates as nd
from tl_helpers.data.images import read_image
from tests.conftest import shared_data_dir


@pytest.fixture(scope="module")
def slices(synthetic_sets):
    """Eight different four-class brain slices as gray uint8 arrays."""
    if shared_data_dir():
        root = shared_data_dir() / "brain_tumor_mri_4class" / "Training"
    else:
        root = synthetic_sets["brain_tumor_mri_4class"] / "Training"
    paths = [sorted((root / c).glob("*.jpg"))[i] for c in ("glioma", "meningioma", "notumor", "pituitary")
             for i in (0, 5)]
    return paths, [np.squeeze(read_image(p, channels=1)) for p in paths]


def edited(image):
    """The same picture, resized, brightened a little and re-encoded as JPEG."""
    small = cv2.resize(image, (image.shape[1] * 3 // 4, image.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    brighter = np.clip(small.astype(np.int16) + 8, 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", brighter, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_GRAYSCALE)


def test_edited_copy_is_near_and_other_slices_are_far(slices):
    _, images = slices
    hashes = np.stack([nd.perceptual_hash(im) for im in images])
    copies = np.stack([nd.perceptual_hash(edited(im)) for im in images])
    distances = nd.hamming_distances(copies, hashes)
    assert distances.shape == (8, 8)
    assert (np.diag(distances) <= 4).all()  # each copy is within a few bits of its original
    off_diagonal = distances[~np.eye(8, dtype=bool)]
    assert off_diagonal.min() > 4  # and far from every other slice


def test_hamming_matches_a_plain_count():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 64)) < 0.5, rng.random((7, 64)) < 0.5
    expected = (a[:, None, :] != b[None, :, :]).sum(axis=2)
    assert np.array_equal(nd.hamming_distances(a, b), expected)
    with pytest.raises(ValueError, match="different lengths"):
        nd.hamming_distances(a, b[:, :32])


def test_files_and_pairs(slices, tmp_path):
    paths, images = slices
    copy_path = tmp_path / "copy.png"
    cv2.imwrite(str(copy_path), edited(images[3]))
    reference = nd.perceptual_hashes(paths)
    assert reference.shape == (8, 64) and reference.dtype == bool
    query = nd.perceptual_hashes([copy_path, paths[0]])
    flipped = np.ascontiguousarray(images[6][:, ::-1])  # a mirror image is another picture
    query = np.vstack([query, nd.perceptual_hash(flipped)])
    pairs = nd.near_duplicate_pairs(query, reference, max_distance=4)
    # the edited copy finds its original, the unchanged file itself, the mirror image nothing
    assert sorted(zip(pairs["query"], pairs["reference"])) == [(0, 3), (1, 0)]
    assert pairs.set_index("query").distance[1] == 0
    assert pairs.distance.is_monotonic_increasing
    assert nd.perceptual_hashes([]).shape == (0, 64)
