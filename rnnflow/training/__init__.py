"""Training: the one ``fit`` engine, the Task protocol, data parallelism, checkpoints, logs, plots.

The engine knows no task: the image classifier and the character LM are tasks in
``rnnflow.tasks`` (``rnnflow.tasks.image``: its model, evaluation and probabilities). The
names are imported on first use (PEP 562), so that the CLI's argument parsers, which read only
the configs, do not import torch (``rnnflow train --help`` stays fast).

Import by path (``from rnnflow.training import fit``); ``rnnflow`` itself does not re-export these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnnflow._lazy_names import lazy_names as _lazy_names

if TYPE_CHECKING:
    from rnnflow.training.checkpoint import (
        Checkpoint,
        CheckpointError,
        load_checkpoint,
        load_model_state,
        save_checkpoint,
    )
    from rnnflow.training.config import PRESETS, TrainConfig, config_from_dict
    from rnnflow.training.distributed import DistributedContext, DistributedError, init_distributed
    from rnnflow.training.engine import (
        NonFiniteError,
        Progress,
        build_optimizer,
        find_checkpoint,
        fit,
        learning_rate,
    )
    from rnnflow.training.logging import MetricsLogger, read_metrics
    from rnnflow.training.task import StepOutput, Task, Validation

__all__ = [
    "PRESETS",
    "Checkpoint",
    "CheckpointError",
    "DistributedContext",
    "DistributedError",
    "MetricsLogger",
    "NonFiniteError",
    "Progress",
    "StepOutput",
    "Task",
    "TrainConfig",
    "Validation",
    "build_optimizer",
    "config_from_dict",
    "find_checkpoint",
    "fit",
    "init_distributed",
    "learning_rate",
    "load_checkpoint",
    "load_model_state",
    "read_metrics",
    "save_checkpoint",
]

_HOME = {
    "Checkpoint": "rnnflow.training.checkpoint",
    "CheckpointError": "rnnflow.training.checkpoint",
    "load_checkpoint": "rnnflow.training.checkpoint",
    "load_model_state": "rnnflow.training.checkpoint",
    "save_checkpoint": "rnnflow.training.checkpoint",
    "PRESETS": "rnnflow.training.config",
    "TrainConfig": "rnnflow.training.config",
    "config_from_dict": "rnnflow.training.config",
    "DistributedContext": "rnnflow.training.distributed",
    "DistributedError": "rnnflow.training.distributed",
    "init_distributed": "rnnflow.training.distributed",
    "NonFiniteError": "rnnflow.training.engine",
    "Progress": "rnnflow.training.engine",
    "build_optimizer": "rnnflow.training.engine",
    "find_checkpoint": "rnnflow.training.engine",
    "fit": "rnnflow.training.engine",
    "learning_rate": "rnnflow.training.engine",
    "MetricsLogger": "rnnflow.training.logging",
    "read_metrics": "rnnflow.training.logging",
    "StepOutput": "rnnflow.training.task",
    "Task": "rnnflow.training.task",
    "Validation": "rnnflow.training.task",
}

__getattr__, __dir__ = _lazy_names(__name__, _HOME, __all__)
