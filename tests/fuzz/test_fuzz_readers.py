"""Fuzzing every file reader: mutated checkpoints, IDX files, TF1 bundles, images and
metrics.jsonl, each read in a subprocess under an address-space limit (1 GB above what the
imports use). Every case must end in a clear rnnflow error (a ValueError/OSError raised by
rnnflow's own code, naming the file) or a result: never another exception, a MemoryError, a
signal or a hang.

A short, derandomized run (about 600 files) runs in the suite; ``tools/fuzz_readers.py`` runs as
many as asked with fresh randomness. See docs/RELIABILITY.md.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fuzz._harness import Seeds, Worker, apply_bytes, case_strategy, describe, make_seeds, run_batch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

# kind: (hypothesis examples, files per example); one worker process serves them all
BUDGET = {
    "checkpoint": (4, 25),
    "idx": (4, 50),
    "tf1": (4, 15),
    "image": (4, 50),
    "metrics": (2, 10),
}

OTHER_OWNERS = {
    "image": "image reader (rnnflow/data/images.py; helper 'cli'): corrupt PNG/GIF data makes "
    "Pillow raise ValueError ('Truncated IHDR chunk', 'tile cannot extend outside image'), which "
    "load_image does not catch (it catches OSError/SyntaxError)",
    "metrics": "metrics.jsonl reader (rnnflow/training/logging.py, plots.py; helper 'run'): a line "
    "`5`, a record without 'examples', a dict as a loss or non-UTF-8 bytes end in "
    "AttributeError/KeyError/TypeError/UnicodeDecodeError",
}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    return make_seeds(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def worker():
    w = Worker(limit_mb=1024)
    yield w
    w.close()


def fuzz(kind: str, seeds: Seeds, worker: Worker, folder: Path) -> tuple[list, Counter[str]]:
    examples, per_example = BUDGET[kind]
    bugs: list = []
    tally: Counter[str] = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same cases on every run and machine: CI is reproducible
        database=None,
        phases=[Phase.generate],  # no shrinking: every case is reported whole
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def batch(data: st.DataObject) -> None:
        size = per_example
        cases = data.draw(st.lists(case_strategy(kind, seeds), min_size=size, max_size=size))
        bugs.extend(run_batch(worker, kind, seeds, cases, folder / str(len(tally)), tally=tally))

    batch()
    return bugs, tally


@pytest.mark.parametrize(
    "kind",
    [
        "checkpoint",
        "idx",
        "tf1",
        pytest.param("image", marks=pytest.mark.xfail(strict=True, reason=OTHER_OWNERS["image"])),
        pytest.param(
            "metrics", marks=pytest.mark.xfail(strict=True, reason=OTHER_OWNERS["metrics"])
        ),
    ],
)
def test_mutated_files_give_a_clear_error_or_a_result(
    kind: str, seeds: Seeds, worker: Worker, tmp_path: Path
) -> None:
    bugs, tally = fuzz(kind, seeds, worker, tmp_path)
    examples, per_example = BUDGET[kind]
    assert sum(tally.values()) == examples * per_example
    assert tally["ok"] and tally["error"], (
        f"{kind}: the mutations must reach both outcomes: {tally}"
    )
    assert not bugs, f"{len(bugs)} {kind} case(s) ended in a traceback:\n{describe(bugs)}"


# Cases found by the fuzzer in readers other helpers own: kept as strict xfails until fixed.
IMAGE_CASES = {
    "gif tile": ("digit.gif", [("int", 0.776475327540115, (8, "little", 0)),
                 ("int", 0.2317001028515431, (8, "little", 0)), ("flip", 0.9409934840786048, 7)]),
    "png IHDR": ("digit.png", [("flip", 0.11616558988553051, 3), ("flip", 0.23163522103134684, 3)]),
}  # fmt: skip
METRICS_LINES = {
    "a number": b"5\n",
    "no examples": b'{"kind": "train", "step": 1, "loss": 1.0, "accuracy": 0.5}\n',
    "a dict as loss": b'{"kind": "val", "examples": 4, "loss": {}, "accuracy": 0.5}\n',
    "not UTF-8": b'{"kind": "train"}\n\xb4\xff\n',
}


@pytest.mark.xfail(strict=True, reason=OTHER_OWNERS["image"])
@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_found_image_cases(case: str, seeds: Seeds, worker: Worker, tmp_path: Path) -> None:
    name, ops = IMAGE_CASES[case]
    path = tmp_path / name
    path.write_bytes(apply_bytes(seeds.files["image"][name], ops))
    outcome = worker.run("image", path)
    assert outcome["outcome"] != "bug", outcome


@pytest.mark.xfail(strict=True, reason=OTHER_OWNERS["metrics"])
@pytest.mark.parametrize("case", sorted(METRICS_LINES))
def test_found_metrics_cases(case: str, worker: Worker, tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(METRICS_LINES[case])
    outcome = worker.run("metrics", path)
    assert outcome["outcome"] != "bug", outcome
