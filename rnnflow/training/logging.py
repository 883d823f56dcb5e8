"""Run logs: ``metrics.jsonl`` (one JSON object per log step) and optional TensorBoard events.

TensorBoard is an optional extra (``pip install rnnflow[tensorboard]``), imported only when asked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

__all__ = ["MetricsLogger", "read_metrics"]

logger = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


class MetricsLogger:
    """Appends records to ``RUN_DIR/metrics.jsonl``; mirrors numbers to TensorBoard if enabled.

    Each record has ``kind`` ("train", "val" or "test"), ``step`` and ``examples``. Opening an
    existing log with ``keep_until_step=s`` (a resume from step ``s``) drops the records an
    interrupted session wrote after its last checkpoint (and any earlier final test result), so
    the log reads as one run.
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
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        self._file = self.path.open("a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            self._writer = _summary_writer(Path(run_dir) / "tensorboard")

    def log(self, record: dict[str, Any]) -> None:
        record = {k: _clean(v) for k, v in record.items()}
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
    """All records of a ``metrics.jsonl`` file (a torn last line, from a kill, is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s: skipping an unreadable line", path)
    return records
