"""Run logs: ``metrics.jsonl`` (one JSON object per log step), optional TensorBoard events, and
:func:`write_run_file` for the run folder's other small files.

TensorBoard is an optional extra (``pip install rnnflow[tensorboard]``), imported only when asked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rnnflow.training.checkpoint import atomic_write_bytes

__all__ = ["MetricsError", "MetricsLogger", "file_errors", "read_metrics", "write_run_file"]

logger = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"


class MetricsError(ValueError):
    """A ``metrics.jsonl`` line that is not a record (the message names the file and line)."""


@contextmanager
def file_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise an ``OSError`` (a full disk, a read-only folder) as one naming ``path``: a
    failed ``write()`` says only "[Errno 28] No space left on device"."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None and exc.errno is not None:
            raise
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"cannot write {path}: {reason}") from exc


def write_run_file(path: str | os.PathLike[str], data: bytes) -> None:
    """``data`` to ``path`` atomically (``atomic_write_bytes``: old or new, never half, no
    temporary file left behind); an ``OSError`` names ``path``."""
    with file_errors(path):
        atomic_write_bytes(path, data)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


class MetricsLogger:
    """Appends records to ``RUN_DIR/metrics.jsonl``; mirrors numbers to TensorBoard if enabled.

    Each record has ``kind`` ("train", "val" or "test"), ``step`` and ``examples``. Opening an
    existing log with ``keep_until_step=s`` (a resume from step ``s``; 0 for a run starting
    from step 0) drops the records an interrupted session wrote after its last checkpoint (and
    any earlier final test result), so the log reads as one run. That rewrite is atomic (a kill
    during it leaves the old file, whose extra records the next resume drops again); afterwards
    the file is only appended to. Raises :class:`MetricsError` for a line that is not a record.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        tensorboard: bool = False,
        keep_until_step: int | None = None,
    ) -> None:
        self.path = Path(run_dir) / METRICS_NAME
        if keep_until_step is not None and self.path.exists():
            kept = [
                r
                for r in read_metrics(self.path)
                if r.get("step", 0) <= keep_until_step and r.get("kind") != "test"
            ]
            text = "".join(json.dumps(r) + "\n" for r in kept)
            write_run_file(self.path, text.encode("utf-8"))
        self._file = self.path.open("a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            self._writer = _summary_writer(Path(run_dir) / "tensorboard")

    def log(self, record: dict[str, Any]) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        with file_errors(self.path):
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self._writer is not None:
            step = int(record.get("examples", record.get("step", 0)))
            kind = record.get("kind", "train")
            for key, value in record.items():
                skip = key in ("kind", "step", "examples", "epoch")
                if skip or not isinstance(value, int | float):
                    continue
                self._writer.add_scalar(f"{kind}/{key}", value, global_step=step)
            self._writer.flush()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _summary_writer(log_dir: Path) -> Any:
    try:
        with warnings.catch_warnings():
            # TensorBoard's import chain emits deprecation warnings (pkg_resources, protobuf)
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError(
            "TensorBoard logging needs the tensorboard package: pip install 'rnnflow[tensorboard]'"
        ) from exc
    return SummaryWriter(log_dir=str(log_dir))


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file.

    A torn last line (a kill during a write) is skipped. Any other line must be a JSON object
    whose ``kind`` (if present) is a string and whose ``step`` and ``examples`` (if present) are
    non-negative integers; otherwise :class:`MetricsError` names the file, the line and the
    problem.
    """
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                logger.warning("%s: line %d: skipping a torn last line", path, number)
                continue
            raise MetricsError(f"{path}: line {number}: not JSON ({exc.msg})") from exc
        except RecursionError:
            raise MetricsError(f"{path}: line {number}: JSON nested too deeply") from None
        records.append(_check_record(record, path, number))
    return records


def _check_record(record: Any, path: str | os.PathLike[str], number: int) -> dict[str, Any]:
    where = f"{path}: line {number}"
    if not isinstance(record, dict):
        raise MetricsError(f"{where}: expected a JSON object, got {json.dumps(record)[:80]}")
    if not isinstance(record.get("kind", ""), str):
        raise MetricsError(f"{where}: 'kind' must be a string, got {record['kind']!r}")
    for key in ("step", "examples"):
        value = record.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MetricsError(f"{where}: {key!r} must be an integer >= 0, got {value!r}")
    return record
