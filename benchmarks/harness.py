"""Timing helpers shared by the recurrence benchmarks.

Every comparison is measured side by side: the candidates of one case run in the same process on
the same inputs, each warmed up, then in interleaved rounds (A B C A B C ...), so that a burst of
load from other processes on this shared machine hits all of them alike. The median round is
reported, with the spread (max/min of the rounds) as a noise indicator.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


def sync(device: torch.device | str) -> None:
    """Wait for queued device work (CUDA); a no-op on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@dataclass
class Timing:
    """Seconds per call of one candidate: median and extremes over the rounds."""

    median: float
    low: float
    high: float
    rounds: list[float] = field(default_factory=list)

    @property
    def spread(self) -> float:
        return self.high / self.low if self.low > 0 else float("inf")


def time_interleaved(
    candidates: dict[str, Callable[[], Any]],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 2,
    rounds: int = 5,
    min_round_s: float = 0.05,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Median seconds per call of each candidate, timed in interleaved rounds.

    Each round calls a candidate ``n`` times back to back (``n`` chosen in the warm-up so a round
    lasts at least ``min_round_s``), then moves to the next candidate; odd rounds take the
    candidates in reverse order. ``clock``: wall time, or
    ``time.thread_time`` (the calling thread's CPU time: on a machine other jobs keep busy, it
    leaves out the time spent waiting for a core; single-threaded candidates only).
    """
    calls: dict[str, int] = {}
    for name, fn in candidates.items():
        for _ in range(warmup):
            fn()
        sync(device)
        start = clock()
        fn()
        sync(device)
        once = max(clock() - start, 1e-6)
        calls[name] = max(1, int(min_round_s / once))
    results: dict[str, list[float]] = {name: [] for name in candidates}
    order = list(candidates.items())
    for r in range(rounds):
        # every other round in reverse: a candidate's place (after which other one, first in
        # its round) must not favour it; in a fixed order the fused LSTM at batch 1 measured
        # 0.91-0.96x its peer against 1.06-1.12x alternated (2026-12-01)
        for name, fn in order if r % 2 == 0 else order[::-1]:
            sync(device)
            start = clock()
            for _ in range(calls[name]):
                fn()
            sync(device)
            results[name].append((clock() - start) / calls[name])
    return {name: Timing(statistics.median(r), min(r), max(r), r) for name, r in results.items()}


def gemm_peak_gflops(
    n: int = 2048, dtype: torch.dtype = torch.float32, device: str = "cpu", seconds: float = 1.0
) -> dict[str, float]:
    """Achieved GFLOP/s of a large square GEMM (``n`` x ``n``), best of repeated calls, through
    ``torch.mm`` (MKL on CPU) and, on CPU, oneDNN's linear. ``peak`` is the larger: the rate the
    machine's matrix units actually deliver (MKL runs AVX2 code on AMD CPUs)."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    ways: dict[str, Callable[[], Any]] = {"mm": lambda: torch.mm(a, b)}
    if torch.device(device).type == "cpu":
        from rnnflow.recurrence._fused_kernels import onednn_usable

        if onednn_usable(dtype):
            ways["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    rates: dict[str, float] = {}
    for name, fn in ways.items():
        for _ in range(2):
            fn()
        sync(device)
        best = float("inf")
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            fn()
            sync(device)
            best = min(best, time.perf_counter() - start)
        rates[name] = 2 * n**3 / best / 1e9
    rates["peak"] = max(rates.values())
    return rates


class SavedTensorBytes:
    """Bytes of the distinct storages autograd saves for backward inside this context.

    That is the activation memory of a training step, the part that grows with the sequence
    length (parameters and optimizer state do not). Works on any device.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self._seen: set[tuple[int, int]] = set()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in self._seen:
            self._seen.add(key)
            self.bytes += storage.nbytes()
        return t

    def __enter__(self) -> SavedTensorBytes:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    from rnnflow.recurrence import _ext

    cpu = _ext.cpu_description()  # model and SIMD flags
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        pass
    return {
        "date": dt.date.today().isoformat(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "avx512_bf16": "avx512_bf16" in flags,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }


def emit(record: dict[str, Any], stream: Any = None) -> None:
    """One JSON line per case (the benchmarks' machine-readable output)."""
    print(json.dumps(record, default=str), file=stream or sys.stdout, flush=True)


def replace_section(path: Path, heading: str, body: str) -> None:
    """Replace the ``heading`` section of a Markdown file (from that line to the next ``## ``
    heading or the end) with ``body``, which starts with the heading; append it if absent. The
    other sections stay as they are, so each benchmark rewrites only its own results."""
    text = (
        path.read_text()
        if path.exists()
        else "# Performance\n\nMeasured numbers, one section per component.\n"
    )
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    body = body.rstrip("\n") + "\n"
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")
