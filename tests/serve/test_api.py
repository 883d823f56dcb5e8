"""The JSON API through Starlette's test client: the numbers of `rnnflow predict --json` and
`rnnflow generate --json`, the reading against the model run on the cut image, and every kind of
bad request refused with a 4xx and a clear message while the server keeps answering."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("httpx2", reason="starlette's test client needs httpx2")
from starlette.testclient import TestClient  # noqa: E402

from rnnflow.cli import main  # noqa: E402
from rnnflow.cli.serve import is_loopback  # noqa: E402
from rnnflow.data.images import load_image  # noqa: E402
from rnnflow.serve import create_app, load_run  # noqa: E402
from rnnflow.tasks.image import load_trained_model  # noqa: E402

BASE = "http://127.0.0.1"


def client(run_dir: Path, **kwargs) -> TestClient:
    return TestClient(create_app(load_run(run_dir), **kwargs), base_url=BASE)


def stroke() -> np.ndarray:
    """A drawn "1": a slanted bar, uint8 [28, 28], light on black."""
    pixels = np.zeros((28, 28), dtype=np.uint8)
    for r in range(5, 23):
        c = 15 - (r - 5) // 6
        pixels[r, c - 1 : c + 2] = 255
        pixels[r, c + 2] = 90
    return pixels


def cli_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["image", "bidir"])
def test_canvas_prediction_equals_cli_predict_json(runs, name, tmp_path, capsys):
    pixels = stroke()
    answer = client(runs[name]).post("/api/predict", json={"pixels": pixels.tolist(), "top": 10})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    png = tmp_path / "drawn.png"
    Image.fromarray(pixels, mode="L").save(png)
    cli = cli_json(capsys, "predict", str(runs[name]), str(png), "--json", "--top", "10")
    assert body["checkpoint"] == cli["checkpoint"]
    ours, theirs = body["predictions"][0], cli["predictions"][0]
    assert ours.pop("image") == "canvas" and theirs.pop("image") == str(png)
    assert ours == theirs  # the same classes and the same float32 numbers, bit for bit
    by_index = {t["class_index"]: t["probability"] for t in theirs["top"]}
    assert body["probabilities"] == [by_index[i] for i in range(10)]
    expected_input = load_image(png, style="mnist")  # what predict fed the model
    assert torch.equal(torch.tensor(body["input"]), expected_input)


def test_upload_prediction_equals_cli_predict_json(runs, tmp_path, capsys):
    big = Image.fromarray(255 - np.kron(stroke(), np.ones((9, 7), dtype=np.uint8))).convert("RGB")
    path = tmp_path / "photo.png"
    big.save(path)  # dark ink on white paper, 252 x 196: the full preprocessing path
    answer = client(runs["image"]).post(
        "/api/predict", content=path.read_bytes(), headers={"Content-Type": "image/png"}
    )
    assert answer.status_code == 200, answer.text
    ours = answer.json()["predictions"][0]
    theirs = cli_json(capsys, "predict", str(runs["image"]), str(path), "--json")["predictions"][0]
    assert ours.pop("image") == "upload" and theirs.pop("image") == str(path)
    assert ours == theirs


@pytest.mark.parametrize("name", ["image", "bidir"])
def test_reading_is_the_model_on_the_cut_image(runs, name):
    body = client(runs[name]).post("/api/predict", json={"pixels": stroke().tolist()}).json()
    model, checkpoint = load_trained_model(runs[name])
    image = torch.tensor(body["input"])[None]  # [1, 28, 28]
    reading = body["reading"]
    steps = torch.tensor(reading["probabilities"])  # [29, 10]
    assert steps.shape == (29, 10)
    with torch.no_grad():
        for t in range(1, 29):  # independent truth: the model run on the first t rows only
            expected = model(image[:, :t]).softmax(-1)
            if checkpoint.config.tta_flip:
                expected = 0.5 * (expected + model(image[:, :t].flip(-1)).softmax(-1))
            torch.testing.assert_close(steps[t], expected[0], rtol=0, atol=1e-6)
        before = model.biases_out.softmax(-1)  # nothing read: zero features
    torch.testing.assert_close(steps[0], before, rtol=0, atol=1e-6)
    torch.testing.assert_close(steps[28], torch.tensor(body["probabilities"]), rtol=0, atol=1e-6)
    c = body["predictions"][0]["class_index"]
    assert reading["predicted"] == c
    changes = {m["row"]: m["change"] for m in reading["moved"]}
    for row, change in changes.items():
        assert change == pytest.approx(float(steps[row + 1, c] - steps[row, c]), abs=1e-6)
    largest = (steps[1:, c] - steps[:-1, c]).abs().argsort(descending=True)[:5].tolist()
    assert list(changes) == largest
    width = 16 if name == "image" else 2 * 8
    assert np.array(reading["hidden"]).shape == (28, width)


def test_info_says_what_the_run_is(runs):
    info = client(runs["bidir"]).get("/api/info").json()
    assert info["kind"] == "image" and info["bidirectional"] and info["tta_flip"]
    assert "bidirectional" in info["note"] and "mirrored" in info["note"]
    assert info["classes"] == [str(d) for d in range(10)] and info["dataset"] == "mnist"
    poem = client(runs["poem"]).get("/api/info").json()
    assert poem["kind"] == "poem" and poem["forms"] == ["5x4", "7x4", "5x8", "7x8"]


def test_generate_equals_cli_generate_json(runs, capsys):
    request = {"form": "5x4", "seed": 3, "num": 2, "temperature": 0.8}
    answer = client(runs["poem"]).post("/api/generate", json=request)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    argv = ["generate", str(runs["poem"]), "--form", "5x4", "--seed", "3", "--num", "2", "--json"]
    cli = cli_json(capsys, *argv)
    steps = [s.pop("steps") for s in body["samples"]]
    assert body == cli
    for sample, shown in zip(cli["samples"], steps):
        assert "".join(s["text"] for s in shown) == sample["text"]
        assert shown[-1]["symbol"] == "<eos>"
        for step in shown:
            probs = [c["probability"] for c in step["candidates"]]
            assert 1 <= len(probs) <= 5 and probs == sorted(probs, reverse=True)
    plain = client(runs["poem"]).post("/api/generate", json={"prime": "春", "length": 7}).json()
    cli = cli_json(
        capsys, "generate", str(runs["poem"]), "--prime", "春", "--length", "7", "--json"
    )
    for s in plain["samples"]:
        s.pop("steps")
    assert plain == cli


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (no pixel data): a decompression bomb's
    first bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_bad_requests_are_refused_with_4xx_and_the_server_keeps_answering(runs):
    c = client(runs["image"], max_body_bytes=200_000)
    post = c.post
    cases = [
        (post("/api/predict", content=b"{not json", headers={"Content-Type": "application/json"}),
         400, "malformed JSON"),
        (post("/api/predict", json=[1, 2]), 400, "expected a JSON object"),
        (post("/api/predict", json={"pixels": [[0] * 28] * 27}), 400, "expected 28 rows of 28"),
        (post("/api/predict", json={"pixels": [[300] * 28] * 28}), 400, r"got 300"),
        (post("/api/predict", json={"pixels": [[True] * 28] * 28}), 400, r"got True"),
        (post("/api/predict", json={"pixels": [[0] * 28] * 28}), 422, "no ink found"),
        (post("/api/predict", json={"pixels": stroke().tolist(), "top": 0}), 400, "top:"),
        (post("/api/predict", content=b"hello", headers={"Content-Type": "text/plain"}),
         415, "unsupported content type 'text/plain'"),
        (post("/api/predict", content=b"GIF89a not really", headers={"Content-Type": "image/gif"}),
         415, "not an image format Pillow can decode"),
        (post("/api/predict", content=huge_png_header(100_000, 100_000),
              headers={"Content-Type": "image/png"}), 413,
         "over Pillow's own decompression-bomb limit"),
        (post("/api/predict", content=huge_png_header(5000, 5000),
              headers={"Content-Type": "image/png"}), 413,
         "image too large: 5000x5000 = 25000000 pixels"),
        (post("/api/predict", content=b"\0" * 300_000, headers={"Content-Type": "image/png"}),
         413, "request body too large: 300000 bytes, the limit is 200000"),
        (post("/api/predict", content=b"", headers={"Content-Type": "image/png"}),
         400, "empty upload"),
        (post("/api/generate", json={"form": "5x4"}), 400, "image classifier: use POST"),
        (c.get("/api/predict"), 405, ""),
        (c.put("/", content=b"x"), 405, ""),
    ]  # fmt: skip
    for response, status, message in cases:
        assert response.status_code == status, (response.status_code, response.text)
        if message:
            assert response.headers["content-type"] == "application/json"
            assert message in response.json()["error"]
    truncated = png_bytes(Image.fromarray(stroke()))[:60]
    response = post("/api/predict", content=truncated, headers={"Content-Type": "image/png"})
    assert response.status_code == 415 and "corrupt or truncated" in response.json()["error"]
    assert "upload" in response.json()["error"] and "/tmp" not in response.json()["error"]
    ok = post("/api/predict", json={"pixels": stroke().tolist()})
    assert ok.status_code == 200 and ok.json()["predictions"][0]["class"]


def test_streamed_body_over_the_limit_is_refused_without_content_length(runs):
    c = client(runs["image"], max_body_bytes=1000)

    def body():
        for _ in range(10):
            yield b"\0" * 500

    response = c.post("/api/predict", content=body(), headers={"Content-Type": "image/png"})
    assert response.status_code == 413 and "over 1000 bytes" in response.json()["error"]


def test_generate_refuses_bad_fields(runs):
    c = client(runs["poem"])
    cases = [
        ({"form": "6x4"}, 400, "form: expected one of ['5x4', '7x4', '5x8', '7x8'] or null"),
        ({"form": 5}, 400, "form: expected one of"),
        ({"temperature": -1}, 400, "temperature: expected a number in [0, 100], got -1"),
        ({"temperature": "hot"}, 400, "temperature: expected a number"),
        ({"length": 10**9}, 400, "length: expected an integer in [0, 2000]"),
        ({"num": 0}, 400, "num: expected an integer in [1, 8], got 0"),
        ({"seed": 1.5}, 400, "seed: expected an integer"),
        ({"prime": "x" * 201}, 400, "prime: expected a string of at most 200 characters"),
        ({"colour": "red"}, 400, "unknown field(s) ['colour']"),
        ({"prime": "QQ"}, 422, "characters the model does not know"),
        ({"form": "5x4", "prime": "春，"}, 422, ""),
    ]
    for request, status, message in cases:
        response = c.post("/api/generate", json=request)
        assert response.status_code == status, (request, response.text)
        assert message in response.json()["error"]
    response = c.post("/api/generate", content=b"[", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]
    response = c.post("/api/generate", content=b"{}", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    response = c.post("/api/predict", json={"pixels": stroke().tolist()})
    assert response.status_code == 400 and "character model" in response.json()["error"]
    assert c.post("/api/generate", json={"length": 3}).status_code == 200


def test_no_file_of_the_run_folder_is_reachable(runs):
    c = client(runs["image"])
    for path in ["/best.safetensors", "/config.json", "/static/../config.json",
                 "/static/%2e%2e/config.json", "/static/index.html", "/static/", "/runs",
                 "/static/app.js/../../best.safetensors"]:  # fmt: skip
        response = c.get(path)
        assert response.status_code == 404, path
        assert b"safetensors" not in response.content, path
    page = c.get("/")
    assert (
        page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    )
    assert b"http://" not in page.content and b"https://" not in page.content  # no external assets
    for name in ("app.js", "app.css"):
        asset = c.get(f"/static/{name}")
        assert asset.status_code == 200 and b"https://" not in asset.content
    before = sorted(p.name for p in runs["image"].iterdir())
    for method in (c.put, c.delete, c.patch):
        assert method("/config.json").status_code in (404, 405)
    assert sorted(p.name for p in runs["image"].iterdir()) == before


def test_foreign_host_header_is_refused(runs):
    c = TestClient(create_app(load_run(runs["image"])), base_url="http://evil.example")
    assert c.get("/api/info").status_code == 400


def test_an_unexpected_failure_is_a_500_and_the_next_request_works(runs, monkeypatch):
    served = load_run(runs["image"])
    c = TestClient(create_app(served), base_url=BASE, raise_server_exceptions=False)
    monkeypatch.setattr(served, "predict", lambda *a, **k: 1 / 0)
    response = c.post("/api/predict", json={"pixels": stroke().tolist()})
    assert response.status_code == 500
    assert response.json()["error"] == "internal error: ZeroDivisionError: division by zero"
    monkeypatch.undo()
    assert c.post("/api/predict", json={"pixels": stroke().tolist()}).status_code == 200


def test_cli_serve_errors_and_loopback(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 1
    assert "no such run folder or checkpoint file" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    assert "--port must be in [0, 65535], got 70000" in capsys.readouterr().err
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.4", "example.com"]))


@pytest.mark.parametrize(
    ("host", "warned", "hosts"),
    [
        ("127.0.0.1", False, ["localhost", "127.0.0.1", "[::1]", "127.0.0.1"]),
        ("0.0.0.0", True, ["*"]),
    ],
)
def test_cli_serve_binds_and_warns_off_loopback(runs, monkeypatch, capsys, host, warned, hosts):
    import uvicorn

    seen = {}

    def fake_run(self, sockets):  # instead of serving: record what would be served
        seen["bound"] = sockets[0].getsockname()
        seen["hosts"] = self.config.app.user_middleware[0].kwargs["allowed_hosts"]

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    assert main(["serve", str(runs["image"]), "--host", host, "--port", "0"]) == 0
    out, err = capsys.readouterr()
    assert seen["bound"][0] == host and seen["bound"][1] > 0
    assert f"open http://{host}:{seen['bound'][1]}/" in out
    assert ("WARNING: listening on 0.0.0.0, reachable from other machines" in err) == warned
    assert seen["hosts"] == hosts
