"""A bad ``RNNFLOW_ISA`` is refused the same way whichever path runs: every recurrence entry
point (float32 and bfloat16 autocast, with and without lengths, compiled loops or not) raises
the one ValueError, and the CLI says it in one line (exit 2) before any file is read or
written."""

from __future__ import annotations

import re

import pytest
import torch

import rnnflow
from rnnflow.cli import main

MESSAGE = (
    r"RNNFLOW_ISA must be one of avx512, avx2, generic \(or unset: the widest the CPU "
    r"supports\), got 'bogus'"
)
CELLS = {
    "BasicLSTMCell": rnnflow.BasicLSTMCell,
    "LSTMCell": rnnflow.LSTMCell,
    "GRUCell": rnnflow.GRUCell,
    "BasicRNNCell": rnnflow.BasicRNNCell,
}


def _run(entry: str, make, x: torch.Tensor, lengths):
    if entry == "dynamic_rnn":
        return rnnflow.dynamic_rnn(make(), x, sequence_length=lengths, dtype=torch.float32)
    if entry == "static_rnn":
        steps = list(x.unbind(1))
        return rnnflow.static_rnn(make(), steps, sequence_length=lengths, dtype=torch.float32)
    return rnnflow.bidirectional_dynamic_rnn(
        make(), make(), x, sequence_length=lengths, dtype=torch.float32
    )


@pytest.mark.parametrize("no_ext", ["0", "1"])
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("entry", ["dynamic_rnn", "static_rnn", "bidirectional_dynamic_rnn"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_path_refuses_a_bad_isa(monkeypatch, cell, entry, autocast, no_ext):
    monkeypatch.setenv("RNNFLOW_NO_EXT", no_ext)
    x = torch.randn(3, 5, 4)
    for lengths in (None, torch.tensor([5, 2, 1])):
        make = lambda: CELLS[cell](6, input_size=4)  # noqa: E731
        monkeypatch.delenv("RNNFLOW_ISA", raising=False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            _run(entry, make, x, lengths)  # runs when unset
            monkeypatch.setenv("RNNFLOW_ISA", "bogus")
            with pytest.raises(ValueError, match=MESSAGE):
                _run(entry, make, x, lengths)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--out", "{tmp}/run"],
        ["evaluate", "{tmp}/none"],
        ["predict", "{tmp}/none", "x.png"],
        ["export", "{tmp}/none", "--format", "onnx", "--out", "{tmp}/m.onnx"],
    ],
)
def test_the_cli_refuses_a_bad_isa_in_one_line_before_writing(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.setenv("RNNFLOW_ISA", "bogus")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"rnnflow {argv[0]}: {MESSAGE}\n", err), err
    assert list(tmp_path.iterdir()) == []
