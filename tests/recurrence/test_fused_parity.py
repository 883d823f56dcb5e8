"""The fused path == the reference loop: outputs, final state and every gradient (R9).

float64 grid (1e-10): cells x layouts x lengths (none, partial with a zero, full) x initial state
given or not. Then float32 through the fast GEMMs and oneDNN's LSTM (1e-5), the cuDNN weight
conversion (run on CPU), the bfloat16 mode, and edge cases.
"""

from __future__ import annotations

import copy

import pytest
import torch
from rnnflow_testing import (
    CELL_INPUT_DEPTH,
    CELL_KINDS,
    assert_close_tree,
    make_cell,
    outputs_and_grads,
)

from rnnflow import (
    BasicLSTMCell,
    BasicRNNCell,
    DropoutWrapper,
    GRUCell,
    _nest,
    dynamic_rnn,
)
from rnnflow.recurrence import _fused_kernels as kernels
from rnnflow.recurrence import fused

DEPTH, BATCH, STEPS = CELL_INPUT_DEPTH, 4, 6


KINDS = CELL_KINDS
LENGTHS = {"none": None, "partial": [6, 2, 0, 3], "full": [6, 6, 6, 6]}


def inputs(time_major: bool, dtype: torch.dtype) -> torch.Tensor:
    shape = (STEPS, BATCH, DEPTH) if time_major else (BATCH, STEPS, DEPTH)
    return torch.randn(shape, dtype=dtype, requires_grad=True)


def random_state(cell, dtype):
    zero = cell.zero_state(BATCH, dtype)
    return _nest.map_structure(lambda z: torch.randn_like(z).requires_grad_(), zero)


@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("lengths", list(LENGTHS), ids=list(LENGTHS))
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_matches_reference_float64(kind, time_major, lengths, given_state):
    cell = make_cell(kind, torch.float64)
    x = inputs(time_major, torch.float64)
    seq = None if LENGTHS[lengths] is None else torch.tensor(LENGTHS[lengths])
    init = random_state(cell, torch.float64) if given_state else None
    assert fused.fusable(cell, x) == (True, "")
    ref = outputs_and_grads(cell, x, seq, init, "reference", time_major)
    fast = outputs_and_grads(cell, x, seq, init, "fused", time_major)
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("lengths", ["none", "partial"])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_matches_reference_float32(kind, lengths):
    """float32 runs oneDNN GEMMs, the sigmoid-based tanh and (LSTM) oneDNN's fused LSTM."""
    cell = make_cell(kind, torch.float32)
    x = inputs(False, torch.float32)
    seq = None if LENGTHS[lengths] is None else torch.tensor(LENGTHS[lengths])
    init = random_state(cell, torch.float32)
    ref = outputs_and_grads(cell, x, seq, init, "reference")
    fast = outputs_and_grads(cell, x, seq, init, "fused")
    assert_close_tree(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "lstm_concat", "lstm_cell"])
def test_generic_lstm_kernel_matches_reference_float32(kind, monkeypatch):
    """The LSTM kernel that oneDNN's LSTM replaces on CPU (lengths-free float32) stays exact."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    cell = make_cell(kind, torch.float32)
    x = inputs(True, torch.float32)
    init = random_state(cell, torch.float32)
    ref = outputs_and_grads(cell, x, None, init, "reference", True)
    fast = outputs_and_grads(cell, x, None, init, "fused", True)
    assert_close_tree(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "rnn_relu", "lstm", "lstm_concat", "lstm_cell"])
def test_cudnn_weight_conversion_matches_reference(kind, monkeypatch):
    """The CUDA branch's TF -> PyTorch weight conversion, run through PyTorch's CPU kernels."""
    monkeypatch.setattr(fused, "_use_peer_kernel", lambda *args: True)
    cell = make_cell(kind, torch.float64)
    x = inputs(True, torch.float64)
    init = random_state(cell, torch.float64)
    ref = outputs_and_grads(cell, x, None, init, "reference", True)
    fast = outputs_and_grads(cell, x, None, init, "fused", True)
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


def test_gradients_land_in_the_cells_own_parameters():
    cell = BasicLSTMCell(5, input_size=DEPTH, dtype=torch.float64)
    reference = copy.deepcopy(cell)  # the same weights, run by the oracle
    x = inputs(False, torch.float64).detach()
    for module, impl in ((cell, "fused"), (reference, "reference")):
        out, state = dynamic_rnn(module, x, impl=impl)
        (out.sum() + state.c.sum()).backward()
    assert cell.kernel.grad is not None and cell.bias.grad is not None
    torch.testing.assert_close(cell.kernel.grad, reference.kernel.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(cell.bias.grad, reference.bias.grad, rtol=1e-10, atol=1e-10)


def test_identity_dropout_wrapper_is_fused_and_unchanged():
    inner = BasicRNNCell(5, input_size=DEPTH, dtype=torch.float64)
    cell = DropoutWrapper(inner, input_keep_prob=0.5, output_keep_prob=0.5).eval()
    x = inputs(False, torch.float64)
    assert fused.fusable(cell, x) == (True, "")
    ref = outputs_and_grads(cell, x, torch.tensor([6, 1, 0, 4]), None, "reference")
    fast = outputs_and_grads(cell, x, torch.tensor([6, 1, 0, 4]), None, "fused")
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


def test_zero_steps_and_all_zero_lengths():
    cell = GRUCell(5, input_size=DEPTH, dtype=torch.float64)
    init = torch.randn(BATCH, 5, dtype=torch.float64)
    out, state = dynamic_rnn(
        cell, torch.zeros(BATCH, 0, DEPTH, dtype=torch.float64), initial_state=init, impl="fused"
    )
    assert out.shape == (BATCH, 0, 5) and state is init
    x = inputs(False, torch.float64)
    ref = outputs_and_grads(cell, x, torch.zeros(BATCH, dtype=torch.long), None, "reference")
    fast = outputs_and_grads(cell, x, torch.zeros(BATCH, dtype=torch.long), None, "fused")
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


def test_inference_without_grad_matches():
    cell = make_cell("multi", torch.float64)
    x = torch.randn(BATCH, STEPS, DEPTH, dtype=torch.float64)
    seq = torch.tensor([6, 2, 0, 3])
    with torch.no_grad():
        ref = dynamic_rnn(cell, x, sequence_length=seq, impl="reference")
        fast = dynamic_rnn(cell, x, sequence_length=seq, impl="fused")
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


def test_padding_past_lengths_never_reaches_the_gradients():
    """A relu RNN whose padding explodes: the reference freezes the state there, the fused path
    lets the recurrence run on; both must give the same finite gradients."""
    cell = BasicRNNCell(5, activation="relu", input_size=DEPTH, dtype=torch.float64)
    with torch.no_grad():
        cell.kernel.mul_(50.0)
    x = torch.full((BATCH, 40, DEPTH), 1e3, dtype=torch.float64, requires_grad=True)
    seq = torch.tensor([2, 1, 0, 3])
    ref = outputs_and_grads(cell, x, seq, None, "reference")
    fast = outputs_and_grads(cell, x, seq, None, "fused")
    assert all(torch.isfinite(g).all() for g in fast[2])
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


def _column_major(cell) -> None:
    """Every 2-d parameter replaced by the same values laid out column-major (a kernel built as
    ``cat([w_ih, w_hh], 1).t()`` from nn.LSTM's weights is one)."""
    for module in cell.modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if p.dim() == 2:
                setattr(module, name, torch.nn.Parameter(p.detach().t().contiguous().t()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_column_major_parameters_match_reference(kind, dtype):
    """The loops read and write parameters and their gradients by rows: a column-major kernel
    must neither fail (the float32 LSTM's in-loop weight gradient refused its d_kernel buffer)
    nor change a value."""
    torch.manual_seed(0)
    cell = make_cell(kind, dtype)
    _column_major(cell)
    assert any(not p.is_contiguous() for p in cell.parameters())
    x = inputs(False, dtype)
    seq = torch.tensor(LENGTHS["partial"])
    ref = outputs_and_grads(cell, x, seq, None, "reference")
    fast = outputs_and_grads(cell, x, seq, None, "fused")
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert_close_tree(fast, ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("kind", ["lstm", "rnn", "gru"])
def test_column_major_parameters_under_autocast(kind):
    """The bf16 paths with a column-major kernel: the gradients equal those of the same values
    laid out row-major, bit for bit (the layout must not change a number; the bf16 values
    themselves are checked against the reference loop in test_bfloat16_mode_under_autocast)."""
    torch.manual_seed(0)
    dense = make_cell(kind, torch.float32)
    strided = copy.deepcopy(dense)
    _column_major(strided)
    x = torch.randn(BATCH, STEPS, DEPTH)
    seq = torch.tensor(LENGTHS["partial"])
    grads = {}
    for name, cell in [("dense", dense), ("strided", strided)]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = dynamic_rnn(cell, x, sequence_length=seq, impl="fused")
        grads[name] = torch.autograd.grad(out.float().pow(2).sum(), list(cell.parameters()))
    for got, want in zip(grads["strided"], grads["dense"]):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


@pytest.mark.parametrize("lengths", ["none", "partial"])
@pytest.mark.parametrize("kind", KINDS)
def test_bfloat16_mode_under_autocast(kind, lengths):
    """Opt-in mixed precision: outputs and every state leaf in bfloat16 on both paths (the
    reference loop casts the initial state, the fused path runs in bfloat16), close to each
    other and to float32; float32 gradients in every parameter."""
    cell = make_cell(kind, torch.float32)
    x = torch.randn(BATCH, STEPS, DEPTH)
    seq = None if LENGTHS[lengths] is None else torch.tensor(LENGTHS[lengths])
    ref_out, ref_state = dynamic_rnn(cell, x, sequence_length=seq, impl="reference")
    runs = {}
    for impl in ("reference", "fused"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            runs[impl] = dynamic_rnn(cell, x, sequence_length=seq, impl=impl)
    for out, state in runs.values():
        assert out.dtype == torch.bfloat16
        assert all(leaf.dtype == torch.bfloat16 for leaf in _nest.flatten(state))
        torch.testing.assert_close(out.float(), ref_out, atol=3e-2, rtol=3e-2)
        for got, want in zip(_nest.flatten(state), _nest.flatten(ref_state)):
            torch.testing.assert_close(got.float(), want, atol=3e-2, rtol=3e-2)
    assert_close_tree(runs["fused"], runs["reference"], atol=3e-2, rtol=3e-2)
    runs["fused"][0].float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in cell.parameters())


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_bfloat16_zero_steps_return_the_autocast_dtype(impl):
    cell = make_cell("lstm", torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = dynamic_rnn(cell, torch.zeros(BATCH, 0, DEPTH), impl=impl)
    assert out.dtype == state.c.dtype == state.h.dtype == torch.bfloat16
    assert out.shape == (BATCH, 0, 5)


def _linear_without_bf16(real):
    """oneDNN's linear as on a CPU without AVX-512 (AVX2 only): bfloat16 raises."""

    def check(*args):
        if any(isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 for a in args):
            raise RuntimeError(
                "mkldnn pointwise binary: bf16 path needs the cpu support avx_ne_convert or "
                "avx512bw, avx512vl and avx512dq"
            )

    class Op:
        def __call__(self, *args):
            check(*args)
            return real(*args)

        def binary(self, *args):
            check(*args)
            return real.binary(*args)

    return Op()


def test_onednn_probe_tries_each_form_in_the_dtype_asked():
    real = torch.ops.mkldnn._linear_pointwise
    avx2 = _linear_without_bf16(real)
    assert kernels._probe_onednn(torch.bfloat16, op=avx2) is False
    assert kernels._probe_onednn(torch.float32, op=avx2) is True

    class NoBinary:  # the op without its ``binary`` overload
        def __call__(self, *args):
            return real(*args)

    assert kernels._probe_onednn(torch.float32, op=NoBinary()) is False

    class Wrong:  # answers, but wrongly
        def __call__(self, *args):
            return real(*args) + 1

        def binary(self, *args):
            return real.binary(*args)

    assert kernels._probe_onednn(torch.float32, op=Wrong()) is False


@pytest.mark.parametrize("kind", ["rnn", "gru", "multi"])
def test_bfloat16_on_a_cpu_without_native_bf16_linear(kind, monkeypatch):
    """The report: on AVX2-only CPUs oneDNN's bf16 linear raises. With the op behaving so, the
    probe (run afresh) says no for bfloat16 and the run falls back to addmm: no error, the
    reference loop's numbers. Every call reaching the op is recorded: none in bfloat16."""
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", _linear_without_bf16(real))
    monkeypatch.setattr(kernels, "_ONEDNN", {})  # forget the verdicts of the real op
    cell = make_cell(kind, torch.float32)
    x = torch.randn(BATCH, STEPS, DEPTH, requires_grad=True)
    runs = {}
    for impl in ("reference", "fused"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, state = dynamic_rnn(cell, x, sequence_length=[6, 2, 0, 3], impl=impl)
        out.float().sum().backward()
        runs[impl] = out, state
    assert kernels._ONEDNN[torch.bfloat16] is False
    assert_close_tree(runs["fused"], runs["reference"], atol=3e-2, rtol=3e-2)


_AVX2_CHILD = """
import torch, test_fused_parity as t
from rnnflow.recurrence import _fused_kernels as kernels
print("bf16-linear", kernels.onednn_usable(torch.bfloat16), flush=True)
for kind in t.KINDS:
    for lengths in t.LENGTHS:
        t.test_bfloat16_mode_under_autocast(kind, lengths)
print("ok", flush=True)
"""


def test_bfloat16_with_onednn_limited_to_avx2():
    """The report's machine, simulated: ``ONEDNN_MAX_CPU_ISA=AVX2`` makes oneDNN refuse bf16
    as on an AVX2-only CPU (its linear raises, its LSTM is not used by PyTorch). Every cell kind,
    with and without lengths, runs under bf16 autocast in a fresh process, both paths."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    env["PYTHONPATH"] = os.pathsep.join([str(here.parent), str(here), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", _AVX2_CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.split()
    if "bf16-linear" in lines and lines[lines.index("bf16-linear") + 1] == "True":
        pytest.skip("this torch's oneDNN ignores ONEDNN_MAX_CPU_ISA (bf16 linear still runs)")
    assert lines[-1] == "ok"
