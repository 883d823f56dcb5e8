"""LSTM variants against PyTorch's own layers: ``tf.nn.rnn_cell.LSTMCell`` (plain, peepholes,
projection) and the tf.contrib ``LSTMBlockCell`` / ``CudnnCompatibleGRUCell``.

    python -m benchmarks.bench_lstm_variants [--quick] [--threads N] [--rounds R] [--json PATH]
        [--write-doc]

Each case (one cell x train|infer) times three candidates in the same process, on the same
inputs, in interleaved rounds (``benchmarks.harness.time_interleaved``): the rnnflow cell through
``dynamic_rnn(impl="fused")`` (only where ``fusable()`` takes the cell; otherwise the record says
why), the same cell through the per-step reference loop (``impl="reference"``), and the PyTorch
peer: ``nn.LSTM`` (with ``proj_size`` for ``LSTMCell(num_proj=...)``; ``nn.LSTM`` has no
peepholes, so the peephole row's peer is the plain ``nn.LSTM``) or ``nn.GRU`` (cuDNN's
reset-after GRU, the function ``CudnnCompatibleGRUCell`` computes). Every model is cell ->
final h -> Linear(10); a training step is forward, cross-entropy, backward and an Adam step; an
inference call is a forward under ``no_grad``. Shapes: the tutorial's B=128, T=28, D=28, H=128,
projection 64 (``--quick``: B=4, T=5, D=3, H=8, projection 4, train only, one round: a smoke
run that keeps the script from rotting, not a measurement).

Each case runs in a fresh process (``--case-index``, internal), as in ``bench_recurrence``: the
allocator's history from earlier cases moves PyTorch's times. ``LSTMCell`` is imported inside
its cases: in a checkout without it those rows are recorded as skipped. ``--write-doc``
replaces this benchmark's section of docs/PERFORMANCE.md (one per thread count), headed by the
CPU model, its vector ISA flags and the load average before and after.
"""

from __future__ import annotations

import argparse
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

from benchmarks.harness import emit, machine, replace_section, time_interleaved
from rnnflow import dynamic_rnn
from rnnflow.recurrence.fused import fusable

CLASSES = 10
# cell kind -> what it is, and its peer
KINDS = {
    "lstm_cell": "LSTMCell(H)",
    "lstm_cell_peepholes": "LSTMCell(H, use_peepholes=True)",
    "lstm_cell_projection": "LSTMCell(H, num_proj=P)",
    "lstm_block": "tf.contrib LSTMBlockCell(H)",
    "cudnn_gru": "tf.contrib CudnnCompatibleGRUCell(H)",
}
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "neon")


@dataclass(frozen=True)
class Case:
    kind: str  # a key of KINDS
    mode: str  # train | infer
    batch: int = 128
    steps: int = 28
    depth: int = 28
    units: int = 128
    proj: int = 64

    @property
    def name(self) -> str:
        proj = f" P={self.proj}" if self.kind == "lstm_cell_projection" else ""
        return (
            f"{KINDS[self.kind]} {self.mode} B={self.batch} T={self.steps} D={self.depth} "
            f"H={self.units}{proj}"
        )

    @property
    def peer_name(self) -> str:
        if self.kind == "cudnn_gru":
            return "nn.GRU"
        return "nn.LSTM(proj_size=P)" if self.kind == "lstm_cell_projection" else "nn.LSTM"


def make_cell(case: Case) -> nn.Module:
    """The rnnflow cell of ``case``, built for its input depth."""
    if case.kind == "lstm_block":
        from rnnflow.cells import LSTMBlockCell

        return LSTMBlockCell(case.units, input_size=case.depth)
    if case.kind == "cudnn_gru":
        from rnnflow.cells import CudnnCompatibleGRUCell

        return CudnnCompatibleGRUCell(case.units, input_size=case.depth)
    from rnnflow.cells import LSTMCell  # type: ignore[attr-defined]  # (on the lstm branch)

    return LSTMCell(
        case.units,
        use_peepholes=case.kind == "lstm_cell_peepholes",
        num_proj=case.proj if case.kind == "lstm_cell_projection" else None,
        input_size=case.depth,
    )


def unavailable(case: Case) -> str | None:
    """Why ``case`` cannot run in this checkout (its cell is missing), or None."""
    try:
        make_cell(case)
    except ImportError:
        return "rnnflow.LSTMCell is not in this checkout"
    return None


class RnnflowModel(nn.Module):
    """cell -> dynamic_rnn(impl) -> final h -> Linear: logits [B, 10] for x [B, T, D]."""

    def __init__(self, case: Case, impl: str) -> None:
        super().__init__()
        self.cell = make_cell(case)
        self.head = nn.Linear(self.cell.output_size, CLASSES)
        self.impl = impl

    def forward(self, x: Tensor) -> Tensor:
        _, state = dynamic_rnn(self.cell, x, impl=self.impl)
        h = state[1] if isinstance(state, tuple) else state  # LSTMStateTuple(c, h): [B, H or P]
        return self.head(h)


class PeerModel(nn.Module):
    """nn.LSTM (proj_size for the projection case) or nn.GRU -> final h -> Linear."""

    def __init__(self, case: Case) -> None:
        super().__init__()
        if case.kind == "cudnn_gru":
            self.rnn: nn.Module = nn.GRU(case.depth, case.units, batch_first=True)
        else:
            proj = case.proj if case.kind == "lstm_cell_projection" else 0
            self.rnn = nn.LSTM(case.depth, case.units, batch_first=True, proj_size=proj)
        width = case.proj if case.kind == "lstm_cell_projection" else case.units
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        _, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state  # [1, B, H or P]
        return self.head(h[0])


def step_fn(model: nn.Module, case: Case, x: Tensor, y: Tensor) -> Callable[[], Any]:
    """One training step (forward, loss, backward, Adam) or one no-grad forward."""
    if case.mode == "infer":
        model.eval()

        def infer() -> Tensor:
            with torch.no_grad():
                return model(x)

        return infer
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train() -> float:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return train


def run_case(case: Case, *, rounds: int, min_round_s: float) -> dict[str, Any]:
    """Time ``case``'s candidates side by side; one record with ms, examples/s, the ratio to
    the peer (> 1: faster than the peer) and the spread (max/min round) of each."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(case.batch, case.steps, case.depth, generator=g)  # [B, T, D]
    y = torch.randint(0, CLASSES, (case.batch,), generator=g)
    record: dict[str, Any] = {"case": case.name, "peer_name": case.peer_name, **asdict(case)}
    ok, reason = fusable(make_cell(case), x.transpose(0, 1))
    record["fused_reason"] = "" if ok else reason
    candidates: dict[str, Callable[[], Any]] = {}
    if ok:
        candidates["fused"] = step_fn(RnnflowModel(case, "fused"), case, x, y)
    candidates["reference"] = step_fn(RnnflowModel(case, "reference"), case, x, y)
    candidates["peer"] = step_fn(PeerModel(case), case, x, y)
    timings = time_interleaved(candidates, rounds=rounds, min_round_s=min_round_s)
    peer = timings["peer"].median
    for name, t in timings.items():
        record[name] = {
            "ms": round(t.median * 1e3, 3),
            "examples_per_s": round(case.batch / t.median, 1),
            "ratio_to_peer": round(peer / t.median, 3),
            "spread": round(t.spread, 3),
        }
    return record


def cases(*, quick: bool) -> list[Case]:
    if quick:
        return [Case(k, "train", batch=4, steps=5, depth=3, units=8, proj=4) for k in KINDS]
    return [Case(k, mode) for k in KINDS for mode in ("train", "infer")]


def isa_flags() -> list[str]:
    """The vector ISA extensions among ``ISA_FLAGS`` that /proc/cpuinfo lists ([] elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith(("flags", "Features"))), "")
    except OSError:
        return []
    present = set(line.split(":", 1)[-1].split())
    return [flag for flag in ISA_FLAGS if flag in present]


def _run_in_fresh_process(index: int, *, quick: bool, rounds: int | None) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "benchmarks.bench_lstm_variants", "--case-index", str(index)]
    command += ["--threads", str(torch.get_num_threads())] + (["--quick"] if quick else [])
    command += [] if rounds is None else ["--rounds", str(rounds)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=root)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench_lstm_variants: case {index} failed ({done.returncode}): {done.stderr[-2000:]}"
        )
    return json.loads(lines[-1])


def run(
    *, quick: bool, rounds: int | None = None, json_path: Path | None = None, write_doc: bool
) -> int:
    """Every case in its own process; records to stdout (JSON lines), ``json_path``, the doc."""
    info = machine()
    info["command"] = " ".join(["python -m benchmarks.bench_lstm_variants", *sys.argv[1:]])
    info["isa_flags"] = isa_flags()
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    emit({"machine": info})
    records = []
    for index, case in enumerate(cases(quick=quick)):
        why_not = unavailable(case)
        if why_not is not None:
            record: dict[str, Any] = {"case": case.name, **asdict(case), "skipped": why_not}
        else:
            record = _run_in_fresh_process(index, quick=quick, rounds=rounds)
        emit(record)
        records.append(record)
    info["load_avg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if json_path is not None:
        json_path.write_text(json.dumps({"machine": info, "records": records}, indent=1))
    if write_doc:
        write_performance_doc(info, records)
    return 0


PERFORMANCE_MD = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"
SECTION = "## LSTM variants"


def _ratio(entry: Any, *, bold: bool = False) -> str:
    if not isinstance(entry, dict):
        return ""
    text = f"{entry['ratio_to_peer']:.2f}"
    return f"**{text}**" if bold else text


def _load(values: Any) -> str:
    return ", ".join(f"{v:.2f}" for v in values) if values else "unknown"


def results_table(records: list[dict[str, Any]]) -> str:
    """Markdown: one row per case; examples/s and 'x peer' (peer time / candidate time)."""
    rows = [
        "| case | peer | fused ex/s | fused x peer | reference x peer | peer ex/s | spread |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
        if "skipped" in r:
            rows.append(f"| {r['case']} | | skipped: {r['skipped']} | | | | |")
            continue
        fused = r.get("fused")
        fused_text = (
            f"{fused['examples_per_s']:,.0f}"
            if isinstance(fused, dict)
            else f"no fused path: {r['fused_reason']}"
        )
        spread = max(v["spread"] for v in r.values() if isinstance(v, dict) and "spread" in v)
        rows.append(
            f"| {r['case']} | {r['peer_name']} | {fused_text} | {_ratio(fused, bold=True)} | "
            f"{_ratio(r.get('reference'))} | {r['peer']['examples_per_s']:,.0f} | {spread:.2f} |"
        )
    return "\n".join(rows)


def write_performance_doc(info: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Replace this benchmark's section of docs/PERFORMANCE.md for this thread count."""
    threads = info["torch_threads"]
    heading = f"{SECTION}, {threads} thread{'s' if threads != 1 else ''}"
    body = (
        f"{heading}\n\n"
        f"CPU: {info['cpu']} ({info['logical_cpus']} logical CPUs); ISA flags: "
        f"{', '.join(info['isa_flags']) or 'none listed'} (PyTorch CPU capability "
        f"{info['torch_cpu_capability']}). Load average (1, 5, 15 min) {_load(info['load_avg'])} "
        f"at the start, {_load(info['load_avg_end'])} at the end. Measured {info['date']} with "
        f"`{info['command']}`, torch {info['torch']}, {threads} thread(s); each case in a fresh "
        "process, its candidates in the same process in interleaved rounds. 'x peer' is the "
        "peer's time over the candidate's (> 1: faster than PyTorch); spread is the largest "
        "max/min round ratio of the case (noise).\n\n"
        f"{results_table(records)}\n"
    )
    replace_section(PERFORMANCE_MD, heading, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny shapes, train only, one round (a smoke run)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: PyTorch's)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case")
    parser.add_argument("--json", type=Path, default=None, help="also write the records here")
    parser.add_argument(
        "--write-doc", action="store_true", help="update docs/PERFORMANCE.md's LSTM variants table"
    )
    parser.add_argument("--case-index", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.quick and args.write_doc:
        parser.error("--write-doc records a measurement; --quick is a smoke run (tiny shapes)")
    if args.case_index is not None:  # one case, in the fresh process the parent started
        case = cases(quick=args.quick)[args.case_index]
        rounds = args.rounds or (1 if args.quick else 5)
        emit(run_case(case, rounds=rounds, min_round_s=0.0 if args.quick else 0.2))
        return 0
    return run(quick=args.quick, rounds=args.rounds, json_path=args.json, write_doc=args.write_doc)


if __name__ == "__main__":
    sys.exit(main())
