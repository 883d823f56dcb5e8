"""Shapes are checked before any kernel runs, on every implementation and driver (R18).

A cell built for one input depth fed another (the inputs, or the layer below in a stack), a
mis-shaped initial state, sequence_length or parameter: a ``ValueError`` naming the argument,
what was expected and what was received, identical on the reference loop and the fused path
(compiled or Python loops). Each implementation runs every case in its own subprocess, so an
out-of-bounds access fails the test (exit status, and the case it was in) instead of killing
pytest.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnflow import (
    BasicLSTMCell,
    BasicRNNCell,
    DropoutWrapper,
    GRUCell,
    LSTMCell,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
)

IMPLS = {  # impl=, RNNFLOW_NO_EXT
    "reference": ("reference", "0"),
    "fused-compiled": ("fused", "0"),
    "fused-python": ("fused", "1"),
}


def _replaced_kernel(impl):
    cell = BasicLSTMCell(8, input_size=5)
    cell.kernel = torch.nn.Parameter(torch.randn(7, 32))  # as if assigned by hand
    return dynamic_rnn(cell, torch.randn(4, 10, 5), impl=impl)


def _full_lstm_cell() -> LSTMCell:
    """LSTMCell(8 units) with peepholes and a projection to 3, built for depth 5."""
    return LSTMCell(8, use_peepholes=True, cell_clip=1.0, num_proj=3, input_size=5)


def _replaced_lstm_cell_parameter(name, shape):
    def run(impl):
        cell = _full_lstm_cell()
        module, _, attr = name.rpartition(".")
        owner = cell.get_submodule(module) if module else cell
        setattr(owner, attr, torch.nn.Parameter(torch.randn(shape)))  # as if assigned by hand
        return dynamic_rnn(cell, torch.randn(4, 10, 5), impl=impl)

    return run


# name -> (run(impl), message); every message must be raised as a ValueError
CASES = {
    "lstm-cell-wider-inputs": (
        lambda impl: dynamic_rnn(_full_lstm_cell(), torch.randn(4, 10, 13), impl=impl),
        r"dynamic_rnn: cell \(LSTMCell\) was built for input depth 5, "
        r"got depth 13 from the inputs",
    ),
    "stack-after-projected-lstm-cell": (
        lambda impl: dynamic_rnn(
            MultiRNNCell([_full_lstm_cell(), GRUCell(4, input_size=8)]),
            torch.randn(4, 10, 5),
            impl=impl,
        ),
        r"dynamic_rnn: cell\.cell_1 \(GRUCell\) was built for input depth 8, "
        r"got depth 3 from cell\.cell_0\.output_size",
    ),
    "lstm-cell-projected-state": (
        lambda impl: dynamic_rnn(
            _full_lstm_cell(),
            torch.randn(4, 10, 5),
            initial_state=(torch.zeros(4, 8), torch.zeros(4, 8)),
            impl=impl,
        ),
        r"dynamic_rnn: initial_state must match the cell's state structure "
        r"LSTMStateTuple\(c=Tensor\(4, 8\), h=Tensor\(4, 3\)\), got",
    ),
    "lstm-wider-inputs": (
        lambda impl: dynamic_rnn(BasicLSTMCell(8, input_size=5), torch.randn(4, 10, 13), impl=impl),
        r"dynamic_rnn: cell \(BasicLSTMCell\) was built for input depth 5, "
        r"got depth 13 from the inputs",
    ),
    "lstm-one-wider": (
        lambda impl: dynamic_rnn(BasicLSTMCell(8, input_size=5), torch.randn(4, 10, 6), impl=impl),
        r"cell \(BasicLSTMCell\) was built for input depth 5, got depth 6 from the inputs",
    ),
    "gru-narrower-time-major": (
        lambda impl: dynamic_rnn(
            GRUCell(7, input_size=5), torch.randn(10, 4, 3), time_major=True, impl=impl
        ),
        r"cell \(GRUCell\) was built for input depth 5, got depth 3 from the inputs",
    ),
    "rnn-with-lengths": (
        lambda impl: dynamic_rnn(
            BasicRNNCell(6, input_size=2),
            torch.randn(4, 10, 9),
            sequence_length=[9, 1, 0, 10],
            impl=impl,
        ),
        r"cell \(BasicRNNCell\) was built for input depth 2, got depth 9 from the inputs",
    ),
    "stack-layer-1": (
        lambda impl: dynamic_rnn(
            MultiRNNCell([BasicLSTMCell(4, input_size=3), BasicRNNCell(2, input_size=5)]),
            torch.randn(4, 10, 3),
            impl=impl,
        ),
        r"dynamic_rnn: cell\.cell_1 \(BasicRNNCell\) was built for input depth 5, "
        r"got depth 4 from cell\.cell_0\.output_size",
    ),
    "stack-layer-0": (
        lambda impl: dynamic_rnn(
            MultiRNNCell([GRUCell(4, input_size=3), BasicLSTMCell(2, input_size=4)]),
            torch.randn(4, 10, 30),
            impl=impl,
        ),
        r"cell\.cell_0 \(GRUCell\) was built for input depth 3, got depth 30 from the inputs",
    ),
    "dropout-wrapped": (
        lambda impl: dynamic_rnn(
            DropoutWrapper(BasicRNNCell(6, input_size=2), output_keep_prob=0.5).eval(),
            torch.randn(4, 10, 20),
            impl=impl,
        ),
        r"cell\.cell \(BasicRNNCell\) was built for input depth 2, got depth 20 from the inputs",
    ),
    "bidirectional-bw": (
        lambda impl: bidirectional_dynamic_rnn(
            GRUCell(4, input_size=3),
            BasicLSTMCell(4, input_size=40),
            torch.randn(4, 10, 3),
            impl=impl,
        ),
        r"bidirectional_dynamic_rnn: cell_bw \(BasicLSTMCell\) was built for input depth 40, "
        r"got depth 3 from the inputs",
    ),
    "bidirectional-fw-stack": (
        lambda impl: bidirectional_dynamic_rnn(
            MultiRNNCell([GRUCell(4, input_size=3), GRUCell(4, input_size=9)]),
            GRUCell(4, input_size=3),
            torch.randn(4, 10, 3),
            impl=impl,
        ),
        r"bidirectional_dynamic_rnn: cell_fw\.cell_1 \(GRUCell\) was built for input depth 9, "
        r"got depth 4 from cell_fw\.cell_0\.output_size",
    ),
    "initial-state-units": (
        lambda impl: dynamic_rnn(
            BasicLSTMCell(8, input_size=5),
            torch.randn(4, 10, 5),
            initial_state=(torch.zeros(4, 8), torch.zeros(4, 80)),
            impl=impl,
        ),
        r"dynamic_rnn: initial_state must match the cell's state structure "
        r"LSTMStateTuple\(c=Tensor\(4, 8\), h=Tensor\(4, 8\)\), got \(Tensor\(4, 8\), "
        r"Tensor\(4, 80\)\)",
    ),
    "initial-state-batch-bidirectional": (
        lambda impl: bidirectional_dynamic_rnn(
            GRUCell(4, input_size=3),
            GRUCell(4, input_size=3),
            torch.randn(4, 10, 3),
            initial_state_fw=torch.zeros(40, 4),
            impl=impl,
        ),
        r"bidirectional_dynamic_rnn: initial_state_fw must match the cell's state structure "
        r"Tensor\(4, 4\), got Tensor\(40, 4\)",
    ),
    "sequence-length-batch": (
        lambda impl: dynamic_rnn(
            GRUCell(4, input_size=3), torch.randn(4, 10, 3), sequence_length=[10] * 9, impl=impl
        ),
        r"dynamic_rnn: sequence_length must have shape \(4,\), got \(9,\)",
    ),
}


def _fused_directly(impl):
    """The fused entry point itself, without dynamic_rnn's boundary checks in front."""
    from rnnflow.recurrence import fused

    cell = BasicLSTMCell(8, input_size=5)
    return fused.fused_dynamic_rnn(cell, torch.randn(10, 4, 13), None, cell.zero_state(4))


FUSED_ONLY = {  # the reference loop hands these to the cell, which raises its own error
    "fused-entry-point": (
        _fused_directly,
        r"dynamic_rnn: cell \(BasicLSTMCell\) was built for input depth 5, "
        r"got depth 13 from the inputs",
    ),
    "replaced-kernel": (
        _replaced_kernel,
        r"dynamic_rnn: cell\.kernel must have shape \(13, 32\) for input depth 5 and 8 units, "
        r"got \(7, 32\)",
    ),
    # LSTMCell: the recurrent rows of its kernel are the projected m (3), not the 8 units
    "lstm-cell-kernel": (
        _replaced_lstm_cell_parameter("kernel", (13, 32)),
        r"dynamic_rnn: cell\.kernel must have shape \(8, 32\) for input depth 5 and 8 units, "
        r"got \(13, 32\)",
    ),
    "lstm-cell-peephole": (
        _replaced_lstm_cell_parameter("w_o_diag", (3,)),
        r"dynamic_rnn: cell\.w_o_diag must have shape \(8,\) for input depth 5 and 8 units, "
        r"got \(3,\)",
    ),
    "lstm-cell-projection": (
        _replaced_lstm_cell_parameter("projection.kernel", (8, 4)),
        r"dynamic_rnn: cell\.projection\.kernel must have shape \(8, 3\) for input depth 5 "
        r"and 8 units, got \(8, 4\)",
    ),
}


def _run_cases(impl_key: str) -> None:
    """In the subprocess: run every case, one JSON line each, flushed before the next starts."""
    impl = IMPLS[impl_key][0]
    cases = {**CASES, **(FUSED_ONLY if impl == "fused" else {})}
    for name, (run, _) in cases.items():
        print(json.dumps({"started": name}), flush=True)
        try:
            run(impl)
            result = {"case": name, "error": None, "message": ""}
        except Exception as exc:
            result = {"case": name, "error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(result), flush=True)


@functools.cache
def _results(impl_key: str) -> tuple[int, dict[str, dict], str, str]:
    env = {**os.environ, "RNNFLOW_NO_EXT": IMPLS[impl_key][1]}
    tests = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tests), str(tests / "recurrence"), env.get("PYTHONPATH", "")]
    )
    code = f"import test_shapes; test_shapes._run_cases({impl_key!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    results, last = {}, ""
    for line in done.stdout.splitlines():
        record = json.loads(line)
        if "started" in record:
            last = record["started"]
        else:
            results[record["case"]] = record
    return done.returncode, results, last, done.stderr[-2000:]


def _params():
    for impl_key in IMPLS:
        names = list(CASES) + (list(FUSED_ONLY) if IMPLS[impl_key][0] == "fused" else [])
        for name in names:
            yield pytest.param(impl_key, name, id=f"{impl_key}-{name}")


@pytest.mark.parametrize("impl_key, case", list(_params()))
def test_mis_shaped_run_is_refused_before_any_kernel(impl_key, case):
    if impl_key == "fused-compiled":
        from rnnflow.recurrence import _ext

        ok, reason = _ext.status()
        if not ok:
            pytest.skip(f"compiled loops unavailable: {reason}")
    returncode, results, last, stderr = _results(impl_key)
    assert case in results, (
        f"the subprocess died (exit status {returncode}) in case {last!r}: {stderr}"
    )
    _, message = {**CASES, **FUSED_ONLY}[case]
    record = results[case]
    assert record["error"] == "ValueError", record
    assert re.search(message, record["message"]), record
    assert returncode == 0, stderr
