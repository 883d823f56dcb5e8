"""The CLI side of the task registry (``rnnflow.tasks``): each task's glue module, and dispatch of
``evaluate``/``predict``/``export`` on the task a checkpoint records.

A glue module ``rnnflow/cli/_<task>.py`` (one line in :data:`CLI_GLUE` per task) defines:

- ``add_arguments(parser)``: the task's own flags on its ``rnnflow train --task NAME`` parser
  (``rnnflow.cli._config_args.add_config_arguments(parser, ConfigClass, title=...,
  description=...)`` gives one flag per config field, dest ``cfg_<field>``; the common flags
  --task, --preset, --out, --resume, --quiet, --tensorboard, --stop-at-step, --dist-timeout
  are there already; a flag of another task is then refused by argparse, naming that task);
- ``RESUMABLE``: the config fields a ``--resume`` may change (where the data is, threads);
- ``overrides(args) -> dict``: the config fields given on the command line (usually
  ``config_overrides(args)``; raise ``ValueError`` for a bad combination);
- ``describe_start(task, args) -> str``: what the line printed when a new run starts says;
- ``run_files(task) -> dict[str, str]``: extra files written once at the start (``vocab.json``);
- ``report(task, plan, progress, run) -> int``: after a finished run (rank 0 only): evaluate,
  print the result, write ``summary.json`` with ``rnnflow.cli.train.write_summary`` (``run``: a
  :class:`rnnflow.cli.train.FinishedRun`; ``run.summary(progress, best_step)`` gives the fields
  every task's summary has, ``run.metrics`` logs a "test" record);
- optionally ``evaluate(args)``, ``predict(args)``, ``export(args)`` (``-> int``) for those
  commands on this task's runs; without one the command refuses the run, saying why
  (``refusal(command, path)`` may give the hint).

A checkpoint's metadata ``"task"`` says which task wrote it (none: a classifier of an older
version); a run's ``config.json`` does not decide the task, but a folder whose ``config.json``
disagrees with its checkpoint's config on anything but where the data is (files of two runs
mixed, a damaged file) is refused by evaluate, predict, export and ``--resume``
(``rnnflow.training.checkpoint.check_run_config``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

CLI_GLUE: dict[str, str] = {
    "classifier": "rnnflow.cli._image",
    "charlm": "rnnflow.cli._charlm",
    "sequence": "rnnflow.cli._sequence",
    "text-classify": "rnnflow.cli._text_classify",
}


def glue(task: str) -> Any:
    """The glue module of the registered task ``task`` (a name or an alias)."""
    from rnnflow.tasks import task_info

    return importlib.import_module(CLI_GLUE[task_info(task).name])


def checkpoint_task(path: str | Path) -> str:
    """The task recorded in the checkpoint ``path`` names (a file, or a run folder's best or last
    checkpoint): ``"classifier"``, ``"charlm"``, or whatever unknown task a newer rnnflow wrote.
    A path that holds no readable checkpoint counts as a classifier: the command's own loader
    then reports what is wrong with it."""
    from rnnflow.tasks import CLASSIFIER
    from rnnflow.tasks import checkpoint_task as recorded

    path = Path(path)
    if path.is_dir():
        for name in ("best.safetensors", "checkpoint.safetensors"):
            if (path / name).is_file():
                path = path / name
                break
    return recorded(path) or CLASSIFIER


def dispatch(command: str, args: argparse.Namespace) -> int | None:
    """Run ``rnnflow COMMAND`` on ``args.model`` through its task's glue when the checkpoint is
    not an image classifier's (the command's own code handles those): the glue's function's
    status, or 2 after printing why the command refuses that run (1 for a task this rnnflow
    does not know). None for a classifier."""
    from rnnflow.tasks import CLASSIFIER, TASKS, UnknownTaskError

    task = checkpoint_task(args.model)
    if task == CLASSIFIER:
        return None
    try:
        module = glue(task)
    except UnknownTaskError:
        print(
            f"rnnflow {command}: {args.model} holds a checkpoint of task {task!r}, which this "
            f"rnnflow does not know (it knows {', '.join(t.name for t in TASKS)}); a newer rnnflow "
            "wrote "
            "it?",
            file=sys.stderr,
        )
        return 1
    run = getattr(module, command, None)
    if run is not None:
        return int(run(args))
    hint = getattr(module, "refusal", lambda c, p: f"{p} is a {task} run")(command, args.model)
    print(f"rnnflow {command}: {hint}", file=sys.stderr)
    return 2  # a run of the wrong kind for this command: a usage error
