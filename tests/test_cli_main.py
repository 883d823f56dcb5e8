"""The command line's own behaviour: fast --help (no torch), --version, hints that print a
command that works, argument checks of `generate`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rnnflow
from rnnflow.cli import _COMMANDS, main, prog, version

ROOT = Path(rnnflow.__file__).resolve().parent.parent

TORCH_FREE = """
import runpy, sys
sys.argv = ["rnnflow", *sys.argv[1:]]
try:
    runpy.run_module("rnnflow", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("torch imported:", "torch" in sys.modules, "exit:", code)
"""


@pytest.mark.parametrize(
    "words", [[], *([name] for name in _COMMANDS), ["train", "--task", "charlm"]], ids=" ".join
)
def test_help_does_not_import_torch(words):
    """``rnnflow --help`` and ``rnnflow COMMAND --help`` for every command of the table."""
    argv = [sys.executable, "-c", TORCH_FREE, *words, "--help"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.rstrip().endswith("torch imported: False exit: 0"), result.stdout
    assert f"usage: rnnflow {' '.join(words[:1])}".rstrip() in result.stdout


def test_version(capsys):
    with pytest.raises(SystemExit, match="0"):
        main(["--version"])
    assert capsys.readouterr().out == f"rnnflow {version()}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*|unknown \(not installed\)", version())


def test_prog_is_a_command_that_works(tmp_path, monkeypatch):
    script = tmp_path / "venv" / "bin" / "rnnflow"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [".venv/bin/rnnflow"])
    monkeypatch.chdir(tmp_path / "venv" / "..")
    (tmp_path / ".venv").symlink_to(tmp_path / "venv")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert prog() == ".venv/bin/rnnflow"  # not on PATH: the path the user typed
    monkeypatch.setenv("PATH", str(script.parent))
    assert prog() == "rnnflow"  # on PATH, and the same program
    monkeypatch.setattr(sys, "argv", [str(ROOT / "rnnflow" / "__main__.py")])
    assert prog().endswith(" -m rnnflow")


def test_the_continue_hint_starts_as_the_user_ran_rnnflow(monkeypatch):
    from types import SimpleNamespace

    from rnnflow.cli._run_folder import continue_command

    monkeypatch.setattr(sys, "argv", [".venv/bin/rnnflow"])
    monkeypatch.setenv("PATH", "/nonexistent")  # not on PATH: the path the user typed
    plan = SimpleNamespace(run_dir=Path("runs/a"))
    assert continue_command(plan, task="charlm") == (
        f".venv/bin/rnnflow train --task charlm --resume {Path('runs/a')}"
    )


def test_generate_refuses_bad_sampling_values_before_loading(tmp_path, capsys):
    missing = str(tmp_path / "no-run")
    for flags, message in [
        (["--temperature", "nan"], r"--temperature must be a finite number >= 0 \(0: greedy\), "
                                   r"got nan"),
        (["--temperature", "inf"], r"--temperature must be a finite number >= 0 .*got inf"),
        (["--temperature", "-0.5"], r"--temperature must be .*got -0\.5"),
        (["--top-k", "-1"], r"--top-k must be >= 0, got -1"),
        (["--length", "-3"], r"--length must be >= 0, got -3"),
    ]:  # fmt: skip
        assert main(["generate", missing, *flags]) == 2
        assert re.search(r"^rnnflow generate: " + message, capsys.readouterr().err)
    for form in ("6x4", "50x50"):
        with pytest.raises(SystemExit, match="2"):
            main(["generate", missing, "--form", form])
        assert f"invalid choice: '{form}' (choose from '5x4', '7x4', '5x8', '7x8')" in (
            capsys.readouterr().err
        )


FAKE_RNNFLOW = """#!/bin/sh
echo "$@" >> "{log}"
"""


@pytest.mark.skipif(not Path("/usr/bin/make").exists(), reason="needs make")
def test_make_train_twice_resumes_or_says_how_to_start_over(tmp_path):
    venv, data, log = tmp_path / "venv", tmp_path / "data", tmp_path / "calls.log"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "rnnflow").write_text(FAKE_RNNFLOW.format(log=log))
    (venv / "bin" / "rnnflow").chmod(0o755)
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (2**31, 2**31))  # newer than pyproject.toml: no pip install
    data.mkdir()
    (data / "t10k-labels-idx1-ubyte").touch()
    (data / "tang300").touch()
    run = tmp_path / "run"
    make = ["make", "-s", "-C", str(ROOT), "train", f"VENV={venv}", f"RUN={run}",
            f"FASHION_DIR={data}", f"FORTUNES_DIR={data}"]  # fmt: skip

    def make_train() -> tuple[list[str], str]:
        log.write_text("")
        out = subprocess.run(make, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return log.read_text().splitlines(), out.stdout

    calls, _ = make_train()  # a new run
    assert calls == [f"train --preset tutorial --dataset fashion-mnist --out {run}",
                     f"evaluate {run}"]  # fmt: skip
    run.mkdir()
    (run / "config.json").write_text("{}")  # interrupted: no summary yet
    calls, text = make_train()
    assert calls == [f"train --resume {run}", f"evaluate {run}"]
    assert f"continuing the interrupted run in {run} (to start over: rm -rf {run})" in text
    (run / "summary.json").write_text("{}")  # finished
    calls, text = make_train()
    assert calls == [f"evaluate {run}"]
    assert f"{run} holds a finished run" in text and f"rm -rf {run} && make train" in text


def test_evaluate_and_export_help_describe_every_task(capsys):
    """``evaluate --help``/``export --help`` name every task they serve, not only images."""
    for command in ("evaluate", "export"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split()).lower()
        assert "sequence and text-classify runs" in text, (command, text)
        assert "image-classifier options" in text, (command, text)


@pytest.mark.parametrize(
    ("task", "flag", "meaning"),
    [
        ("classifier", "--threads INT", "torch.set_num_threads; 0: PyTorch's default (default: 0)"),
        ("classifier", "--lr FLOAT", "peak learning rate (default: 0.001)"),  # FitConfig's field
        ("charlm", "--delimiter STR", "a line holding only this ends a document"),
        (
            "sequence",
            "--eval-every INT",
            "validation (with --val-size) and a checkpoint every",
        ),  # its own
    ],
)
def test_config_flags_help_gives_each_fields_meaning(capsys, task, flag, meaning):
    """The config dataclasses document each field in the comment ending its line; --help shows
    it (flags with only a default said nothing of what they do)."""
    with pytest.raises(SystemExit):
        main(["train", "--task", task, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{flag} {meaning}" in text, text


def test_preset_lists_give_repeated_flags_as_typed(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--task", "charlm", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--cutoffs 500 --cutoffs 2000" in text, text
    assert "(500, 2000)" not in text


def test_export_help_gives_each_tasks_default_tolerance(capsys):
    """``export --help`` states the default --atol/--rtol of every task that exports, as the
    task modules define them (sequence runs use a fixed 1e-4 + 1e-4 |logit|, not the image
    classifier's computed bound)."""
    from rnnflow.cli._sequence import EXPORT_ATOL, EXPORT_RTOL
    from rnnflow.cli._text_classify import EXPORT_TOLERANCE

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "image classifiers: twice the model's float32 rounding-error bound, rtol 0" in text
    assert f"sequence runs: atol {EXPORT_ATOL:g}, rtol {EXPORT_RTOL:g}" in text, text
    assert f"text-classify runs: atol {EXPORT_TOLERANCE:g}, rtol {EXPORT_TOLERANCE:g}" in text


COUNT_FLAGS = [
    ("evaluate", "--batch-size"),
    ("predict", "--top"),
    ("predict", "--max-pixels"),
    ("export", "--batch-size"),
    ("export", "--check-examples"),
    ("export", "--check-images"),
]


@pytest.mark.parametrize(("command", "flag"), COUNT_FLAGS)
@pytest.mark.parametrize("value", ["0", "-1", "-5", "1.5", "x"])
def test_count_options_refuse_values_below_one_before_anything_runs(
    tmp_path, capsys, command, flag, value
):
    """Every count option of evaluate/predict/export (one argparse type, ``positive_int``) is
    refused with argparse's one-line usage error naming the flag, the expected and the given
    value (exit 2), before the run is read or a file written: a batch size of 0 or -1 used to
    end in a traceback from deep inside the model, --top 0 behaved as --top 1."""
    out = tmp_path / "m.onnx"
    extra = {"predict": ["x.png"], "export": ["--format", "onnx", "--out", str(out)]}
    argv = [command, str(tmp_path / "no-run"), *extra.get(command, []), f"{flag}={value}"]
    with pytest.raises(SystemExit, match="2"):
        main(argv)
    err = capsys.readouterr().err
    assert f"error: argument {flag}: expected an integer >= 1, got '{value}'" in err, err
    assert "Traceback" not in err and not out.exists()


def test_a_reader_that_left_ends_the_command_quietly():
    """`rnnflow import-tf1 CKPT --list | head -1`: stdout's reader is gone before the command
    writes (its end of the pipe is closed first, so the write fails every time, whatever the
    output's size). Python's documented SIGPIPE recipe, in `main` for every command: no
    traceback, status 1 (a write that failed)."""
    ckpt = ROOT / "tests" / "fixtures" / "tf1_ckpt" / "gru" / "model.ckpt"
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rnnflow", "import-tf1", str(ckpt), "--list"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (1, "")


def test_a_message_naming_the_command_keeps_its_prefix_once(capsys):
    from rnnflow.cli import report

    for command, message, shown in (
        ("generate", "generate: seed must be an int", "rnnflow generate: seed must be an int"),
        ("predict", "predict_proba: text 2 is empty", "rnnflow predict: predict_proba: text 2"),
        ("predict", "no predict: here", "rnnflow predict: no predict: here"),
    ):
        report(command, message)
        assert capsys.readouterr().err.startswith(shown + ("" if "text 2" in shown else "\n"))
