"""Image loading: any PIL-readable file, PIL image or array to uint8 RGB (H, W, 3); fitting images into a frame."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from emo_lightning.media.errors import MediaError, require_file

MAX_IMAGE_PIXELS = 20_000 * 20_000
"""Refuse images above this many pixels (decompression-bomb guard). PIL's own default (~89 MP warns,
~179 MP fails) is too strict for large scans, so it is replaced by this limit while opening."""

_pil_limit_lock = threading.Lock()


def load_image(
    image: str | Path | Image.Image | np.ndarray, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Load ``image`` as a uint8 RGB array of shape (H, W, 3).

    Files: any format PIL reads; EXIF orientation is applied. Every mode is normalised: gray and palette
    are expanded, CMYK converted, 16-bit scaled to 8-bit, and transparency composited on white.
    Arrays: uint8, or float in [0, 1], shaped (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
    Raises MediaError for a missing, empty, corrupt or non-image file, or one above ``max_pixels``.
    """
    if isinstance(image, np.ndarray):
        return _to_rgb(Image.fromarray(_normalise_array(image)))
    if isinstance(image, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(image))
    path = require_file(image, "image")
    try:
        with _pil_pixel_check_disabled():
            im = Image.open(path)  # reads the header only
        with im:
            if im.width * im.height > max_pixels:
                raise MediaError(
                    f"image {path} is {im.width}x{im.height}, above the {max_pixels:,}-pixel limit "
                    "(decompression-bomb guard); pass a larger max_pixels if the file is trusted"
                )
            return _to_rgb(ImageOps.exif_transpose(im))
    except MediaError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        # Unidentified and truncated files raise OSError; some PIL plugins raise SyntaxError/ValueError.
        raise MediaError(f"cannot read image {path}: {err}") from err


@contextmanager
def _pil_pixel_check_disabled() -> Iterator[None]:
    """Turn off PIL's global bomb check while opening; ``load_image`` applies its own limit instead."""
    with _pil_limit_lock:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _normalise_array(array: np.ndarray) -> np.ndarray:
    """Bring an array to uint8 (H, W), (H, W, 3) or (H, W, 4): what Image.fromarray maps to L, RGB, RGBA."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise MediaError(f"image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.dtype != np.uint8:
        raise MediaError(f"image array must be uint8 or float in [0, 1], got {array.dtype}")
    return np.ascontiguousarray(array)


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit gray (PNG/TIFF; "I" is taken to hold 16-bit values too): PIL's convert() would clip.
        gray = (np.asarray(im, dtype=np.float32) / 257.0).clip(0, 255).round().astype(np.uint8)
        im = Image.fromarray(gray)
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return np.asarray(im.convert("RGB"))


def fit_into_frame(images: np.ndarray, width: int, height: int, fill: float = 1.0) -> np.ndarray:
    """uint8 (..., h, w, 3) images scaled to ``fill`` × ``width`` wide and centred in ``width`` × ``height`` frames,
    the rest filled by repeating the edge pixels (or cut, when the scaled images are taller): e.g. a square
    talking-head clip reshaped into a tall phone video. Returns the frames and the placement ``(scale, left, top)``
    (a point x, y of an image lands at x · scale + left, y · scale + top)."""
    flat = images.reshape(-1, *images.shape[-3:])
    scale = fill * width / flat.shape[2]
    size = (round(flat.shape[2] * scale), round(flat.shape[1] * scale))
    left, top = (width - size[0]) // 2, (height - size[1]) // 2
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    out = []
    for image in flat:
        scaled = cv2.resize(image, size, interpolation=interpolation)[max(0, -top):max(0, -top) + height]
        pad_top = max(0, top)
        out.append(cv2.copyMakeBorder(scaled, pad_top, height - scaled.shape[0] - pad_top, left,
                                      width - size[0] - left, cv2.BORDER_REPLICATE))
    return np.stack(out).reshape(*images.shape[:-3], height, width, 3), (scale, left, top)
