"""``fit``, the one training engine, for every task (``rnnflow.training.task.Task``).

``fit(task, run_dir)`` runs (or resumes) a whole run. Every piece of randomness lives in RNG
states that checkpoints save (torch's global generator for initialisation and dropout, a
dedicated CPU generator for augmentation), a task's batches are a pure function of
``(seed, epoch)`` and the learning rate a pure function of the step, so a resumed run performs
exactly the operations an uninterrupted one would: after a kill (from the last periodic
checkpoint) or a Ctrl-C (``should_stop``), the weights, optimizer state and metrics of the
resumed run equal the uninterrupted run's bit for bit.

Files in ``run_dir`` (rank 0 writes them)::

    checkpoint.safetensors   model + optimizer + RNG + EMA + progress (+ the task's metadata):
                             written at every validation, at the end and when stopped
    best.safetensors         the weights of the best validation score (the EMA with ema_decay)

``metrics`` (a :class:`~rnnflow.training.logging.MetricsLogger`) receives "train" records every
``log_every`` examples and "val" records at every validation.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnflow._words import count
from rnnflow.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_progress_bounds,
    check_weights_fit,
    load_model_state,
    save_checkpoint,
)
from rnnflow.training.distributed import SINGLE_PROCESS, DistributedContext
from rnnflow.training.logging import MetricsLogger, file_errors
from rnnflow.training.task import Task

__all__ = [
    "BEST_NAME",
    "CHECKPOINT_NAME",
    "NonFiniteError",
    "Progress",
    "StepCallback",
    "build_optimizer",
    "check_step",
    "check_warmup",
    "find_checkpoint",
    "fit",
    "learning_rate",
    "resolve_device",
    "update_ema",
]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.safetensors"
BEST_NAME = "best.safetensors"


@dataclass
class Progress:
    """Where a run is; saved in every checkpoint's metadata."""

    step: int = 0  # optimizer steps done
    examples: int = 0  # training examples seen
    epoch: int = 0  # current epoch of the task's batches
    batch_in_epoch: int = 0  # batches of ``epoch`` already done
    train_seconds: float = 0.0  # wall time spent training, summed over sessions
    best_score: float | None = None  # best Validation.score so far (None: none yet)
    best_step: int = -1
    finished: bool = False
    # the open "train" record window (so that a resumed run logs the same records): the task's
    # stats summed over the window's steps and over the ranks, and its examples
    window_sums: dict[str, float] | None = None
    window_examples: int = 0


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu`` or ``cuda`` (``ValueError`` without one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    return torch.device(name)


def build_optimizer(config: Any, model: nn.Module) -> torch.optim.Optimizer:
    """Adam (as TF's AdamOptimizer, whose epsilon enters slightly differently; weight decay as
    L2) or AdamW (decoupled weight decay), over ``model``'s parameters in order."""
    params = list(model.parameters())
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def learning_rate(config: Any, step: int, total_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of a ``total_steps`` run:
    linear warm-up over ``warmup_examples // batch_size`` steps, then constant, or a cosine
    from ``lr`` to ``min_lr`` over the remaining steps (Loshchilov & Hutter, 2017)."""
    warmup = config.warmup_examples // config.batch_size
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    span = max(total_steps - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * progress))


def check_warmup(config: Any, total_steps: int) -> None:
    """Refuse (``ValueError`` naming both numbers) a warm-up longer than the run: its
    ``warmup_examples // batch_size`` steps past ``total_steps``, the learning rate would end
    the run still rising, below ``lr``, and no schedule after the warm-up would ever run."""
    warmup_steps = config.warmup_examples // config.batch_size
    if warmup_steps > total_steps:
        raise ValueError(
            f"fit: warmup_examples ({config.warmup_examples}: {count(warmup_steps, 'step')} of "
            f"batch_size "
            f"{config.batch_size}) is longer than the whole run "
            f"({count(total_steps, 'step')}): the "
            f"learning rate would never reach lr ({config.lr}); give warmup_examples "
            f"(--warmup-examples) <= {total_steps * config.batch_size} (0: no warm-up) or train "
            "for more steps"
        )


@torch.no_grad()
def update_ema(average: nn.Module, model: nn.Module, *, decay: float) -> None:
    """One step of the exponential moving average of the weights (Polyak averaging), in place.

        a <- decay * a + (1 - decay) * p     # every parameter p of ``model``, a of ``average``
        b_a <- b                             # buffers (if any) are copied, not averaged

    ``average`` is a copy of ``model`` (same architecture, same parameter order).
    """
    for a, p in zip(average.parameters(), model.parameters(), strict=True):
        a.mul_(decay).add_(p, alpha=1.0 - decay)
    for a, b in zip(average.buffers(), model.buffers(), strict=True):
        a.copy_(b)


def _rng_states(augment_generator: torch.Generator) -> dict[str, Tensor]:
    states = {"torch": torch.get_rng_state(), "augment": augment_generator.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{i}"] = s
    return states


def _set_rng_states(states: dict[str, Tensor], augment_generator: torch.Generator) -> None:
    """Restore saved RNG states (a char-LM checkpoint of older versions has no "augment"; its
    task draws nothing from that generator)."""
    torch.set_rng_state(states["torch"])
    if "augment" in states:
        augment_generator.set_state(states["augment"])
    cuda = [states[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in states]
    if cuda and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _own_rng_state(device: torch.device) -> dict[str, Tensor]:
    """This rank's dropout RNG: torch's CPU generator and, on CUDA, its own device's."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _saved_world_size(states: dict[str, Tensor]) -> int:
    """How many processes wrote a checkpoint's RNG states (ranks >= 1 save ``rank<r>.torch``)."""
    world = 1
    while f"rank{world}.torch" in states:
        world += 1
    return world


def _seed_rank(ctx: DistributedContext, seed: int, step: int, device: torch.device) -> None:
    """A fresh dropout stream for a rank >= 1 (rank 0 keeps the single-process stream)."""
    rank_seed = (seed * 1_000_003 + ctx.rank * 7_919 + step) % 2**63
    torch.manual_seed(rank_seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(rank_seed)


class NonFiniteError(ValueError):
    """Training produced a non-finite loss or non-finite weights and stopped (as Keras's
    ``TerminateOnNaN``) before saving anything from that step: the run folder keeps its last
    good checkpoint."""


def non_finite(loss: float, params: Sequence[Tensor]) -> str | None:
    """Why an optimizer step cannot be kept (a NaN/inf ``loss``, or a NaN/inf weight in
    ``params`` after the step, e.g. from a corrupt optimizer state), else None. One device sync.
    """
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
        return "a weight is not finite after the optimizer step"
    return None


def check_step(
    loss: float,
    params: Sequence[Tensor],
    *,
    step: int,
    lr: float,
    checkpoint: Path,
    saved_step: int | None,
    ctx: DistributedContext = SINGLE_PROCESS,
) -> None:
    """Raise :class:`NonFiniteError` if optimizer step ``step`` cannot be kept
    (:func:`non_finite`) on any rank of ``ctx``; ``saved_step`` is the step of the last full
    checkpoint written to ``checkpoint`` (None: none yet). One collective under torchrun, so
    that every rank stops at the same step."""
    reason = non_finite(loss, params)
    if not ctx.any_true(reason is not None):
        return
    kept = (
        f"the last good checkpoint ({checkpoint}, step {saved_step}) is kept"
        if saved_step is not None
        else "no checkpoint had been written yet"
    )
    raise NonFiniteError(
        f"fit: {reason or 'the loss or a weight of another process is not finite'} at optimizer "
        f"step {step} (learning rate {lr:g}); training stopped and {kept}. Try a lower --lr, "
        "or --grad-clip"
    )


StepCallback = Callable[[Progress, dict[str, Any]], None]


def _check_resume(task: Task, resume: Checkpoint, total: int) -> Progress:
    """The progress to continue from, after refusing a checkpoint this task cannot continue."""
    if resume.task != task.name:
        raise CheckpointError(
            f"{resume.path}: a {resume.task!r} checkpoint; this run is a {task.name!r} one"
        )
    task.check_resume(resume)
    check_progress_bounds(
        resume.path, resume.progress, batch_size=task.config.batch_size, total_steps=total
    )
    check_weights_fit(resume, task.build_model)
    if resume.optimizer is None:
        raise ValueError(f"{resume.path}: holds no optimizer state; cannot resume from it")
    if task.config.ema_decay > 0 and not resume.ema:
        raise ValueError(
            f"{resume.path}: holds no weight average (ema.* tensors) but its config has "
            f"ema_decay={task.config.ema_decay}; cannot resume from it"
        )
    return Progress(**resume.progress)


def fit(
    task: Task,
    run_dir: str | Path,
    *,
    resume: Checkpoint | None = None,
    metrics: MetricsLogger | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    stop_at_step: int | None = None,
    distributed: DistributedContext | None = None,
) -> tuple[nn.Module, Progress]:
    """Train (or continue) ``task``'s run in ``run_dir``; returns the final model and progress.

    Writes ``checkpoint.safetensors`` (everything needed to continue exactly) at every
    validation (every ``eval_every`` examples; 0: at the end of every epoch), at the end, and
    when stopped; ``best.safetensors`` (weights, config, the task's metadata) when the
    validation score improves (every validation when the task has no validation data).
    With ``config.ema_decay > 0`` an exponential moving average of the weights is updated after
    every optimizer step (:func:`update_ema`, starting from the initial weights); validation
    scores the average, ``best.safetensors`` holds it, and the checkpoint stores it (``ema.*``)
    for an exact resume; the returned model is still the raw one.

    ``resume``: a checkpoint of this task's run (``rnnflow.tasks.load_checkpoint``).
    ``should_stop()`` is polled after each optimizer step (the CLI's Ctrl-C flag);
    ``stop_at_step`` stops once ``progress.step`` (the run's absolute step, not the steps of
    this session) reaches it, as an interruption would. Either way the run stops at a step
    boundary with a checkpoint, and ``progress.finished`` stays False.
    ``on_step(progress, info)`` is called after every step (``info``: the "train" record when
    one was logged, else ``{"kind": "step", "loss", "lr"}``) and after every validation (the
    "val" record).

    ``distributed`` (from :func:`~rnnflow.training.distributed.init_distributed`, one call per
    process of a ``torchrun`` job) trains data-parallel: each rank computes the gradient of its
    shard of every global batch (the task's ``step``), DistributedDataParallel averages them,
    only rank 0 writes files; see :mod:`rnnflow.training.distributed` for why this equals the
    single-process run. Every rank must pass the same task and ``resume``; ``metrics`` and
    ``on_step`` belong to rank 0.

    Raises ``ValueError`` (``batch_size`` not divisible by the processes, a warm-up longer than
    the run, a checkpoint of another task or that does not fit), :class:`NonFiniteError`, and
    :class:`~rnnflow.training.distributed.DistributedError` when a peer is lost.
    """
    ctx = distributed or SINGLE_PROCESS
    config = task.config
    if config.batch_size % ctx.world_size:
        raise ValueError(
            f"fit: batch_size ({config.batch_size}) must be divisible by the number of "
            f"processes ({ctx.world_size}): each process trains on batch_size / processes "
            "examples of every global batch"
        )
    run_dir = Path(run_dir)
    device = ctx.device(config.device)
    epoch_length = task.epoch_length()
    total = task.total_steps()
    if resume is None:  # a run that started keeps its schedule: resuming it is never refused
        check_warmup(config, total)
    augment_gen = torch.Generator()
    if resume is None:
        torch.manual_seed(config.seed)
        augment_gen.manual_seed(config.seed + 1)
        progress = Progress()
    else:
        progress = _check_resume(task, resume, total)
    if progress.batch_in_epoch >= epoch_length:  # saved at an epoch's end (older versions)
        progress.epoch += 1
        progress.batch_in_epoch = 0
    model = task.build_model()
    if resume is not None:
        load_model_state(model, resume)
    elif ctx.rank > 0:  # same initial weights as rank 0, own dropout stream from here on
        _seed_rank(ctx, config.seed, 0, device)
    model.to(device)
    ema: nn.Module | None = None
    if config.ema_decay > 0:
        ema = copy.deepcopy(model).requires_grad_(False)
        if resume is not None:
            try:
                ema.load_state_dict(resume.ema, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"{resume.path}: the weight average does not fit: {exc}") from exc
    scored = model if ema is None else ema  # what validation scores and best.safetensors holds
    optimizer = build_optimizer(config, model)
    if resume is not None:
        assert resume.optimizer is not None  # _check_resume refused it otherwise
        optimizer.load_state_dict(resume.optimizer)
        _set_rng_states(resume.rng, augment_gen)
        if ctx.rank > 0:
            if _saved_world_size(resume.rng) == ctx.world_size:
                torch.set_rng_state(resume.rng[f"rank{ctx.rank}.torch"])
                if device.type == "cuda" and f"rank{ctx.rank}.cuda" in resume.rng:
                    torch.cuda.set_rng_state(resume.rng[f"rank{ctx.rank}.cuda"], device)
            else:  # another world size: only the per-rank dropout streams cannot continue
                _seed_rank(ctx, config.seed, progress.step, device)
    net: nn.Module = model
    if ctx.parallel:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    params = list(model.parameters())
    saved_step = resume.progress["step"] if resume is not None else None
    metadata = task.checkpoint_metadata()

    def save(path: Path, *, full: bool) -> None:
        """Rank 0 writes; a full save is a collective (it gathers every rank's RNG state and
        sums the open window's stats)."""
        nonlocal saved_step
        rng = None
        saved = asdict(progress)  # the open window only in full checkpoints (resume needs it)
        saved["window_sums"], saved["window_examples"] = None, 0
        if full:
            saved_step = progress.step
            keys = sorted(window)
            sums = ctx.all_sum(torch.tensor([window[k] for k in keys], dtype=torch.float64))
            saved["window_sums"] = dict(zip(keys, sums.tolist()))
            saved["window_examples"] = window_examples
            rng = _rng_states(augment_gen)
            for rank, state in enumerate(ctx.gather(_own_rng_state(device))):
                if rank > 0:
                    rng |= {f"rank{rank}.{name}": tensor for name, tensor in state.items()}
        if not ctx.is_main:
            return
        with file_errors(path):
            save_checkpoint(
                path,
                model=model if full else scored,
                config=config,
                progress=saved,
                optimizer=optimizer if full else None,
                rng=rng,
                ema=ema if full else None,
                task=task.name,
                metadata=metadata,
            )

    def validate() -> None:
        result = task.validate(scored, ctx)
        if result is None:  # no validation data: the latest model is the best one
            progress.best_step = progress.step
            save(run_dir / BEST_NAME, full=False)
            return
        record = {
            "kind": "val",
            "step": progress.step,
            "examples": progress.examples,
            "epoch": progress.epoch,
            **result.record,
        }
        if metrics is not None:
            metrics.log(record)
        logger.info("step %d: validation score %.4f", progress.step, result.score)
        if progress.best_score is None or result.score > progress.best_score:
            progress.best_score = result.score
            progress.best_step = progress.step
            save(run_dir / BEST_NAME, full=False)
        if on_step is not None:
            on_step(progress, record)

    def crossed(before: int, every: int) -> bool:
        return before // every != progress.examples // every

    model.train()
    # the open log window: rank 0 continues the saved sums (over all ranks), the others add theirs
    saved_sums = progress.window_sums or {}
    window = {k: v if ctx.is_main else 0.0 for k, v in saved_sums.items()}
    window_examples = progress.window_examples
    window_start = time.perf_counter()
    session_start = time.perf_counter()
    seconds_before = progress.train_seconds
    try:
        while progress.step < total:
            stopped, stepped = False, False
            for batch in task.batches(progress.epoch, progress.batch_in_epoch):
                stepped = True
                lr = learning_rate(config, progress.step, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                out = task.step(net, batch, ctx, augment_gen)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                loss_value = out.loss.item()
                check_step(
                    loss_value,
                    params,
                    step=progress.step + 1,
                    lr=lr,
                    checkpoint=run_dir / CHECKPOINT_NAME,
                    saved_step=saved_step,
                    ctx=ctx,
                )
                if ema is not None:
                    update_ema(ema, model, decay=config.ema_decay)

                before = progress.examples
                progress.step += 1
                progress.examples += out.examples
                progress.batch_in_epoch += 1
                progress.train_seconds = seconds_before + time.perf_counter() - session_start
                for key, value in out.stats.items():
                    window[key] = window.get(key, 0.0) + value
                window_examples += out.examples
                done = progress.step >= total
                info: dict[str, Any] = {"kind": "step", "loss": loss_value, "lr": lr}
                if crossed(before, config.log_every) or done:
                    now = time.perf_counter()
                    keys = sorted(window)
                    sums = ctx.all_sum(torch.tensor([window[k] for k in keys], dtype=torch.float64))
                    seconds = max(now - window_start, 1e-9)
                    info = {
                        "kind": "train",
                        "step": progress.step,
                        "examples": progress.examples,
                        "epoch": progress.epoch,
                        **task.summarize(dict(zip(keys, sums.tolist())), seconds),
                        "lr": lr,
                        "examples_per_s": window_examples / seconds,
                        "elapsed_s": progress.train_seconds,
                    }
                    if metrics is not None:
                        metrics.log(info)
                    window, window_start, window_examples = {}, now, 0
                if on_step is not None:
                    on_step(progress, info)
                end_of_epoch = progress.batch_in_epoch >= epoch_length
                if end_of_epoch:
                    progress.epoch += 1
                    progress.batch_in_epoch = 0
                every = config.eval_every
                validate_now = crossed(before, every) if every else end_of_epoch
                if done:
                    progress.finished = True
                if validate_now or done:
                    validate()
                    model.train()
                    save(run_dir / CHECKPOINT_NAME, full=True)
                if done:
                    break
                interrupted = ctx.any_true(should_stop is not None and should_stop())
                if interrupted or (stop_at_step is not None and progress.step >= stop_at_step):
                    save(run_dir / CHECKPOINT_NAME, full=True)
                    logger.info("stopped at step %d; checkpoint saved", progress.step)
                    stopped = True
                    break
                if end_of_epoch:
                    break  # the next epoch's batches
            else:  # the data ended before epoch_length batches: the next epoch
                if not stepped:
                    raise ValueError(
                        f"fit: task {task.name!r} gave no batch for epoch {progress.epoch} from "
                        f"batch {progress.batch_in_epoch} (its epoch_length() is {epoch_length})"
                    )
                progress.epoch += 1
                progress.batch_in_epoch = 0
            if stopped:
                break
    except RuntimeError as exc:
        lost = ctx.lost_peer(exc)  # DDP's averaging inside backward() failed: a peer is gone
        if lost is None:
            raise
        raise lost from exc
    return model, progress


def find_checkpoint(path: str | Path, *, written_by: str = "`rnnflow train`") -> Path:
    """A checkpoint file, or a run folder's ``best.safetensors`` (else its last checkpoint).

    ``written_by`` names the command whose run folders these are, for the error message.
    """
    path = Path(path)
    if path.is_dir():
        for name in (BEST_NAME, CHECKPOINT_NAME):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(
            f"{path}: a folder without {BEST_NAME} or {CHECKPOINT_NAME}: not a run folder "
            f"written by {written_by}"
        )
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run folder or checkpoint file")
    return path
