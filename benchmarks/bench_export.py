"""Inference speed of an exported model: onnxruntime (and TorchScript) vs PyTorch eager.

    python -m benchmarks.bench_export [--threads 1] [--run RUN_DIR] [--write-doc]

The tutorial's model (BasicRNN(128), 28 steps of 28 pixels; random weights unless ``--run``: the
speed does not depend on them) on random images, batch 1 and 1000. Candidates, timed in
interleaved rounds in one process (harness.time_interleaved), median reported:

* ``pytorch``: ``model(x)`` under ``torch.no_grad()``, as ``rnnflow evaluate`` runs it (the fused
  path, ``impl="auto"``);
* ``onnxruntime``: the ``rnnflow export --format onnx`` graph in an ``InferenceSession`` (CPU
  provider, default graph optimisations), ``intra_op_num_threads`` = ``--threads``;
* ``torchscript``: the ``--format torchscript`` module (reference loop, traced).

One JSON line per batch size; ``--write-doc`` replaces docs/PERFORMANCE.md's deployment section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import emit, machine, replace_section, time_interleaved
from rnnflow.interop.onnx import INPUT_NAME, OUTPUT_NAME, to_onnx
from rnnflow.interop.torchscript import load_torchscript, to_torchscript
from rnnflow.models.classifier import SequenceClassifier

PERFORMANCE_MD = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"
SECTION = "## Deployment: ONNX Runtime vs PyTorch"
BATCHES = (1, 1000)


def bench(model: SequenceClassifier, threads: int, rounds: int) -> list[dict[str, Any]]:
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

        timings = time_interleaved(
            {"pytorch": eager, "onnxruntime": onnx, "torchscript": script},
            rounds=rounds,
            min_round_s=0.2,
        )
        record: dict[str, Any] = {"batch": batch}
        for name, t in timings.items():
            record[name] = {
                "examples_per_s": round(batch / t.median, 1),
                "ms_per_call": round(1e3 * t.median, 3),
                "spread": round(t.spread, 2),
                "ratio_to_pytorch": round(timings["pytorch"].median / t.median, 2),
            }
        emit(record)
        records.append(record)
    return records


def write_performance_doc(info: dict[str, Any], records: list[dict[str, Any]], note: str) -> None:
    """Replace this benchmark's section of docs/PERFORMANCE.md; other sections stay."""
    rows = [
        "| batch | PyTorch eager ex/s | onnxruntime ex/s | x PyTorch | TorchScript ex/s | "
        "x PyTorch | ms/call PyTorch / ort / TS | spread (max/min round) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
        p, o, s = r["pytorch"], r["onnxruntime"], r["torchscript"]
        spread = max(p["spread"], o["spread"], s["spread"])
        rows.append(
            f"| {r['batch']} | {p['examples_per_s']:,.0f} | {o['examples_per_s']:,.0f} | "
            f"**{o['ratio_to_pytorch']:.2f}** | {s['examples_per_s']:,.0f} | "
            f"{s['ratio_to_pytorch']:.2f} | {p['ms_per_call']} / {o['ms_per_call']} / "
            f"{s['ms_per_call']} | {spread:.2f} |"
        )
    body = (
        f"{SECTION}\n\n"
        f"Measured {info['date']} with `{info['command']}` on {info['cpu']}, "
        f"{info['logical_cpus']} logical CPUs shared with other jobs (load average at start "
        f"{[round(v, 2) for v in info['load_avg'] or []]}), torch {info['torch']} and "
        f"onnxruntime {info['onnxruntime']}, {info['torch_threads']} thread(s) each. {note}\n\n"
        + "\n".join(rows)
        + "\n\nMedian of interleaved rounds (pytorch, onnxruntime, torchscript, repeated), each "
        "round at least 0.2 s of back-to-back calls. The spread column is the slowest round "
        "over the fastest: above ~1.3 other jobs disturbed the run, and ratios within that "
        "factor of 1 are not a measured difference.\n"
    )
    replace_section(PERFORMANCE_MD, SECTION, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (7)")
    parser.add_argument("--run", help="a trained run folder (default: random tutorial weights)")
    parser.add_argument("--write-doc", action="store_true", help="update docs/PERFORMANCE.md")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.run:
        from rnnflow.tasks.image import load_trained_model

        model, checkpoint = load_trained_model(args.run)
        note = f"Model: {checkpoint.path}."
    else:
        model = SequenceClassifier().eval()  # the tutorial: BasicRNNCell(128)
        note = "Model: the tutorial's BasicRNN(128) classifier, random weights."
    info = machine()
    info["onnxruntime"] = ort.__version__
    info["command"] = " ".join(["python -m benchmarks.bench_export", *(argv or sys.argv[1:])])
    emit({"machine": info})
    records = bench(model, args.threads, args.rounds)
    if args.write_doc:
        write_performance_doc(info, records, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
