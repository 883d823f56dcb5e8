"""benchmarks/bench_loader.py edits only its own section of docs/PERFORMANCE.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_loader.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_loader_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_write_section_replaces_only_the_data_loader_section(tmp_path: Path) -> None:
    bench = load_bench()
    doc = tmp_path / "PERFORMANCE.md"
    bench.write_section(doc, "## Data loader\n\nfirst")
    assert doc.read_text().startswith("# Performance\n")
    assert doc.read_text().endswith("## Data loader\n\nfirst\n")
    doc.write_text(
        "# Performance\n\n## Recurrence\n\nfused: 1 ms\n\n## Data loader\n\nfirst\n\n"
        "## Training\n\nstep: 2 ms\n"
    )
    bench.write_section(doc, "## Data loader\n\nsecond\n")
    assert doc.read_text() == (
        "# Performance\n\n## Recurrence\n\nfused: 1 ms\n\n## Data loader\n\nsecond\n\n"
        "## Training\n\nstep: 2 ms\n"
    )
