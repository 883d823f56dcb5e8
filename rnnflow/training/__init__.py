"""Training: the config and presets, the loop, data parallelism, checkpoints, logs and plots.

The names are imported on first use (PEP 562), so that the CLI's argument parsers, which read
only the config, do not import torch (``rnnflow train --help`` stays fast).

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
    from rnnflow.training.logging import MetricsLogger, read_metrics
    from rnnflow.training.loop import (
        EvalResult,
        Progress,
        build_model,
        build_optimizer,
        evaluate,
        find_checkpoint,
        fit,
        learning_rate,
        load_trained_model,
        predict_proba,
    )

__all__ = [
    "PRESETS",
    "Checkpoint",
    "CheckpointError",
    "DistributedContext",
    "DistributedError",
    "EvalResult",
    "MetricsLogger",
    "Progress",
    "TrainConfig",
    "build_model",
    "build_optimizer",
    "config_from_dict",
    "evaluate",
    "find_checkpoint",
    "fit",
    "init_distributed",
    "learning_rate",
    "load_trained_model",
    "load_checkpoint",
    "load_model_state",
    "predict_proba",
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
    "MetricsLogger": "rnnflow.training.logging",
    "read_metrics": "rnnflow.training.logging",
    "EvalResult": "rnnflow.training.loop",
    "Progress": "rnnflow.training.loop",
    "build_model": "rnnflow.training.loop",
    "build_optimizer": "rnnflow.training.loop",
    "evaluate": "rnnflow.training.loop",
    "find_checkpoint": "rnnflow.training.loop",
    "fit": "rnnflow.training.loop",
    "learning_rate": "rnnflow.training.loop",
    "load_trained_model": "rnnflow.training.loop",
    "predict_proba": "rnnflow.training.loop",
}

__getattr__, __dir__ = _lazy_names(__name__, _HOME, __all__)
