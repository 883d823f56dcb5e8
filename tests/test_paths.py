"""Every file and folder argument says what is wrong with the path it got: missing, a folder
given for a file, a file given for a folder (one wording: ``rnnflow._paths.path_problem``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rnnflow._paths import path_problem
from rnnflow.cli import main


def test_path_problem_wording(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    assert path_problem(tmp_path / "none") == "no such file"
    assert path_problem(tmp_path / "d") == "a folder, not a file"
    assert path_problem(tmp_path / "none", "run folder", folder=True) == "no such run folder"
    assert path_problem(tmp_path / "f", "folder", folder=True) == "a file, not a folder"
    assert path_problem("/dev/null") == "not a regular file"


def _readers():
    from rnnflow.data.idx_folder import IdxFolderError, load_idx_folder_split
    from rnnflow.data.images import load_image
    from rnnflow.data.sequence_files import read_sequence_npz, read_sequence_ts, read_series_file
    from rnnflow.data.sequences import SequenceDataError
    from rnnflow.training.checkpoint import load_checkpoint

    return [  # (function, the path kind it wants, error type)
        (lambda p: read_series_file(p, num_channels=3), "file", SequenceDataError),
        (read_sequence_npz, "file", SequenceDataError),
        (read_sequence_ts, "file", SequenceDataError),
        (load_image, "file", FileNotFoundError),
        (load_checkpoint, "file", FileNotFoundError),
        (lambda p: load_idx_folder_split(p, "train"), "folder", IdxFolderError),
    ]


@pytest.mark.parametrize("index", range(6))
def test_library_readers_say_folder_or_file(tmp_path: Path, index: int) -> None:
    read, kind, error = _readers()[index]
    wrong = tmp_path / "x.csv"  # a folder where a file is wanted, or the reverse
    if kind == "file":
        wrong.mkdir()
        message = "a folder, not a file"
    else:
        wrong.write_text("1,2,3\n")
        message = "a file, not a folder"
    with pytest.raises(error, match=rf"{re.escape(str(wrong))}: {message}"):
        read(wrong)
    with pytest.raises(error, match=rf"{re.escape(str(tmp_path / 'none.csv'))}: no such"):
        read(tmp_path / "none.csv")


def test_train_resume_of_a_file_says_it_is_a_file(tmp_path: Path, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["train", "--resume", str(afile)]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume: {afile}: a file, not a run folder" in err, err
    assert main(["train", "--resume", str(tmp_path / "none")]) == 2
    assert f"cannot resume: {tmp_path / 'none'}: no such run folder" in capsys.readouterr().err


def test_sequence_train_file_that_is_a_folder(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "data.npz"
    folder.mkdir()
    argv = ["train", "--task", "sequence", "--dataset", "npz", "--train-file", str(folder)]
    assert main([*argv, "--out", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err
    assert f"{folder}: a folder, not a file" in err, err
    assert not (tmp_path / "r").exists()
