"""End to end in a real headless browser (Debian's chromium, driven by Playwright): a real
`rnnflow serve` process, strokes drawn on the canvas with the mouse and the keyboard, the shown
prediction and per-step probabilities checked against `rnnflow predict --json` and the model run
on the cut image, the slider and the play button, a poem, and a bad upload.

Needs /usr/bin/chromium (`make browser` installs it where apt exists) and the `playwright` pip
package (its own browser download is never used). Screenshots go to a tmp folder, and also to
$RNNFLOW_SERVE_SCREENSHOTS when set (how docs/serve/*.png were made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(
        f"browser tests need {CHROMIUM} (Debian's chromium): run `make browser`",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests need the playwright package (pip, dev extra)"
)

from rnnflow.cli import main  # noqa: E402
from rnnflow.data.images import load_image  # noqa: E402
from rnnflow.tasks.image import load_trained_model  # noqa: E402

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


def serve(run: Path) -> tuple[subprocess.Popen, str]:
    """A real `rnnflow serve RUN --port 0` process and its URL (read from its first lines)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnflow", "serve", str(run), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        match = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        if match:
            return proc, match[1]
    proc.wait()
    raise AssertionError(f"rnnflow serve did not start: {''.join(lines)}")


@pytest.fixture
def page_for(browser, tmp_path) -> Iterator[object]:
    procs = []

    def open_page(run: Path):
        proc, url = serve(run)
        procs.append(proc)
        page = browser.new_page(viewport={"width": 1200, "height": 1000}, accept_downloads=True)
        page.goto(url)
        return page

    yield open_page
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("RNNFLOW_SERVE_SCREENSHOTS")
    if extra:
        shutil.copy(path, Path(extra) / path.name)


def shown_probabilities(page, container: str) -> list[float]:
    """The exact numbers behind the bars (one data-p per class, in class order)."""
    return page.eval_on_selector_all(
        f"{container} .val", "els => els.map(e => Number(e.dataset.p))"
    )


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes in canvas cells (0..28 on each axis)."""
    box = page.locator("#pad").bounding_box()
    cell = box["width"] / 28
    for points in strokes:
        x, y = points[0]
        page.mouse.move(box["x"] + x * cell, box["y"] + y * cell)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x * cell, box["y"] + y * cell, steps=8)
        page.mouse.up()


def test_draw_a_seven_read_it_step_by_step_and_match_the_cli(runs, page_for, tmp_path, capsys):
    page = page_for(runs["image"])
    page.wait_for_selector("body[data-ready=image]")
    draw(page, [[(7, 6), (21, 6), (13, 23)], [(10, 14), (19, 14)]])  # a "7" with a bar
    page.wait_for_selector("body:not([data-busy]) #pred-class")  # the last stroke's answer
    shown_class = page.inner_text("#pred-class")
    shown = shown_probabilities(page, "#probs")
    with page.expect_download() as download:
        page.click("#download")
    png = tmp_path / "drawn.png"
    download.value.save_as(png)  # the exact 28x28 the page sent

    capsys.readouterr()
    assert main(["predict", str(runs["image"]), str(png), "--json", "--top", "10"]) == 0
    cli = json.loads(capsys.readouterr().out)["predictions"][0]
    assert shown_class == cli["class"]
    assert shown == [{t["class_index"]: t["probability"] for t in cli["top"]}[i] for i in range(10)]
    shot(page, tmp_path, "serve-image")

    # the reading: the shown probabilities after t rows are the model's on the first t rows
    model, _ = load_trained_model(runs["image"])
    image = load_image(png, style="mnist")[None]  # [1, 28, 28], as predict preprocessed it
    page.focus("#step")
    page.keyboard.press("Home")
    assert page.inner_text("#step-label") == "0 of 28"
    for _ in range(12):
        page.keyboard.press("ArrowRight")
    assert page.inner_text("#step-label") == "12 of 28"
    with torch.no_grad():
        expected = model(image[:, :12]).softmax(-1)[0]
    torch.testing.assert_close(
        torch.tensor(shown_probabilities(page, "#step-probs")), expected, rtol=0, atol=1e-6
    )
    assert page.locator("#moved li").count() == 5
    shot(page, tmp_path, "serve-reading")
    page.click("#play")
    sync_api.expect(page.locator("#step-label")).to_have_text("28 of 28", timeout=10_000)
    assert shown_probabilities(page, "#step-probs") == shown

    # the keyboard path: clear, then a pen stroke drawn with the arrow keys
    page.focus("#pad")
    page.keyboard.press("Delete")
    page.keyboard.press("Space")  # pen down at the cursor (14, 14)
    for _ in range(8):
        page.keyboard.press("ArrowUp")
    page.keyboard.press("Space")  # pen up
    page.evaluate("window.rnnflow.last = null")
    page.keyboard.press("Enter")
    page.wait_for_selector("body:not([data-busy]) #pred-class")
    painted = page.evaluate("window.rnnflow.last.input")  # what the model read
    drawn = page.evaluate("window.rnnflow.pixels")  # the 28x28 the keys painted
    column = [drawn[r * 28 + 14] for r in range(28)]  # the stroke: (14, 14) up to (14, 6)
    assert all(column[r] == 255 for r in range(6, 15)) and column[20] == 0
    assert sum(v > 0 for row in painted for v in row) > 0

    # a bad upload: an error shown, the page still works
    page.set_input_files(
        "#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not a png"}]
    )
    page.wait_for_selector("#error:not([hidden])")
    assert "notes.png: load_image: upload: unreadable" in page.inner_text("#error")
    shot(page, tmp_path, "serve-error")


def test_generate_a_poem_character_by_character(runs, page_for, tmp_path, capsys):
    page = page_for(runs["poem"])
    page.wait_for_selector("body[data-ready=poem]")
    page.select_option("#form", "5x4")
    page.fill("#seed", "3")
    page.click("#generate")
    page.wait_for_selector("#poem[data-done]", timeout=20_000)
    capsys.readouterr()
    argv = ["generate", str(runs["poem"]), "--form", "5x4", "--seed", "3", "--json"]
    assert main(argv) == 0
    text = json.loads(capsys.readouterr().out)["samples"][0]["text"]
    assert page.inner_text("#poem") == text
    page.click("#poem span[data-step='2']")
    assert page.inner_text("#cand-step").startswith("character 3")
    assert 1 <= page.locator("#cands .val").count() <= 5
    shot(page, tmp_path, "serve-poem")
    page.select_option("#form", "")
    page.fill("#prime", "QQ")
    page.click("#generate")
    page.wait_for_selector("#error:not([hidden])")
    assert "characters the model does not know" in page.inner_text("#error")
