"""Reading the image files the five datasets contain, whatever their format.

The datasets mix JPEG, PNG and TIFF; grayscale, RGB, RGBA and palette images; 8- and
16-bit pixels. Every chapter wants one thing: a uint8 array with the channels its model
expects. `read_image` is that one place, and it names the file when something is wrong.
"""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
# The most pixels an image may declare (Pillow's own warning limit, ~9459 x 9459). The
# datasets' largest scans are a few megapixels; a header declaring more is damaged or a
# decompression bomb, refused before any pixel is decoded, by read_image and decode_native alike.
MAX_PIXELS = 89_478_485


class ImageReadError(ValueError):
    """An image file that cannot be used; the message names the file and the fix.

    Used by every chapter (raised by tl.images.read_image).
    """

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = path


def is_image_file(path: str | Path) -> bool:
    """True for the file endings the datasets use, in any letter case (`Y100.JPG`).

    Used by every chapter (through tl.data.load and the tables).
    """
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float pixels to 0..255 by the image's own range (8-bit passes through)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    was_float = np.issubdtype(array.dtype, np.floating)
    array = array.astype(np.float64)
    if was_float and array.size and array.max() <= 1.0 and array.min() >= 0.0:
        return np.round(array * 255).astype(np.uint8)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if high <= low:
        return np.zeros(array.shape, np.uint8)
    return np.round((array - low) * (255.0 / (high - low))).astype(np.uint8)


def _pil_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _to_uint8(np.asarray(image))
    if image.mode == "1":
        return np.asarray(image.convert("L"))
    if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "LA"):
        image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
    return np.asarray(image)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header (SOFn), walking the marker segments."""
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        elif marker in _JPEG_SOF:
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _check_encoded(path: Path, data: bytes) -> bool:
    """The rules every reader applies to a file's bytes before decoding; True when it is whole.

    Raises ImageReadError for a JPEG or PNG header declaring more than MAX_PIXELS, and for a
    PNG without its IEND chunk (Pillow and OpenCV would decode what is left). Returns True for
    a JPEG ending with its end marker FF D9 (zero padding after it allowed) or a PNG with
    IEND: whole, so the fast OpenCV decoder may take it. Anything else is left to Pillow,
    which refuses a truncated JPEG (and accepts one with bytes after the end marker).
    """
    if data.startswith(_PNG_SIGNATURE):
        size = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) \
            if data[12:16] == b"IHDR" else None
        whole = data.rfind(b"IEND") > 0
    elif data.startswith(b"\xff\xd8"):
        size, whole = _jpeg_size(data), data.rstrip(b"\0").endswith(b"\xff\xd9")
    else:
        return False
    if size:
        _check_pixels(path, *size)
    if data.startswith(_PNG_SIGNATURE) and not whole:
        raise ImageReadError(
            f"cannot read image {path}: the PNG is truncated (its end chunk IEND is missing). An "
            "interrupted download or copy leaves such files; delete or replace it.", path)
    return whole


def _check_pixels(path: Path, width: int, height: int) -> None:
    """Refuse an image declaring more than MAX_PIXELS pixels, naming the file and its size."""
    if width * height > MAX_PIXELS:
        raise ImageReadError(
            f"image {path} declares {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), "
            f"over the limit of {MAX_PIXELS / 1e6:.0f} megapixels (tl.images.MAX_PIXELS, a guard "
            "against decompression bombs). It is damaged or not one of the datasets' scans: replace "
            "it, or raise tl.images.MAX_PIXELS if you mean to read it.", path)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; ImageReadError naming the file when it is missing or empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {path}. Check the data directory setting.", path) from None
    except IsADirectoryError:
        raise ImageReadError(f"{path} is a folder, not an image file; move it out of the dataset.", path) from None
    if not data:
        raise ImageReadError(
            f"image file is empty (0 bytes): {path}. An interrupted download or copy leaves such "
            "files; delete it or download the dataset again.", path
        )
    return data


def _read_pixels(path: Path) -> np.ndarray:
    data = _read_bytes(path)
    _check_encoded(path, data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_pixels(path, image.width, image.height)  # every format (TIFF, BMP) too
            image.load()
            return _pil_to_array(image)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as bomb:  # over twice Pillow's limit (not JPEG/PNG)
        raise ImageReadError(f"image {path} is too large to decode safely: {bomb}. Replace it, or "
                             "raise tl.images.MAX_PIXELS and PIL.Image.MAX_IMAGE_PIXELS.", path) from None
    except (UnidentifiedImageError, OSError, ValueError) as pil_error:
        if path.suffix.lower() in (".tif", ".tiff"):
            # Pillow cannot decode some TIFFs (16-bit RGB, odd compressions); tifffile can.
            try:
                import tifffile

                return _to_uint8(np.asarray(tifffile.imread(path)))
            except Exception:  # noqa: BLE001 - report Pillow's reason, it is the clearer one
                pass
        raise ImageReadError(
            f"cannot read image {path}: {pil_error}. The file is corrupt, truncated or not an "
            "image; delete or replace it (re-download the dataset if unsure).", path
        ) from pil_error


def to_channels(array: np.ndarray, channels: int | None) -> np.ndarray:
    """Convert an HxW or HxWxC uint8 array to `channels` (1 or 3); None keeps what is there.

    Alpha is dropped (the datasets' RGBA PNGs are opaque scans), gray is repeated to RGB,
    RGB goes to gray with the ITU-R 601 weights that Pillow uses.
    Used by tl.images.read_image (every chapter).
    """
    if array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[..., :-1]  # drop alpha
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if channels is None:
        return array
    if channels == 3:
        return np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array
    if channels == 1:
        if array.ndim == 2:
            return array
        gray = array[..., 0] * 0.299 + array[..., 1] * 0.587 + array[..., 2] * 0.114
        return np.round(gray).astype(np.uint8)
    raise ValueError(f"channels must be 1, 3 or None, not {channels!r}")


def read_image(path: str | Path, channels: int | None = 3) -> np.ndarray:
    """Read an image file as a uint8 array: HxWx3 for channels=3, HxW for channels=1.

    Raises ImageReadError naming the file when it is missing, empty, truncated, corrupt, not
    an image, or declares more than MAX_PIXELS pixels (the same rules as `decode_native`).
    Used by the dataset tour (chapter 0) and chapters 4 and 5.
    """
    return to_channels(_read_pixels(Path(path)), channels)


def image_info(path: str | Path) -> dict:
    """Size, mode and format of an image from its header, without decoding the pixels.

    Used by tl.data.verify (every chapter).
    """
    with Image.open(path) as image:
        return {"width": image.width, "height": image.height, "mode": image.mode, "format": image.format}


# --- fast decoding and resizing for the training loaders -------------------------------

_CV2_FORMATS = (".jpg", ".jpeg", ".png")


def decode_native(path: str | Path) -> np.ndarray:
    """Read an image as uint8 in its own channels: HxW (gray) or HxWx3 (RGB; alpha dropped).

    Plain 8-bit JPEG/PNG files take OpenCV's decoder (about 2.5x faster than Pillow here,
    and pixel-identical on the datasets' files), once the checks `read_image` makes too
    (`_check_encoded`: the pixel limit, a whole file) have passed: OpenCV alone would decode
    a truncated JPEG with a grey bottom. Everything else, and every failure, goes through
    `read_image`, which handles the odd formats and names the file.
    Used by tl.loaders.load_example (chapters 1 to 5).
    """
    path = Path(path)
    if path.suffix.lower() in _CV2_FORMATS:
        data = _read_bytes(path)
        if _check_encoded(path, data):
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if pixels is not None and pixels.dtype == np.uint8 and (pixels.ndim == 2 or pixels.shape[2] == 3):
                return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return read_image(path, channels=None)


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """HxW or HxWx3 uint8 -> HxWxC with C = `channels` (1 or 3).

    Used by tl.loaders.load_example (chapters 1 to 5).
    """
    if image.ndim == 2 and channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)  # a faster np.repeat
    return _with_channel_axis(to_channels(image, channels))


def decode_image(path: str | Path, channels: int = 3) -> np.ndarray:
    """Read an image as uint8 HxWxC with C = `channels` (1 or 3)."""
    return convert_channels(decode_native(path), channels)


def _with_channel_axis(array: np.ndarray) -> np.ndarray:
    return array[..., None] if array.ndim == 2 else array


def resize_image(image: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Resize HxW(xC) to `image_size` = (height, width); area averaging when shrinking.

    Used by chapter 4.
    """
    height, width = image_size
    if image.shape[:2] == (height, width):
        return image
    shrinking = height < image.shape[0] and width < image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR  # area: no aliasing
    return cv2.resize(image, (width, height), interpolation=interpolation).reshape(
        (height, width) + image.shape[2:])


def pixels_over_255(images) -> np.ndarray:
    """Pixels divided by 255 as float32, whatever the backbone expects (the LGG article's
    preprocessing, compared with the backbone's own). Used by chapter 4.
    """
    return np.asarray(images, np.float32) / 255.0


def read_mask(path: str | Path, image_size: tuple[int, int]) -> np.ndarray:
    """A mask file as uint8 HxWx1 of 0 / 1 (foreground: pixels above 127), at `image_size`.

    The mask is resized exactly as its image is, then thresholded at one half: it stays
    binary and keeps the image's pixel grid. (Nearest-neighbour resizing would not: OpenCV
    picks one corner of each block, shifting the mask by up to half a source pixel.)
    Taught in chapter 4.
    """
    mask = np.where(read_image(path, channels=1) > 127, np.uint8(255), np.uint8(0))
    return (resize_image(mask, image_size) > 127).astype(np.uint8)[..., None]
