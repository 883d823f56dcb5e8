"""FitConfig: the config fields every task's run shares (optimizer, schedule, EMA, logging, ...).

Torch-free (the CLI builds its flags from configs without importing torch) and below every
package, so that ``rnnflow.training.config`` (the image classifier's ``TrainConfig``) and
``rnnflow.text.config`` (``CharLMConfig``) both derive from it without ``text`` importing
``training``. Each field is declared once, here; a task's config subclasses :class:`FitConfig`,
adds its own fields (data, model) and may redeclare a shared field only to give it another
default (``CharLMConfig``: ``lr = 0.003``). The one ``fit`` engine
(``rnnflow.training.engine``) reads only these fields of a task's config.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

from rnnflow._config_checks import (
    LEARNING_RATE,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    THREADS,
    Range,
    check_field_type,
    check_ranges,
)

__all__ = ["FIT_CONFIG_RANGES", "FitConfig", "config_from_dict", "config_field_type"]


@dataclass(frozen=True)
class FitConfig:
    """The fields the ``fit`` engine reads; a task's config subclasses it. Frozen.

    Units: ``*_examples`` and ``log_every``/``eval_every`` count training examples (a char LM's
    example is one window of text); the learning rate is per optimizer step.
    """

    # optimisation
    optimizer: Literal["adam", "adamw"] = "adam"  # AdamW: decoupled weight decay
    lr: float = 0.001  # peak learning rate
    min_lr: float = 0.0  # cosine floor (<= lr)
    schedule: Literal["constant", "cosine"] = "constant"  # after the warm-up
    warmup_examples: int = 0  # linear warm-up from 0 to lr over this many examples
    weight_decay: float = 0.0  # decoupled (adamw) or L2 (adam)
    grad_clip: float = 0.0  # clip the global gradient norm to this; 0 disables
    ema_decay: float = 0.0  # EMA of the weights (validated, kept as best); 0 disables
    batch_size: int = 128  # the GLOBAL batch (split over torchrun's processes)
    # bookkeeping
    seed: int = 0
    log_every: int = 12_800  # examples between "train" records of metrics.jsonl
    eval_every: int = 100_000  # examples between validations (+ checkpoint); 0: every epoch
    eval_batch_size: int = 1000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0  # torch.set_num_threads; 0: PyTorch's default
    # not a field: the "task" key of config.json (to_json); None: the image classifier
    task_name: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for f in fields(self):
            tp = config_field_type(type(self), f.name)
            check_field_type(owner, f.name, getattr(self, f.name), tp)
        check_ranges(owner, self, {**FIT_CONFIG_RANGES, **self.ranges()})
        if self.min_lr > self.lr:
            raise ValueError(f"{owner}: min_lr must be <= lr ({self.lr}), got {self.min_lr}")
        self.check()

    @classmethod
    def ranges(cls) -> dict[str, Range]:
        """The allowed range of each numeric field the subclass adds (or narrows)."""
        return {}

    def check(self) -> None:
        """The subclass's checks across fields (after the type and range checks); raise
        ``ValueError`` naming the config class, the field and the value."""

    def to_json(self) -> str:
        """``config.json``'s text: ``"task": task_name`` first when the class names its task
        (so that a run that stopped before its first checkpoint is still known by its task; the
        image classifier's config has none), then every field."""
        head = {} if self.task_name is None else {"task": self.task_name}
        return json.dumps({**head, **asdict(self)}, indent=2, ensure_ascii=False)


FIT_CONFIG_RANGES: dict[str, Range] = {
    "lr": LEARNING_RATE,
    "min_lr": NON_NEGATIVE,  # and <= lr
    "warmup_examples": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "grad_clip": Range(low=0, note=" (0 disables clipping)"),
    "ema_decay": Range(low=0, high=1, high_open=True, note=" (0 disables the weight average)"),
    "batch_size": POSITIVE,
    "seed": SEED,
    "log_every": POSITIVE,
    "eval_every": Range(low=0, note=" (0: at the end of every epoch)"),
    "eval_batch_size": POSITIVE,
    "threads": THREADS,
}


def config_field_type(cls: type, name: str) -> Any:
    """The resolved annotation of field ``name`` of the config class ``cls``."""
    return typing.get_type_hints(cls)[name]


def config_from_dict(
    cls: type, data: Any, *, source: str = "config", task: str | None = None
) -> Any:
    """A ``cls`` (a :class:`FitConfig` subclass) from ``asdict`` output (``config.json``).

    Unknown keys are an error; missing keys take the defaults (configs of older versions keep
    loading); JSON's whole numbers become floats and its lists tuples where the field says so.
    A ``"task"`` key, if present, must equal ``task``, and is dropped. Raises ``ValueError``
    (``TypeError`` for a wrong value type) naming ``source``.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    values = dict(data)
    if "task" in values:
        recorded = values.pop("task")
        if recorded != task:
            raise ValueError(f"{source}: task is {recorded!r}, expected {task!r}")
    unknown = sorted(set(values) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} fields {unknown}")
    for f in fields(cls):
        if f.name not in values:
            continue
        tp = config_field_type(cls, f.name)
        if tp is float and isinstance(values[f.name], int) and not isinstance(values[f.name], bool):
            values[f.name] = float(values[f.name])
        if typing.get_origin(tp) is tuple and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)
