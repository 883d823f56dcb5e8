"""The tutorial classifier end to end: optimizer-step time, and test accuracy fp32 vs bfloat16.

    python -m benchmarks.bench_train_step [--threads N] [--accuracy] [--examples 300000]

Step time: the tutorial cases of ``bench_recurrence`` (BasicRNNCell/BasicLSTMCell/GRUCell 128,
batch 128, 28 steps x 28 inputs, Adam), rnnflow fused vs reference vs the PyTorch peer.

``--accuracy`` trains the tutorial's BasicLSTMCell model (and BasicRNNCell with ``--cell rnn``)
on Fashion-MNIST (the dataset installed here; the model and shapes are MNIST's) twice from the
same initial weights and batch order, once in float32 and once with the opt-in bfloat16 mode
(``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward), and prints both test
accuracies and training speeds. ``--bf16-kernel`` adds a third run, in bfloat16 through the
compiled LSTM loop's AVX512-BF16 kernel (where the CPU has it; the default bf16 path since the
kernel's fourth round, so the second run takes it too); ``--seed`` picks the initial weights
and batch order.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

import torch
from torch import nn

from benchmarks.bench_recurrence import Case, RnnflowModel, run_case, tutorial_cases
from benchmarks.harness import emit, gemm_peak_gflops, machine
from rnnflow.recurrence import _fused_kernels as kernels
from rnnflow.recurrence import fused


def train_and_test(
    cell: str, bf16: bool, examples: int, seed: int = 0, batch: int = 128
) -> dict[str, Any]:
    from rnnflow.data.datasets import load_split

    x_train, y_train = load_split("fashion-mnist", "train", download=False)
    x_test, y_test = load_split("fashion-mnist", "test", download=False)
    torch.manual_seed(seed)
    model = RnnflowModel(Case(cell, "train"), "fused")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(seed)
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    )
    seen, start = 0, time.perf_counter()
    model.train()
    while seen < examples:
        perm = torch.randperm(len(x_train), generator=order)
        for i in range(0, len(perm) - batch + 1, batch):
            idx = perm[i : i + batch]
            opt.zero_grad(set_to_none=True)
            with autocast():
                logits = model(x_train[idx], None)
            nn.functional.cross_entropy(logits.float(), y_train[idx]).backward()
            opt.step()
            seen += batch
            if seen >= examples:
                break
    train_s = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad(), autocast():
        for i in range(0, len(x_test), 1000):
            logits = model(x_test[i : i + 1000], None)
            correct += int((logits.float().argmax(1) == y_test[i : i + 1000]).sum())
    return {
        "cell": cell,
        "precision": "bf16" if bf16 else "fp32",
        "bf16_kernel": bf16 and fused._BF16_OVER_ONEDNN and kernels.bf16_loops(x_test),
        "seed": seed,
        "examples": seen,
        "train_examples_per_s": round(seen / train_s, 1),
        "test_accuracy": round(100 * correct / len(x_test), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--accuracy", action="store_true", help="fp32 vs bf16 test accuracy")
    parser.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm")
    parser.add_argument("--examples", type=int, default=300_000, help="training examples per run")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument(
        "--bf16-kernel",
        action="store_true",
        help="with --accuracy: also train in bf16 through the compiled LSTM's AVX512-BF16 kernel",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    emit({"machine": machine()})
    if args.accuracy:
        for bf16 in (False, True):
            emit(train_and_test(args.cell, bf16, args.examples, seed=args.seed))
        if args.bf16_kernel:
            fused._BF16_OVER_ONEDNN = True
            emit(train_and_test(args.cell, True, args.examples, seed=args.seed))
        return 0
    peak = gemm_peak_gflops()["peak"]
    for case in tutorial_cases(quick=False):
        emit(run_case(case, peak, rounds=5, min_round_s=0.2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
