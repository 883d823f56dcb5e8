"""`rnnflow train --task text-classify` through the real entry point on a labelled file written
here: the run reports test scores beside the baselines, `evaluate` gives accuracy, F1 and the
confusion matrix equal to the model's own predictions, `predict` classifies arguments and stdin,
and bad input gets rnnflow's message."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

import pytest
import torch

from rnnflow.cli import main

TINY = ["train", "--task", "text-classify", "--preset", "tiny", "--lr", "0.02", "--epochs", "4"]
TINY += ["--threads", "1", "--quiet", "--max-chars", "24"]  # the texts: <= 18 characters


def cue_lines(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        y = i % 2
        filler = "".join(rng.choice("的了是在我有他这") for _ in range(rng.randint(2, 12)))
        at = rng.randint(0, len(filler))
        text = filler[:at] + ("好" if y else "坏") + filler[at:] + str(i)
        lines.append(f"{'pos' if y else 'neg'}\t{text}\n")
    return lines


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    pytest.importorskip("sklearn", reason="the run's baselines need scikit-learn")
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("text")
    (root / "a.tsv").write_text("".join(cue_lines(240, 0)), encoding="utf-8")
    run = root / "run"
    assert main([*TINY, "--train", str(root / "a.tsv"), "--out", str(run)]) == 0
    torch.set_num_threads(threads)
    return run


def test_train_reports_test_scores_beside_the_baselines(text_run: Path) -> None:
    summary = json.loads((text_run / "summary.json").read_text())
    assert summary["classes"] == ["neg", "pos"]
    assert (summary["train_texts"], summary["val_texts"], summary["test_texts"]) == (194, 22, 24)
    assert summary["test"]["accuracy"] == 1.0
    assert [b["name"] for b in summary["baselines"]] == ["naive_bayes", "logistic_regression"]
    assert all(b["test"]["accuracy"] == 1.0 for b in summary["baselines"])
    config = json.loads((text_run / "config.json").read_text())
    assert config["task"] == "text-classify" and config["corpus"] == "file"
    assert (text_run / "vocab.json").is_file() and (text_run / "confusion.png").is_file()


def test_evaluate_json_matches_the_models_predictions(text_run: Path, capsys) -> None:
    from rnnflow.tasks.text_classify import load_text_classifier, predict_proba
    from rnnflow.text.labelled_text import read_labelled_file

    assert main(["evaluate", str(text_run), "--split", "train", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["task"] == "text-classify" and got["split"] == "train" and got["texts"] == 194
    # the truth: every training text of the file, classified one by one by the model
    model, vocab, ckpt = load_text_classifier(text_run)
    data = read_labelled_file(ckpt.config.train_file)
    from rnnflow.text.labelled_text import deduplicate, split_labelled

    train = split_labelled(deduplicate(data).data, seed=ckpt.config.split_seed).train
    predicted = predict_proba(model, vocab, train.texts, max_chars=ckpt.config.max_chars)
    labels = torch.tensor(train.labels)
    pred = predicted.argmax(dim=1)
    confusion = [[int(((labels == t) & (pred == p)).sum()) for p in (0, 1)] for t in (0, 1)]
    assert got["confusion"] == confusion
    assert got["accuracy"] == pytest.approx(float((pred == labels).double().mean()))
    assert main(["evaluate", str(text_run)]) == 0
    out = capsys.readouterr().out
    assert "test split: 24 texts" in out and "macro F1" in out and "confusion matrix" in out


def test_predict_arguments_and_stdin(text_run: Path, capsys, monkeypatch) -> None:
    assert main(["predict", str(text_run), "这是好的", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["class"] for p in got] == ["pos"]
    assert sum(got[0]["probabilities"].values()) == pytest.approx(1.0)
    monkeypatch.setattr("sys.stdin", io.StringIO("他坏了\n\n  我好  \n"))
    assert main(["predict", str(text_run), "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["neg", "pos"]
    assert lines[1].endswith("\t我好")


def test_predict_and_evaluate_refuse_bad_input(text_run: Path, capsys, monkeypatch) -> None:
    for blank in ("", "   "):  # refused before the model runs, the prefix once
        assert main(["predict", str(text_run), "好", blank]) == 2
        assert capsys.readouterr().err == (
            "rnnflow predict: text argument 2 is empty (or white space only): nothing to classify\n"
        )
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["predict", str(text_run), "-"]) == 1
    assert "no text to classify (standard input was empty)" in capsys.readouterr().err
    assert main(["evaluate", str(text_run), "--dataset", "mnist"]) == 2
    assert "--dataset applies to image classifier runs" in capsys.readouterr().err


def test_bad_file_and_changed_data_are_refused(text_run: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("pos\tok\nneg no tab\n", encoding="utf-8")
    assert main([*TINY, "--train", str(bad), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "bad.tsv line 2: expected 'label<TAB>text', found no TAB" in err
    config = json.loads((text_run / "config.json").read_text())
    source = Path(config["train_file"])
    original = source.read_bytes()
    try:
        source.write_text("".join(cue_lines(240, 1)), encoding="utf-8")
        assert main(["evaluate", str(text_run)]) == 1
        assert "the data differ from those this run recorded" in capsys.readouterr().err
    finally:
        source.write_bytes(original)


def test_a_run_without_test_or_validation_texts_says_so(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.tsv").write_text("".join(cue_lines(40, 0)), encoding="utf-8")
    run = tmp_path / "run"
    args = [*TINY, "--train", str(tmp_path / "a.tsv"), "--epochs", "1", "--out", str(run)]
    assert main([*args, "--test-fraction", "0", "--val-fraction", "0"]) == 0
    out = capsys.readouterr().out
    assert "no test texts (--test-fraction 0.0): nothing scored" in out
    assert "no validation texts: the last weights" in out
    assert "baselines skipped: the baselines need validation and test texts" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"] is None and summary["baselines"] == []
    assert main(["evaluate", str(run)]) == 2  # the run has no such split: a usage error
    assert "has no test texts" in capsys.readouterr().err


def test_another_tasks_preset_is_refused_by_argparse(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--task", "text-classify", "--preset", "tutorial", "--out", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "tutorial" in err and "reviews" in err and "tiny" in err


def test_export_onnx_checks_the_test_texts_and_writes(
    text_run: Path, tmp_path: Path, capsys
) -> None:
    pytest.importorskip("onnxruntime", reason="needs the export extra")
    from rnnflow.interop.text_onnx import onnx_text_logits

    out = tmp_path / "m.onnx"
    assert main(["export", str(text_run), "--format", "torchscript", "--out", str(out)]) == 2
    assert "a text-classify run exports to ONNX only" in capsys.readouterr().err
    assert main(["export", str(text_run), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "check on the run's test texts: max |onnxruntime - pytorch|" in printed
    assert "argmax agreement 24/24" in printed and " on 24 texts (largest" in printed
    assert "images" not in printed and "not implemented" not in printed
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["rnnflow.task"] == "text-classify"
    from rnnflow.text.corpus import Vocabulary

    vocab = Vocabulary.from_json(meta["rnnflow.vocab"])
    ids = vocab.encode("这是好的")
    tokens = torch.tensor([ids + [0] * (24 - len(ids))])  # [1, max_chars] (TINY's --max-chars)
    logits = onnx_text_logits(out, tokens, torch.tensor([len(ids)]))
    assert json.loads(meta["rnnflow.class_names"])[int(logits.argmax())] == "pos"


def test_export_writes_nothing_when_onnx_disagrees_beyond_the_tolerance(
    text_run: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """ONNX logits 0.5 off PyTorch's: refused within the default 1e-4 + 1e-4 * |logit| (exit 1,
    nothing written, an existing file left as it was); --atol 0.6 replaces the tolerance
    (rtol then 0) and the file is written."""
    pytest.importorskip("onnxruntime", reason="needs the export extra")
    import rnnflow.interop.text_onnx as text_onnx

    real = text_onnx.onnx_text_logits
    monkeypatch.setattr(text_onnx, "onnx_text_logits", lambda *a, **k: real(*a, **k) + 0.5)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"before")
    export = ["export", str(text_run), "--format", "onnx", "--out", str(out)]
    assert main(export) == 1
    captured = capsys.readouterr()
    assert re.search(r"max \|onnxruntime - pytorch\| = 0\.5\d* on 24 texts", captured.out)
    assert "NOT within atol 0.0001 + rtol 0.0001 * |logit|" in captured.out
    assert (
        "rnnflow export: the exported model's logits differ from PyTorch's by more than atol "
        f"0.0001 + rtol 0.0001 * |logit|; nothing was written to {out}" in captured.err
    ), captured.err
    assert out.read_bytes() == b"before" and "wrote" not in captured.out
    assert main([*export, "--atol", "0.6"]) == 0
    printed = capsys.readouterr().out
    assert "within atol 0.6 + rtol 0 * |logit|" in printed and f"wrote {out}" in printed
    assert out.read_bytes().startswith(b"\x08")  # an ONNX protobuf (ir_version field)


@pytest.mark.parametrize(
    ("lines", "extra", "flag", "counts"),
    [
        # 1 text per class: round(0.1 * 1) = 0 test texts, and nothing left for validation
        (["pos\t好的\n", "neg\t坏的\n"], [], "--test-fraction 0.1", "(neg 1, pos 1) gives 0 test"),
        # 4 per class: 0.1 x 4 rounds to 0 test texts, though 0.1 > 0 asked for some
        (cue_lines(8, 0), [], "--test-fraction 0.1", "(neg 4, pos 4) gives 0 test"),
        # a test split, but 0.1 of the 3 texts per class left rounds to 0 validation texts
        (cue_lines(8, 0), ["--test-fraction", "0.25"], "--val-fraction 0.1", "0 validation"),
    ],
)
def test_a_positive_fraction_giving_an_empty_split_is_refused_before_training(
    tmp_path: Path, capsys, lines: list[str], extra: list[str], flag: str, counts: str
) -> None:
    (tmp_path / "few.tsv").write_text("".join(lines), encoding="utf-8")
    run = tmp_path / "run"
    assert main([*TINY, "--train", str(tmp_path / "few.tsv"), *extra, "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"few.tsv: {flag} of {len(lines)} distinct texts" in err
    assert counts in err and f"or {flag.split()[0]} 0 to train without" in err
    assert not run.exists()  # refused before the run folder was made


def test_train_file_is_recorded_absolute(tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "g.tsv").write_text("".join(cue_lines(40, 0)), encoding="utf-8")
    monkeypatch.chdir(data)
    run = tmp_path / "run"
    assert main([*TINY, "--train-file", "g.tsv", "--epochs", "1", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train_file"] == str(data / "g.tsv")
    monkeypatch.chdir(tmp_path)  # elsewhere: the run still finds its file
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["texts"] == 4
    # --resume with the relative path from the data folder is the same file
    monkeypatch.chdir(data)
    assert main(["train", "--resume", str(run), "--train-file", "g.tsv", "--quiet"]) == 0


def test_predict_refuses_stdin_that_is_not_utf8(text_run: Path, capsys, monkeypatch) -> None:
    raw = "好的\n".encode() + b"ab\xff\xfecd\n"  # line 2, byte 3: not UTF-8
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw), errors="surrogateescape"))
    assert main(["predict", str(text_run), "-"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing classified
    assert (
        "rnnflow predict: standard input is not UTF-8: byte 0xff at byte 10 (line 2, byte 3 "
        "of the line)" in captured.err
    )
    # valid UTF-8 bytes (with a BOM) are read as the text they are
    raw = "\ufeff他坏了\n我好\n".encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw), errors="surrogateescape"))
    assert main(["predict", str(text_run), "-"]) == 0
    assert [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()] == [
        "他坏了",
        "我好",
    ]


def test_predict_refuses_a_file_name_and_undecodable_arguments(
    text_run: Path, tmp_path: Path, capsys
) -> None:
    image = tmp_path / "img.png"
    image.write_bytes(b"\x89PNG")
    assert main(["predict", str(text_run), "好", str(image)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        f"{str(image)!r} names a file, but a text-classify run's predict takes texts (or - for "
        "one text per line of standard input), not files" in captured.err
    )
    assert f"rnnflow predict {text_run} - < {image}" in captured.err
    argument = "好a" + b"\xff".decode("utf-8", "surrogateescape")  # how argv holds bad bytes
    assert main(["predict", str(text_run), "好", argument]) == 2
    assert "text argument 2 is not UTF-8: byte 0xff at byte 5 of it" in capsys.readouterr().err


def test_predict_help_names_the_input_of_every_task(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "RUN_DIR|CKPT INPUT" in out and "IMAGE" not in out
    assert "texts, or - for one text per line of standard input (text-classify)" in out


def test_export_of_a_run_without_test_texts_says_what_it_checked(tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime", reason="needs the export extra")
    (tmp_path / "a.tsv").write_text("".join(cue_lines(40, 0)), encoding="utf-8")
    run = tmp_path / "run"
    args = [*TINY, "--train", str(tmp_path / "a.tsv"), "--epochs", "1", "--out", str(run)]
    assert main([*args, "--test-fraction", "0"]) == 0
    capsys.readouterr()
    out = tmp_path / "m.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "check on the run's first training text (it has no test texts): max |onnxruntime - "
        "pytorch|" in printed
    )
    assert " on 1 texts (largest" in printed and out.is_file()


def test_serve_refuses_a_text_classify_run_naming_what_to_use(text_run: Path, capsys) -> None:
    """serve has pages for image, sequence and poem runs; a text run was refused as 'not a
    classifier checkpoint', which it is."""
    assert main(["serve", str(text_run), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "a text-classify run (rnnflow train --task text-classify)" in err, err
    assert f"rnnflow predict {text_run} TEXT" in err, err
