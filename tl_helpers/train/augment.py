"""Random image augmentations, applied identically to an image and its mask.

The parameters mean what they mean in Keras' `ImageDataGenerator`, so the articles'
settings carry over unchanged:

- `rotation_range`: degrees; the angle is drawn from [-r, r];
- `width_shift_range`, `height_shift_range`: a fraction of the width / height (below 1) or
  pixels (1 or more); the shift is drawn from [-r, r];
- `zoom_range`: a float z means [1 - z, 1 + z], or a (low, high) pair; the horizontal and
  vertical factors are drawn independently, and a factor above 1 zooms *out* (as in Keras);
- `shear_range`: degrees, drawn from [-r, r];
- `horizontal_flip`, `vertical_flip`: each flips with probability 1/2;
- `brightness_range`: a (low, high) pair of factors that multiply the pixels;
- `channel_shift_range`: an intensity (pixel units) drawn from [-r, r] and added to every
  channel, clipped to the image's own min and max.

All geometric changes make ONE affine matrix, so an image is resampled once (one
`cv2.warpAffine`, bilinear for images, nearest for masks, border pixels repeated like Keras'
default `fill_mode="nearest"`). Photometric changes touch the image only. On square images
a given set of random values gives Keras' own result (up to interpolation rounding); on
non-square ones Keras mixes up height and width (its centre and its shift ranges), and
this module does not copy that.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


def _symmetric(value: float, name: str) -> float:
    value = float(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value}")
    return value


def _zoom_bounds(zoom_range) -> tuple[float, float]:
    """Keras' reading of zoom_range: z -> (1 - z, 1 + z); a pair is taken as is."""
    if np.isscalar(zoom_range):
        z = _symmetric(zoom_range, "zoom_range")
        return 1.0 - z, 1.0 + z
    low, high = (float(v) for v in zoom_range)
    if not 0 < low <= high:
        raise ValueError(f"zoom_range must be a float or a pair 0 < low <= high, not {zoom_range!r}")
    return low, high


def affine_matrix(height: int, width: int, angle: float = 0.0, shift: tuple[float, float] = (0.0, 0.0),
                  shear: float = 0.0, zoom: tuple[float, float] = (1.0, 1.0),
                  flip_horizontal: bool = False, flip_vertical: bool = False) -> np.ndarray:
    """The 2x3 matrix mapping OUTPUT pixel (x, y) to the INPUT pixel it samples.

    Composed as Keras' `apply_affine_transform` composes it (rotation, shift, shear, zoom,
    about the image centre, in (x, y) order): `angle` and `shear` are its `theta` and
    `shear` in degrees, `shift` = (dx, dy) pixels its (tx, ty), `zoom` = (horizontal,
    vertical) its (zx, zy). Flips act on the output, last. An inverse map is what
    cv2.warpAffine takes with WARP_INVERSE_MAP, and why a zoom above 1 shows more of the
    image. (Keras takes the centre as (height, width) / 2 in (x, y) order, off for
    non-square images; here it is the true centre. Square images agree exactly.)
    Used by tl.augment.Augment (chapters 1 to 5).
    """
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    a, s = math.radians(angle), math.radians(shear)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shearing = np.array([[1.0, -math.sin(s)], [0.0, math.cos(s)]])
    scaling = np.diag([float(zoom[0]), float(zoom[1])])
    flipping = np.diag([-1.0 if flip_horizontal else 1.0, -1.0 if flip_vertical else 1.0])
    linear = rotation @ shearing @ scaling @ flipping
    offset = centre - linear @ centre + rotation @ np.asarray(shift, dtype=float)
    return np.hstack([linear, offset[:, None]])


def warp(array: np.ndarray, matrix: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Resample an HxW or HxWxC array through an inverse-map `matrix`, same size, same dtype.

    Used by tl.augment.Augment (chapters 1 to 5).
    """
    height, width = array.shape[:2]
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.warpAffine(array, matrix.astype(np.float64), (width, height),
                         flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    # cv2 drops a trailing channel axis of size 1; give the caller back its own shape.
    return out.reshape(array.shape)


def shift_channels(image: np.ndarray, intensity: float) -> np.ndarray:
    """Add `intensity` to every channel, clipped to the image's own min and max (Keras' rule).

    Used by tl.augment.Augment (chapters 1 to 5).
    """
    low, high = float(image.min()), float(image.max())
    shifted = np.clip(image.astype(np.float32) + intensity, low, high)
    return _like(shifted, image)


def scale_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiply the pixels by `factor`; uint8 images saturate at 255.

    Used by tl.augment.Augment (chapters 1 to 5).
    """
    if image.dtype == np.uint8:
        return cv2.convertScaleAbs(image, alpha=float(factor)).reshape(image.shape)
    return (image * np.float32(factor)).astype(image.dtype, copy=False)


def _like(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    if reference.dtype == np.uint8:
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return values.astype(reference.dtype, copy=False)


@dataclass(frozen=True)
class RandomTransform:
    """One draw of an `Augment`: the geometry as a matrix, and the photometric settings.

    Used by tl.augment.Augment (chapters 1 to 5).
    """

    matrix: np.ndarray | None  # None: no geometric change at all
    brightness: float | None = None
    channel_shift: float = 0.0

    def image(self, image: np.ndarray) -> np.ndarray:
        """The transformed image: warped (bilinear), then channel shift, then brightness."""
        if self.matrix is not None:
            image = warp(image, self.matrix)
        if self.channel_shift:
            image = shift_channels(image, self.channel_shift)
        if self.brightness is not None:
            image = scale_brightness(image, self.brightness)
        return image

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """The mask moved exactly like the image (nearest neighbour keeps its values)."""
        return mask if self.matrix is None else warp(mask, self.matrix, nearest=True)


@dataclass(frozen=True)
class Augment:
    """Augmentation settings with Keras `ImageDataGenerator` meanings (see the module doc).

    Used by every chapter.
    """

    rotation_range: float = 0.0
    width_shift_range: float = 0.0
    height_shift_range: float = 0.0
    zoom_range: float | tuple[float, float] = 0.0
    shear_range: float = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    brightness_range: tuple[float, float] | None = None
    channel_shift_range: float = 0.0

    def __post_init__(self):
        for name in ("rotation_range", "width_shift_range", "height_shift_range", "shear_range",
                     "channel_shift_range"):
            _symmetric(getattr(self, name), name)
        _zoom_bounds(self.zoom_range)
        if self.brightness_range is not None:
            low, high = self.brightness_range
            if not 0 <= low <= high:
                raise ValueError(f"brightness_range must be a pair 0 <= low <= high, not {self.brightness_range!r}")

    @property
    def is_geometric(self) -> bool:
        """True when some setting moves pixels (and so must move a mask too)."""
        return bool(self.rotation_range or self.width_shift_range or self.height_shift_range
                    or self.shear_range or self.horizontal_flip or self.vertical_flip
                    or _zoom_bounds(self.zoom_range) != (1.0, 1.0))

    def _shift_limit(self, value: float, size: int) -> float:
        return value * size if value < 1 else value  # Keras: below 1 is a fraction, else pixels

    def draw(self, rng: np.random.Generator, height: int, width: int) -> RandomTransform:
        """Draw one random transform for an image of this size.

        The same ten uniform numbers are drawn on every call, whatever the settings, so a
        given Generator state always yields the same transform (one call: it is cheap).
        """
        u = rng.random(10)
        between = lambda low, high, k: low + (high - low) * u[k]  # noqa: E731
        angle = between(-self.rotation_range, self.rotation_range, 0)
        dx = between(-1, 1, 1) * self._shift_limit(self.width_shift_range, width)
        dy = between(-1, 1, 2) * self._shift_limit(self.height_shift_range, height)
        shear = between(-self.shear_range, self.shear_range, 3)
        zoom = (between(*_zoom_bounds(self.zoom_range), 4), between(*_zoom_bounds(self.zoom_range), 5))
        flips = u[6] < 0.5, u[7] < 0.5
        channel_shift = between(-self.channel_shift_range, self.channel_shift_range, 8)
        brightness = between(*self.brightness_range, 9) if self.brightness_range is not None else None
        matrix = None
        if self.is_geometric:
            matrix = affine_matrix(height, width, angle, (dx, dy), shear, zoom,
                                   flip_horizontal=self.horizontal_flip and bool(flips[0]),
                                   flip_vertical=self.vertical_flip and bool(flips[1]))
        return RandomTransform(matrix, brightness, float(channel_shift))

    def apply(self, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray | None = None):
        """Augment `image` (and `mask`, moved identically) with one random draw from `rng`.

        Returns the image, or (image, mask) when a mask is given; dtypes are kept.
        """
        transform = self.draw(rng, *image.shape[:2])
        if mask is None:
            return transform.image(image)
        if mask.shape[:2] != image.shape[:2]:
            raise ValueError(f"mask size {mask.shape[:2]} differs from image size {image.shape[:2]}")
        return transform.image(image), transform.mask(mask)
