"""User images (PNG, JPEG, ...) -> the 28x28 grayscale tensor a model trained on MNIST or
Fashion-MNIST expects: float32 [28, 28] in [0, 1], light on black, row r = time step r.

Reading a file (:func:`load_image`) keeps memory bounded by what the result needs, not by the
file: the header's size is checked first; a JPEG is decoded at reduced scale (Pillow's
``draft``: the decoder's own 1/2, 1/4, 1/8 DCT scaling), so a 48-megapixel phone photo never
exists at full size; any other image is decoded once, then shrunk tile by tile (mode
conversions and Pillow's premultiplied-alpha copy touch one tile at a time) by integer box
averaging (``Image.reduce``, no resampling kernel as wide as the reduction) to at most
``WORK_SIDE`` pixels on its longer side. Refused (:class:`ImageTooLarge`, from the header,
before decoding): more than ``max_pixels`` pixels to decode, or more than 4 x ``max_pixels``
bytes (Pillow's 1, 2 or 4 bytes per pixel plus an 8-byte pointer per row: a 1-pixel-wide
image costs 9 bytes a pixel), or more than Pillow's own decompression-bomb limit. Every
Pillow mode is handled: palette, bilevel, CMYK, grey+alpha, 16-bit and 32-bit integer, float
(non-finite pixels are refused); an animated or multi-page file gives its first frame; EXIF
rotation is applied.

Both styles then start the same way: grayscale (transparency composited onto white), and the
background removed. The background is what the outer ring of the picture shows (the outermost 5%
of each side), fitted by a quadratic surface ``b(x, y)`` by least squares, refitted once
without the ring's outliers (an object touching the border): a lighting gradient or vignette on
the paper becomes part of ``b``. Light backgrounds (ring median > 0.5) are corrected as a
flat field, ``object = 1 - gray / b`` (reflectance under uneven illumination: observed =
reflectance x illumination); dark ones by subtraction, ``object = gray - b``. Either way the
object is light on black, as in the datasets. (Method: fitting a polynomial background
function to background points and dividing or subtracting it, J. C. Russ, *The Image Processing
Handbook*, 6th ed., CRC Press 2011, ch. 4, "Nonuniform illumination".) Then each style
reproduces how its dataset was made:

``style="mnist"`` (default): MNIST's preprocessing as LeCun et al. describe it (digits
size-normalised into a 20x20 box, centred by centre of mass in a 28x28 field):

1. the brightest ink maps to 1 (contrast stretch; the background is already 0);
2. crop to the ink's bounding box (pixels above 0.25 after the stretch);
3. scale, keeping the aspect ratio, so the longer side is 20 pixels (antialiased Lanczos);
4. paste into a black 28x28 field so the centre of mass sits at the field's centre.

``style="fashion"``: Fashion-MNIST's conversion as Zalando describe it (products trimmed and
their longest side resized to 28, centred); no contrast stretch:

1. a 28x28 image is taken as it is (only inverted when its background is light);
2. otherwise crop to the object (pixels above 0.1 once the background is removed);
3. scale, keeping the aspect ratio, so the longer side is 28 pixels (antialiased Lanczos);
4. paste into the middle of a black 28x28 field (centred by bounding box).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from rnnflow._paths import path_problem

__all__ = [
    "MAX_PIXELS",
    "WORK_SIDE",
    "ImageError",
    "ImageTooLarge",
    "Style",
    "load_image",
    "preprocess_image",
]

MAX_PIXELS = 50_000_000
"""Default limit on the pixels decoded (width x height, after a JPEG's reduced-scale decoding):
beyond it a file is refused before decoding (a decompression bomb). The decoded image may take
at most 4 bytes per pixel of the limit (200 MB), row pointers included; conversions work on one
tile at a time."""

WORK_SIDE = 1024
"""Longer side, in pixels, an image is shrunk to right after decoding (28 are kept in the end)."""

_BYTES_PER_PIXEL = 4  # decoded bytes allowed per pixel of max_pixels (RGBA's 4)
_ROW_BYTES = 8  # Pillow's pointer to each row of a decoded image
_TILE = 64  # output pixels per side of a tile shrunk at a time (_decode_small)
_FIELD, _BOX = 28, 20  # output field, box the ink is scaled into
_INK_THRESHOLD = 0.25  # after contrast stretch: what counts as ink for the bounding box
_MIN_CONTRAST = 0.1  # brightest ink minus background below this: no ink at all
_FASHION_THRESHOLD = 0.1  # fashion style: above background + this is the object (crop box)

Style = Literal["mnist", "fashion"]
"""Which dataset's preprocessing to reproduce (see the module docstring)."""
_STYLES: tuple[str, ...] = get_args(Style)


class ImageError(ValueError):
    """An image file cannot be used: unreadable, too large, with non-finite pixels, or without
    any ink."""


class ImageTooLarge(ImageError):
    """More pixels to decode than allowed: ``pixels`` > ``limit``."""

    def __init__(self, message: str, *, pixels: int, limit: int) -> None:
        super().__init__(message)
        self.pixels = pixels
        self.limit = limit


# EXIF orientation (tag 0x0112) -> the transpose that undoes it (as ImageOps.exif_transpose)
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def load_image(
    path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS, style: Style = "mnist"
) -> torch.Tensor:
    """Read an image file and preprocess it in ``style`` (see the module docstring).

    Returns float32 [28, 28] in [0, 1]: white (1) ink on black (0), so row r is time step r for a
    row-by-row model; ``"mnist"`` (digits) scales it into a 20x20 box centred by mass,
    ``"fashion"`` (garments) scales its longest side to 28. The file is opened once; memory stays
    near the decoded size (at most ``max_pixels`` pixels, JPEGs decoded at reduced scale). Raises
    ``FileNotFoundError`` if the file is missing, ``ValueError`` for an unknown ``style`` or a
    ``max_pixels`` < 1, :class:`ImageTooLarge` (checked from the header, before decoding) for more
    than ``max_pixels`` pixels or 4 x ``max_pixels`` bytes to decode or more pixels than
    Pillow's own decompression-bomb limit (``limit`` is then Pillow's), and
    :class:`ImageError` (a ``ValueError``) if it is not an image Pillow can decode, is
    truncated, has NaN or infinite pixels, or holds no ink.
    """
    _check_style(style, "load_image")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"load_image: max_pixels must be an int >= 1, got {max_pixels!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_image: {path}: {path_problem(path)}")
    try:
        with warnings.catch_warnings():
            # Pillow warns above Image.MAX_IMAGE_PIXELS (our own max_pixels check decides
            # there) and raises above twice that, without touching Pillow's global settings.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                gray = _to_gray(_decode_small(image, path, max_pixels), path)  # [h, w] in [0, 1]
    except Image.DecompressionBombError as exc:
        # "Image size (N pixels) exceeds limit of M pixels, ..." (Pillow's own hard limit)
        sizes = [int(n) for n in re.findall(r"\d+", str(exc))][:2]
        pixels, limit = sizes if len(sizes) == 2 else (0, 0)
        raise ImageTooLarge(
            f"load_image: {path}: image too large: {pixels} pixels to decode, over Pillow's "
            f"own decompression-bomb limit of {limit} pixels (max_pixels cannot raise it)",
            pixels=pixels,
            limit=limit,
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"load_image: {path}: unreadable: not an image format Pillow can decode "
            "(expected PNG, JPEG, BMP, GIF, ...)"
        ) from exc
    except ImageError:
        raise  # our own refusal, already naming the file
    except (OSError, SyntaxError, EOFError, ValueError) as exc:  # corrupt data while decoding
        # Pillow raises ValueError too for some corrupt headers and tiles ("Truncated IHDR
        # chunk", "tile cannot extend outside image"), found by tests/fuzz.
        raise ImageError(
            f"load_image: {path}: unreadable: corrupt or truncated image ({exc})"
        ) from exc
    return preprocess_image(gray, source=str(path), style=style)


def _decode_small(image: Image.Image, path: Path, max_pixels: int) -> Image.Image:
    """Decode ``image`` (just opened: header only) into at most ``WORK_SIDE`` pixels on its
    longer side, in a mode ``_to_gray`` reads, EXIF orientation applied."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"load_image: {path}: empty image ({width}x{height})")
    if image.format == "JPEG":  # the decoder itself scales by 1/2, 1/4 or 1/8
        scale = min(1.0, WORK_SIDE / max(width, height))
        wanted = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
        image.draft("L" if image.mode in ("L", "RGB", "YCbCr") else None, wanted)
    width, height = image.size  # what will be decoded
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"load_image: {path}: image too large: {width}x{height} = {width * height} pixels "
            f"to decode, the limit is {max_pixels}",
            pixels=width * height,
            limit=max_pixels,
        )
    _check_working_size(image, path, max_pixels)
    image.load()
    orientation = image.getexif().get(0x0112)  # after load(): a PNG's may follow its pixels
    factor = math.ceil(max(width, height) / WORK_SIDE)
    blocks = (min(factor, width), min(factor, height))  # box average over blocks of this size
    # Tile by tile: a mode conversion or a reduce (which first copies RGBA and LA to
    # premultiplied alpha) only ever copies one tile, never the whole decoded image.
    step_x, step_y = _TILE * blocks[0], _TILE * blocks[1]  # input tiles aligned to blocks
    small = None
    for top in range(0, height, step_y):
        for left in range(0, width, step_x):
            box = (left, top, min(width, left + step_x), min(height, top + step_y))
            tile = _workable(image.crop(box), path)
            if factor > 1:
                tile = tile.reduce(blocks)
            if small is None:
                small = Image.new(tile.mode, (-(-width // blocks[0]), -(-height // blocks[1])))
            small.paste(tile, (left // blocks[0], top // blocks[1]))
    image = small
    if orientation in _ORIENTATION:
        image = image.transpose(_ORIENTATION[orientation])
    return image


def _workable(image: Image.Image, path: Path) -> Image.Image:
    """``image`` in a mode ``Image.reduce`` and ``_to_gray`` handle: 8-bit bands, "I", "F"
    (checked finite)."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    elif image.mode.startswith("I;16") or image.mode == "I;32":
        image = image.convert("I")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):  # CMYK, YCbCr, LAB, HSV, ...
        image = image.convert("RGB")
    if image.mode == "F":
        _check_finite(image, path)
    return image


def _check_working_size(image: Image.Image, path: Path, max_pixels: int) -> None:
    """Refuse (:class:`ImageTooLarge`) what would take more than ``_BYTES_PER_PIXEL x
    max_pixels`` bytes to decode: Pillow keeps 1 byte per pixel for "1", "L", "P", 2 for
    16-bit modes, 4 for the others, and one 8-byte pointer per row, so a 1-pixel-wide image
    costs 9 bytes per pixel."""
    width, height = image.size
    if image.mode in ("1", "L", "P"):
        depth = 1
    elif image.mode.startswith("I;16"):
        depth = 2
    else:
        depth = 4
    needed = height * (width * depth + _ROW_BYTES)
    allowed = _BYTES_PER_PIXEL * max_pixels
    if needed > allowed:
        raise ImageTooLarge(
            f"load_image: {path}: image too large: {width}x{height} {image.mode} takes "
            f"{needed} bytes to decode ({depth} per pixel + {_ROW_BYTES} per row), the limit is "
            f"{allowed} ({_BYTES_PER_PIXEL} x max_pixels {max_pixels})",
            pixels=width * height,
            limit=max_pixels,
        )


def _check_finite(image: Image.Image, path: Path) -> None:
    values = np.asarray(image, dtype=np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        nan = int(np.isnan(values).sum())
        raise ImageError(
            f"load_image: {path}: {nan} NaN and {int(bad.sum()) - nan} infinite pixels in a "
            "floating-point image; pixel values must be finite"
        )


def _to_gray(image: Image.Image, source: object = "image") -> np.ndarray:
    """Any Pillow image -> float64 [H, W] in [0, 1], alpha composited onto white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;32", "F"):  # 16/32-bit and float gray
        array = np.asarray(image, dtype=np.float64)
        if not np.isfinite(array).all():
            raise ImageError(f"preprocess_image: {source}: pixel values must be finite")
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

    ``image``: a Pillow image, or a 2-D array [H, W] of uint8 in [0, 255] or floats in [0, 1].
    Returns float32 [28, 28] in [0, 1]. ``source`` names the image in errors. Raises
    ``ValueError`` for an unknown ``style`` and :class:`ImageError` for a bad array (not 2-D,
    another dtype, non-finite or out-of-range values) or no ink.
    """
    _check_style(style, "preprocess_image")
    if isinstance(image, Image.Image):
        gray = _to_gray(image, source)
    else:
        gray = _gray_array(np.asarray(image), source)
    if gray.size == 0:
        raise ImageError(f"preprocess_image: {source}: empty image")

    if style == "fashion" and gray.shape == (_FIELD, _FIELD):  # Fashion-MNIST's own size
        if _border_median(gray) > 0.5:
            gray = 1.0 - gray
        if float(gray.max()) - _border_median(gray) < _MIN_CONTRAST:
            raise _no_ink(source, _border_median(gray), float(gray.max()))
        return torch.from_numpy(gray.astype(np.float32))  # used as it is
    obj, background = _remove_background(gray)  # light on black, background ~0
    peak = float(obj.max())
    if peak < _MIN_CONTRAST:
        raise _no_ink(source, background, peak)
    if style == "fashion":
        return _fashion(obj)

    obj = obj / peak  # contrast stretch: the brightest ink is 1
    rows = np.flatnonzero((obj > _INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((obj > _INK_THRESHOLD).any(axis=0))
    crop = obj[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # [h, w] around the ink

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


def _gray_array(array: np.ndarray, source: str) -> np.ndarray:
    """A user's 2-D array -> float64 [H, W] in [0, 1], checked."""
    if array.ndim != 2:
        raise ImageError(
            f"preprocess_image: {source}: expected a 2-D [H, W] array, got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ImageError(
            f"preprocess_image: {source}: expected uint8 in [0, 255] or floats in [0, 1], got "
            f"dtype {array.dtype}"
        )
    gray = array.astype(np.float64)
    if not np.isfinite(gray).all():
        raise ImageError(f"preprocess_image: {source}: pixel values must be finite")
    if gray.size and (gray.min() < 0 or gray.max() > 1):
        raise ImageError(
            f"preprocess_image: {source}: float pixels must be in [0, 1], got "
            f"{gray.min():.3g}..{gray.max():.3g}"
        )
    return gray


def _border_ring(shape: tuple[int, int]) -> np.ndarray:
    """bool [H, W]: the outermost 5% of each side (at least one pixel)."""
    h, w = shape
    ring = np.zeros(shape, dtype=bool)
    dh, dw = max(1, round(0.05 * h)), max(1, round(0.05 * w))
    ring[:dh], ring[-dh:], ring[:, :dw], ring[:, -dw:] = True, True, True, True
    return ring


def _background_surface(gray: np.ndarray) -> np.ndarray:
    """float64 [H, W]: a quadratic surface fitted to the border ring (module docstring)."""
    h, w = gray.shape
    ys, xs = np.linspace(-1, 1, h)[:, None], np.linspace(-1, 1, w)[None, :]  # [H, 1], [1, W]

    def terms(y: np.ndarray, x: np.ndarray) -> list[np.ndarray]:  # 1, x, y, x^2, xy, y^2
        return [np.ones(np.broadcast_shapes(y.shape, x.shape)), x, y, x * x, x * y, y * y]

    ring = _border_ring(gray.shape)
    rows, cols = np.nonzero(ring)  # the ring's pixels only: a small least-squares problem
    basis = np.stack(np.broadcast_arrays(*terms(ys[rows, 0], xs[0, cols])), axis=1)  # [R, 6]
    values = gray[rows, cols]  # [R]
    use = np.ones(len(values), dtype=bool)
    for _ in range(2):  # fit, then refit without outliers (an object touching the border)
        coef, *_ = np.linalg.lstsq(basis[use], values[use], rcond=None)
        residual = values - basis @ coef
        spread = 1.4826 * float(np.median(np.abs(residual)))  # robust sigma (MAD)
        use = np.abs(residual) <= 3 * spread + 0.02
        if use.sum() < 6:
            break
    return sum(c * t for c, t in zip(coef, terms(ys, xs)))  # [H, W]


def _remove_background(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """(object light on black [H, W] in [0, 1], background level) from gray [H, W]."""
    surface = _background_surface(gray)
    level = _border_median(gray)
    if level > 0.5:  # light paper: flat-field correction, reflectance = gray / illumination
        obj = 1.0 - gray / np.maximum(surface, 1e-3)
    else:  # dark background: subtract it
        obj = gray - surface
    return np.clip(obj, 0.0, 1.0), level


def _border_median(gray: np.ndarray) -> float:
    """Median of the outermost rows and columns of [H, W]: the background level."""
    return float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))


def _no_ink(source: str, background: float, peak: float) -> ImageError:
    return ImageError(
        f"preprocess_image: {source}: no ink found: the image is (nearly) uniform "
        f"(background {background:.2f}, brightest ink {peak:.2f})"
    )


def _fashion(obj: np.ndarray) -> torch.Tensor:
    """Fashion-MNIST-style steps on the object, light on black [H, W] (module docstring)."""
    mask = obj > _FASHION_THRESHOLD  # [H, W]: the object
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = obj[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # [h, w] around the object
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
