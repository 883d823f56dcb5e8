"""/api/predict for sequence runs (`rnnflow train --task sequence`) through Starlette's test
client: an uploaded .csv/.npz series gets the numbers of `rnnflow predict RUN FILE --json`
(checked through the real CLI), its reading equals the model run on each prefix of the series
standardised here from the run's recorded statistics, and bad uploads are refused with a 4xx and
the reader's own message while the server keeps answering."""

from __future__ import annotations

import io
import json
import re
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("httpx2", reason="starlette's test client needs httpx2")
from starlette.testclient import TestClient  # noqa: E402

from rnnflow.cli import main  # noqa: E402
from rnnflow.serve import create_app, load_run  # noqa: E402
from rnnflow.tasks.sequence import load_trained_model  # noqa: E402

from .conftest import SERIES_CHANNELS, SERIES_CLASSES  # noqa: E402

BASE = "http://127.0.0.1"


def client(run_dir: Path, **kwargs) -> TestClient:
    return TestClient(create_app(load_run(run_dir), **kwargs), base_url=BASE)


def rising(steps: int = 9, seed: int = 1) -> np.ndarray:
    """A raw series float32 [steps, 3] whose channel 0 rises (class "rising" in training)."""
    rng = np.random.default_rng(seed)
    x = 10.0 + rng.normal(scale=0.3, size=(steps, SERIES_CHANNELS)).astype(np.float32)
    x[:, 0] += 0.5 * np.arange(steps, dtype=np.float32)
    return x


def csv_bytes(series: np.ndarray, header: bool = True) -> bytes:
    rows = [",".join(repr(float(v)) for v in row) for row in series]
    return ("a,b,c\n" * header + "\n".join(rows) + "\n").encode()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def cli_predict(capsys, run: Path, path: Path, top: int) -> dict:
    capsys.readouterr()
    status = main(["predict", str(run), str(path), "--json", "--top", str(top)])
    payload = json.loads(capsys.readouterr().out)
    return {"status": status, **payload}


def standardise(run: Path, series: np.ndarray) -> torch.Tensor:
    """float32 [T, D]: the series standardised with the run's recorded mean and std (float64,
    as the run's statistics are), computed here from config.json."""
    config = json.loads((run / "config.json").read_text())
    mean, std = np.array(config["norm_mean"]), np.array(config["norm_std"])
    return torch.from_numpy(((series.astype(np.float64) - mean) / std).astype(np.float32))


@pytest.mark.parametrize("name", ["seq", "seq_bidir", "seq_fcn"])
def test_upload_prediction_equals_cli_predict_json(series_runs, name, tmp_path, capsys):
    run = series_runs[name]
    one = rising()
    padded = np.zeros((2, 11, SERIES_CHANNELS), np.float32)
    padded[0], padded[1, :5] = rising(11, seed=2), rising(5, seed=3)
    files = {
        "one.csv": (csv_bytes(one), "text/csv"),
        "two.npz": (npz_bytes(x=padded, lengths=np.array([11, 5])), "application/octet-stream"),
    }
    for filename, (data, kind) in files.items():
        answer = client(run).post(
            "/api/predict?top=3", content=data, headers={"Content-Type": kind}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        path = tmp_path / filename
        path.write_bytes(data)
        cli = cli_predict(capsys, run, path, top=3)
        assert cli["status"] == 0 and body["checkpoint"] == cli["checkpoint"]
        assert len(body["predictions"]) == len(cli["predictions"]) == len(body["series"])
        for ours, theirs in zip(body["predictions"], cli["predictions"]):
            assert ours.pop("file") == "upload" and theirs.pop("file") == str(path)
            assert ours == theirs  # the same classes and float32 numbers, bit for bit
        for entry, series in zip(cli["predictions"], body["series"]):
            by_index = {t["class_index"]: t["probability"] for t in entry["top"]}
            assert [series["probabilities"][i] for i in by_index] == list(by_index.values())
    assert [p["length"] for p in cli["predictions"]] == [11, 5]


@pytest.mark.parametrize("name", ["seq", "seq_bidir", "seq_fcn"])
def test_reading_is_the_model_on_each_prefix(series_runs, name):
    run = series_runs[name]
    raw = rising(10)
    body = (
        client(run)
        .post("/api/predict", content=csv_bytes(raw), headers={"Content-Type": "text/csv"})
        .json()
    )
    series = body["series"][0]
    x = standardise(run, raw)[None]  # [1, 10, 3]
    torch.testing.assert_close(torch.tensor(series["input"]), x[0], rtol=0, atol=1e-6)
    reading = series["reading"]
    steps = torch.tensor(reading["probabilities"])  # [11, 3]
    assert steps.shape == (11, len(SERIES_CLASSES))
    model, checkpoint = load_trained_model(run)
    with torch.no_grad():
        for t in range(1, 11):  # independent truth: the model run on the first t steps only
            expected = model(x[:, :t]).softmax(-1)[0]
            torch.testing.assert_close(steps[t], expected, rtol=0, atol=1e-6)
            hidden = model.features(x[:, :t])[0]  # what the output layer reads after t steps
            torch.testing.assert_close(
                torch.tensor(reading["hidden"][t - 1]), hidden, rtol=0, atol=1e-6
            )
        before = model.biases_out.softmax(-1)  # nothing read: zero features
    torch.testing.assert_close(steps[0], before, rtol=0, atol=1e-6)
    torch.testing.assert_close(steps[10], torch.tensor(series["probabilities"]), rtol=0, atol=1e-6)
    c = body["predictions"][0]["class_index"]
    assert reading["predicted"] == c
    changes = {m["step"]: m["change"] for m in reading["moved"]}
    largest = (steps[1:, c] - steps[:-1, c]).abs().argsort(descending=True)[:5].tolist()
    assert list(changes) == largest
    for step, change in changes.items():
        assert change == pytest.approx(float(steps[step + 1, c] - steps[step, c]), abs=1e-6)
    width = {"seq": 8, "seq_bidir": 2 * 8, "seq_fcn": 2 * 8 + 128}[name]
    assert np.array(reading["hidden"]).shape == (10, width)
    assert checkpoint.config.pooling == ("mean" if name == "seq_bidir" else "last")


def test_info_says_what_the_reading_means(series_runs):
    info = client(series_runs["seq"]).get("/api/info").json()
    assert info["kind"] == "sequence" and info["classes"] == list(SERIES_CLASSES)
    assert info["num_channels"] == 3 and not info["bidirectional"]
    assert info["note"] == (
        "After t steps, the probabilities are the model's answer had the series ended there: "
        "the output layer applied to the state after step t-1."
    )
    assert info["limits"] == {"steps": 400, "series": 16}
    small = client(series_runs["seq"], max_steps=50, max_series=2).get("/api/info").json()
    assert small["limits"] == {"steps": 50, "series": 2}
    info = client(series_runs["seq_bidir"]).get("/api/info").json()
    assert info["bidirectional"] and info["pooling"] == "mean"
    assert "the mean of the outputs of steps 0..t-1" in info["note"]
    assert "the backward direction run over steps t-1..0" in info["note"]
    assert info["conv_branch"] == "none" and "convolutional" not in info["note"]
    info = client(series_runs["seq_fcn"]).get("/api/info").json()
    assert info["conv_branch"] == "fcn-se" and info["note"].endswith(
        "Beside it, the convolutional branch (--conv-branch) reads steps 0..t-1 alone: its "
        "features are the mean of its last block over those steps."
    )


def bomb() -> bytes:
    """A zip of one 'x.npy' that unpacks to 80,000,120 bytes (6,666,666 x 3 float32 zeros and a
    128-byte header), about 80 kB zipped: over the 64 MiB limit."""
    buffer = io.BytesIO()
    array = io.BytesIO()
    np.lib.format.write_array(array, np.zeros((1, 10_000_000 // 3 * 2, 3), np.float32))
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", array.getvalue())
    return buffer.getvalue()


def lying_header() -> bytes:
    """A zip whose 'x.npy' header claims [1, 10**9, 3] float32 (12 GB) over 12 bytes of data
    (the member: a 137-byte header, the shape written 9 characters longer, and the data)."""
    array = io.BytesIO()
    np.lib.format.write_array(array, np.zeros((1, 1, 3), np.float32))
    data = array.getvalue().replace(b"(1, 1, 3)", b"(1, 1000000000, 3)")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("x.npy", data)
    return buffer.getvalue()


def nan_csv() -> bytes:
    series = rising(4)
    series[1, 2] = np.nan
    return csv_bytes(series)


BAD = {  # name: (body, content type, status, message)
    "wrong channel count": (
        csv_bytes(rising()[:, :2]),
        "text/csv",
        422,
        "upload.csv: the model reads 3 channels per step, the file has 2",
    ),
    "NaN": (
        nan_csv(),
        "text/csv",
        422,
        r"upload.csv: series 0 holds a non-finite value \(nan\) at step 1, channel 2",
    ),
    "too long": (
        csv_bytes(rising(401)),
        "text/csv",
        413,
        r"upload: series 0 has 401 steps; this server reads at most 400",
    ),
    "too many series": (
        npz_bytes(x=np.ones((17, 2, 3), np.float32)),
        "application/octet-stream",
        413,
        "upload: 17 series; this server reads at most 16 per request",
    ),
    "an image": (
        b"\x89PNG\r\n\x1a\n" + bytes(100),
        "application/octet-stream",
        415,
        r"upload.csv: not a readable .csv file \(not UTF-8 text\)",
    ),
    "text, not numbers": (
        b"hello, world\n",
        "text/plain",
        422,
        r"upload.csv: the series is empty \(no rows of numbers\)",
    ),
    "a bad zip": (
        b"PK\x03\x04" + bytes(50),
        "application/zip",
        415,
        r"upload.npz: not a readable .npz file",
    ),
    "a zip bomb": (
        bomb(),
        "application/zip",
        413,
        r"upload: the .npz unpacks to 80000120 bytes, the limit is 67108864",
    ),
    "a lying .npy header": (
        lying_header(),
        "application/zip",
        413,
        r"upload: x.npy claims \[1, 1000000000, 3\] float32 \(12000000000 bytes\) in a member "
        r"of 149 bytes",
    ),
    "an npz without x": (
        npz_bytes(y=np.ones((2, 3), np.float32)),
        "application/octet-stream",
        422,
        r"upload.npz: missing key 'x' \(found \['y'\]\)",
    ),
    "JSON": (b'{"pixels": []}', "application/json", 415, "this is a sequence run"),
    "an image type": (csv_bytes(rising()), "image/png", 415, "unsupported content type"),
    "empty": (b"", "text/csv", 400, "empty upload: send the bytes of a .csv or .npz"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_uploads_are_refused_and_the_server_goes_on(series_runs, case):
    body, kind, status, message = BAD[case]
    c = client(series_runs["seq"])
    answer = c.post("/api/predict", content=body, headers={"Content-Type": kind})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert "rnnflow-serve-" not in error  # the private temporary path is never shown
    assert re.search(message, error), error
    good = c.post("/api/predict", content=csv_bytes(rising()), headers={"Content-Type": "text/csv"})
    assert good.status_code == 200


def test_the_refusals_are_rnnflow_predicts_own_messages(series_runs, tmp_path, capsys):
    """The same reader, the same words: the CLI's error for a file, with the file's path."""
    for filename, data in {"nan.csv": nan_csv(), "png.csv": BAD["an image"][0]}.items():
        path = tmp_path / filename
        path.write_bytes(data)
        cli = cli_predict(capsys, series_runs["seq"], path, top=1)
        answer = client(series_runs["seq"]).post(
            "/api/predict", content=data, headers={"Content-Type": "text/csv"}
        )
        assert cli["status"] == 1 and cli["predictions"] == []
        assert answer.json()["error"] == cli["errors"][0]["error"].replace(str(path), "upload.csv")


def test_over_the_size_limit_and_a_bad_top(series_runs):
    c = client(series_runs["seq"], max_body_bytes=100)
    answer = c.post(
        "/api/predict", content=csv_bytes(rising()), headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"].startswith("request body too large: ")
    c = client(series_runs["seq"], max_steps=5)
    answer = c.post(
        "/api/predict", content=csv_bytes(rising()), headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"].startswith(
        "upload: series 0 has 9 steps; this server reads at most 5"
    )
    c = client(series_runs["seq"])
    answer = c.post(
        "/api/predict?top=0", content=csv_bytes(rising()), headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 400 and answer.json()["error"] == (
        "top: expected a positive integer, got '0'"
    )
    generate = c.post("/api/generate", json={})
    assert generate.status_code == 400
    assert generate.json()["error"] == "this run is a sequence classifier: use POST /api/predict"


@pytest.mark.parametrize(
    "top",
    [
        "%C2%B2",  # '²': str.isdigit() says yes, int() says no
        "%D9%A3",  # Arabic-Indic 3: int() reads it as 3
        "%EF%BC%93",  # fullwidth 3
        "1" * 5000,  # ASCII digits over Python's int() limit
        "-1",
        "%2B3",
        "3.0",
        "%203",
        "",
    ],
)
def test_top_is_ascii_digits_only(series_runs, top):
    c = client(series_runs["seq"])
    answer = c.post(
        f"/api/predict?top={top}", content=csv_bytes(rising()), headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 400
    expected = repr(urllib.parse.unquote_plus(top))
    assert answer.json()["error"] == f"top: expected a positive integer, got {expected}"


def test_top_in_ascii_digits_is_read(series_runs):
    c = client(series_runs["seq"])
    answer = c.post(
        "/api/predict?top=02", content=csv_bytes(rising()), headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 200
    assert len(answer.json()["predictions"][0]["top"]) == 2
