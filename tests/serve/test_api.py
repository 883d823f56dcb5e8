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
from rnnflow.tasks.charlm import load_charlm  # noqa: E402
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


def test_generate_constraints_equal_cli_generate_json(runs, capsys):
    request = {"form": "5x4", "seed": 5, "acrostic": "春江花月", "rhyme": True, "top_p": 0.9}
    body = client(runs["poem"]).post("/api/generate", json=request).json()
    argv = ["generate", str(runs["poem"]), "--form", "5x4", "--seed", "5", "--top-p", "0.9"]
    cli = cli_json(capsys, *argv, "--acrostic", "春江花月", "--rhyme", "--json")
    for sample in body["samples"]:
        sample.pop("steps")
    assert body == cli and cli["samples"][0]["rhymes"] and cli["samples"][0]["well_formed"]
    assert cli["samples"][0]["text"][0] == "春"
    bad = client(runs["poem"]).post("/api/generate", json={"acrostic": "春江花", "form": "5x4"})
    assert bad.status_code == 422 and "the 5x4 form has 4 verses" in bad.text


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


def test_candidates_are_the_model_on_the_whole_prefix(runs):
    """Free text at temperature 1: each step's candidates are the five largest of the softmax
    of the model's logits after the whole prefix, run in one call (not the carried state),
    without <pad>, <unk> and <bos>."""
    request = {"prime": "春江", "length": 8, "temperature": 1.0, "seed": 2}
    body = client(runs["poem"]).post("/api/generate", json=request).json()
    model, vocab, _ = load_charlm(runs["poem"])
    steps = body["samples"][0]["steps"]
    ids = [vocab.index[ch] for ch in "春江"]
    with torch.no_grad():
        for step in steps:
            logits = model(torch.tensor([[vocab.bos_id, *ids]]))[0][0, -1].double()  # [V]
            logits[[vocab.pad_id, vocab.unk_id, vocab.bos_id]] = float("-inf")
            values, top = logits.softmax(-1).topk(5)
            assert [c["symbol"] for c in step["candidates"]] == [vocab.symbols[i] for i in top]
            shown = torch.tensor([c["probability"] for c in step["candidates"]], dtype=torch.double)
            torch.testing.assert_close(shown, values, rtol=0, atol=1e-6)
            ids.append(vocab.index[step["symbol"]])
    assert len(steps) == 8 or steps[-1]["symbol"] == "<eos>"


def test_constrained_generate_equals_cli_generate_json(runs, capsys):
    request = {"form": "5x8", "acrostic": "春江花月夜山水风", "rhyme": True, "tonal": True}
    request |= {"prime": "春", "temperature": 1.3, "top_k": 9, "top_p": 0.6, "seed": 11, "num": 3}
    answer = client(runs["poem"]).post("/api/generate", json=request)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    argv = ["generate", str(runs["poem"]), "--form", "5x8", "--acrostic", request["acrostic"]]
    argv += ["--rhyme", "--tonal", "--prime", "春", "--temperature", "1.3", "--top-k", "9"]
    argv += ["--top-p", "0.6", "--seed", "11", "--num", "3", "--json"]
    cli = cli_json(capsys, *argv)
    for sample in body["samples"]:
        assert "".join(s["text"] for s in sample.pop("steps")) == sample["text"][1:]
    assert body == cli
    assert [s["seed"] for s in body["samples"]] == [11, 12, 13]


def test_constrained_poems_obey_hand_written_rhymes_and_tones(runs, hand):
    """Each verse starts with its acrostic character, the even verses end in one rhyme group,
    the 2nd/4th characters follow the 5x4 平仄 pattern (all by the hand-written READINGS), and
    the candidates shown are those after the mask: only the acrostic character at a verse's
    start, only the rhyme group at the last rhyme."""
    acrostic = "山水风云"
    request = {"form": "5x4", "acrostic": acrostic, "rhyme": True, "tonal": True}
    body = client(runs["poem"]).post("/api/generate", json={**request, "num": 6}).json()
    for sample in body["samples"]:
        vs = hand.verses(sample["text"])
        assert [v[0] for v in vs] == list(acrostic) and [len(v) for v in vs] == [5] * 4
        assert hand.rhyme_class(vs[1][-1]) == hand.rhyme_class(vs[3][-1]), vs
        tones = [[hand.level(v[c]) for c in (1, 3, 4)] for v in vs]  # 2nd, 4th, last
        second = [t[0] for t in tones]
        pairs = [(t[0], t[1]) for t in tones] + [(second[0], second[1]), (second[2], second[3])]
        assert all(a != b for a, b in pairs if None not in (a, b)), vs  # 二四分明, 对
        assert None in second[1:3] or second[1] == second[2], vs  # 粘
        ends = [t[2] for t in tones][1:]  # verses 2-4 end level, oblique, level
        assert all(e is None or e == x for e, x in zip(ends, [True, False, True])), vs
        assert sample["rhymes"] and sample["tonal"] and sample["well_formed"]
        steps = sample["steps"]  # no prime: step i is character i of the text
        for i, step in enumerate(steps):
            before = sample["text"][:i]
            shown = [c["symbol"] for c in step["candidates"]]
            if i == 0 or before[-1] in "，\n":  # a verse starts
                assert shown == [acrostic[len(hand.verses(before))]]
                assert step["candidates"][0]["probability"] == pytest.approx(1.0)
        last = sample["text"].rindex("。") - 1  # the last verse's last character
        group = hand.rhyme_class(vs[1][-1])
        assert {hand.rhyme_class(c["symbol"]) for c in steps[last]["candidates"]} == {group}


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
        (post("/api/generate", json={"form": "5x4"}), 400,
         "this run is an image classifier: use POST"),
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
        ({"top_p": 0}, 400, "top_p: expected a number in (0, 1], got 0"),
        ({"top_p": 1.5}, 400, "top_p: expected a number in (0, 1], got 1.5"),
        ({"top_p": "all"}, 400, "top_p: expected a number in (0, 1], got 'all'"),
        ({"top_k": -1}, 400, "top_k: expected an integer in [0, 1000000], got -1"),
        (
            {"acrostic": "春江花月"},
            400,
            "acrostic: need a form (5x4, 7x4, 5x8, 7x8): they constrain a regular poem",
        ),
        ({"rhyme": True, "tonal": True}, 400, "rhyme, tonal: need a form"),
        ({"rhyme": "yes", "form": "5x4"}, 400, "rhyme: expected true or false, got 'yes'"),
        ({"tonal": 1, "form": "5x4"}, 400, "tonal: expected true or false, got 1"),
        (
            {"acrostic": ["春"], "form": "5x4"},
            400,
            "acrostic: expected a string of at most 8 characters, got ['春']",
        ),
        (
            {"acrostic": "春" * 9, "form": "5x8"},
            400,
            "acrostic: expected a string of at most 8 characters, got 9 characters",
        ),
        (
            {"acrostic": "春江", "form": "5x4"},
            422,
            "the acrostic '春江' has 2 characters, the 5x4 form has 4 verses",
        ),
        ({"acrostic": "春江花月夜", "form": "7x4"}, 422, "has 5 characters, the 7x4 form has 4"),
        (
            {"acrostic": "春江花海", "form": "5x4"},
            422,
            "the acrostic characters ['海'] are not in the model's vocabulary",
        ),
        ({"acrostic": "春江花a", "form": "5x4"}, 422, "must be CJK ideographs, got ['a']"),
        (
            {"acrostic": "春江花月", "form": "5x4", "prime": "江"},
            422,
            "the prime '江' breaks the constraints at character 0",
        ),
    ]
    for request, status, message in cases:
        response = c.post("/api/generate", json=request)
        assert response.status_code == status, (request, response.text)
        assert message in response.json()["error"]
    for raw in (b'{"top_p": NaN}', b'{"temperature": Infinity}'):  # Python's json reads them
        response = c.post(
            "/api/generate", content=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400 and "expected a number in" in response.json()["error"]
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


def test_a_tiny_temperature_or_top_p_answers_the_greedy_poem(runs):
    """softmax(l / t) -> one-hot(argmax l) as t -> 0+, and a nucleus smaller than the top
    probability is the top id alone: both give temperature 0's (greedy) text, never a 500."""
    c = client(runs["poem"])
    request = {"form": "5x4", "seed": 4}
    greedy = c.post("/api/generate", json={**request, "temperature": 0}).json()
    for extra in (
        {"temperature": 1e-40},
        {"temperature": 5e-324},
        {"top_p": 1e-300},
        {"top_p": 5e-324},
    ):
        answer = c.post("/api/generate", json={**request, **extra})
        assert answer.status_code == 200, (extra, answer.text)
        assert answer.json()["samples"][0]["text"] == greedy["samples"][0]["text"]


def test_every_number_and_seed_out_of_range_is_a_400(runs):
    c = client(runs["poem"])
    big = "1" + "0" * 400  # a JSON integer no float holds
    for field, message in (
        ("temperature", f"temperature: expected a number in [0, 100], got {big}"),
        ("top_p", f"top_p: expected a number in (0, 1], got {big}"),
        ("seed", f"seed: expected an integer in [0, 4611686018427387904], got {big}"),
    ):
        raw = f'{{"{field}": {big}}}'.encode()
        answer = c.post("/api/generate", content=raw, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"] == message
    for seed in (-1, 2**62 + 1):
        answer = c.post("/api/generate", json={"seed": seed})
        assert answer.status_code == 400
        assert answer.json()["error"] == (
            f"seed: expected an integer in [0, 4611686018427387904], got {seed}"
        )


def test_deeply_nested_json_is_malformed_json(runs):
    deep = b"[" * 100_000 + b"]" * 100_000
    for run, path in (("image", "/api/predict"), ("poem", "/api/generate")):
        c = TestClient(
            create_app(load_run(runs[run])), base_url=BASE, raise_server_exceptions=False
        )
        answer = c.post(path, content=deep, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400
        assert answer.json() == {"error": "malformed JSON: nested too deeply"}


def test_an_unknown_field_of_a_drawing_is_refused(runs):
    c = client(runs["image"])
    answer = c.post("/api/predict", json={"pixels": stroke().tolist(), "top": 2, "foo": 1})
    assert answer.status_code == 400
    assert answer.json()["error"] == (
        "unknown field(s) ['foo']; expected some of ['pixels', 'top']"
    )
    assert c.post("/api/predict", json={"pixels": stroke().tolist(), "top": 2}).status_code == 200


def test_a_foreign_host_is_refused_in_json(runs):
    c = TestClient(create_app(load_run(runs["image"])), base_url="http://evil.example:8000")
    answer = c.get("/api/info")
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "error": "Host header 'evil.example:8000' refused: this server answers to localhost, "
        "127.0.0.1, [::1] only (a defence against DNS rebinding)"
    }
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert client(runs["image"]).get("/api/info").status_code == 200  # BASE: a loopback host
