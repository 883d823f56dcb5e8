"""User images -> MNIST- or Fashion-MNIST-style 28x28 tensors; bad files are refused."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from rnnflow.data.images import ImageError, load_image, preprocess_image


def drawing(*, ink: int = 0, paper: int = 255, size: tuple[int, int] = (120, 200)) -> Image.Image:
    """A '7'-like stroke, off-centre, on a (w, h) = size canvas: dark ink on light paper."""
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    draw.line([(20, 40), (90, 40), (45, 170)], fill=ink, width=12)
    return image


def centre_of_mass(x: torch.Tensor) -> tuple[float, float]:
    idx = torch.arange(28, dtype=torch.float32)
    total = x.sum()
    return float((x.sum(1) * idx).sum() / total), float((x.sum(0) * idx).sum() / total)


def test_png_becomes_an_mnist_style_digit(tmp_path: Path) -> None:
    path = tmp_path / "seven.png"
    drawing().save(path)
    x = load_image(path)
    assert x.shape == (28, 28) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.9  # white ink on black
    assert x[0].abs().max() == 0 and x[:, 0].abs().max() == 0  # black border
    rows = torch.nonzero(x.max(1).values > 0.5).flatten()
    cols = torch.nonzero(x.max(0).values > 0.5).flatten()
    height, width = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
    assert 18 <= height <= 20 and width < height  # longer side scaled into the 20x20 box
    cy, cx = centre_of_mass(x)
    assert abs(cy - 13.5) <= 0.6 and abs(cx - 13.5) <= 0.6  # centred by mass


def test_light_and_dark_backgrounds_give_the_same_tensor(tmp_path: Path) -> None:
    drawing().save(tmp_path / "dark-on-light.png")
    drawing(ink=255, paper=0).save(tmp_path / "light-on-dark.png")
    torch.testing.assert_close(
        load_image(tmp_path / "dark-on-light.png"), load_image(tmp_path / "light-on-dark.png")
    )


def test_grey_paper_and_colour_jpeg_are_normalised(tmp_path: Path) -> None:
    drawing().save(tmp_path / "ref.png")
    colour = drawing(ink=40, paper=200).convert("RGB")
    colour.save(tmp_path / "photo.jpg", quality=85)
    ref, jpg = load_image(tmp_path / "ref.png"), load_image(tmp_path / "photo.jpg")
    assert (ref - jpg).abs().mean() < 0.03
    assert jpg.max() > 0.9 and jpg[0].abs().max() < 0.05


def test_transparent_background_counts_as_paper(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (120, 200), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).line([(20, 40), (90, 40), (45, 170)], fill=(0, 0, 0, 255), width=12)
    rgba.save(tmp_path / "transparent.png")
    drawing().save(tmp_path / "ref.png")
    torch.testing.assert_close(
        load_image(tmp_path / "transparent.png"), load_image(tmp_path / "ref.png")
    )


def test_preprocess_image_takes_arrays() -> None:
    array = np.asarray(drawing(), dtype=np.uint8)
    torch.testing.assert_close(preprocess_image(array), preprocess_image(array / 255.0))
    with pytest.raises(ImageError, match=r"expected a 2-D \[H, W\] array, got shape \(2, 3, 4\)"):
        preprocess_image(np.zeros((2, 3, 4)))


def test_a_blank_image_has_no_ink(tmp_path: Path) -> None:
    Image.new("L", (50, 50), 250).save(tmp_path / "blank.png")
    with pytest.raises(
        ImageError, match=r"blank\.png: no ink found: the image is \(nearly\) uniform"
    ):
        load_image(tmp_path / "blank.png")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"load_image: .*nope\.png: no such file"):
        load_image(tmp_path / "nope.png")


def test_a_non_image_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    with pytest.raises(
        ImageError,
        match=rf"{re.escape(str(path))}: unreadable: not an image format Pillow can decode",
    ):
        load_image(path)


def test_a_truncated_image_is_unreadable(tmp_path: Path) -> None:
    drawing().save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: unreadable: corrupt or truncated image"):
        load_image(tmp_path / "cut.png")


def test_an_image_over_the_pixel_limit_is_refused(tmp_path: Path) -> None:
    drawing().save(tmp_path / "big.png")
    with pytest.raises(
        ImageError, match=r"big\.png: image too large: 120x200 = 24000 pixels, the limit is 10000"
    ):
        load_image(tmp_path / "big.png", max_pixels=10_000)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression-bomb header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [8_000, 100_000])  # over our limit; over Pillow's bomb limit too
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path: Path, side: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(side, side))
    with pytest.raises(ImageError, match=r"bomb\.png: image too large"):
        load_image(path)


def test_fashion_images_fill_the_frame_as_in_fashion_mnist(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    image = (rng.random((28, 28)) * 40).astype(np.uint8)  # faint noise on black
    image[10:13, 4:24] = 230  # a bright bar
    Image.fromarray(image).save(tmp_path / "a.png")  # already 28x28: used as it is
    loaded = load_image(str(tmp_path / "a.png"), style="fashion").numpy()
    assert np.allclose(loaded, image / 255.0)
    photo = np.full((90, 60), 255, np.uint8)
    photo[10:80, 20:40] = 0  # a dark 70x20 object on white paper
    Image.fromarray(photo).save(tmp_path / "b.png")
    field = load_image(str(tmp_path / "b.png"), style="fashion").numpy()
    rows = np.flatnonzero(field.max(axis=1) > 0.5)
    assert field.shape == (28, 28) and rows[0] == 0 and rows[-1] == 27  # longest side -> 28


def test_an_unknown_style_is_refused(tmp_path: Path) -> None:
    drawing().save(tmp_path / "seven.png")
    message = r"style must be one of 'mnist', 'fashion', got 'fashion-mnist'"
    with pytest.raises(ValueError, match=rf"load_image: {message}"):
        load_image(tmp_path / "seven.png", style="fashion-mnist")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=rf"preprocess_image: {message}"):
        preprocess_image(drawing(), style="fashion-mnist")  # type: ignore[arg-type]


def test_the_fashion_style_refuses_too_large_files_too(tmp_path: Path) -> None:
    drawing().save(tmp_path / "big.png")
    with pytest.raises(
        ImageError, match=r"big\.png: image too large: 120x200 = 24000 pixels, the limit is 10000"
    ):
        load_image(tmp_path / "big.png", max_pixels=10_000, style="fashion")
    (tmp_path / "bomb.png").write_bytes(png_claiming(100_000, 100_000))  # over Pillow's limit too
    with pytest.raises(ImageError, match=r"bomb\.png: image too large"):
        load_image(tmp_path / "bomb.png", style="fashion")


def test_the_fashion_style_finds_no_ink_in_a_blank_image(tmp_path: Path) -> None:
    Image.new("L", (50, 50), 250).save(tmp_path / "blank.png")
    with pytest.raises(
        ImageError, match=r"blank\.png: no ink found: the image is \(nearly\) uniform"
    ):
        load_image(tmp_path / "blank.png", style="fashion")
