"""`rnnflow predict` as people use it: several files with a bad one among them, the 28x28 the
model saw (--save-input), the pixel limit named by its flag."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from test_cli_train import write_fake_dataset

from rnnflow.cli import main
from rnnflow.data.datasets import DATASETS
from rnnflow.tasks.image import load_trained_model

TINY = [
    "--preset", "tutorial", "--dataset", "fashion-mnist", "--batch-size", "32",
    "--train-examples", "64", "--val-size", "40", "--log-every", "64", "--eval-every", "64",
    "--quiet", "--threads", "1", "--num-units", "16",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("predict")
    rows = write_fake_dataset(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        fake = dataclasses.replace(DATASETS["fashion-mnist"], mirrors=(), **rows)
        mp.setitem(DATASETS, "fashion-mnist", fake)
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        mp.delenv("RNNFLOW_DATA_DIR", raising=False)
        argv = ["train", *TINY, "--data-dir", str(root / "data"), "--out", str(root / "run")]
        assert main(argv) == 0
    torch.set_num_threads(threads)
    return root / "run"


def shirt(path: Path, *, size: tuple[int, int] = (90, 120)) -> Path:
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).rectangle([20, 20, 70, 100], fill=30)  # a dark garment on white
    image.save(path)
    return path


def test_good_results_are_printed_and_bad_files_reported(run, tmp_path, capsys):
    good = [shirt(tmp_path / "a.png"), shirt(tmp_path / "b.jpg")]
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 200).save(blank)
    missing = tmp_path / "missing.png"
    argv = ["predict", str(run), str(good[0]), str(text), str(good[1]), str(missing), str(blank)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(good[0]), str(good[1])]
    assert all(re.search(r": \S.* \(\d\.\d{3}\)", line) for line in lines)
    err = captured.err
    assert re.search(rf"{re.escape(str(text))}: unreadable: not an image format", err)
    assert re.search(rf"{re.escape(str(missing))}: no such file", err)
    assert re.search(rf"{re.escape(str(blank))}: no ink found", err)
    assert "rnnflow predict: 3 of 5 images could not be used" in err

    assert main([*argv, "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert [p["image"] for p in payload["predictions"]] == [str(good[0]), str(good[1])]
    assert [e["image"] for e in payload["errors"]] == [str(text), str(missing), str(blank)]


def test_save_input_writes_what_the_model_saw(run, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    first, second = (
        shirt(tmp_path / "shirt.png"),
        shirt(tmp_path / "x" / "shirt.png", size=(60, 200)),
    )
    out = tmp_path / "seen"
    assert main(["predict", str(run), str(first), str(second), "--save-input", str(out), "--json",
                 "--top", "10"]) == 0  # fmt: skip
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert sorted(p.name for p in out.iterdir()) == ["shirt-2.png", "shirt.png"]
    model, _ = load_trained_model(run)
    for prediction, name in zip(predictions, ["shirt.png", "shirt-2.png"]):
        assert prediction["input_saved_as"] == str(out / name)
        seen = np.asarray(Image.open(out / name), dtype=np.float32) / 255  # [28, 28]
        assert seen.shape == (28, 28) and seen[0, 0] == 0  # garment 30 on paper 255:
        assert abs(seen.max() - 225 / 255) < 1e-6  # 1 - 30 / 255, light on black
        with torch.no_grad():  # the saved image, fed to the model, gives the printed answer
            probs = torch.softmax(model(torch.from_numpy(seen)[None]), dim=1)[0]
        printed = {t["class_index"]: t["probability"] for t in prediction["top"]}
        for index, p in printed.items():
            assert abs(p - float(probs[index])) < 0.02  # 8-bit rounding of the saved pixels


def png_claiming(width: int, height: int) -> bytes:
    """A tiny 8-bit grey PNG whose header claims width x height pixels (its data is short)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00"))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def test_the_pixel_limit_is_named_by_its_flag(run, tmp_path, capsys):
    image = shirt(tmp_path / "big.png")
    assert main(["predict", str(run), str(image), "--max-pixels", "5000"]) == 1
    assert re.search(
        r"big\.png: image too large: 90x120 = 10800 pixels to decode, the limit is 5000; "
        r"--max-pixels N raises the limit \(5000\)",
        capsys.readouterr().err,
    )
    assert main(["predict", str(run), str(image), "--max-pixels", "20000"]) == 0
    capsys.readouterr()
    (tmp_path / "bomb.png").write_bytes(png_claiming(100_000, 100_000))  # over Pillow's limit
    assert main(["predict", str(run), str(tmp_path / "bomb.png")]) == 1
    assert re.search(
        r"bomb\.png: image too large: 10000000000 pixels to decode, over Pillow's own "
        r"decompression-bomb limit of \d+ pixels .*; --max-pixels cannot raise Pillow's own limit",
        capsys.readouterr().err,
    )
    (tmp_path / "tall.png").write_bytes(png_claiming(1, 30_000))  # 30000 rows x 9 bytes
    assert main(["predict", str(run), str(tmp_path / "tall.png"), "--max-pixels", "60000"]) == 1
    assert re.search(
        r"tall\.png: image too large: 1x30000 L takes 270000 bytes to decode \(1 per pixel \+ 8 "
        r"per row\), the limit is 240000 \(4 x max_pixels 60000\); --max-pixels N raises",
        capsys.readouterr().err,
    )
