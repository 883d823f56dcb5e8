"""rnnflow fused vs rnnflow reference vs PyTorch's fused nn.RNN / nn.LSTM / nn.GRU (the peer).

    python -m benchmarks.bench_recurrence [--quick | --full] [--device {cpu,cuda}] [--json PATH]
        [--write-doc]

Every case builds the same model three ways (a cell -> the final hidden state -> Linear(10) ->
cross-entropy), on the same inputs, and times them side by side (interleaved rounds, median; see
``harness``): a training step is forward + backward + Adam, inference is a no-grad forward in eval
mode. The peer reads padded batches as a ``PackedSequence`` when the case has sequence lengths.

FLOPs counted: the cell's matrix products only, 2 (D + H) G per example and step forward
(G = H, 4H, 3H for RNN, LSTM, GRU), and 3x that for a training step (forward, input/state
gradient, weight gradient). ``peak`` is the fraction of the machine's FP32 GEMM rate measured at
start (a 2048^3 GEMM). Memory is what autograd saves for backward in one training step.

``--device cuda`` runs every candidate's model and inputs on the GPU: the peer is then cuDNN
(PyTorch's nn.RNN / nn.LSTM / nn.GRU on CUDA), timings synchronise the device, the peak GEMM is
measured on the GPU (``torch.mm``, PyTorch's default TF32 settings, which are recorded), bf16
cases autocast with ``device_type="cuda"`` (the peer stays fp32, as on CPU), ``--threads`` is
ignored, and ``fused_generic`` times the generic fused kernels in place of the cuDNN dispatch
for the cases the fused path hands to cuDNN (RNN and LSTM without sequence lengths). Every
record says its ``device``. Without a GPU, ``--device cuda`` exits with status 2. ``--write-doc``
writes the CPU table only and refuses ``--device cuda`` (status 2): CUDA numbers go to
``--json`` and into docs/PERFORMANCE.md by hand. ``tools/gpu_check.sh`` runs the CUDA quick set.

On CPU each case runs in a fresh process (``--case-index``, internal): the allocator's state
left by earlier cases moved the peer's times by up to 60% (glibc returns freed memory to the
OS and page-faults it back in, more or less often depending on the heap's history; nn.LSTM at
batch 512 took ~16,000 page faults per step in a fresh process). ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` in the environment reach every case and are recorded: set large, no
candidate pays those page faults, which times the kernels alone.

Kernel variants: every table records the CPU (model and SIMD flags) and the variant of the
compiled loops that ran (``_ext.isa()``). ``RNNFLOW_ISA=avx2`` forces the AVX2 kernels on an
AVX-512 CPU; ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN, the peer's LSTM and GEMMs) and
``MALLOC_*`` set in the environment reach every case and are recorded in the heading, so a
forced run gets its own section of docs/PERFORMANCE.md. ``--cell`` and ``--precision`` pick
cases (e.g. ``--quick --cell rnn --cell lstm --precision fp32``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.harness import (
    SavedTensorBytes,
    emit,
    gemm_peak_gflops,
    machine,
    replace_section,
    time_interleaved,
)
from rnnflow import BasicLSTMCell, BasicRNNCell, GRUCell, dynamic_rnn
from rnnflow.recurrence import _ext, fused

DEPTH = 28  # inputs per step: the tutorial's MNIST rows
CLASSES = 10
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
PEERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CELLS = {"rnn": BasicRNNCell, "lstm": BasicLSTMCell, "gru": GRUCell}


@dataclass(frozen=True)
class Case:
    cell: str  # rnn | lstm | gru
    mode: str  # train | infer
    batch: int = 128
    steps: int = 28
    units: int = 128
    lengths: bool = False
    # lengths uniform in [min_length, T]: "1" (the first tables') or "T/4" (issue 17's target)
    min_length: str = "1"
    precision: str = "fp32"  # fp32 | bf16 (autocast; the peer stays fp32)
    reference: bool = True  # also time the per-step reference loop
    group: str = "tutorial"

    @property
    def name(self) -> str:
        seq = ""
        if self.lengths:
            seq = " seq_len" if self.min_length == "1" else f" seq_len[{self.min_length},T]"
        return (
            f"{self.cell} {self.mode} B={self.batch} T={self.steps} H={self.units}{seq} "
            f"{self.precision}"
        )

    def flops_per_example(self) -> float:
        forward = 2 * (DEPTH + self.units) * GATES[self.cell] * self.units * self.steps
        return forward * (3 if self.mode == "train" else 1)


class RnnflowModel(nn.Module):
    def __init__(self, case: Case, impl: str) -> None:
        super().__init__()
        self.cell = CELLS[case.cell](case.units, input_size=DEPTH)
        self.head = nn.Linear(case.units, CLASSES)
        self.impl = impl

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        _, state = dynamic_rnn(self.cell, x, sequence_length=lengths, impl=self.impl)
        h = state.h if isinstance(state, tuple) else state  # [B, H]
        return self.head(h)


class PeerModel(nn.Module):
    def __init__(self, case: Case) -> None:
        super().__init__()
        self.rnn = PEERS[case.cell](DEPTH, case.units, batch_first=True)
        self.head = nn.Linear(case.units, CLASSES)

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        if lengths is not None:
            x = nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False
            )
        _, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state  # [1, B, H]
        return self.head(h[0])


def make_inputs(
    case: Case, seed: int = 0, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor | None, Tensor]:
    """The same values on every device (drawn on CPU, then moved)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(case.batch, case.steps, DEPTH, generator=g)
    lengths = None
    if case.lengths:
        low = 1 if case.min_length == "1" else max(1, case.steps // 4)
        lengths = torch.randint(low, case.steps + 1, (case.batch,), generator=g)
        lengths[0] = case.steps
    y = torch.randint(0, CLASSES, (case.batch,), generator=g)
    return x.to(device), None if lengths is None else lengths.to(device), y.to(device)


def step_fn(
    model: nn.Module, case: Case, x: Tensor, lengths: Tensor | None, y: Tensor, bf16: bool
) -> Callable[[], Any]:
    """One training step or one inference forward of ``model`` (on ``x``'s device), as a
    closure."""
    device_type = x.device.type
    autocast = (
        (lambda: torch.autocast(device_type, dtype=torch.bfloat16))
        if bf16
        else contextlib.nullcontext
    )
    if case.mode == "infer":
        model.eval()

        def infer() -> Tensor:
            with torch.no_grad(), autocast():
                return model(x, lengths)

        return infer
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train() -> float:
        opt.zero_grad(set_to_none=True)
        with autocast():
            logits = model(x, lengths)
        loss = nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        return loss.item()

    return train


def _no_cudnn(*args: Any) -> bool:
    return False


def candidates(case: Case, device: torch.device | str = "cpu") -> dict[str, Callable[[], Any]]:
    device = torch.device(device)
    x, lengths, y = make_inputs(case, device=device)
    # pack_padded_sequence wants the lengths on CPU: the peer gets a CPU copy made once here.
    peer_lengths = None if lengths is None else lengths.cpu()
    bf16 = case.precision == "bf16"

    def model(impl: str) -> nn.Module:
        return RnnflowModel(case, impl).to(device)

    out = {"fused": step_fn(model("fused"), case, x, lengths, y, bf16)}
    if device.type == "cpu" and case.cell == "lstm" and not case.lengths:
        # The LSTM runs through oneDNN when it can; also time the generic fused kernel.
        generic = step_fn(model("fused"), case, x, lengths, y, bf16)

        def fused_generic() -> Any:
            fused._CPU_LSTM_PEER = False
            try:
                return generic()
            finally:
                fused._CPU_LSTM_PEER = True

        out["fused_generic"] = fused_generic
    elif device.type == "cuda" and case.cell in ("rnn", "lstm") and not case.lengths:
        # The fused path hands these to cuDNN; also time the generic fused kernels.
        generic_cuda = step_fn(model("fused"), case, x, lengths, y, bf16)

        def fused_generic_cuda() -> Any:
            dispatch = fused._use_peer_kernel
            fused._use_peer_kernel = _no_cudnn
            try:
                return generic_cuda()
            finally:
                fused._use_peer_kernel = dispatch

        out["fused_generic"] = fused_generic_cuda
    if case.reference:
        out["reference"] = step_fn(model("reference"), case, x, lengths, y, bf16)
    out["peer"] = step_fn(PeerModel(case).to(device), case, x, peer_lengths, y, False)
    return out


def saved_bytes(model: nn.Module, case: Case, x: Tensor, lengths: Tensor | None) -> int:
    model.train()
    with SavedTensorBytes() as m:
        logits = model(x, lengths)
    del logits
    return m.bytes


def run_case(
    case: Case,
    peak: float,
    *,
    rounds: int,
    min_round_s: float,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    device = torch.device(device)
    torch.manual_seed(0)
    timings = time_interleaved(
        candidates(case, device), device=device, rounds=rounds, min_round_s=min_round_s
    )
    record: dict[str, Any] = {"case": case.name, "device": device.type, **asdict(case)}
    peer = timings["peer"].median
    for name, t in timings.items():
        eps = case.batch / t.median
        gflops = eps * case.flops_per_example() / 1e9
        record[name] = {
            "ms": round(t.median * 1e3, 3),
            "examples_per_s": round(eps, 1),
            "ratio_to_peer": round(peer / t.median, 3),
            "gflops": round(gflops, 1),
            "peak_fraction": round(gflops / peak, 3),
            "spread": round(t.spread, 3),
        }
    if case.mode == "train" and case.group == "seq_len":
        x, lengths, _ = make_inputs(case, device=device)
        record["fused"]["saved_mb"] = round(
            saved_bytes(RnnflowModel(case, "fused").to(device), case, x, lengths) / 2**20, 2
        )
        peer_lengths = None if lengths is None else lengths.cpu()
        record["peer"]["saved_mb"] = round(
            saved_bytes(PeerModel(case).to(device), case, x, peer_lengths) / 2**20, 2
        )
    return record


def tutorial_cases(*, quick: bool) -> list[Case]:
    cases = [
        Case("rnn", "train"),
        Case("rnn", "infer", batch=1000),
        Case("lstm", "train"),
        Case("lstm", "infer", batch=1000),
        Case("lstm", "train", precision="bf16"),
        Case("gru", "train"),
        Case("gru", "infer", batch=1000),
    ]
    if not quick:
        cases += [
            Case("rnn", "train", precision="bf16"),
            Case("lstm", "infer", batch=1000, precision="bf16"),
        ]
    return cases


def all_cases(*, quick: bool) -> list[Case]:
    return tutorial_cases(quick=quick) + ([] if quick else grid_cases())


def _run_case_in_fresh_process(
    index: int, peak: float, *, quick: bool, rounds: int | None
) -> dict[str, Any]:
    """Case ``index`` of ``all_cases`` timed by a new Python process with this one's threads and
    environment (see the module docstring for why)."""
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "benchmarks.bench_recurrence", "--case-index", str(index)]
    command += ["--peak", str(peak), "--threads", str(torch.get_num_threads())]
    command += [] if quick else ["--full"]
    command += [] if rounds is None else ["--rounds", str(rounds)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=root)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench_recurrence: case {index} failed ({done.returncode}): {done.stderr[-2000:]}"
        )
    return json.loads(lines[-1])


def grid_cases() -> list[Case]:
    cases: list[Case] = []
    for cell in ("rnn", "lstm"):
        for steps in (112, 392, 784):
            cases.append(Case(cell, "train", steps=steps, reference=False, group="seq_len"))
        for units in (64, 256, 512, 1024):
            cases.append(Case(cell, "train", units=units, reference=False, group="units"))
        for batch in (1, 16, 512):
            cases.append(Case(cell, "train", batch=batch, reference=False, group="batch"))
    for cell in ("rnn", "lstm", "gru"):
        cases.append(Case(cell, "train", lengths=True, group="lengths"))
        cases.append(Case(cell, "infer", batch=1000, lengths=True, group="lengths"))
    # issue 17's variable-length target (lengths in [T/4, T]); bf16: the compiled loop's
    # AVX512-BF16 kernel where the CPU has it (oneDNN's LSTM takes no lengths)
    for precision in ("fp32", "bf16"):
        cases.append(
            Case(
                "lstm",
                "train",
                lengths=True,
                min_length="T/4",
                precision=precision,
                group="lengths",
            )
        )
    cases.append(Case("lstm", "train", lengths=True, precision="bf16", group="lengths"))
    # Memory and time vs T at the tutorial size: the T=28 point of the seq_len group.
    for cell in ("rnn", "lstm"):
        cases.append(Case(cell, "train", reference=False, group="seq_len"))
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tutorial cases only (about a minute)")
    size.add_argument("--full", action="store_true", help="tutorial cases and the whole grid")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where every candidate runs (default: cpu; cuda: the peer is cuDNN)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: all; cpu only)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case")
    parser.add_argument("--json", type=Path, default=None, help="also write the records here")
    parser.add_argument(
        "--write-doc", action="store_true", help="update docs/PERFORMANCE.md's recurrence section"
    )
    parser.add_argument(
        "--cell",
        action="append",
        choices=("rnn", "lstm", "gru"),
        help="only the cases of this cell (repeatable; default: all)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="only the cases in this precision (default: all)",
    )
    parser.add_argument(
        "--group",
        action="append",
        choices=("tutorial", "seq_len", "units", "batch", "lengths"),
        help="only the cases of this group (repeatable; default: all)",
    )
    parser.add_argument("--case-index", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--peak", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda":
        if args.write_doc:
            print(
                "bench_recurrence: --write-doc writes the CPU table and refuses --device cuda; "
                "keep the CUDA records with --json",
                file=sys.stderr,
            )
            return 2
        if not torch.cuda.is_available():
            print(
                "bench_recurrence: --device cuda: no CUDA device available "
                "(torch.cuda.is_available() is False)",
                file=sys.stderr,
            )
            return 2
    elif args.threads:
        torch.set_num_threads(args.threads)
    filters = [
        flag
        for flag, value in (
            ("--cell", args.cell),
            ("--precision", args.precision),
            ("--group", args.group),
        )
        if value
    ]
    if args.write_doc and filters:
        print(
            f"bench_recurrence: --write-doc rewrites the whole recurrence table and refuses "
            f"{', '.join(filters)} (the rows left out would be lost); keep a subset with --json",
            file=sys.stderr,
        )
        return 2
    if args.case_index is not None:  # one case, in the fresh process the parent started
        case = all_cases(quick=not args.full)[args.case_index]
        emit(
            run_case(
                case, args.peak, rounds=args.rounds or 5, min_round_s=0.2 if not args.full else 0.15
            )
        )
        return 0
    return run(
        quick=not args.full,
        rounds=args.rounds,
        json_path=args.json,
        write_doc=args.write_doc,
        device=args.device,
        cells=args.cell,
        precision=args.precision,
        groups=args.group,
    )


def run(
    *,
    quick: bool,
    rounds: int | None = None,
    json_path: Path | None = None,
    write_doc: bool = False,
    device: str = "cpu",
    cells: list[str] | None = None,
    precision: str | None = None,
    groups: list[str] | None = None,
) -> int:
    if write_doc and device != "cpu":
        raise ValueError("write_doc writes the CPU table: run it with device='cpu'")
    info = machine()
    info["device"] = device
    if device == "cuda":
        info["compiled_loops"] = "not used on cuda"
        info["cuda_runtime"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32"] = {
            "cudnn": torch.backends.cudnn.allow_tf32,
            "matmul": torch.backends.cuda.matmul.allow_tf32,
        }
    else:
        ok, why_not = _ext.status()  # builds the compiled loops now, outside the timings
        info["compiled_loops"] = "yes" if ok else f"no ({why_not})"
        info["kernel_variant"] = _ext.isa() or "none (Python loops)"
    rates = gemm_peak_gflops(device=device)
    peak = rates["peak"]
    info["fp32_gemm_gflops"] = {k: round(v, 1) for k, v in rates.items()}
    info["malloc_env"] = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    info["forced_isa_env"] = {k: os.environ[k] for k in _ISA_ENV if os.environ.get(k)}
    emit({"machine": info})
    records = []
    for index, case in enumerate(all_cases(quick=quick)):
        if (cells and case.cell not in cells) or (precision and case.precision != precision):
            continue
        if groups and case.group not in groups:
            continue
        if device == "cpu":
            record = _run_case_in_fresh_process(index, peak, quick=quick, rounds=rounds)
        else:
            record = run_case(
                case, peak, rounds=rounds or 5, min_round_s=0.2 if quick else 0.15, device=device
            )
        emit(record)
        records.append(record)
    gemm_end = gemm_peak_gflops(device=device)
    info["fp32_gemm_gflops_end"] = {k: round(v, 1) for k, v in gemm_end.items()}
    if json_path is not None:
        json_path.write_text(json.dumps({"machine": info, "records": records}, indent=1))
    if write_doc:
        write_performance_doc(info, records)
    return 0


# Environment variables that narrow the instruction set of our kernels or of the peer's.
_ISA_ENV = ("RNNFLOW_ISA", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
PERFORMANCE_MD = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"
SECTION = "## Recurrence: measured ratios"


def results_table(records: list[dict[str, Any]]) -> str:
    """Markdown table: one row per case, examples/s and ratio to the peer per candidate."""
    rows = [
        "| group | case | fused ex/s | x peer | fused GFLOP/s (peak) | generic (compiled) LSTM "
        "x peer | reference x peer | peer ex/s | spread | saved MB fused / peer |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
        f, p = r["fused"], r["peer"]
        gen, ref = r.get("fused_generic"), r.get("reference")
        gen_ratio = f"{gen['ratio_to_peer']:.2f}" if isinstance(gen, dict) else ""
        ref_ratio = f"{ref['ratio_to_peer']:.2f}" if isinstance(ref, dict) else ""
        mem = f"{f['saved_mb']} / {p['saved_mb']}" if "saved_mb" in f else ""
        spread = max(v["spread"] for v in r.values() if isinstance(v, dict) and "spread" in v)
        rows.append(
            f"| {r['group']} | {r['case']} | {f['examples_per_s']:,.0f} | "
            f"**{f['ratio_to_peer']:.2f}** | {f['gflops']} ({100 * f['peak_fraction']:.0f}%) | "
            f"{gen_ratio} | {ref_ratio} | {p['examples_per_s']:,.0f} | {spread:.2f} | {mem} |"
        )
    return "\n".join(rows)


def write_performance_doc(info: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Replace the measured-ratios section of docs/PERFORMANCE.md for this run's thread count
    (one section per count); other sections stay."""
    gemm = info.get("fp32_gemm_gflops", {})
    threads = info["torch_threads"]
    heading = f"{SECTION}, {threads} thread{'s' if threads != 1 else ''}"
    malloc = info.get("malloc_env") or {}
    if malloc:
        heading += ", " + " ".join(f"{k}={v}" for k, v in sorted(malloc.items()))
    forced = info.get("forced_isa_env") or {}
    if forced:
        heading += ", " + " ".join(f"{k}={v}" for k, v in sorted(forced.items()))
    body = (
        f"{heading}\n\n"
        f"Measured {info['date']} with `{info['command']}` on {info['cpu']}, "
        f"{info['logical_cpus']} logical CPUs, torch {info['torch']} with "
        f"{info['torch_threads']} thread(s); load average at start {info['load_avg']}; "
        f"compiled step loops: {info.get('compiled_loops', '?')}, kernel variant "
        f"{info.get('kernel_variant', '?')}. "
        f"FP32 GEMM 2048^3: torch.mm (MKL) {gemm.get('mm')} GFLOP/s, oneDNN "
        f"{gemm.get('onednn')} GFLOP/s with {threads} thread(s) (the peak used below).\n\n"
        f"{results_table(records)}\n"
    )
    replace_section(PERFORMANCE_MD, heading, body)


if __name__ == "__main__":
    sys.exit(main())
