"""A long fuzzing run of rnnflow's file readers (the suite's tests/fuzz runs a short one).

Mutates checkpoints, IDX files, TF1 bundles, images and metrics.jsonl (tests/fuzz/_harness.py),
reads each in a worker subprocess under an address-space limit, and reports every case that
ends in anything but a clear rnnflow error or a result (another exception, a MemoryError, a
signal, a hang). Fresh randomness on every run unless ``--seed`` is given.

    python tools/fuzz_readers.py --cases 2000 [--kinds checkpoint tf1] [--seed 1] [--json out.json]

Exit status 1 when a case failed. Each failing case is printed whole (its seed file, field
edits and byte edits), so it can be replayed with ``tests/fuzz/_harness.write_case``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fuzz._harness import KINDS, Worker, case_strategy, describe, make_seeds, run_batch  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BATCH = 20  # files per hypothesis example


def fuzz_kind(kind: str, cases: int, seeds, worker: Worker, tmp: str, rng_seed: int | None):
    """(failing cases, outcome counts) of ``cases`` mutated files of ``kind``."""
    bugs: list = []
    tally: Counter[str] = Counter()

    @settings(
        max_examples=max(1, -(-cases // BATCH)),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def batch(data: st.DataObject) -> None:
        drawn = data.draw(st.lists(case_strategy(kind, seeds), min_size=BATCH, max_size=BATCH))
        folder = Path(tempfile.mkdtemp(dir=tmp))
        bugs.extend(run_batch(worker, kind, seeds, drawn, folder, tally=tally))

    (seed(rng_seed)(batch) if rng_seed is not None else batch)()
    return bugs, tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="files per kind (default 1000)")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--seed", type=int, help="reproduce a run (default: fresh randomness)")
    parser.add_argument("--limit-mb", type=int, default=1024, help="RLIMIT_AS above the imports")
    parser.add_argument("--json", help="write the outcome counts and failing cases here")
    args = parser.parse_args()
    report: dict[str, dict] = {}
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        seeds = make_seeds(Path(tmp) / "seeds")
        worker = Worker(limit_mb=args.limit_mb)
        try:
            for kind in args.kinds:
                started = time.perf_counter()
                bugs, tally = fuzz_kind(kind, args.cases, seeds, worker, tmp, args.seed)
                seconds = time.perf_counter() - started
                report[kind] = {"outcomes": dict(tally), "seconds": round(seconds, 1),
                                "failures": [{"case": repr(c), **o} for c, o in bugs]}  # fmt: skip
                print(f"{kind}: {sum(tally.values())} files in {seconds:.0f} s: {dict(tally)}")
                if bugs:
                    status = 1
                    print(describe(bugs))
        finally:
            worker.close()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
