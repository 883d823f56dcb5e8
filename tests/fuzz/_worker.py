"""The subprocess that runs rnnflow's file readers on fuzzed files, under an address-space limit.

Protocol (one JSON object per line): stdin ``{"kind": ..., "path": ...}``; stdout
``{"outcome": "ok" | "error" | "bug", "type": ..., "message": ..., "where": ...}``. ``error`` is a
clear rnnflow error: a ``ValueError``/``OSError`` raised by rnnflow's own code (not from inside
torch, numpy or Python's parsers). ``bug`` is anything else: another exception type (KeyError,
TypeError, RecursionError, MemoryError, RuntimeError, ...) or one raised outside rnnflow. A signal
or an exit ends the process: the harness sees EOF and reports the case it sent.

The limit (``RLIMIT_AS``) is set after the imports, to the address space then in use plus
``--limit-mb`` (default 1024): a reader allocating more gets a MemoryError, reported as a bug.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import resource
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import torch

import rnnflow
from rnnflow.data.idx import read_idx
from rnnflow.data.images import load_image
from rnnflow.interop.tf1_checkpoint import TF1Checkpoint
from rnnflow.tasks.image import ImageTask, import_tutorial, load_trained_model
from rnnflow.training import fit, load_checkpoint
from rnnflow.training.logging import read_metrics
from rnnflow.training.plots import plot_curves

RNNFLOW_DIR = str(Path(rnnflow.__file__).resolve().parent)
CLEAN_TYPES = (ValueError, OSError)
RAW_TYPES = (UnicodeError, KeyError, IndexError, MemoryError)  # never a "clear" error


def read_checkpoint(path: Path) -> str:
    model, checkpoint = load_trained_model(path)
    with torch.no_grad():
        logits = model(torch.rand(2, 28, 28))
    note = f"model {tuple(logits.shape)}"
    if checkpoint.optimizer is not None:  # resume it for one step, as `train --resume` does
        resume = load_checkpoint(path)
        data = (torch.rand(8, 28, 28), torch.arange(8) % 10)
        config = resume.config
        with tempfile.TemporaryDirectory() as run_dir:
            _, progress = fit(
                ImageTask(config, data, data),
                run_dir,
                resume=resume,
                stop_at_step=resume.progress["step"] + 1,
            )
        note += f", resumed to step {progress.step}"
    return note


def read_tf1(path: Path) -> str:
    ckpt = TF1Checkpoint(path)
    for name, entry in ckpt.entries.items():
        if entry.readable:
            ckpt.read(name)
    imported = import_tutorial(ckpt)
    return f"imported {imported.config.cell} x{imported.config.num_units}, step {imported.step}"


def read_image(path: Path) -> str:
    for style in ("mnist", "fashion"):
        x = load_image(path, style=style)
    return f"image {tuple(x.shape)}"


def read_metrics_file(path: Path) -> str:
    records = read_metrics(path)
    with tempfile.TemporaryDirectory() as out:
        plot_curves(records, Path(out) / "curves.png")
    return f"{len(records)} records"


READERS = {
    "checkpoint": read_checkpoint,
    "idx": lambda p: f"array {read_idx(p).shape}",
    "tf1": read_tf1,
    "image": read_image,
    "metrics": read_metrics_file,
}


def classify(exc: BaseException) -> dict[str, str]:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    ours = bool(frames) and frames[-1].filename.startswith(RNNFLOW_DIR)
    clean = isinstance(exc, CLEAN_TYPES) and not isinstance(exc, RAW_TYPES) and ours
    message = str(exc)[:600]
    result = {"outcome": "error" if clean else "bug", "type": type(exc).__name__}
    result |= {"message": message, "where": where}
    if not clean:
        result["traceback"] = "".join(traceback.format_exception(exc))[-3000:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit-mb", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    with open("/proc/self/status") as f:
        in_use = int(f.read().split("VmSize:")[1].split()[0]) * 1024
    limit = in_use + args.limit_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = sys.stdout
    print(json.dumps({"ready": True, "limit": limit}), file=out, flush=True)
    for line in sys.stdin:
        case = json.loads(line)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                note = READERS[case["kind"]](Path(case["path"]))
            result = {"outcome": "ok", "message": note}
        except BaseException as exc:  # noqa: BLE001 - classifying every outcome is the point
            if isinstance(exc, KeyboardInterrupt):
                raise
            result = classify(exc)
        print(json.dumps(result), file=out, flush=True)


if __name__ == "__main__":
    main()
