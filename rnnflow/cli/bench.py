"""`rnnflow bench [--quick | --full] [--threads N] [--json PATH] [--write-doc]`: recurrence speed.

Times rnnflow's fused path, its reference loop and PyTorch's fused ``nn.RNN``/``nn.LSTM``/
``nn.GRU`` side by side on the same inputs (``benchmarks/bench_recurrence.py``) and prints one
JSON line per case with examples/s, the ratio to the PyTorch peer, GFLOP/s and the fraction of
the machine's measured FP32 GEMM peak. Needs a source checkout: ``benchmarks/`` sits beside the
``rnnflow/`` package there (an editable install, ``make``'s ``.venv``, or ``PYTHONPATH``) and is
found from the package's own location, whatever the current folder; a wheel does not ship it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType


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


def checkout_root() -> Path:
    """The folder holding the ``rnnflow`` package (a source checkout's root when run from one)."""
    import rnnflow

    return Path(rnnflow.__file__).resolve().parent.parent


def import_bench() -> ModuleType | None:
    """``benchmarks.bench_recurrence`` from the checkout this rnnflow runs from, or None."""
    try:
        return importlib.import_module("benchmarks.bench_recurrence")
    except ImportError:
        pass
    root = checkout_root()
    if not (root / "benchmarks" / "bench_recurrence.py").is_file():
        return None
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("benchmarks.bench_recurrence")
    except ImportError:
        return None
    finally:
        sys.path.remove(str(root))


def run(args: argparse.Namespace) -> int:
    bench_recurrence = import_bench()
    if bench_recurrence is None:
        print(
            f"rnnflow bench: the benchmark harness is not installed: rnnflow runs from "
            f"{checkout_root()}, which has no benchmarks/bench_recurrence.py (a wheel does not "
            "ship it). Install rnnflow from a source checkout (pip install -e .) and run "
            "`rnnflow bench` again, or `python -m benchmarks.bench_recurrence` there",
            file=sys.stderr,
        )
        return 1
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return bench_recurrence.run(
        quick=not args.full, rounds=args.rounds, json_path=args.json, write_doc=args.write_doc
    )
