"""benchmarks/bench_lstm_variants.py runs (--quick, tiny shapes, each case in its own process),
records every candidate with its ratio to the PyTorch peer, skips the LSTMCell rows in a
checkout without LSTMCell, and writes its own section of docs/PERFORMANCE.md."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("benchmarks.bench_lstm_variants")


def test_quick_run_records_every_case(tmp_path: Path) -> None:
    out = tmp_path / "records.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    command = [sys.executable, "-m", "benchmarks.bench_lstm_variants", "--quick", "--threads", "1"]
    done = subprocess.run(
        [*command, "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert "avx2" in data["machine"]["isa_flags"] or "avx2" not in Path("/proc/cpuinfo").read_text()
    assert len(data["machine"]["load_avg_end"]) == 3 and data["machine"]["torch_threads"] == 1
    by_kind = {r["kind"]: r for r in data["records"]}
    assert list(by_kind) == [
        "lstm_cell", "lstm_cell_peepholes", "lstm_cell_projection", "lstm_block", "cudnn_gru",
    ]  # fmt: skip
    try:
        from rnnflow.cells import LSTMCell  # noqa: F401
    except ImportError:
        for kind in ("lstm_cell", "lstm_cell_peepholes", "lstm_cell_projection"):
            assert by_kind[kind]["skipped"] == "rnnflow.LSTMCell is not in this checkout"
    else:
        assert by_kind["lstm_cell_projection"]["peer_name"] == "nn.LSTM(proj_size=P)"
    measured = [r for r in data["records"] if "skipped" not in r]
    assert {"lstm_block", "cudnn_gru"} <= {r["kind"] for r in measured}
    assert "fused" in by_kind["lstm_block"]  # LSTMBlockCell takes BasicLSTMCell's fused path
    assert "reset-after" in by_kind["cudnn_gru"]["fused_reason"]
    assert "fused" not in by_kind["cudnn_gru"]
    for r in measured:
        for name in ("fused", "reference"):
            if name in r:  # peer time / candidate time, from the recorded medians
                expected = r["peer"]["ms"] / r[name]["ms"]
                assert r[name]["ratio_to_peer"] == pytest.approx(expected, rel=2e-2, abs=2e-3)
        assert r["peer"]["ratio_to_peer"] == 1.0
        assert r["peer"]["examples_per_s"] == pytest.approx(4 / r["peer"]["ms"] * 1e3, rel=1e-2)


def _record(kind: str, case: str, **extra):
    timing = {"ms": 2.0, "examples_per_s": 64000.0, "ratio_to_peer": 0.5, "spread": 1.1}
    peer = {"ms": 1.0, "examples_per_s": 128000.0, "ratio_to_peer": 1.0, "spread": 1.3}
    return {"kind": kind, "case": case, "peer_name": "nn.LSTM", "reference": timing,
            "peer": peer, **extra}  # fmt: skip


def test_write_doc_replaces_only_its_own_section(bench, tmp_path, monkeypatch) -> None:
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text("# Performance\n\n## Other\n\nkept\n")
    monkeypatch.setattr(bench, "PERFORMANCE_MD", doc)
    info = {
        "cpu": "Test CPU 9000", "logical_cpus": 2, "isa_flags": ["avx2", "avx512f"],
        "torch_cpu_capability": "AVX512", "load_avg": (1.5, 1.0, 0.5),
        "load_avg_end": (2.5, 1.0, 0.5), "date": "2026-11-30", "command": "python -m x",
        "torch": "2.13.0", "torch_threads": 1,
    }  # fmt: skip
    fused = {"ms": 0.5, "examples_per_s": 256000.0, "ratio_to_peer": 2.0, "spread": 1.05}
    records = [
        _record("lstm_block", "LSTMBlockCell train", fused=fused, fused_reason=""),
        _record("cudnn_gru", "CudnnGRU train", fused_reason="no fused kernel (reset-after)"),
        {"kind": "lstm_cell", "case": "LSTMCell train", "skipped": "not in this checkout"},
    ]
    bench.write_performance_doc(info, records)
    bench.write_performance_doc(info, records)  # rewrites, never duplicates
    text = doc.read_text()
    assert text.count("## LSTM variants, 1 thread\n") == 1 and "## Other\n\nkept" in text
    assert "CPU: Test CPU 9000 (2 logical CPUs); ISA flags: avx2, avx512f" in text
    assert "Load average (1, 5, 15 min) 1.50, 1.00, 0.50 at the start, 2.50, 1.00, 0.50" in text
    assert "| LSTMBlockCell train | nn.LSTM | 256,000 | **2.00** | 0.50 | 128,000 | 1.30 |" in text
    assert (
        "| CudnnGRU train | nn.LSTM | no fused path: no fused kernel (reset-after) |  | 0.50 |"
        in text
    )
    assert "| LSTMCell train | | skipped: not in this checkout |" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--quick", "--write-doc"], r"--write-doc records a measurement; --quick is a smoke run"),
        (["--threads", "0"], r"--threads must be >= 1, got 0"),
    ],
)
def test_refusals(bench, capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    assert message.replace("\\", "") in capsys.readouterr().err
