"""Where a `rnnflow train` run lives: a new run folder (``--out``) or one to resume (``--resume``).

Shared by the image classifier and the character model, whose configs and checkpoints differ but
whose rules do not: a folder holding a run is never overwritten, and a resumed run keeps its saved
config except for the flags that say where and how fast it runs, not what it computes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any


class RunRefused(Exception):
    """A reason not to start the run, and the exit status to return."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def plan_run(
    args: argparse.Namespace,
    overrides: dict[str, Any],
    *,
    preset: Any,
    load_checkpoint: Callable[[Path], Any],
    checkpoint_name: str,
    resumable: set[str],
) -> tuple[Any, Any, Path]:
    """``(config, checkpoint to resume from or None, run folder)``, or :class:`RunRefused`.

    ``preset`` is the config a new run starts from (``overrides`` replace its fields); a resumed
    run's config comes from its checkpoint, where only the fields in ``resumable`` may change.
    Nothing is written: the caller creates the folder once its data has loaded.
    """
    from rnnflow.training.checkpoint import CheckpointError

    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise RunRefused("give either --out (new run) or --resume (existing run), not both")
        run_dir = Path(args.resume)
        try:
            resume = load_checkpoint(run_dir / checkpoint_name)
        except (FileNotFoundError, CheckpointError) as exc:
            raise RunRefused(f"cannot resume: {exc}") from exc
        fixed = sorted(set(overrides) - resumable)
        if fixed:
            flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
            allowed = ", ".join("--" + k.replace("_", "-") for k in sorted(resumable))
            raise RunRefused(
                f"--resume continues the saved config; {flags} cannot change (only {allowed} can)"
            )
        try:
            return replace(resume.config, **overrides), resume, run_dir
        except (TypeError, ValueError) as exc:
            raise RunRefused(str(exc)) from exc
    if not args.out:
        raise RunRefused("--out RUN_DIR is required (or --resume RUN_DIR)")
    run_dir = Path(args.out)
    if (run_dir / checkpoint_name).exists() or (run_dir / "config.json").exists():
        raise RunRefused(
            f"{run_dir} already holds a run: continue it with --resume {run_dir}, or choose "
            "another --out"
        )
    try:
        config = replace(preset, **overrides)
    except (TypeError, ValueError) as exc:
        raise RunRefused(str(exc)) from exc
    return config, None, run_dir
