"""`rnnflow bench [--quick | --full] [--threads N] [--json PATH] [--write-doc]`: recurrence speed.

Times rnnflow's fused path, its reference loop and PyTorch's fused ``nn.RNN``/``nn.LSTM``/
``nn.GRU`` side by side on the same inputs (``benchmarks/bench_recurrence.py``) and prints one
JSON line per case with examples/s, the ratio to the PyTorch peer, GFLOP/s and the fraction of
the machine's measured FP32 GEMM peak. Needs a source checkout (``benchmarks/`` is not shipped).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the fused recurrence against the reference loop and PyTorch",
        description=__doc__.split("\n\n")[1],
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tutorial cases only (default)")
    size.add_argument("--full", action="store_true", help="tutorial cases and the whole grid")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case")
    parser.add_argument("--json", type=Path, default=None, help="also write all records here")
    parser.add_argument(
        "--write-doc", action="store_true", help="update docs/PERFORMANCE.md's recurrence section"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        from benchmarks import bench_recurrence
    except ImportError as err:
        print(
            f"rnnflow bench: the benchmarks package is not importable ({err}); "
            "run it from a source checkout of rnnflow"
        )
        return 1
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return bench_recurrence.run(
        quick=not args.full, rounds=args.rounds, json_path=args.json, write_doc=args.write_doc
    )
