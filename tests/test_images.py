"""read_image on the file kinds the datasets hold, written from a real image."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tl_helpers.data.images import ImageReadError, is_image_file, read_image


@pytest.fixture(scope="module")
def photo(synthetic_sets) -> np.ndarray:
    """A real RGB picture: one of the shared MRI images when present, else a synthetic one."""
    from conftest import shared_data_dir

    shared = shared_data_dir()
    path = (shared / "brain_mri_yes_no" / "yes" / "Y1.jpg") if shared else \
        sorted((synthetic_sets["brain_mri_yes_no"] / "yes").iterdir())[0]
    return np.asarray(Image.open(path).convert("RGB"))


def test_gray_rgba_palette_and_16bit_become_rgb(tmp_path, photo):
    gray = Image.fromarray(photo).convert("L")
    gray.save(tmp_path / "gray.jpg")
    Image.fromarray(photo).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(photo).convert("P").save(tmp_path / "palette.png")
    sixteen = (np.asarray(gray).astype(np.uint16) * 257)
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    Image.fromarray(photo).save(tmp_path / "rgb.tif", compression="tiff_deflate")
    for name in ["gray.jpg", "rgba.png", "palette.png", "sixteen.png", "rgb.tif"]:
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == photo.shape, name
    # 16-bit is scaled by its own range: a full-range 16-bit image keeps its 8-bit values
    assert np.abs(read_image(tmp_path / "sixteen.png", channels=1).astype(int) - np.asarray(gray)).max() <= 1
    assert np.array_equal(read_image(tmp_path / "rgba.png"), photo)
    assert np.array_equal(read_image(tmp_path / "rgb.tif"), photo)


def test_rgb_to_one_channel(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "rgb.png")
    gray = read_image(tmp_path / "rgb.png", channels=1)
    assert gray.shape == photo.shape[:2]
    assert np.abs(gray.astype(int) - np.asarray(Image.fromarray(photo).convert("L"))).max() <= 1


@pytest.mark.parametrize("content, expected", [(b"", "empty (0 bytes)"), (b"not an image at all", "cannot read image"),
                                               (None, "not found")])
def test_bad_files_are_named(tmp_path, content, expected):
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError) as error:
        read_image(path)
    assert str(path) in str(error.value) and expected in str(error.value)


def test_truncated_jpeg_is_named(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        read_image(tmp_path / "cut.jpg")


def test_image_endings_any_case():
    assert is_image_file("Y100.JPG") and is_image_file(Path("a/b.tif")) and not is_image_file("notes.txt")


# --- chapter 4: the LGG article's preprocessing (tl.images.pixels_over_255) ---

def test_pixels_over_255_scales_a_real_image_to_0_1(tmp_path, photo):
    from tl_helpers.data.images import pixels_over_255

    Image.fromarray(photo).save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    scaled = pixels_over_255(image[None])
    assert scaled.dtype == np.float32 and scaled.shape == (1, *image.shape)
    np.testing.assert_allclose(scaled[0] * 255, image, atol=1e-4)
    assert 0.0 <= scaled.min() and scaled.max() <= 1.0
