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

from rnnflow.data.images import WORK_SIDE, ImageError, load_image, preprocess_image


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
        ImageError,
        match=r"big\.png: image too large: 120x200 = 24000 pixels to decode, the limit is 10000",
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
        ImageError,
        match=r"big\.png: image too large: 120x200 = 24000 pixels to decode, the limit is 10000",
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


def garment(illumination: np.ndarray) -> np.ndarray:
    """A navy T-shirt (reflectance 0.25) on white paper (reflectance 1) under ``illumination``
    [H, W]: observed = reflectance x illumination, float in [0, 1]."""
    h, w = illumination.shape
    reflectance = np.ones((h, w))
    reflectance[60:230, 70:170] = 0.25  # body
    reflectance[60:110, 40:200] = 0.25  # sleeves
    return reflectance * illumination


def test_a_garment_on_an_uneven_light_background_is_found(tmp_path: Path) -> None:
    h, w = 280, 240
    x = np.linspace(0, 1, w)[None, :]
    y = np.linspace(0, 1, h)[:, None]
    uneven = 0.55 + 0.35 * x + 0.1 * y * x  # light from one side: 0.55 .. 1.0
    for name, light in (("even", np.ones((h, w))), ("uneven", uneven)):
        Image.fromarray(np.round(garment(light) * 255).astype(np.uint8)).save(
            tmp_path / f"{name}.png"
        )
    field = load_image(tmp_path / "uneven.png", style="fashion").numpy()
    # what we expect by reasoning: the 160x170 shirt (w x h) scaled by 28/170, centred, its
    # inside 1 - 0.25 = 0.75 once the illumination is divided out; the paper black
    assert field[:, 0].max() < 0.05 and field[:, -1].max() < 0.05  # not a grey box: black paper
    assert field[-10:, :4].max() < 0.05 and field[-10:, -4:].max() < 0.05  # beside the body
    assert abs(float(np.median(field[field > 0.3])) - 0.75) < 0.03
    cols = np.flatnonzero(field.max(axis=0) > 0.375)
    assert len(cols) == round(160 * 28 / 170)  # 26 columns: the sleeves' span
    reference = load_image(tmp_path / "even.png", style="fashion").numpy()
    assert np.abs(field - reference).max() < 0.06  # as if photographed under even light


def test_a_digit_on_a_vignetted_page_is_the_digit_on_white(tmp_path: Path) -> None:
    h, w = 200, 120
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    vignette = 1.0 - 0.35 * (xx**2 + yy**2) / 2  # darker corners: 0.65 .. 1.0
    ink = np.asarray(drawing(), dtype=np.float64) / 255  # 0 ink, 1 paper
    Image.fromarray(np.round(ink * vignette * 255).astype(np.uint8)).save(tmp_path / "v.png")
    drawing().save(tmp_path / "ref.png")
    diff = (load_image(tmp_path / "v.png") - load_image(tmp_path / "ref.png")).abs()
    assert diff.max() < 0.05


def odd_files(folder: Path) -> dict[str, Path]:
    """The '7' drawing saved in every kind of file Pillow reads oddly."""
    base = drawing()  # "L", dark ink on white
    files = {}

    def save(name: str, image: Image.Image, **kwargs) -> None:
        files[name] = folder / name
        image.save(files[name], **kwargs)

    save("bilevel.png", base.point(lambda v: 255 if v > 127 else 0).convert("1"))
    save("palette.png", base.convert("P"))
    save("palette-transparent.png", base.convert("P"), transparency=255)
    save("grey-alpha.png", base.convert("LA"))
    save("cmyk.tif", base.convert("CMYK"))
    save("cmyk.jpg", base.convert("CMYK"))
    sixteen = np.asarray(base, dtype=np.uint16) * 257  # 16-bit grey, same picture
    save("sixteen.png", Image.fromarray(sixteen))
    save("int32.tif", Image.fromarray(np.asarray(base, dtype=np.int32) * 1000))
    save("float.tif", Image.fromarray(np.asarray(base, dtype=np.float32) / 255))
    blank = Image.new("L", base.size, 255)  # an animated GIF: the drawing, then a blank frame
    save("animated.gif", base, save_all=True, append_images=[blank], duration=100, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view": stored rotated the other way
    save("rotated.jpg", base.transpose(Image.Transpose.ROTATE_90), exif=exif, quality=95)
    return files


def test_every_odd_image_mode_gives_the_same_digit(tmp_path: Path) -> None:
    drawing().save(tmp_path / "ref.png")
    reference = load_image(tmp_path / "ref.png")
    for name, path in odd_files(tmp_path).items():
        diff = (load_image(path) - reference).abs()
        assert diff.mean() < 0.02, (name, float(diff.mean()))


@pytest.mark.parametrize(("bad", "counts"), [(np.nan, "1 NaN and 0"), (np.inf, "0 NaN and 1")])
def test_a_float_image_with_a_non_finite_pixel_is_refused(tmp_path: Path, bad, counts) -> None:
    array = np.asarray(drawing(), dtype=np.float32) / 255
    array[5, 7] = bad
    Image.fromarray(array).save(tmp_path / "f.tif")
    message = rf"f\.tif: {counts} infinite pixels in a floating-point image; pixel values must"
    with pytest.raises(ImageError, match=message):
        load_image(tmp_path / "f.tif")
    with pytest.raises(ImageError, match=r"preprocess_image: image: pixel values must be finite"):
        preprocess_image(array)


@pytest.mark.parametrize("size", [(1, 1), (2, 1), (1, 3)])
def test_tiny_images_have_no_ink(tmp_path: Path, size) -> None:
    Image.new("L", size, 0).save(tmp_path / "dot.png")
    with pytest.raises(ImageError, match=r"dot\.png: no ink found"):
        load_image(tmp_path / "dot.png")


def test_preprocess_image_refuses_bad_arrays() -> None:
    with pytest.raises(ImageError, match=r"float pixels must be in \[0, 1\], got 0\.\.2"):
        preprocess_image(np.full((5, 5), 2.0) * np.eye(5))
    with pytest.raises(ImageError, match=r"expected uint8 in \[0, 255\] or floats .*int64"):
        preprocess_image(np.zeros((5, 5), dtype=np.int64))


def test_a_large_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    big = drawing().resize((4800, 8000))  # 38.4 megapixels
    big.save(tmp_path / "photo.jpg", quality=90)
    drawing().save(tmp_path / "ref.png")
    # decoded at 1/4 scale (1200x2000 = 2,400,000 pixels, the least >= 1024 on the longer side)
    x = load_image(tmp_path / "photo.jpg", max_pixels=3_000_000)
    assert (x - load_image(tmp_path / "ref.png")).abs().mean() < 0.02
    png = tmp_path / "photo.png"  # no reduced-scale decoding for PNG: refused at that limit
    big.save(png)
    with pytest.raises(ImageError, match=r"4800x8000 = 38400000 pixels to decode, the limit"):
        load_image(png, max_pixels=3_000_000)


# Peak resident memory of this process, KiB: VmHWM, not ru_maxrss, which carries the
# forking pytest's own peak across exec (a large parent hides the child's growth).
PEAK_RSS = """
import re, sys
from rnnflow.data.images import ImageError, load_image
def peak():
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\\s*(\\d+) kB", status.read()).group(1))
before = peak()
try:
    load_image(sys.argv[1], style=sys.argv[2])
    outcome = "ok"
except ImageError as exc:
    outcome = "ImageError: " + str(exc)
print(peak() - before, outcome)
"""


def streamed_png(path: Path, width: int, height: int, colour_type: int, rows) -> None:
    """Write an 8-bit PNG (colour type 0 grey, 6 RGBA) from ``rows``: (y0, y1, pixel bytes)
    runs of equal rows, so no full image is ever in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    packer = zlib.compressobj(6)
    compressed = []
    for y0, y1, data in rows:  # [y0, y1) all hold the row data
        line = b"\x00" + data  # filter byte 0: none
        for start in range(y0, y1, 65536):
            compressed.append(packer.compress(line * (min(y1, start + 65536) - start)))
    compressed.append(packer.flush())
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(compressed))
    path.write_bytes(png + chunk(b"IEND", b""))


def row_image(path: Path) -> None:  # 39,000,000 x 1 grey, a dark stroke in the middle
    width = 39_000_000
    row = bytearray(b"\xff" * width)
    row[19_000_000:20_000_000] = b"\x00" * 1_000_000
    streamed_png(path, width, 1, 0, [(0, 1, bytes(row))])


def column_image(path: Path) -> None:  # 1 x 39,000,000 grey: 8 bytes of row pointers a pixel
    height = 39_000_000
    rows = [(0, 19_000_000, b"\xff"), (19_000_000, 20_000_000, b"\x00")]
    streamed_png(path, 1, height, 0, rows + [(20_000_000, height, b"\xff")])


def rgba_image(path: Path) -> None:  # 7000 x 7000 RGBA: 196 MB decoded
    white, ink = b"\xff" * 4 * 7000, b"\x00\x00\x00\xff" * 7000
    rows = [(0, 3000, white), (3000, 4000, ink), (4000, 7000, white)]
    streamed_png(path, 7000, 7000, 6, rows)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's VmHWM")
@pytest.mark.parametrize(
    ("make", "limit_kib", "refused"),
    [
        (row_image, 150_000, False),  # the 39 MB decoded row and small change, not 2.4 GB
        (column_image, 100_000, True),  # 351 MB to decode: refused before decoding
        (rgba_image, 300_000, False),  # 196 MB decoded; conversions copy a tile at a time
    ],
)
@pytest.mark.parametrize("style", ["mnist", "fashion"])
def test_large_images_are_decoded_in_bounded_memory(
    tmp_path: Path, style: str, make, limit_kib: int, refused: bool
) -> None:
    import subprocess
    import sys

    make(tmp_path / "big.png")
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(tmp_path / "big.png"), style],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    grown_kib, outcome = result.stdout.split(" ", 1)
    if refused:
        assert re.match(
            r"ImageError: load_image: .*big\.png: image too large: 1x39000000 L takes "
            r"351000000 bytes to decode",
            outcome,
        ), outcome
    else:
        assert outcome.startswith("ok"), outcome
    assert int(grown_kib) < limit_kib


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "F", "I;16", "1"])
def test_tiles_shrink_exactly_as_the_whole_image(monkeypatch, tmp_path: Path, mode: str) -> None:
    """Tile-by-tile conversion and reduction (3 x 3 output pixels a tile) equals Pillow's
    conversion and reduction of the whole image, partial blocks at the edges included."""
    import rnnflow.data.images as images

    rng = np.random.default_rng(3)
    width, height = 3 * WORK_SIDE + 7, 2 * WORK_SIDE + 5  # factor 4, partial edge blocks
    rgba = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    image = rgba.convert("F") if mode == "F" else rgba.convert(mode)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    whole = {"LA": "LA", "RGBA": "RGBA", "P": "RGB", "F": "F", "I;16": "I"}.get(mode, "L")
    expected = image.convert(whole).reduce(4)
    monkeypatch.setattr(images, "_TILE", 3)
    got = images._decode_small(image, tmp_path / "x.png", 10**9)
    assert got.mode == expected.mode and got.size == expected.size == (770, 514)
    assert np.array_equal(np.asarray(got), np.asarray(expected))
