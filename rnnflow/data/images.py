"""User images (PNG, JPEG, ...) -> the 28x28 grayscale tensor an MNIST-trained model expects.

MNIST's own preprocessing, as LeCun et al. describe it, done with Pillow and numpy:

1. grayscale (EXIF rotation applied; transparency composited onto white);
2. light ink on a dark background: a light background (median of the border > 0.5) is inverted;
3. the background level maps to 0 and the darkest-to-brightest ink to 1 (contrast stretch);
4. crop to the ink's bounding box (pixels above 0.25 after the stretch);
5. scale, keeping the aspect ratio, so the longer side is 20 pixels (antialiased Lanczos);
6. paste into a black 28x28 field so the centre of mass sits at the field's centre.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MAX_PIXELS", "ImageError", "load_image", "preprocess_image"]

MAX_PIXELS = 40_000_000
"""Default limit on width x height; larger files are refused before decoding (bombs)."""

_FIELD, _BOX = 28, 20  # output field, box the ink is scaled into
_INK_THRESHOLD = 0.25  # after contrast stretch: what counts as ink for the bounding box
_MIN_CONTRAST = 0.1  # brightest ink minus background below this: no ink at all


class ImageError(ValueError):
    """An image file cannot be used: unreadable, too large, or without any ink."""


def load_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Read an image file and preprocess it MNIST-style (see the module docstring).

    Returns float32 [28, 28] in [0, 1]: white (1) ink on black (0), centred by mass, so row r is
    time step r for a row-by-row model. Raises ``FileNotFoundError`` if the file is missing and
    :class:`ImageError` (a ``ValueError``) if it is not an image Pillow can decode, is truncated,
    has more than ``max_pixels`` pixels (checked from the header, before decoding), or holds no ink.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_image: {path}: no such file")
    try:
        with warnings.catch_warnings():
            # Pillow warns above Image.MAX_IMAGE_PIXELS and raises above twice that; make both
            # errors without touching Pillow's global settings.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"load_image: {path}: image too large: {width}x{height} = "
                        f"{width * height} pixels, the limit is {max_pixels} (max_pixels=)"
                    )
                image = ImageOps.exif_transpose(image)
                gray = _to_gray(image)  # [H, W] in [0, 1]
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"load_image: {path}: image too large (possible decompression bomb): {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"load_image: {path}: unreadable: not an image format Pillow can decode "
            "(expected PNG, JPEG, BMP, GIF, ...)"
        ) from exc
    except (OSError, SyntaxError) as exc:  # truncated or corrupt data found while decoding
        raise ImageError(
            f"load_image: {path}: unreadable: corrupt or truncated image ({exc})"
        ) from exc
    return preprocess_image(gray, source=str(path))


def _to_gray(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> float64 [H, W] in [0, 1], alpha composited onto white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grayscale
        array = np.asarray(image, dtype=np.float64)
        array = array - array.min()
        return array / max(float(array.max()), 1e-12)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def preprocess_image(image: Image.Image | np.ndarray, *, source: str = "image") -> torch.Tensor:
    """MNIST-style preprocessing of an in-memory image (see the module docstring).

    ``image``: a Pillow image, or a 2-D array in [0, 1] (float) or [0, 255] (uint8) [H, W].
    Returns float32 [28, 28] in [0, 1]. ``source`` names the image in errors.
    """
    if isinstance(image, Image.Image):
        gray = _to_gray(image)
    else:
        gray = np.asarray(image)
        if gray.ndim != 2:
            raise ImageError(
                f"preprocess_image: {source}: expected a 2-D [H, W] array, got shape {gray.shape}"
            )
        gray = gray.astype(np.float64) / (255.0 if gray.dtype == np.uint8 else 1.0)
    if gray.size == 0:
        raise ImageError(f"preprocess_image: {source}: empty image")

    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 0.5:  # dark ink on light paper -> light ink on black, as in MNIST
        gray, background = 1.0 - gray, 1.0 - background
    peak = float(gray.max())
    if peak - background < _MIN_CONTRAST:
        raise ImageError(
            f"preprocess_image: {source}: no ink found: the image is (nearly) uniform "
            f"(background {background:.2f}, brightest ink {peak:.2f})"
        )
    gray = np.clip((gray - background) / (peak - background), 0.0, 1.0)

    rows = np.flatnonzero((gray > _INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((gray > _INK_THRESHOLD).any(axis=0))
    crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # [h, w] around the ink

    h, w = crop.shape
    scale = _BOX / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = Image.fromarray(crop.astype(np.float32)).resize(  # mode "F": no rounding to bytes
        (new_w, new_h), Image.Resampling.LANCZOS
    )
    box = np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)  # [new_h, new_w]

    total = box.sum()
    ys, xs = np.arange(new_h), np.arange(new_w)
    cy = float((box.sum(axis=1) * ys).sum() / total)
    cx = float((box.sum(axis=0) * xs).sum() / total)
    centre = (_FIELD - 1) / 2  # 13.5: the middle of the field in pixel-index coordinates
    top = int(np.clip(round(centre - cy), 0, _FIELD - new_h))
    left = int(np.clip(round(centre - cx), 0, _FIELD - new_w))
    field = np.zeros((_FIELD, _FIELD), dtype=np.float32)  # [28, 28]
    field[top : top + new_h, left : left + new_w] = box
    return torch.from_numpy(field)
