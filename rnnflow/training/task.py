"""The Task protocol: what one kind of run (image classifier, char LM, ...) gives ``fit``.

``rnnflow.training.engine.fit(task, run_dir, ...)`` (``from rnnflow.training import fit``) is the
one training engine. It owns the optimizer steps, the learning-rate schedule (warm-up +
constant/cosine), checkpoints and exact resume, RNG streams, DistributedDataParallel under
``torchrun``, the weight average (EMA), the non-finite stop, ``metrics.jsonl``/TensorBoard,
and Ctrl-C. It knows no task: a task object (structurally a :class:`Task`; task modules need
not import this file) owns its data, model, loss, metrics and validation. One module per task
lives in ``rnnflow/tasks/<name>.py`` and is registered in ``rnnflow.tasks`` (the recipe is there).

What ``fit`` does with a task, in order (single process: ``ctx`` is
``rnnflow.training.distributed.SINGLE_PROCESS``, whose ``shard`` returns the batch and whose
``all_sum`` returns its input)::

    torch.manual_seed(config.seed); model = task.build_model()       # new run only
    for epoch, start in ...:                                          # from the checkpoint
        for batch in task.batches(epoch, start):                      # the GLOBAL batch
            out = task.step(net, batch, ctx, generator)               # net: DDP(model) or model
            out.loss.backward(); clip; optimizer.step(); ema
            window += all_sum(out.stats)                              # every log_every examples:
            record = task.summarize(window, seconds)                  #   the "train" record
            v = task.validate(scored_model, ctx)                      # every eval_every examples
            if v is None or v.score > best: write best.safetensors    #   (and at the end)

Contract of each member (a plain class or a frozen dataclass is fine):

- ``name``: the task's registered name; ``fit`` records it as checkpoint metadata ``"task"``
  (the image classifier's is ``"classifier"``; a checkpoint without one is a classifier).
- ``config``: the task's frozen config, a subclass of :class:`rnnflow._fit_config.FitConfig`
  (``fit`` reads its shared fields: optimizer, lr, min_lr, schedule, warmup_examples,
  weight_decay, grad_clip, ema_decay, batch_size, seed, log_every, eval_every, device, ...).
  It is saved as JSON (``asdict``) in every checkpoint.
- ``build_model() -> nn.Module``: a new model, initialised from torch's global RNG only (``fit``
  seeds it before the call; rank 0 and every other rank get the same weights). On the CPU; fit
  moves it. Called on the ``meta`` device too (checking a checkpoint's shapes), so it must not
  read data or touch tensors' values.
- ``epoch_length() -> int``: optimizer steps (batches) in one epoch, >= 1 (raise ``ValueError``
  naming the data and the batch size when the training data gives no batch).
- ``total_steps() -> int``: optimizer steps in the whole run (the cosine schedule spans them).
- ``batches(epoch, start) -> Iterator[batch]``: batches ``start, start + 1, ...`` of ``epoch``
  (0-based), each a GLOBAL batch of up to ``config.batch_size`` examples, in any structure the
  task's ``step`` understands. A pure function of ``(config.seed, epoch)``: a resumed run gets
  the same batches. It may yield fewer than ``epoch_length() - start`` only if the data ends.
- ``step(model, batch, ctx, generator) -> StepOutput``: the forward pass of THIS rank's rows
  (``ctx.shard(tensor)`` takes rows ``rank::world_size``; move them to the model's device),
  in training mode. Random augmentation draws from ``generator`` (a CPU ``torch.Generator``
  that fit seeds with ``seed + 1`` and saves), drawn for the whole global batch BEFORE sharding,
  so every rank draws the same numbers. ``StepOutput.loss`` must be normalised by the GLOBAL
  batch's count times ``ctx.world_size`` (``local_sum / global_count * world_size``), so that
  DDP's mean of the ranks' gradients is the gradient of the global batch's mean loss; when
  every rank holds the same number of items (images: ``batch_size`` divisible by the world
  size), the local mean is the same thing. A rank whose shard is empty (a last batch of fewer
  items than processes) must still call ``model`` (DDP's forward prepares its gradient
  averaging) and return its loss: e.g. run row 0 and multiply the loss (and stats) by 0.
  ``StepOutput.examples``: examples in the global batch (counted into ``examples``, the unit
  of log_every, eval_every and warmup_examples). ``StepOutput.stats``: this rank's SUMS for
  the log window (e.g. ``loss_sum``, ``correct``, ``count``); fit adds them up over steps and
  over ranks (one ``all_sum``), and saves the open window's sums in checkpoints.
- ``summarize(stats, seconds) -> dict[str, float]``: the "train" record's task part from the
  window's summed ``stats`` and its wall ``seconds`` (``loss`` is required: the progress bar
  shows it; ``accuracy``, ``perplexity``, ``tokens_per_s`` ... as the task likes). fit adds
  ``kind``, ``step``, ``examples``, ``epoch``, ``lr``, ``examples_per_s`` and ``elapsed_s``.
- ``validate(model, ctx) -> Validation | None``: score the model (fit passes the weight average
  when ``ema_decay > 0``) on the validation data, in eval mode (restore the mode after). Under
  ``torchrun`` every rank calls it and must return the same result (score ``ctx.shard`` of the
  data and ``ctx.all_sum`` the sums, or score everything on every rank). ``None``: the run has
  no validation data; the latest model is then the best one. ``Validation.score``: higher is
  better (accuracy; minus the loss for a language model); ``best.safetensors`` keeps the model
  of the highest. ``Validation.record``: the "val" record's task part (``loss``, ``accuracy``,
  ...); fit adds ``kind``, ``step``, ``examples``, ``epoch``.
- ``checkpoint_metadata() -> dict[str, str]``: extra string metadata saved in every checkpoint
  (a vocabulary, data checksums, normalisation statistics ...), everything besides the config
  needed to rebuild the model and its inputs (the module-level ``build_model(config, metadata)``
  of the task module does that for ``evaluate``/``predict``/``export``; see ``rnnflow.tasks``).
  Keys must not collide with fit's own (``format``, ``format_version``, ``task``, ``config``,
  ``progress``, ``optimizer``).
- ``check_resume(checkpoint) -> None``: refuse (``ValueError`` naming ``checkpoint.path`` and
  what differs) a checkpoint this task cannot continue, e.g. a vocabulary that no longer
  matches the corpus on disk. Called before any weight is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from rnnflow.training.distributed import DistributedContext

__all__ = ["StepOutput", "Task", "Validation"]


@dataclass(frozen=True)
class StepOutput:
    """What :meth:`Task.step` returns for one global batch.

    ``loss``: scalar tensor to ``backward()`` (this rank's part, normalised as the protocol says);
    ``examples``: examples in the GLOBAL batch; ``stats``: this rank's sums for the log window.
    """

    loss: Tensor
    examples: int
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Validation:
    """What :meth:`Task.validate` returns: ``score`` (higher is better; best.safetensors keeps
    the model of the highest) and ``record`` (the "val" record's task part: loss, accuracy, ...).
    """

    score: float
    record: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """One kind of training run, as the ``fit`` engine sees it (see the module docstring)."""

    name: str
    config: Any  # a FitConfig subclass

    def build_model(self) -> nn.Module: ...

    def epoch_length(self) -> int: ...

    def total_steps(self) -> int: ...

    def batches(self, epoch: int, start: int) -> Iterator[Any]: ...

    def step(
        self,
        model: nn.Module,
        batch: Any,
        ctx: DistributedContext,
        generator: torch.Generator,
    ) -> StepOutput: ...

    def summarize(self, stats: dict[str, float], seconds: float) -> dict[str, float]: ...

    def validate(self, model: nn.Module, ctx: DistributedContext) -> Validation | None: ...

    def checkpoint_metadata(self) -> dict[str, str]: ...

    def check_resume(self, checkpoint: Any) -> None: ...
