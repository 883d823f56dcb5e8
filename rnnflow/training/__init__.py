"""Training: the config and presets, the loop, data parallelism, checkpoints, logs and plots.

Import by path (``from rnnflow.training import fit``); ``rnnflow`` itself does not re-export these.
"""

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
