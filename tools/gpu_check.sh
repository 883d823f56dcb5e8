#!/usr/bin/env bash
# The prepared CUDA check: run it from the repository root on a machine with an NVIDIA GPU,
#
#     bash tools/gpu_check.sh            # results in ${OUT:-gpu_check_out}/
#
# It runs these steps, each under `timeout` (30 + 120 + 90 + 210 s: at most 7.5 minutes if every
# step ran into its limit; expected, not yet measured: about 2-3 minutes on an H100):
#   env.txt          nvidia-smi, Python, torch, CUDA and cuDNN versions, the commit
#   pytest_cuda.txt  the test suite's CUDA cases: `pytest -k cuda` selects the `device`
#                    fixture's [cuda] ids (tests/conftest.py) and tests marked `cuda`
#   parity_cuda.txt  fused == reference on CUDA (outputs, final state, every gradient) for every
#                    cell kind of tests/rnnflow_testing.py, float64 and float32 (TF32 off), with
#                    and without sequence lengths, against the CPU reference too; that RNN/LSTM
#                    reach cuDNN; bf16 autocast close to float32. The suite's TF-fixture parity
#                    tests run on CPU only, so this is the CUDA parity check.
#   bench_cuda.txt / bench_cuda.json
#                    python -m benchmarks.bench_recurrence --quick --device cuda
#   summary.txt      one line per step: ok / FAILED (rc) / TIMED OUT
# Exit status 0 when every step passed, 1 otherwise. Without a GPU: "no CUDA device: nothing
# to check", status 0.
#
# Python: $PYTHON if set; else .venv/bin/python if its torch sees the GPU; else the machine's
# python3 if its torch does (the lent GPU machines have a CUDA PyTorch there, with numpy, pillow,
# matplotlib, safetensors and pytest; rnnflow is then imported from this checkout through
# PYTHONPATH). Only when .venv is missing and no such python3 exists does it run `make venv`,
# as the Makefile sets the project up; that needs the package index, and the lent GPU machines
# have no internet, so there it relies on that python3 (a .venv made on a CPU machine neither
# fits the 64 MiB that travels nor holds a CUDA torch).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-gpu_check_out}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "no CUDA device: nothing to check"
    exit 0
fi

sees_cuda() {
    "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
        >/dev/null 2>&1
}

if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif [ -x .venv/bin/python ] && sees_cuda .venv/bin/python; then
    PY=.venv/bin/python
elif command -v python3 >/dev/null 2>&1 && sees_cuda python3; then
    PY=python3
elif [ ! -e .venv ]; then
    make venv # needs the package index: not reachable from the lent GPU machines
    PY=.venv/bin/python
else
    echo "gpu_check: nvidia-smi sees a GPU but no Python here has a torch that does" \
        "(tried \$PYTHON, .venv/bin/python, python3)" >&2
    exit 1
fi
if ! sees_cuda "$PY"; then
    echo "gpu_check: $PY: torch.cuda.is_available() is False although nvidia-smi sees a GPU" >&2
    exit 1
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
: >"$OUT/summary.txt"
failed=0

# step NAME SECONDS COMMAND...: run COMMAND under timeout, output to the terminal and
# $OUT/NAME.txt, one line in summary.txt; a failure does not stop the later steps.
step() {
    local name="$1" seconds="$2" rc=0 verdict
    shift 2
    echo "=== $name: $* (limit ${seconds}s)" | tee "$OUT/$name.txt"
    if timeout -k 10 "$seconds" "$@" 2>&1 | tee -a "$OUT/$name.txt"; then
        rc=0
    else
        rc=$?
    fi
    case "$rc" in
        0) verdict="ok" ;;
        124 | 137) verdict="TIMED OUT after ${seconds}s" ;;
        *) verdict="FAILED (rc=$rc)" ;;
    esac
    [ "$rc" -eq 0 ] || failed=1
    echo "$name: $verdict" | tee -a "$OUT/summary.txt"
}

# Run under `timeout` (a program): the steps that are shell code go through `bash -c`.
environment() {
    nvidia-smi
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "python: $PY"
    "$PY" - <<'PY'
import platform

import torch

print("python", platform.python_version())
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version())
print("device", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0))
print("tf32: cudnn", torch.backends.cudnn.allow_tf32, "| matmul", torch.backends.cuda.matmul.allow_tf32)
PY
}
export -f environment
export PY

PARITY="$(mktemp /tmp/gpu_check_parity.XXXXXX)"
trap 'rm -f "$PARITY"' EXIT
cat >"$PARITY" <<'PY'
"""fused == reference on CUDA, and the CUDA results == the CPU reference (argument: the device,
default cuda; `cpu` runs the same code here as a dry run of the script)."""

import copy
import sys

import torch

sys.path.insert(0, "tests")
from rnnflow_testing import CELL_INPUT_DEPTH, CELL_KINDS, make_cell  # noqa: E402

from rnnflow import LSTMStateTuple, _nest, dynamic_rnn  # noqa: E402
from rnnflow.recurrence import fused  # noqa: E402

DEV = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
torch.backends.cudnn.allow_tf32 = False  # float32 compared at float32 precision
torch.backends.cuda.matmul.allow_tf32 = False
BATCH, STEPS = 4, 6
LENGTHS = {"none": None, "partial": [6, 2, 0, 3]}
TOL = {torch.float64: 1e-9, torch.float32: 1e-4}
CUDNN_KINDS = {"rnn", "rnn_relu", "lstm", "lstm_concat"}  # fused.py: _use_peer_kernel

dispatched = []
_peer = fused._use_peer_kernel


def spy(*args):
    used = _peer(*args)
    dispatched.append(used)
    return used


fused._use_peer_kernel = spy


def on(device, cell, x, init):
    """(cell, x, init) copied to ``device``, as leaves that require gradients."""
    cell = copy.deepcopy(cell).to(device)
    x = x.detach().to(device).requires_grad_()
    init = _nest.map_structure(lambda s: s.detach().to(device).requires_grad_(), init)
    return cell, x, init


def run(cell, x, init, lengths, impl):
    """Outputs, final state and d(loss)/d(inputs, every parameter, initial state), flat."""
    out, state = dynamic_rnn(cell, x, sequence_length=lengths, initial_state=init, impl=impl)
    leaves = _nest.flatten(state)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view_as(out)
    loss = (out * w).sum() + sum((s * (k + 1.5)).sum() for k, s in enumerate(leaves))
    wrt = [x, *cell.parameters(), *_nest.flatten(init)]
    return _nest.flatten((out, state)) + list(torch.autograd.grad(loss, wrt))


def close(a, b, tol):
    return len(a) == len(b) and all(
        torch.allclose(u.detach().cpu(), v.detach().cpu(), atol=tol, rtol=tol)
        for u, v in zip(a, b)
    )


def max_diff(a, b):
    return max(float((u.detach().cpu() - v.detach().cpu()).abs().max()) for u, v in zip(a, b))


failures = 0
for dtype in (torch.float64, torch.float32):
    for kind in CELL_KINDS:
        for name, lengths in LENGTHS.items():
            torch.manual_seed(0)
            cell = make_cell(kind, dtype)
            x = torch.randn(BATCH, STEPS, CELL_INPUT_DEPTH, dtype=dtype)
            init = _nest.map_structure(torch.randn_like, cell.zero_state(BATCH, dtype))
            seq = None if lengths is None else torch.tensor(lengths)
            seq_dev = None if seq is None else seq.to(DEV)
            cpu_ref = run(*on("cpu", cell, x, init), seq, "reference")
            dev_ref = run(*on(DEV, cell, x, init), seq_dev, "reference")
            dispatched.clear()
            dev_fused = run(*on(DEV, cell, x, init), seq_dev, "fused")
            cudnn = any(dispatched)  # the peer kernel: cuDNN on CUDA (oneDNN's LSTM on CPU)
            d_ref, d_cpu = max_diff(dev_fused, dev_ref), max_diff(dev_fused, cpu_ref)
            ok = close(dev_fused, dev_ref, TOL[dtype]) and close(dev_fused, cpu_ref, TOL[dtype])
            expect_cudnn = (
                DEV.type == "cuda"
                and torch.backends.cudnn.is_available()
                and kind in CUDNN_KINDS
                and lengths is None
            )
            ok = ok and (cudnn or not expect_cudnn)
            failures += not ok
            print(
                f"{'ok  ' if ok else 'FAIL'} {str(dtype)[6:]:8} {kind:13} lengths={name:8} "
                f"peer kernel={'yes' if cudnn else 'no ':3} max|fused-ref| {DEV.type} "
                f"{d_ref:.2e}, vs cpu reference {d_cpu:.2e}"
            )

for kind in ("rnn", "lstm", "gru"):  # bf16 autocast, as tests/recurrence: 3e-2 of float32
    torch.manual_seed(0)
    cell = make_cell(kind, torch.float32).to(DEV)
    x = torch.randn(BATCH, STEPS, CELL_INPUT_DEPTH, device=DEV)
    ref_out, _ = dynamic_rnn(cell, x, impl="fused")
    with torch.autocast(DEV.type, dtype=torch.bfloat16):
        out, state = dynamic_rnn(cell, x, impl="fused")
    out.float().sum().backward()
    h = state.h if isinstance(state, LSTMStateTuple) else state
    ok = (
        out.dtype == torch.bfloat16
        and torch.isfinite(h.float()).all()
        and torch.allclose(out.float(), ref_out, atol=3e-2, rtol=3e-2)
        and all(p.grad is not None and p.grad.dtype == torch.float32 for p in cell.parameters())
    )
    failures += not ok
    diff = float((out.float() - ref_out).detach().abs().max())
    print(f"{'ok  ' if ok else 'FAIL'} bf16 autocast {kind:5} max|bf16-fp32| {diff:.2e}")

where = torch.cuda.get_device_name(0) if DEV.type == "cuda" else "cpu (dry run)"
print(f"parity on {where}: {failures} failure(s)")
sys.exit(1 if failures else 0)
PY

step env 30 bash -c environment
step pytest_cuda 120 "$PY" -m pytest -q -p no:cacheprovider --continue-on-collection-errors \
    -rA -k cuda tests
step parity_cuda 90 "$PY" "$PARITY" cuda
step bench_cuda 210 "$PY" -m benchmarks.bench_recurrence --quick --device cuda \
    --json "$OUT/bench_cuda.json"

echo "results in $OUT/:"
cat "$OUT/summary.txt"
exit "$failed"
