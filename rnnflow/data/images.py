"""User images (PNG, JPEG, ...) -> the 28x28 grayscale tensor a model trained on MNIST or
Fashion-MNIST expects: float32 [28, 28] in [0, 1], light on black, row r = time step r.

Both styles start the same way, with Pillow and numpy: grayscale (EXIF rotation applied;
transparency composited onto white), then a light background (median of the border > 0.5) is
inverted, so the object is light on black as in the datasets. Then each reproduces how its
dataset was made, so that a user's image looks like the training images:

``style="mnist"`` (default): MNIST's preprocessing as LeCun et al. describe it (digits
size-normalised into a 20x20 box, centred by centre of mass in a 28x28 field):

1. the background level maps to 0 and the darkest-to-brightest ink to 1 (contrast stretch);
2. crop to the ink's bounding box (pixels above 0.25 after the stretch);
3. scale, keeping the aspect ratio, so the longer side is 20 pixels (antialiased Lanczos);
4. paste into a black 28x28 field so the centre of mass sits at the field's centre.

``style="fashion"``: Fashion-MNIST's conversion as Zalando describe it (products trimmed and
their longest side resized to 28, centred); no contrast stretch:

1. a 28x28 image is taken as it is (only the inversion above applied);
2. otherwise crop to the object (pixels brighter than the background + 0.1);
3. scale, keeping the aspect ratio, so the longer side is 28 pixels (antialiased Lanczos);
4. paste into the middle of a black 28x28 field (centred by bounding box).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MAX_PIXELS", "ImageError", "Style", "load_image", "preprocess_image"]

MAX_PIXELS = 40_000_000
"""Default limit on width x height; larger files are refused before decoding (bombs)."""

_FIELD, _BOX = 28, 20  # output field, box the ink is scaled into
_INK_THRESHOLD = 0.25  # after contrast stretch: what counts as ink for the bounding box
_MIN_CONTRAST = 0.1  # brightest ink minus background below this: no ink at all
_FASHION_THRESHOLD = 0.1  # fashion style: above background + this is the object (crop box)

Style = Literal["mnist", "fashion"]
"""Which dataset's preprocessing to reproduce (see the module docstring)."""
_STYLES: tuple[str, ...] = get_args(Style)


class ImageError(ValueError):
    """An image file cannot be used: unreadable, too large, or without any ink."""


def load_image(
    path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS, style: Style = "mnist"
) -> torch.Tensor:
    """Read an image file and preprocess it in ``style`` (see the module docstring).

    Returns float32 [28, 28] in [0, 1]: white (1) ink on black (0), so row r is time step r for a
    row-by-row model; ``"mnist"`` (digits) scales it into a 20x20 box centred by mass,
    ``"fashion"`` (garments) scales its longest side to 28. The file is opened once. Raises
    ``FileNotFoundError`` if the file is missing, ``ValueError`` for an unknown ``style``, and
    :class:`ImageError` (a ``ValueError``) if it is not an image Pillow can decode, is truncated,
    has more than ``max_pixels`` pixels (checked from the header, before decoding), or holds no ink.
    """
    _check_style(style, "load_image")
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
    return preprocess_image(gray, source=str(path), style=style)


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


def _check_style(style: object, caller: str) -> None:
    if style not in _STYLES:
        raise ValueError(
            f"{caller}: style must be one of {', '.join(map(repr, _STYLES))}, got {style!r}"
        )


def preprocess_image(
    image: Image.Image | np.ndarray, *, source: str = "image", style: Style = "mnist"
) -> torch.Tensor:
    """Preprocessing of an in-memory image in ``style`` (see the module docstring).

    ``image``: a Pillow image, or a 2-D array in [0, 1] (float) or [0, 255] (uint8) [H, W].
    Returns float32 [28, 28] in [0, 1]. ``source`` names the image in errors. Raises
    ``ValueError`` for an unknown ``style`` and :class:`ImageError` for a bad array or no ink.
    """
    _check_style(style, "preprocess_image")
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

    if style == "fashion":
        return _fashion(gray, source)

    background = _border_median(gray)
    if background > 0.5:  # dark ink on light paper -> light ink on black, as in MNIST
        gray, background = 1.0 - gray, 1.0 - background
    peak = float(gray.max())
    if peak - background < _MIN_CONTRAST:
        raise _no_ink(source, background, peak)
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


def _border_median(gray: np.ndarray) -> float:
    """Median of the outermost rows and columns of [H, W]: the background level."""
    return float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))


def _no_ink(source: str, background: float, peak: float) -> ImageError:
    return ImageError(
        f"preprocess_image: {source}: no ink found: the image is (nearly) uniform "
        f"(background {background:.2f}, brightest ink {peak:.2f})"
    )


def _fashion(gray: np.ndarray, source: str) -> torch.Tensor:
    """Fashion-MNIST-style steps on float64 [H, W] in [0, 1] (see the module docstring)."""
    if _border_median(gray) > 0.5:  # dark object on light paper -> light on black
        gray = 1.0 - gray
    background, peak = _border_median(gray), float(gray.max())
    mask = gray > background + _FASHION_THRESHOLD  # [H, W]: the object
    if peak - background < _MIN_CONTRAST or not mask.any():
        raise _no_ink(source, background, peak)
    if gray.shape == (_FIELD, _FIELD):  # already Fashion-MNIST's size: used as it is
        return torch.from_numpy(gray.astype(np.float32))

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # [h, w] around the object
    h, w = crop.shape
    scale = _FIELD / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = Image.fromarray(crop.astype(np.float32)).resize(  # mode "F": no rounding to bytes
        (new_w, new_h), Image.Resampling.LANCZOS
    )
    box = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)  # [new_h, new_w]
    top, left = (_FIELD - new_h) // 2, (_FIELD - new_w) // 2
    field = np.zeros((_FIELD, _FIELD), dtype=np.float32)  # [28, 28]
    field[top : top + new_h, left : left + new_w] = box
    return torch.from_numpy(field)
