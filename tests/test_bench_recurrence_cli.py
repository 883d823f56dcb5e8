"""benchmarks/bench_recurrence.py refuses --device cuda without a GPU and with --write-doc,
with status 2 and one line, before it measures anything."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT))
    module = importlib.import_module("benchmarks.bench_recurrence")

    def no_run(**kwargs):
        raise AssertionError(f"run() called with {kwargs}")

    monkeypatch.setattr(module, "run", no_run)
    return module


def test_gpu_device_without_a_gpu_exits_2_with_one_line(bench, monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--device", "cuda", "--quick"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "--device cuda" in captured.err and "no CUDA device" in captured.err


def test_gpu_device_refuses_write_doc(bench, monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # refused before any GPU use
    assert bench.main(["--device", "cuda", "--write-doc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--write-doc" in err and "--device cuda" in err


def test_run_refuses_write_doc_off_cpu(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    module = importlib.import_module("benchmarks.bench_recurrence")
    with pytest.raises(ValueError, match="CPU table"):
        module.run(quick=True, write_doc=True, device="cuda")


def test_command_line_without_a_gpu_exits_2_without_traceback() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, also on a machine with one
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_recurrence", "--device", "cuda"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "bench_recurrence: --device cuda: no CUDA device available "
        "(torch.cuda.is_available() is False)"
    ]


@pytest.mark.parametrize(
    "flags", [["--cell", "lstm"], ["--precision", "bf16"], ["--group", "lengths", "--cell", "rnn"]]
)
def test_write_doc_refuses_a_filtered_grid(bench, capsys, flags) -> None:
    """--write-doc rewrites the whole table: from a filtered grid it would drop the other rows."""
    assert bench.main(["--quick", "--write-doc", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--write-doc" in err and flags[0] in err
