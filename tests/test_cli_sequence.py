"""`rnnflow train --task sequence` end to end on a generated .npz: train, evaluate, predict on
.csv/.npz series, ONNX export with lengths; each checked against numbers computed here from the
saved model and the run's recorded statistics."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnflow.cli import main

MAX_T, DEPTH = 10, 3
SMALL = ["--task", "sequence", "--num-units", "8", "--batch-size", "16", "--epochs", "3"]
SMALL += ["--threads", "1", "--quiet", "--no-bidirectional", "--warmup-examples", "32"]


def series_file(path: Path) -> Path:
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lengths = rng.integers(1, MAX_T + 1, size=n)
        x = 5.0 + 2.0 * rng.normal(size=(n, MAX_T, DEPTH)).astype(np.float32)  # raw, not standard
        labels = (x[np.arange(n), lengths - 1, 0] > 5.0).astype(np.int64)
        return x, lengths, labels

    (xa, la, ya), (xb, lb, yb) = split(80), split(40)
    np.savez(
        path,
        x_train=xa,
        lengths_train=la,
        labels_train=ya,
        x_test=xb,
        lengths_test=lb,
        labels_test=yb,
        class_names=np.array(["low", "high"]),
    )
    return path


@pytest.fixture(scope="module", params=["none", "fcn-se+deltas"])
def run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A finished run of the recurrent network alone, and one with the MLSTM-FCN convolutional
    branch (--conv-branch) and delta channels (--deltas)."""
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("seqcli")
    data = series_file(root / "data.npz")
    out = root / "run"
    conv_branch, _, deltas = request.param.partition("+")
    branch = ["--conv-branch", conv_branch, "--deltas" if deltas else "--no-deltas"]
    status = main(
        ["train", *SMALL, *branch, "--dataset", "npz", "--train-file", str(data), "--out", str(out)]
    )
    torch.set_num_threads(threads)
    assert status == 0
    return out


def load_model(run: Path):
    from rnnflow.tasks.sequence import load_trained_model

    return load_trained_model(run)


def test_train_records_the_data_and_reports_the_test_accuracy(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    assert config["class_names"] == ["low", "high"]
    assert config["conv_branch"] in ("none", "fcn-se")  # one each (the fixture's two params)
    assert (config["conv_branch"] != "none") == hasattr(load_model(run)[0], "fcn")
    assert config["num_channels"] == DEPTH and config["data_sha256"][0].startswith("data.npz=")
    z = np.load(Path(config["train_file"]))
    steps = np.concatenate([x[:n] for x, n in zip(z["x_train"], z["lengths_train"])])
    np.testing.assert_allclose(config["norm_mean"], steps.astype(np.float64).mean(0), rtol=1e-12)
    if config["deltas"]:  # the statistics of the training series' first differences
        pairs = zip(z["x_train"], z["lengths_train"])
        d = np.concatenate([np.diff(x[:n], axis=0, prepend=x[:1]) for x, n in pairs])
        np.testing.assert_allclose(config["delta_mean"], d.astype(np.float64).mean(0), rtol=1e-12)
        np.testing.assert_allclose(config["delta_std"], d.astype(np.float64).std(0), rtol=1e-12)
    else:
        assert config["delta_mean"] == config["delta_std"] == []
    summary = json.loads((run / "summary.json").read_text())
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["test_series"] == 40
    assert (run / "confusion.png").is_file()


def test_evaluate_json_matches_the_model_on_the_test_split(run: Path, capsys) -> None:
    assert main(["evaluate", str(run), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    model, checkpoint = load_model(run)
    z = np.load(checkpoint.config.train_file)
    stats = (np.array(checkpoint.config.norm_mean), np.array(checkpoint.config.norm_std))
    x = torch.from_numpy(((z["x_test"] - stats[0]) / stats[1]).astype(np.float32))
    with torch.no_grad():
        pred = model(x, torch.from_numpy(z["lengths_test"])).argmax(-1).numpy()
    assert payload["accuracy"] == pytest.approx(float((pred == z["labels_test"]).mean()))
    assert payload["series"] == 40 and payload["split"] == "test"


def test_evaluate_refuses_image_flags(run: Path, capsys) -> None:
    assert main(["evaluate", str(run), "--dataset", "mnist"]) == 2
    err = capsys.readouterr().err  # evaluate reads no series files: the message does not offer it
    assert "--dataset applies to image classifier runs" in err, err
    assert err.endswith("is a sequence run (it reads the files it was trained with)\n"), err


def test_predict_csv_and_npz_series(run: Path, tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(5)
    series = (5.0 + 2.0 * rng.normal(size=(6, DEPTH))).astype(np.float32)
    csv = tmp_path / "one.csv"
    csv.write_text("a,b,c\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in series))
    npz = tmp_path / "two.npz"
    padded = np.zeros((2, 6, DEPTH), np.float32)
    padded[0], padded[1, :2] = series, series[:2]
    np.savez(npz, x=padded, lengths=np.array([6, 2]))
    assert main(["predict", str(run), str(csv), str(npz), "--json", "--top", "2"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert [(p["file"], p["index"], p["length"]) for p in predictions] == [
        (str(csv), 0, 6),
        (str(npz), 0, 6),
        (str(npz), 1, 2),
    ]
    model, checkpoint = load_model(run)
    mean = torch.tensor(checkpoint.config.norm_mean, dtype=torch.float64)
    std = torch.tensor(checkpoint.config.norm_std, dtype=torch.float64)
    for p, cut in zip(predictions, (6, 6, 2)):
        x = ((torch.from_numpy(series[:cut]).double() - mean) / std).float()[None]
        with torch.no_grad():
            probs = model(x).softmax(-1)[0]
        assert p["probability"] == pytest.approx(float(probs.max()), abs=1e-6)
        assert p["class"] == ("low", "high")[int(probs.argmax())]


def test_predict_names_a_file_with_the_wrong_channels(run: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,4\n")
    assert main(["predict", str(run), str(bad)]) == 1
    err = capsys.readouterr().err
    assert re.search(r"bad.csv: the model reads 3 channels per step, the file has 2", err), err


def test_train_without_a_train_file_is_refused(tmp_path: Path, capsys) -> None:
    status = main(["train", *SMALL, "--dataset", "npz", "--out", str(tmp_path / "r")])
    assert status != 0
    assert "dataset 'npz' needs train_file (--train-file FILE)" in capsys.readouterr().err


def test_a_warmup_longer_than_the_run_is_refused_before_any_file(tmp_path: Path, capsys) -> None:
    """80 series, batch 16, 3 epochs: 15 steps; the preset's 2700-example warm-up is 168 steps,
    so the learning rate would still be rising when the run ends. Refused, nothing written."""
    data = series_file(tmp_path / "d.npz")
    argv = ["train", *SMALL, "--dataset", "npz", "--train-file", str(data)]
    out = tmp_path / "r"
    assert main([*argv, "--warmup-examples", "2700", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (
        "rnnflow train: fit: warmup_examples (2700: 168 steps of batch_size 16) is longer than "
        "the whole run (15 steps): the learning rate would never reach lr (0.003); give "
        "warmup_examples (--warmup-examples) <= 240 (0: no warm-up) or train for more steps"
    )
    assert not out.exists()
    # the whole run as warm-up (15 steps: 240 examples) is allowed
    assert main([*argv, "--warmup-examples", "240", "--stop-at-step", "1", "--out", str(out)]) == 0


@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="needs the export extra (onnxruntime)"
)
def test_export_onnx_with_lengths(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sequence_length int64 [batch]" in text and "argmax agreement 40/40" in text
    assert "max |onnxruntime - pytorch| = " in text and " on 40 series (largest" in text
    # --check-examples (and its deprecated image-only spelling) limits the check
    export = ["export", str(run), "--format", "onnx", "--out", str(out)]
    assert main([*export, "--check-examples", "7"]) == 0
    assert "argmax agreement 7/7" in capsys.readouterr().out
    assert main([*export, "--check-images", "5"]) == 0
    captured = capsys.readouterr()
    assert "argmax agreement 5/5" in captured.out
    assert "note: --check-images is deprecated; use --check-examples" in captured.err
    from rnnflow.interop.sequence_onnx import onnx_sequence_logits

    model, checkpoint = load_model(run)
    z = np.load(checkpoint.config.train_file)
    raw = torch.from_numpy(z["x_test"])  # raw values, garbage-free padding of the file
    lengths = torch.from_numpy(z["lengths_test"])
    mean = torch.tensor(checkpoint.config.norm_mean)
    std = torch.tensor(checkpoint.config.norm_std)
    with torch.no_grad():
        expected = model((raw - mean) / std, lengths)
    torch.testing.assert_close(onnx_sequence_logits(out, raw, lengths), expected, atol=1e-4, rtol=0)
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 2
    assert "a sequence run exports to ONNX only" in capsys.readouterr().err


def test_a_builtin_set_without_aeon_names_the_extra(tmp_path: Path, monkeypatch, capsys) -> None:
    import importlib.util as util

    find_spec = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda n, *a: None if n == "aeon" else find_spec(n, *a))
    status = main(["train", *SMALL, "--dataset", "japanese-vowels", "--out", str(tmp_path / "r")])
    assert status == 1
    err = capsys.readouterr().err
    assert re.search(
        r"dataset 'japanese-vowels': the dataset 'japanese-vowels' needs the package aeon, which "
        r"is not installed: pip install 'rnnflow\[sequence\]'",
        err,
    ), err


def test_resume_through_the_cli_ends_as_the_uninterrupted_run(run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    config = json.loads((run / "config.json").read_text())
    args = ["train", *SMALL, "--dataset", "npz", "--train-file", config["train_file"]]
    args += [
        "--conv-branch",
        config["conv_branch"],
        "--deltas" if config["deltas"] else "--no-deltas",
    ]
    threads = torch.get_num_threads()
    assert main([*args, "--out", str(tmp_path / "r"), "--stop-at-step", "4"]) == 0
    assert main(["train", "--resume", str(tmp_path / "r"), "--quiet"]) == 0
    torch.set_num_threads(threads)
    a = load_file(run / "checkpoint.safetensors")
    b = load_file(tmp_path / "r" / "checkpoint.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def one_split_file(path: Path, labels: np.ndarray) -> Path:
    rng = np.random.default_rng(1)
    np.savez(path, x=rng.normal(size=(len(labels), 4, DEPTH)).astype(np.float32), labels=labels)
    return path


def test_a_one_split_file_without_test_file_is_refused(tmp_path: Path, capsys) -> None:
    """Was: the training series scored as the test split ("40 training series, 40 test")."""
    data = one_split_file(tmp_path / "ok.npz", np.arange(40) % 2)
    out = tmp_path / "r"
    assert main(["train", *SMALL, "--dataset", "npz", "--train-file", str(data), "--out", str(out)])
    err = capsys.readouterr().err
    assert re.search(
        r"ok\.npz: split='train' needs a file holding both splits \(keys x_train, "
        r"labels_train, x_test, labels_test.*got one split \(keys \['labels', 'x'\]\)"
        r".*--test-file FILE",
        err,
    ), err
    assert not (out / "checkpoint.safetensors").exists()


def test_a_single_class_is_refused(tmp_path: Path, capsys) -> None:
    data = one_split_file(tmp_path / "one.npz", np.zeros(40, np.int64))
    args = ["--train-file", str(data), "--test-file", str(data), "--out", str(tmp_path / "r")]
    assert main(["train", *SMALL, "--dataset", "npz", *args]) != 0
    err = capsys.readouterr().err
    assert re.search(r"must hold at least 2 classes .*got classes \['0'\] among 40 series", err), (
        err
    )


def test_a_run_without_a_checkpoint_resumes_as_a_sequence_run(run: Path, tmp_path: Path) -> None:
    """A run that stopped before its first checkpoint is known by its config.json alone."""
    from rnnflow.tasks import run_task

    assert json.loads((run / "config.json").read_text())["task"] == "sequence"
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "run.json"):
        (bare / name).write_text((run / name).read_text())
    assert run_task(bare) == "sequence"
    threads = torch.get_num_threads()
    assert main(["train", "--resume", str(bare), "--quiet"]) == 0
    torch.set_num_threads(threads)
    assert json.loads((bare / "summary.json").read_text())["test_series"] == 40


def test_relative_data_paths_are_saved_absolute(
    run: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    src = json.loads((run / "config.json").read_text())["train_file"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "bad" / "d.npz").write_bytes(Path(src).read_bytes())
    monkeypatch.chdir(tmp_path / "bad")
    threads = torch.get_num_threads()
    args = ["--train-file", "d.npz", "--epochs", "1", "--out", "../rel"]
    assert main(["train", *SMALL, "--dataset", "npz", *args]) == 0
    torch.set_num_threads(threads)
    config = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert config["train_file"] == str(tmp_path / "bad" / "d.npz")
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "rel"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["series"] == 40


@pytest.mark.parametrize(("flag", "value"), [("--save-input", None), ("--max-pixels", "100")])
def test_predict_refuses_image_flags(run: Path, tmp_path: Path, flag, value, capsys) -> None:
    csv = tmp_path / "one.csv"
    csv.write_text("1,2,3\n4,5,6\n")
    value = value or str(tmp_path / "saved")
    assert main(["predict", str(run), str(csv), flag, value]) == 2
    err = capsys.readouterr().err
    assert f"{flag} applies to image classifier runs; {run} is a sequence run" in err, err
    assert err.endswith("(it reads the series files you give)\n"), err
    assert not (tmp_path / "saved").exists()


def test_export_refuses_image_flags(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    args = ["export", str(run), "--format", "onnx", "--out", str(out), "--data-dir", "d"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--data-dir applies to image classifier runs; {run} is a sequence run" in err, err
    assert err.endswith("(it reads the files it was trained with)\n"), err
    assert not out.exists()


def test_a_two_split_file_with_a_test_file_is_refused(run: Path, tmp_path: Path, capsys) -> None:
    both = json.loads((run / "config.json").read_text())["train_file"]
    args = ["--train-file", both, "--test-file", both, "--out", str(tmp_path / "r")]
    assert main(["train", *SMALL, "--dataset", "npz", *args]) != 0
    err = capsys.readouterr().err
    assert re.search(
        r"data\.npz: holds two splits .*reads both from it when it is the only file "
        r"\(no --test-file\)",
        err,
    ), err
