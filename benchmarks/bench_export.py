"""Inference speed of the tutorial model: rnnflow itself vs onnxruntime (and TorchScript).

    python -m benchmarks.bench_export [--threads 1] [--cell rnn ...] [--run RUN_DIR] [--write-doc]

The tutorial's model (BasicRNN(128), 28 steps of 28 pixels; random weights unless ``--run``: the
speed does not depend on them; ``--cell lstm``, ``--cell gru``, repeatable, for the same model
with other cells) on random images, batch 1 and 1000. Candidates, timed in interleaved rounds in
one process (harness.time_interleaved), median reported:

* ``rnnflow``: ``model(x)`` under ``torch.no_grad()``, as ``rnnflow evaluate`` runs it: the
  inference path (``fused.infer_fast``: one compiled call per layer, no autograd);
* ``onnxruntime``: the ``rnnflow export --format onnx`` graph in an ``InferenceSession`` (CPU
  provider, default graph optimisations), ``intra_op_num_threads`` = ``--threads``;
* ``torchscript``: the ``--format torchscript`` module (reference loop, traced).

Each case is timed twice: by the wall clock and by the thread's CPU time (``time.thread_time``;
with ``--threads 1`` every candidate computes on the calling thread), which leaves out the time
spent waiting for a core on a machine other jobs keep busy. One JSON line per batch size and
clock; ``--write-doc`` replaces docs/PERFORMANCE.md's section for ``--threads``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import emit, machine, replace_section, time_interleaved
from rnnflow.interop.onnx import INPUT_NAME, OUTPUT_NAME, to_onnx
from rnnflow.interop.torchscript import load_torchscript, to_torchscript
from rnnflow.models.classifier import SequenceClassifier
from rnnflow.recurrence import _ext

PERFORMANCE_MD = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"
SECTION = "## Inference: rnnflow vs ONNX Runtime"
BATCHES = (1, 1000)
CELL_NAMES = {"rnn": "BasicRNN", "lstm": "BasicLSTM", "gru": "GRU"}
CLOCKS = {"wall": time.perf_counter, "thread CPU": time.thread_time}


def bench(model: SequenceClassifier, label: str, threads: int, rounds: int) -> list[dict[str, Any]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(to_onnx(model), options, providers=["CPUExecutionProvider"])
    scripted = load_torchscript(to_torchscript(model))
    records = []
    for batch in BATCHES:
        x = torch.rand(batch, 28, 28, generator=torch.Generator().manual_seed(batch))
        feed = {INPUT_NAME: x.numpy()}

        def eager(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                model(x)

        def script(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                scripted(x)

        def onnx(feed: dict = feed) -> None:
            session.run([OUTPUT_NAME], feed)

        for clock_name, clock in CLOCKS.items():
            timings = time_interleaved(
                {"rnnflow": eager, "onnxruntime": onnx, "torchscript": script},
                rounds=rounds,
                min_round_s=0.2,
                clock=clock,
            )
            record: dict[str, Any] = {"model": label, "batch": batch, "clock": clock_name}
            for name, t in timings.items():
                record[name] = {
                    "examples_per_s": round(batch / t.median, 1),
                    "ms_per_call": round(1e3 * t.median, 3),
                    "spread": round(t.spread, 2),
                }
            record["rnnflow_x_onnxruntime"] = round(
                timings["onnxruntime"].median / timings["rnnflow"].median, 2
            )
            record["rnnflow_x_torchscript"] = round(
                timings["torchscript"].median / timings["rnnflow"].median, 2
            )
            emit(record)
            records.append(record)
    return records


def write_performance_doc(
    info: dict[str, Any], records: list[dict[str, Any]], note: str, load_end: Any
) -> None:
    """Replace this benchmark's section of docs/PERFORMANCE.md; other sections stay."""
    rows = [
        "| model | batch | clock | rnnflow ms/call | onnxruntime ms/call | rnnflow x onnxruntime "
        "| TorchScript ms/call | rnnflow x TorchScript | rnnflow ex/s | spread (max/min round) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
        p, o, s = r["rnnflow"], r["onnxruntime"], r["torchscript"]
        spread = max(p["spread"], o["spread"], s["spread"])
        rows.append(
            f"| {r['model']} | {r['batch']} | {r['clock']} | {p['ms_per_call']} | "
            f"{o['ms_per_call']} | "
            f"**{r['rnnflow_x_onnxruntime']:.2f}** | {s['ms_per_call']} | "
            f"{r['rnnflow_x_torchscript']:.2f} | {p['examples_per_s']:,.0f} | {spread:.2f} |"
        )
    load = [round(v, 2) for v in info["load_avg"] or []]
    body = (
        f"{SECTION}\n\n"
        f"CPU: {info['cpu']} ({info['logical_cpus']} logical CPUs); compiled kernel variant "
        f"{info['isa']}. Measured {info['date']} with `{info['command']}`, torch "
        f"{info['torch']} and onnxruntime {info['onnxruntime']}, {info['torch_threads']} "
        f"thread(s) each; load average (1, 5, 15 min) {load} at the start, "
        f"{[round(v, 2) for v in load_end]} at the end (other jobs shared the machine). "
        f"{note}\n\n"
        + "\n".join(rows)
        + "\n\nMedian of interleaved rounds (rnnflow, onnxruntime, torchscript, repeated), each "
        "round at least 0.2 s of back-to-back calls, once timed by the wall clock and once by "
        "the thread's CPU time. 'rnnflow x onnxruntime' is onnxruntime's time over rnnflow's "
        "(> 1: rnnflow faster). The spread column is the slowest round over the fastest: above "
        "~1.3 other jobs disturbed the run, and ratios within that factor of 1 are not a "
        "measured difference.\n"
    )
    replace_section(PERFORMANCE_MD, SECTION, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (7)")
    parser.add_argument("--run", help="a trained run folder (default: random tutorial weights)")
    parser.add_argument(
        "--cell",
        action="append",
        choices=list(CELL_NAMES),
        help="cell of the random model (repeatable; default rnn, the tutorial's)",
    )
    parser.add_argument("--write-doc", action="store_true", help="update docs/PERFORMANCE.md")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models: list[tuple[str, SequenceClassifier]] = []
    if args.run:
        from rnnflow.tasks.image import load_trained_model

        model, checkpoint = load_trained_model(args.run)
        models.append((f"{checkpoint.path}", model))
        note = f"Model: {checkpoint.path}."
    else:
        for cell in args.cell or ["rnn"]:  # the tutorial: BasicRNNCell(128)
            label = f"{CELL_NAMES[cell]}(128)"
            models.append((label, SequenceClassifier(cell=cell).eval()))
        note = "Models: the tutorial's classifier with the cell named, random weights."
    info = machine()
    info["onnxruntime"] = ort.__version__
    info["isa"] = _ext.isa()
    info["command"] = " ".join(["python -m benchmarks.bench_export", *(argv or sys.argv[1:])])
    emit({"machine": info})
    records = [r for label, model in models for r in bench(model, label, args.threads, args.rounds)]
    load_end = os.getloadavg()
    emit({"load_avg_end": load_end})
    if args.write_doc:
        write_performance_doc(info, records, note, load_end)
    return 0


if __name__ == "__main__":
    sys.exit(main())
