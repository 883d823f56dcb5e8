"""Kernel variants of the compiled loops (csrc/loops.cpp) and the checks of their entry points.

The variants' numbers are tested in test_fused_ext.py (every parity test runs once per variant
the CPU supports). Here: which variants run (checked against the CPU's own flags in
/proc/cpuinfo), ``RNNFLOW_ISA``'s validation, and that every compiled entry point refuses
mis-shaped arguments with a RuntimeError instead of reading or writing out of bounds. Those
calls run in a subprocess, so that a crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rnnflow import BasicLSTMCell
from rnnflow.recurrence import _ext, _fused_kernels, fused

# The flags each variant's code is compiled for (csrc/loops.cpp, isa_flags).
FLAGS = {
    "avx512": ["avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"],
    "avx2": ["avx2", "fma"],
    "generic": [],
}


@pytest.fixture
def ops(monkeypatch):
    monkeypatch.delenv("RNNFLOW_NO_EXT", raising=False)
    monkeypatch.delenv("RNNFLOW_ISA", raising=False)
    ok, reason = _ext.status()
    if not ok:
        pytest.skip(f"compiled loops unavailable: {reason}")
    return _ext.loops()


def _cpu_flags() -> set[str] | None:
    """The x86 flags of the CPU running this process, or None. None too when this process is
    not x86-64: under an emulator (qemu-user, tools/aarch64_check.sh) /proc/cpuinfo describes
    the host, not the CPU the kernels run on."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None


def test_the_variants_the_cpu_supports_are_the_ones_offered(ops):
    """supported_isas() against the kernel's own flags in /proc/cpuinfo (an independent
    reading of cpuid), widest first, and the default is the widest."""
    flags = _cpu_flags()
    if flags is None or not {"sse2"} <= flags:
        pytest.skip("no x86 /proc/cpuinfo flags to compare with")
    expected = [isa for isa in _ext.ISAS if set(FLAGS[isa]) <= flags]
    assert _ext.supported_isas() == expected
    assert _ext.isa() == expected[0]
    for isa in _ext.ISAS:
        assert _ext.missing_flags(isa) == [f for f in FLAGS[isa] if f not in flags]


@pytest.mark.parametrize("isa", _ext.ISAS)
def test_rnnflow_isa_forces_a_variant(isa, ops, monkeypatch):
    missing = _ext.missing_flags(isa)
    if missing:
        pytest.skip(f"kernel variant {isa}: this CPU lacks {' '.join(missing)}")
    monkeypatch.setenv("RNNFLOW_ISA", isa)
    assert _ext.isa() == isa
    monkeypatch.delenv("RNNFLOW_ISA")
    assert _ext.isa() == _ext.supported_isas()[0]


def test_rnnflow_isa_rejects_an_unknown_name(ops, monkeypatch):
    monkeypatch.setenv("RNNFLOW_ISA", "sse9")
    with pytest.raises(
        ValueError,
        match=r"RNNFLOW_ISA must be one of avx512, avx2, generic \(or unset: the widest the "
        r"CPU supports\), got 'sse9'",
    ):
        _ext.loops()


def test_rnnflow_isa_rejects_a_variant_the_cpu_lacks(ops, monkeypatch):
    """The CPU here may have every flag: the check is given a CPU that lacks avx512bw."""

    class NoAvx512bw:
        def missing_flags(self, name):
            return ["avx512bw"] if name == "avx512" else []

        def set_isa(self, name):  # pragma: no cover - must not be reached
            raise AssertionError(name)

    monkeypatch.setattr(_ext, "supported_isas", lambda: ["avx2", "generic"])
    with pytest.raises(
        ValueError,
        match=r"RNNFLOW_ISA=avx512: this CPU cannot run the avx512 kernels, it lacks avx512bw "
        r"\(it runs: avx2, generic\)",
    ):
        _ext._select_isa(NoAvx512bw(), "avx512")


def test_set_isa_refuses_unknown_names(ops):
    with pytest.raises(RuntimeError, match=r"unknown kernel variant 'neon' \(known: avx512, "):
        ops.set_isa("neon")


def test_the_build_does_not_target_the_build_machine():
    """A library built on one machine runs on another: no -march=native, no CPU in the key."""
    assert not any(flag.startswith(("-march", "-mtune", "-mavx")) for flag in _ext._FLAGS)


# ----------------------------------------------------------------------------- entry checks
# Each case calls one op of torch.ops.rnnflow_loops with one argument wrong, in float64 unless
# said otherwise. B = 3 rows, H = 4 units, D = 5 inputs, S = 2 steps.
CASES = {
    # BasicRNNCell: x [S, B, D], w_x [H, D], bias [H], hs [S+1, B, H], w [H, H]
    "rnn_forward/x_steps": (
        "L.rnn_forward(z(1, 3, 5), z(4, 5), z(4), z(3, 3, 4), z(4, 4), [3, 3], 0, False)",
        r"rnn_forward: x must be a Double CPU tensor of sizes \[>= 2, 3, \*\], got Double "
        r"cpu \[1, 3, 5\]",
    ),
    "rnn_forward/depth": (  # inputs deeper than the kernel
        "L.rnn_forward(z(2, 3, 13), z(4, 5), z(4), z(3, 3, 4), z(4, 4), [3, 3], 0, False)",
        r"rnn_forward: w_x must be a Double CPU tensor of sizes \[4, 13\], got Double cpu "
        r"\[4, 5\]",
    ),
    "rnn_forward/bias": (
        "L.rnn_forward(z(2, 3, 5), z(4, 5), z(5), z(3, 3, 4), z(4, 4), [3, 3], 0, False)",
        r"rnn_forward: bias must be a Double CPU tensor of sizes \[4\], got Double cpu \[5\]",
    ),
    "rnn_forward/w": (
        "L.rnn_forward(z(2, 3, 5), z(4, 5), z(4), z(3, 3, 4), z(4, 5), [3, 3], 0, False)",
        r"rnn_forward: w must be a Double CPU tensor of sizes \[4, 4\], got Double cpu \[4, 5\]",
    ),
    "rnn_forward/dtype": (
        "L.rnn_forward(z(2, 3, 5).float(), z(4, 5), z(4), z(3, 3, 4), z(4, 4), [3, 3], 0, False)",
        r"rnn_forward: x must be a Double CPU tensor of sizes \[>= 2, 3, \*\], got Float",
    ),
    "rnn_forward/int_hs": (
        "L.rnn_forward(z(2, 3, 5), z(4, 5), z(4), z(3, 3, 4).long(), z(4, 4), [3, 3], 0, False)",
        r"rnn_forward: hs must be float32 or float64, got Long",
    ),
    "rnn_forward/batch_sizes_over_batch": (
        "L.rnn_forward(z(2, 3, 5), z(4, 5), z(4), z(3, 3, 4), z(4, 4), [4, 3], 0, False)",
        r"rnn_forward: batch_sizes must be non-increasing, each within \[0, 3\] \(the batch\), "
        r"got 4 at step 0",
    ),
    "rnn_forward/batch_sizes_increasing": (
        "L.rnn_forward(z(2, 3, 5), z(4, 5), z(4), z(3, 3, 4), z(4, 4), [1, 2], 0, False)",
        r"got 2 at step 1 after 1",
    ),
    "rnn_forward/batch_sizes_negative": (
        "L.rnn_forward(z(2, 3, 5), z(4, 5), z(4), z(3, 3, 4), z(4, 4), [-1], 0, False)",
        r"got -1 at step 0",
    ),
    "rnn_forward/too_many_steps": (
        "L.rnn_forward(z(9, 3, 5), z(4, 5), z(4), z(3, 3, 4), z(4, 4), [3, 3, 3], 0, False)",
        r"rnn_forward: batch_sizes has 3 steps, more than the 2 the buffers hold",
    ),
    "rnn_forward/strided_steps": (
        "L.rnn_forward(z(2, 5, 3).transpose(1, 2), z(4, 5), z(4), z(3, 3, 4), z(4, 4), [3, 3], 0, "
        "False)",
        r"rnn_forward: x must have unit stride within a row \(strides \[\*, \*, 1\]\), got "
        r"strides \[15, 1, 3\]",
    ),
    "rnn_forward/act": (
        "L.rnn_forward(z(2, 3, 5), z(4, 5), z(4), z(3, 3, 4), z(4, 4), [3, 3], 7, False)",
        r"rnn_forward: act must be 0 \(tanh\), 1 \(sigmoid\), 2 \(relu\) or 3 \(linear\), got 7",
    ),
    "rnn_backward/d_final": (
        "L.rnn_backward(z(2, 3, 4), z(2, 4), z(3, 3, 4), z(4, 4), [3, 3], 0, False, True)",
        r"rnn_backward: d_final must be a Double CPU tensor of sizes \[3, 4\], got Double cpu "
        r"\[2, 4\]",
    ),
    "rnn_backward/d_final_strided": (
        "L.rnn_backward(z(2, 3, 4), z(4, 3).t(), z(3, 3, 4), z(4, 4), [3, 3], 0, False, True)",
        r"rnn_backward: d_final must be contiguous, got strides \[1, 3\]",
    ),
    "rnn_backward/d_out": (
        "L.rnn_backward(z(2, 2, 4), z(3, 4), z(3, 3, 4), z(4, 4), [3, 3], 0, False, True)",
        r"rnn_backward: d_out must be a Double CPU tensor of sizes \[>= 2, 3, 4\]",
    ),
    # BasicLSTMCell: x [S, B, D], w_x [4H, D], bias [4H], gates [S, B, 4H], cs [S+1, B, H],
    # hs [S+1, B, H], tcs [S, B, H], w [4H, H]
    "lstm_forward/depth": (  # issue 14's crash: inputs deeper than the kernel
        "L.lstm_forward(z(2, 3, 13), z(16, 5), z(16), z(2, 3, 16), z(3, 3, 4), z(3, 3, 4), "
        "z(2, 3, 4), z(16, 4), [3, 3], 0, False)",
        r"lstm_forward: w_x must be a Double CPU tensor of sizes \[16, 13\], got Double cpu "
        r"\[16, 5\]",
    ),
    "lstm_forward/bias": (
        "L.lstm_forward(z(2, 3, 5), z(16, 5), z(12), z(2, 3, 16), z(3, 3, 4), z(3, 3, 4), "
        "z(2, 3, 4), z(16, 4), [3, 3], 0, False)",
        r"lstm_forward: bias must be a Double CPU tensor of sizes \[16\], got Double cpu \[12\]",
    ),
    "lstm_forward/gates_width": (
        "L.lstm_forward(z(2, 3, 5), z(16, 5), z(16), z(2, 3, 12), z(3, 3, 4), z(3, 3, 4), "
        "z(2, 3, 4), z(16, 4), [3, 3], 0, False)",
        r"lstm_forward: gates must be a Double CPU tensor of sizes \[>= 2, 3, 16\]",
    ),
    "lstm_forward/cs_steps": (
        "L.lstm_forward(z(2, 3, 5), z(16, 5), z(16), z(2, 3, 16), z(2, 3, 4), z(3, 3, 4), "
        "z(2, 3, 4), z(16, 4), [3, 3], 0, False)",
        r"lstm_forward: cs must be a Double CPU tensor of sizes \[>= 3, 3, 4\]",
    ),
    "lstm_forward/x_batch": (
        "L.lstm_forward(z(2, 2, 5), z(16, 5), z(16), z(2, 3, 16), z(3, 3, 4), z(3, 3, 4), "
        "z(2, 3, 4), z(16, 4), [3, 3], 0, False)",
        r"lstm_forward: x must be a Double CPU tensor of sizes \[>= 2, 3, \*\]",
    ),
    "lstm_forward/w_float32": (
        "L.lstm_forward(z(2, 3, 5), z(16, 5), z(16), z(2, 3, 16), z(3, 3, 4), z(3, 3, 4), "
        "z(2, 3, 4), z(16, 4).float(), [3, 3], 0, False)",
        r"lstm_forward: w must be a Double CPU tensor of sizes \[16, 4\], got Float cpu",
    ),
    "lstm_backward/w_layout": (  # W_h^T where W_h [H, 4H] is expected
        "L.lstm_backward(z(2, 3, 4), z(3, 4), z(3, 4), z(2, 3, 16), z(3, 3, 4), z(2, 3, 4), "
        "z(16, 4), [3, 3], 0, False, True)",
        r"lstm_backward: w must be a Double CPU tensor of sizes \[4, 16\], got Double cpu "
        r"\[16, 4\]",
    ),
    "lstm_backward/gates_steps": (
        "L.lstm_backward(z(2, 3, 4), z(3, 4), z(3, 4), z(1, 3, 16), z(3, 3, 4), z(2, 3, 4), "
        "z(4, 16), [3, 3], 0, False, True)",
        r"lstm_backward: gates must be a Double CPU tensor of sizes \[>= 2, 3, 16\]",
    ),
    "lstm_backward/d_final_h": (
        "L.lstm_backward(z(2, 3, 4), z(3, 4), z(3, 5), z(2, 3, 16), z(3, 3, 4), z(2, 3, 4), "
        "z(4, 16), [3, 3], 0, False, True)",
        r"lstm_backward: d_final_h must be a Double CPU tensor of sizes \[3, 4\]",
    ),
    # GRUCell: gates [S, B, 2H], cands/rhs [S, B, H], hs [S+1, B, H], w_g [2H, H], w_c [H, H]
    "gru_forward/w_g": (
        "L.gru_forward(z(2, 3, 8), z(2, 3, 4), z(2, 3, 4), z(3, 3, 4), z(4, 8), z(4, 4), "
        "[3, 3], 0, False)",
        r"gru_forward: w_g must be a Double CPU tensor of sizes \[8, 4\], got Double cpu \[4, 8\]",
    ),
    "gru_forward/rhs": (
        "L.gru_forward(z(2, 3, 8), z(2, 3, 4), z(1, 3, 4), z(3, 3, 4), z(8, 4), z(4, 4), "
        "[3, 3], 0, False)",
        r"gru_forward: rhs must be a Double CPU tensor of sizes \[>= 2, 3, 4\]",
    ),
    "gru_backward/cands": (
        "L.gru_backward(z(2, 3, 4), z(3, 4), z(2, 3, 8), z(2, 3, 5), z(3, 3, 4), z(4, 8), "
        "z(4, 4), [3, 3], 0, False, True)",
        r"gru_backward: cands must be a Double CPU tensor of sizes \[>= 2, 3, 4\]",
    ),
    "gru_backward/w_c": (
        "L.gru_backward(z(2, 3, 4), z(3, 4), z(2, 3, 8), z(2, 3, 4), z(3, 3, 4), z(4, 8), "
        "z(4, 3), [3, 3], 0, False, True)",
        r"gru_backward: w_c must be a Double CPU tensor of sizes \[4, 4\]",
    ),
    # inference: x [T, B, D] (any strides, unit within a row), w_x [G, D], bias [G],
    # w_h [G, H], h0 and c0 [B, H]
    "rnn_infer/w_h": (
        "L.rnn_infer(z(2, 3, 5), z(4, 5), z(4), z(4, 3), z(3, 4), [3, 3], 0, False)",
        r"rnn_infer: w_h must be a Double CPU tensor of sizes \[4, 4\], got Double cpu \[4, 3\]",
    ),
    "rnn_infer/x_row_stride": (
        "L.rnn_infer(z(2, 5, 3).transpose(1, 2), z(4, 5), z(4), z(4, 4), z(3, 4), [3, 3], 0, "
        "False)",
        r"rnn_infer: x must have unit stride within a row \(strides \[\*, \*, 1\]\), got "
        r"strides \[15, 1, 3\]",
    ),
    "rnn_infer/x_dtype": (
        "L.rnn_infer(z(2, 3, 5).long(), z(4, 5), z(4), z(4, 4), z(3, 4), [3, 3], 0, False)",
        r"rnn_infer: x must be float32 or float64, got Long",
    ),
    "rnn_infer/w_x_float32": (
        "L.rnn_infer(z(2, 3, 5), z(4, 5).float(), z(4), z(4, 4), z(3, 4), [3, 3], 0, False)",
        r"rnn_infer: w_x must be a Double CPU tensor of sizes \[4, 5\], got Float cpu",
    ),
    "rnn_infer/too_many_steps": (
        "L.rnn_infer(z(2, 3, 5), z(4, 5), z(4), z(4, 4), z(3, 4), [3, 3, 3], 0, False)",
        r"rnn_infer: batch_sizes has 3 steps, more than the 2 the buffers hold",
    ),
    "rnn_infer/h0_batch": (
        "L.rnn_infer(z(2, 3, 5), z(4, 5), z(4), z(4, 4), z(2, 4), [3, 3], 0, False)",
        r"rnn_infer: h0 must be a Double CPU tensor of sizes \[3, \*\], got Double cpu \[2, 4\]",
    ),
    "rnn_infer/h0_strided": (
        "L.rnn_infer(z(2, 3, 5), z(4, 5), z(4), z(4, 4), z(4, 3).t(), [3, 3], 0, False)",
        r"rnn_infer: h0 must be contiguous, got strides \[1, 3\]",
    ),
    "lstm_infer/c0": (
        "L.lstm_infer(z(2, 3, 5), z(16, 5), z(16), z(16, 4), z(3, 5), z(3, 4), [3, 3], 0, False)",
        r"lstm_infer: c0 must be a Double CPU tensor of sizes \[3, 4\], got Double cpu \[3, 5\]",
    ),
    "lstm_infer/w_x": (
        "L.lstm_infer(z(2, 3, 5), z(16, 6), z(16), z(16, 4), z(3, 4), z(3, 4), [3, 3], 0, False)",
        r"lstm_infer: w_x must be a Double CPU tensor of sizes \[16, 5\], got Double cpu "
        r"\[16, 6\]",
    ),
    "gru_infer/w_cx": (
        "L.gru_infer(z(2, 3, 5), z(8, 5), z(8), z(4, 6), z(4), z(8, 4), z(4, 4), z(3, 4), "
        "[3, 3], 0, False)",
        r"gru_infer: w_cx must be a Double CPU tensor of sizes \[4, 5\], got Double cpu \[4, 6\]",
    ),
    "gru_infer/act": (
        "L.gru_infer(z(2, 3, 5), z(8, 5), z(8), z(4, 5), z(4), z(8, 4), z(4, 4), z(3, 4), "
        "[3, 3], 9, False)",
        r"gru_infer: act must be 0 \(tanh\), 1 \(sigmoid\), 2 \(relu\) or 3 \(linear\), got 9",
    ),
    # one-off GEMMs, float32 (the packed kernel)
    "linear/k": (
        "L.linear(z(3, 4).float(), z(5, 6).float(), None)",
        r"linear: w must be a Float CPU tensor of sizes \[\*, 4\], got Float cpu \[5, 6\]",
    ),
    "linear/add": (
        "L.linear(z(3, 4).float(), z(5, 4).float(), z(7).float())",
        r"linear: add must be a Float CPU tensor of sizes \[5\], got Float cpu \[7\]",
    ),
    "linear/add_matrix": (
        "L.linear(z(3, 4).float(), z(5, 4).float(), z(5, 3).float())",
        r"linear: add must be a Float CPU tensor of sizes \[3, 5\], got Float cpu \[5, 3\]",
    ),
    "linear/dtype": (
        "L.linear(z(3, 4).float(), z(5, 4), None)",
        r"linear: w must be a Float CPU tensor of sizes \[\*, 4\], got Double",
    ),
    "weight_grad/rows": (
        "L.weight_grad([z(7, 3).float(), z(8, 2).float()], z(7, 5).float())",
        r"weight_grad: inputs\[i\] must be a Float CPU tensor of sizes \[0\.\.7, \*\], got Float "
        r"cpu \[8, 2\]",
    ),
    "weight_grad/rank": (
        "L.weight_grad([z(7, 3).float()], z(7).float())",
        r"weight_grad: d must be a Float CPU tensor of sizes \[\*, \*\], got Float cpu \[7\]",
    ),
    "empty/negative": (
        "L.empty([3, -2], torch.float32)",
        r"rnnflow_loops.empty: sizes must be >= 0, got \[3, -2\]",
    ),
    "empty/dtype": (
        "L.empty([3], torch.int64)",
        r"rnnflow_loops.empty: dtype must be float32, float64 or bfloat16 \(lstm_forward's "
        r"out16\), got Long",
    ),
}

_RUNNER = textwrap.dedent(
    """
    import json, sys, torch
    from rnnflow.recurrence import _ext
    L = _ext.loops()
    z = lambda *s: torch.zeros(*s, dtype=torch.float64)
    for name, call in json.loads(sys.stdin.read()).items():
        print("START " + name, flush=True)
        try:
            eval(call)
            result = "no error"
        except RuntimeError as exc:
            result = str(exc).splitlines()[0]
        print("RESULT " + json.dumps([name, result]), flush=True)
    """
)


@pytest.fixture(scope="module")
def entry_results():
    """Every case, in one subprocess: name -> the first line of its error (or "no error")."""
    ok, reason = _ext.status()
    if not ok:
        pytest.skip(f"compiled loops unavailable: {reason}")
    env = {k: v for k, v in os.environ.items() if k not in ("RNNFLOW_ISA", "RNNFLOW_NO_EXT")}
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps({name: call for name, (call, _) in CASES.items()}),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    lines = done.stdout.splitlines()
    results = dict(json.loads(ln[len("RESULT ") :]) for ln in lines if ln.startswith("RESULT "))
    started = [ln[len("START ") :] for ln in lines if ln.startswith("START ")]
    return done.returncode, results, started, done.stderr[-2000:]


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_entry_points_refuse_bad_arguments(case, entry_results):
    returncode, results, started, stderr = entry_results
    crashed = started[-1] if started and started[-1] not in results else None
    assert case in results, f"the subprocess died (exit {returncode}) in case {crashed}: {stderr}"
    assert returncode == 0, stderr
    _, message = CASES[case]
    assert re.search(message, results[case]), results[case]


@pytest.mark.parametrize(
    "isa,compiled_lstm", [("avx512", True), ("avx2", True), ("generic", False)]
)
def test_the_lstm_dispatch_follows_the_variant(isa, compiled_lstm, ops, monkeypatch):
    """float32 LSTM inference at the tutorial size: the compiled LSTM with the avx512 and avx2
    variants (measured faster than oneDNN's, docs/PERFORMANCE.md), oneDNN's LSTM with the
    generic one; the one-off GEMMs use the packed kernel with avx512 and avx2 only."""
    missing = _ext.missing_flags(isa)
    if missing:
        pytest.skip(f"kernel variant {isa}: this CPU lacks {' '.join(missing)}")
    monkeypatch.setenv("RNNFLOW_ISA", isa)
    cell = BasicLSTMCell(128, input_size=28)
    x = torch.zeros(28, 1000, 28)
    with torch.no_grad():
        assert fused._compiled_lstm_faster(cell, x) is compiled_lstm
    assert (_fused_kernels._packed_gemm(x) is not None) is compiled_lstm
