"""End to end in a real headless browser (Debian's chromium, driven by Playwright): a real
`rnnflow serve` process, strokes drawn on the canvas with the mouse and the keyboard, the shown
prediction and per-step probabilities checked against `rnnflow predict --json` and the model run
on the cut image, the slider and the play button, a bad upload; an acrostic poem with rhyme on,
checked against `rnnflow generate --json` and a hand-written table of rhyme groups, and bad poem
requests shown in the page.

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

import numpy as np
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
    last = torch.tensor(shown_probabilities(page, "#step-probs"))  # 28 rows: the prediction,
    torch.testing.assert_close(last, torch.tensor(shown), rtol=0, atol=1e-6)  # batched apart

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


def test_generate_an_acrostic_rhyming_poem_character_by_character(
    runs, page_for, tmp_path, capsys, hand
):
    page = page_for(runs["poem"])
    page.wait_for_selector("body[data-ready=poem]")
    assert "after the constraint mask" in page.inner_text("#poem-view")
    page.select_option("#form", "5x4")
    page.fill("#acrostic", "春江花月")
    page.check("#rhyme")
    page.fill("#seed", "3")
    page.click("#generate")
    page.wait_for_selector("#poem[data-done]", timeout=20_000)
    shown = page.inner_text("#poem")
    capsys.readouterr()
    argv = ["generate", str(runs["poem"]), "--form", "5x4", "--acrostic", "春江花月", "--rhyme"]
    assert main([*argv, "--seed", "3", "--json"]) == 0
    assert shown == json.loads(capsys.readouterr().out)["samples"][0]["text"]
    lines = shown.split("\n")
    vs = hand.verses(shown)
    assert len(lines) == 2 and [len(v) for v in vs] == [5] * 4
    assert [v[0] for v in vs] == list("春江花月")  # each verse starts with its character
    assert hand.rhyme_class(vs[1][-1]) == hand.rhyme_class(vs[3][-1])  # the even verses rhyme
    assert page.locator("#poem span.acrostic").all_inner_texts() == list("春江花月")
    assert page.locator("#poem span.rhyme").all_inner_texts() == [vs[1][-1], vs[3][-1]]
    assert "even verses rhyme: yes" in page.inner_text("#poem-meta")
    page.click("#poem span[data-step='6']")  # the second verse's first character: 江 only
    assert page.inner_text("#cand-step").startswith("character 7 (“江” was drawn)")
    assert page.locator("#cands .val").count() == 1
    page.click("#poem span[data-step='2']")
    assert page.inner_text("#cand-step").startswith("character 3")
    answer = page.evaluate("window.rnnflow.poem.samples[0].steps[2].candidates")  # the API's
    assert 1 <= len(answer) <= 5
    assert shown_probabilities(page, "#cands") == [c["probability"] for c in answer]
    shot(page, tmp_path, "serve-poem")

    # bad requests: the error in the page, and the next good request clears it
    page.fill("#acrostic", "春江")
    page.click("#generate")
    page.wait_for_selector("#error:not([hidden])")
    assert "the acrostic '春江' has 2 characters, the 5x4 form has 4 verses" in page.inner_text(
        "#error"
    )
    page.fill("#acrostic", "")
    page.uncheck("#rhyme")
    page.select_option("#form", "")
    page.fill("#prime", "QQ")
    page.click("#generate")
    sync_api.expect(page.locator("#error")).to_contain_text("characters the model does not know")
    page.fill("#prime", "春")
    page.fill("#length", "5")
    page.click("#generate")
    page.wait_for_selector("#error[hidden]", state="attached")


def test_upload_a_series_read_it_step_by_step_and_match_the_cli(
    series_runs, page_for, tmp_path, capsys
):
    from rnnflow.tasks.sequence import load_trained_model as load_sequence_model

    run = series_runs["seq_bidir"]
    page = page_for(run)
    page.wait_for_selector("body[data-ready=sequence]")
    note = page.inner_text("#reading-note")
    assert "the mean of the outputs of steps 0..t-1" in note and "backward direction" in note
    rng = np.random.default_rng(4)
    raw = (10.0 + rng.normal(scale=0.3, size=(10, 3))).astype(np.float32)  # [10 steps, 3]
    raw[:, 0] += 0.5 * np.arange(10, dtype=np.float32)  # rising: the class "rising"
    csv = tmp_path / "rising.csv"
    csv.write_text("a,b,c\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in raw))
    page.set_input_files("#series-file", str(csv))
    page.wait_for_selector("body:not([data-busy]) #pred-class")
    capsys.readouterr()
    assert main(["predict", str(run), str(csv), "--json", "--top", "3"]) == 0
    cli = json.loads(capsys.readouterr().out)["predictions"][0]
    assert page.inner_text("#pred-class") == cli["class"]
    shown = shown_probabilities(page, "#probs")
    assert shown == [{t["class_index"]: t["probability"] for t in cli["top"]}[i] for i in range(3)]

    # the reading: the probabilities after t steps are the model's on the first t steps
    config = json.loads((run / "config.json").read_text())
    mean, std = np.array(config["norm_mean"]), np.array(config["norm_std"])
    x = torch.from_numpy(((raw.astype(np.float64) - mean) / std).astype(np.float32))[None]
    model, _ = load_sequence_model(run)
    page.focus("#step")
    page.keyboard.press("Home")
    assert page.inner_text("#step-label") == "0 of 10"
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    assert page.inner_text("#step-label") == "4 of 10"
    with torch.no_grad():
        expected = model(x[:, :4]).softmax(-1)[0]
    torch.testing.assert_close(
        torch.tensor(shown_probabilities(page, "#step-probs")), expected, rtol=0, atol=1e-6
    )
    assert page.locator("#moved li").count() == 5
    assert page.locator("#moved li").first.inner_text().startswith("step ")
    shot(page, tmp_path, "serve-sequence")
    page.click("#play")
    sync_api.expect(page.locator("#step-label")).to_have_text("10 of 10", timeout=10_000)
    last = torch.tensor(shown_probabilities(page, "#step-probs"))  # all 10 steps: the prediction
    torch.testing.assert_close(last, torch.tensor(shown), rtol=0, atol=1e-6)

    # two series in one .npz: pick the second, as predict --json lists it
    padded = np.zeros((2, 10, 3), np.float32)
    padded[0], padded[1, :6] = raw, raw[::-1][:6]
    npz = tmp_path / "two.npz"
    np.savez(npz, x=padded, lengths=np.array([10, 6]))
    page.set_input_files("#series-file", str(npz))
    page.wait_for_selector("body:not([data-busy]) #series-pick-label:not([hidden])")
    page.select_option("#series-pick", "1")
    capsys.readouterr()
    assert main(["predict", str(run), str(npz), "--json", "--top", "3"]) == 0
    second = json.loads(capsys.readouterr().out)["predictions"][1]
    assert page.inner_text("#pred-class") == second["class"]
    assert page.inner_text("#step-label") == "6 of 6"

    # a bad file: the reader's message in the page, and the page goes on
    bad = tmp_path / "two-channels.csv"
    bad.write_text("1.0,2.0\n3.0,4.0\n")
    page.set_input_files("#series-file", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == (
        "two-channels.csv: upload.csv: the model reads 3 channels per step, the file has 2"
    )
    shot(page, tmp_path, "serve-sequence-error")
    page.set_input_files("#series-file", str(csv))
    page.wait_for_selector("#error[hidden]", state="attached")
