"""What every `rnnflow` command shares: counted nouns, dataset names, flag names, output paths,
exit statuses and the commands its hints tell the user to run.

The real commands run through ``rnnflow.cli.main`` (one tiny image-classifier run, 1 optimizer
step, on generated Fashion-MNIST files); each message is pinned; each hint is split as a shell
would and parsed by the real parser.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import re
import shlex
import sys
from pathlib import Path

import pytest
from test_cli_train import write_fake_dataset

from rnnflow._words import count
from rnnflow.cli import EXIT_STATUS, build_parser, command, main
from rnnflow.data.datasets import DATASETS

ROOT = Path(__file__).resolve().parents[2]
ONE_STEP = [
    "--preset", "tutorial", "--dataset", "fashion_mnist", "--batch-size", "32",
    "--train-examples", "32", "--val-size", "40", "--log-every", "32", "--eval-every", "32",
    "--threads", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder of 1 optimizer step (in a folder whose name has a space), the data folder,
    and what `rnnflow train` printed; Fashion-MNIST replaced by generated files."""
    root = tmp_path_factory.mktemp("cli consistency")
    rows = write_fake_dataset(root / "data")
    spec = dataclasses.replace(DATASETS["fashion-mnist"], mirrors=(), **rows)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(DATASETS, "fashion-mnist", spec)
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        mp.delenv("RNNFLOW_DATA_DIR", raising=False)
        folder = root / "runs" / "one step"
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            argv = ["train", *ONE_STEP, "--data-dir", str(root / "data"), "--out", str(folder)]
            status = main(argv)
        assert status == 0, err.getvalue()
        yield {
            "dir": folder,
            "data": root / "data",
            "err": err.getvalue(),
            "out": out.getvalue(),
            "spec": spec,
        }


def runnable(text: str) -> list[str]:
    """``text``, a command a hint tells the user to run, split as the shell would: it must
    start with the program (as :func:`rnnflow.cli.prog` spells it) and parse with the real
    parser. Returns the words after the program."""
    words = shlex.split(text)
    program = shlex.split(command())
    assert words[: len(program)] == program, text
    rest = words[len(program) :]
    if "<" in rest:  # a redirection: the shell's, not the command's
        rest = rest[: rest.index("<")]
    try:
        build_parser(rest).parse_args(rest)
    except SystemExit as exc:  # --help exits 0; anything else is a usage error
        assert exc.code == 0, f"{text!r} does not parse"
    return rest


# ----------------------------------------------------------------------------- (a) counts
@pytest.mark.parametrize(
    ("n", "noun", "text"),
    [(1, "step", "1 step"), (2, "step", "2 steps"), (0, "image", "0 images"),
     (1, "series", "1 series"), (3, "series", "3 series"), (1, "class", "1 class"),
     (10, "class", "10 classes"), (1, "shard", "1 shard")],
)  # fmt: skip
def test_count(n, noun, text):
    assert count(n, noun) == text


def test_a_one_step_run_says_1_step_and_1_example_count(run):
    assert re.search(r": preset tutorial, fashion-mnist, 1 step\n", run["err"]), run["err"]
    assert "trained 32 examples in " in run["out"]


def test_an_acrostic_of_one_character_says_1_character(capsys):
    assert main(["generate", "no-such-run", "--acrostic", "春"]) == 2
    assert capsys.readouterr().err == (
        "rnnflow generate: --acrostic '春' has 1 character: give --form (one character per "
        "verse; 4 or 8 characters choose 5x4 or 5x8 by themselves)\n"
    )


_NOUNS = (
    "step|image|example|file|text|series|class|classe|character|document|variable|tensor|"
    "channel|shard|epoch|line|label|row|process|poem|token|checkpoint"
)


def test_no_message_counts_a_plural_noun_by_hand():
    """The whole kind: an f-string part ``{n} steps`` (a value, then a plural noun) anywhere
    in the CLI and in the messages of the training engine and tasks is what `count` is for."""
    found = []
    paths = [*(ROOT / "rnnflow" / "cli").glob("*.py"), ROOT / "rnnflow" / "training" / "engine.py"]
    paths += list((ROOT / "rnnflow" / "tasks").glob("*.py"))
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.JoinedStr):
                continue
            parts = node.values
            for value, text in zip(parts, parts[1:]):
                if (
                    isinstance(value, ast.FormattedValue)
                    and isinstance(text, ast.Constant)
                    and re.match(rf" (?:{_NOUNS})e?s\b", str(text.value))
                    and "+" not in ast.unparse(value)  # "{a} + {b} documents": a sum
                    and "/s" not in str(text.value).split(")")[0]  # a rate: examples/s
                    and ast.unparse(value) not in _NOT_COUNTS
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


# f-string values followed by a plural noun that are not a count of it ("{args.split} texts")
_NOT_COUNTS = {
    "{args.split}",
    "{name}",
    "{config.image_width}",
    "{ctx.world_size}",  # torchrun's processes: 2 or more
}


# ----------------------------------------------------------------------------- (b) datasets
@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["download", "fashion_mnist"], "dataset", "fashion-mnist"),
        (["download", "Kuzushiji-MNIST"], "dataset", "kmnist"),
        (["download", "emnist_letters"], "dataset", "emnist-letters"),
        (["train", "--dataset", "fashion_mnist"], "cfg_dataset", "fashion-mnist"),
        (["train", "--dataset", "kuzushiji-mnist"], "cfg_dataset", "kmnist"),
        (["train", "--cell", "lstm-block"], "cfg_cell", "lstm_block"),
        (["train", "--task", "sequence", "--dataset", "japanese_vowels"], "cfg_dataset",
         "japanese-vowels"),
        (["evaluate", "run", "--dataset", "fashion_mnist"], "dataset", "fashion-mnist"),
        (["export", "run", "--format", "onnx", "--out", "m", "--dataset", "FASHION_MNIST"],
         "dataset", "fashion-mnist"),
        (["import-tf1", "ckpt", "--dataset", "fashion_mnist"], "cfg_dataset", "fashion-mnist"),
    ],
)  # fmt: skip
def test_every_command_takes_every_spelling_and_keeps_one(argv, dest, value):
    assert getattr(build_parser(argv).parse_args(argv), dest) == value


@pytest.mark.parametrize("command_line", [["download"], ["evaluate", "run", "--dataset"]])
def test_an_unknown_dataset_is_a_usage_error_listing_the_one_spelling(command_line, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command_line, "fashon-mnist"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert re.search(
        r"invalid choice: 'fashon-mnist' \(choose from '?mnist'?, '?fashion-mnist'?, '?kmnist'?, "
        r"'?emnist-letters'?, '?emnist-balanced'?",
        err,
    ), err
    assert "fashion_mnist" not in err


def test_evaluate_with_the_underscore_spelling_runs(run, monkeypatch, capsys):
    monkeypatch.setitem(DATASETS, "fashion-mnist", run["spec"])
    argv = [
        "evaluate",
        str(run["dir"]),
        "--dataset",
        "fashion_mnist",
        "--data-dir",
        str(run["data"]),
    ]
    assert main(argv) == 0
    assert "fashion-mnist test: " in capsys.readouterr().out


# ----------------------------------------------------------------------------- (c) flag names
@pytest.mark.parametrize("task", ["charlm", "text-classify"])
@pytest.mark.parametrize("flag", ["--embedding-size", "--embed-size"])
def test_one_embedding_flag_for_every_task_and_the_other_hidden(task, flag, capsys):
    dest = {"charlm": "cfg_embed_size", "text-classify": "cfg_embedding_size"}[task]
    argv = ["train", "--task", task, flag, "24"]
    assert getattr(build_parser(argv).parse_args(argv), dest) == 24
    with pytest.raises(SystemExit):
        main(["train", "--task", task, "--help"])
    shown = capsys.readouterr().out
    assert "--embedding-size INT" in shown and "--embed-size" not in shown


def test_the_charlm_preset_list_and_memory_hint_use_the_one_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--task", "charlm", "--help"])
    assert "--embedding-size 16" in capsys.readouterr().out  # the tiny preset
    from types import SimpleNamespace

    from rnnflow.cli.train import memory_error_message

    config = SimpleNamespace(embed_size=4096, num_units=8)
    preset = SimpleNamespace(embed_size=128, num_units=8)
    message = memory_error_message(RuntimeError("can't allocate memory: 9 bytes"), config, preset)
    assert message.endswith("lower the sizes (--embedding-size 4096)")


def test_an_embedding_flag_on_the_image_task_names_both_tasks(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--embed-size", "8"])
    assert exc.value.code == 2
    assert (
        "unrecognized arguments: --embed-size 8 (--embed-size is a flag of --task charlm (add "
        "--task charlm); --embed-size is a flag of --task text-classify (add --task "
        "text-classify); this is --task classifier)"
    ) in capsys.readouterr().err.replace("\n", " ").replace("  ", " ")


# ----------------------------------------------------------------------------- (d) outputs
def test_export_creates_the_missing_folders_of_its_output(run, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(DATASETS, "fashion-mnist", run["spec"])
    out = tmp_path / "new" / "nested" / "m.pt"
    argv = ["export", str(run["dir"]), "--format", "torchscript", "--out", str(out)]
    status = main([*argv, "--data-dir", str(run["data"]), "--check-examples", "8"])
    assert status == 0, capsys.readouterr().err
    assert out.is_file()


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["export", "RUN", "--format", "onnx", "--out", "{tmp}/afile/m.onnx"], 2,
         "rnnflow export: cannot write {tmp}/afile/m.onnx: {tmp}/afile is not a folder\n"),
        (["export", "RUN", "--format", "onnx", "--out", "{tmp}"], 2,
         "rnnflow export: cannot write {tmp}: it is a folder\n"),
        (["predict", "RUN", "x.png", "--save-input", "{tmp}/afile"], 2,
         "rnnflow predict: --save-input: cannot write {tmp}/afile: it is a file, not a folder\n"),
        (["predict", "RUN", "x.png", "--save-input", "{tmp}/afile/sub"], 2,
         "rnnflow predict: --save-input: cannot write {tmp}/afile/sub: {tmp}/afile is not a "
         "folder\n"),
        (["train", *ONE_STEP, "--out", "{tmp}/afile"], 2,
         "rnnflow train: {tmp}/afile exists and is not a folder: choose another path\n"),
        (["import-tf1", "ckpt", "--preset", "tutorial", "--out", "{tmp}/afile"], 2,
         "rnnflow import-tf1: --out {tmp}/afile exists and is not a folder: choose another path\n"),
    ],
)  # fmt: skip
def test_a_path_of_the_wrong_kind_is_a_usage_error_in_every_command(
    argv, status, message, run, tmp_path, capsys
):
    (tmp_path / "afile").write_text("x")
    argv = [str(run["dir"]) if a == "RUN" else a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == status
    assert capsys.readouterr().err == message.replace("{tmp}", str(tmp_path))


# ----------------------------------------------------------------------------- (e) statuses
def test_the_exit_statuses_are_documented_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert " ".join(EXIT_STATUS.split()) in shown
    assert "exit status: 0 done; 2 a usage error" in shown and "1 the command failed" in shown
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "exit status 2" in readme and "exit status 1" in readme


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "RUN", "--format", "pb", "--out", "m.onnx"],
         "rnnflow export: --format must be one of onnx, torchscript, got 'pb'\n"),
        (["export", "RUN", "--format", "onnx", "--out", "m.onnx", "--atol", "-1"],
         "rnnflow export: --atol must be a finite number >= 0, got -1.0\n"),
        (["import-tf1", "ckpt", "--check"],
         "rnnflow import-tf1: --check verifies the tensors --list reads: give --list --check\n"),
        (["generate", "RUN", "--num", "0"], "rnnflow generate: --num must be >= 1, got 0\n"),
        (["serve", "RUN", "--port", "70000"],
         "rnnflow serve: --port must be in [0, 65535], got 70000\n"),
    ],
)  # fmt: skip
def test_our_own_usage_errors_exit_2_as_argparse_does(argv, message, run, capsys):
    argv = [str(run["dir"]) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    assert capsys.readouterr().err == message


def test_a_failure_exits_1(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.startswith(f"rnnflow evaluate: {tmp_path / 'none'}")


# ----------------------------------------------------------------------------- (f) hints
def test_the_continue_hint_quotes_a_folder_with_a_space(run):
    from types import SimpleNamespace

    from rnnflow.cli._run_folder import continue_command
    from rnnflow.cli.train import interrupted_message

    plan = SimpleNamespace(run_dir=run["dir"])
    assert runnable(continue_command(plan)) == ["train", "--resume", str(run["dir"])]
    words = runnable(continue_command(plan, task="charlm"))
    assert words == ["train", "--task", "charlm", "--resume", str(run["dir"])]
    hint = interrupted_message(plan, "report").partition("report it with: ")[2]
    assert runnable(hint) == ["evaluate", str(run["dir"])]
    hint = interrupted_message(plan, "training").partition("continue with: ")[2]
    assert runnable(hint) == ["train", "--resume", str(run["dir"])]


def test_import_tf1_hints_run_as_written(tmp_path, capsys):
    prefix = str(ROOT / "tests" / "fixtures" / "tf1_ckpt" / "basic_rnn" / "model.ckpt")
    out_dir = tmp_path / "imported run"
    assert main(["import-tf1", prefix, "--preset", "tutorial", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    backticked = re.search(r"evaluate this run with `([^`]*)`", out).group(1)
    assert runnable(backticked) == ["evaluate", str(out_dir), "--dataset", "fashion-mnist"]
    last = re.search(r"evaluate with: (.*?)  \(dataset: mnist\)", out).group(1)
    assert runnable(last) == ["evaluate", str(out_dir)]


def test_the_charlm_refusal_hints_run_as_written(tmp_path):
    from rnnflow.cli._charlm import refusal

    path = tmp_path / "my poems"
    hints = re.findall(r"use `([^`]*)` to sample.*or `([^`]*)` for", refusal("predict", path))
    assert [runnable(h) for h in hints[0]] == [["generate", str(path)], ["evaluate", str(path)]]


def test_the_text_file_hint_runs_as_written(tmp_path, capsys):
    from rnnflow.cli._text_classify import predict

    item = tmp_path / "reviews file.txt"
    item.write_text("好\n")
    args = build_parser(["predict", "RUN", str(item)]).parse_args(["predict", "my run", str(item)])
    args.dataset = args.data_dir = args.tta_flip = args.save_input = None
    import rnnflow.cli._text_classify as glue

    loaded = (None, None, None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(glue, "_load", lambda command, args: loaded)
        assert predict(args) == 2
    hint = capsys.readouterr().err.partition("to classify the file's lines: ")[2].strip()
    assert runnable(hint) == ["predict", "my run", "-"]
    assert shlex.split(hint)[-2:] == ["<", str(item)]


@pytest.mark.parametrize("name", ["kmnist", "emnist-letters"])
def test_the_dataset_hints_run_as_written(name, tmp_path, monkeypatch):
    from rnnflow.data.datasets import DatasetNotFoundError, resolve_dataset_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("RNNFLOW_DATA_DIR", raising=False)
    with pytest.raises(DatasetNotFoundError) as exc:
        resolve_dataset_dir(name, tmp_path / "empty", download=False)
    hint = re.search(r"connect to the internet and run: (rnnflow download \S+) ", str(exc.value))
    assert hint is not None, str(exc.value)
    words = shlex.split(hint.group(1))[1:]
    assert build_parser(words).parse_args(words).dataset == name


def test_the_program_in_hints_is_quoted_when_it_needs_it(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/opt/my tools/rnnflow"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert command("evaluate", "a b") == "'/opt/my tools/rnnflow' evaluate 'a b'"
