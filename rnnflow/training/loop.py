"""The training loop and evaluation: plain functions over a model, an optimizer and tensors.

``fit`` runs (or resumes) a whole training run from a :class:`TrainConfig`; every piece of
randomness lives in RNG states that checkpoints save (torch's global generator for initialisation
and dropout, a dedicated generator for augmentation), the data order is a pure function of
``(seed, epoch)`` and the learning rate a pure function of the step, so a resumed run performs
exactly the operations an uninterrupted one would.
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
import torch.nn.functional as F
from torch import Tensor, nn

from rnnflow.data import BatchIterator
from rnnflow.models import SequenceClassifier
from rnnflow.training.checkpoint import (
    Checkpoint,
    check_weights_fit,
    load_model_state,
    save_checkpoint,
)
from rnnflow.training.config import TrainConfig
from rnnflow.training.distributed import SINGLE_PROCESS, DistributedContext
from rnnflow.training.logging import MetricsLogger, file_errors

__all__ = [
    "EvalResult",
    "NonFiniteError",
    "Progress",
    "augment",
    "build_model",
    "build_optimizer",
    "evaluate",
    "find_checkpoint",
    "fit",
    "learning_rate",
    "load_trained_model",
    "predict_proba",
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
    epoch: int = 0  # current epoch of the training BatchIterator
    batch_in_epoch: int = 0  # batches of ``epoch`` already done
    train_seconds: float = 0.0  # wall time spent training, summed over sessions
    best_val_accuracy: float = -1.0
    best_step: int = -1
    finished: bool = False


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    confusion: Tensor  # int64 [C, C]: rows true class, columns predicted class
    probabilities: Tensor  # float32 [N, C]

    @property
    def per_class_accuracy(self) -> Tensor:
        """float64 [C]: diagonal / row sums (NaN for a class without examples)."""
        totals = self.confusion.sum(dim=1).to(torch.float64)
        return self.confusion.diagonal().to(torch.float64) / totals


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    return torch.device(name)


def build_model(config: TrainConfig, *, num_classes: int | None = None) -> SequenceClassifier:
    """The model a config describes (initialised from torch's global RNG); ``num_classes``
    defaults to ``config.num_classes``, the input size is ``config.image_width``."""
    return SequenceClassifier(
        input_size=config.image_width,
        num_classes=config.num_classes if num_classes is None else num_classes,
        cell=config.cell,
        num_units=config.num_units,
        num_layers=config.num_layers,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
        projection_size=config.projection_size,
        init=config.init,
        forget_bias=config.forget_bias,
    )


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam (as TF's AdamOptimizer, whose epsilon enters slightly differently) or AdamW."""
    params = list(model.parameters())
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based): warm-up, then constant or cosine."""
    warmup = config.warmup_examples // config.batch_size
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    span = max(config.steps - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * progress))


def augment(images: Tensor, config: TrainConfig, generator: torch.Generator) -> Tensor:
    """Random mirror, translation and erasing of a batch [B, 28, 28], drawn from ``generator``
    (CPU). Each is skipped (drawing nothing) when off, so older configs keep their streams."""
    if not config.hflip and config.max_shift == 0 and config.erase_prob == 0:
        return images
    batch, height, width = images.shape
    device = images.device
    if config.hflip:
        flip = torch.rand(batch, generator=generator) < 0.5  # [B]
        images = torch.where(flip.to(device)[:, None, None], images.flip(-1), images)
    s = config.max_shift
    if s:
        offsets = torch.randint(0, 2 * s + 1, (2, batch), generator=generator).to(device)  # [2, B]
        padded = F.pad(images, (s, s, s, s))  # [B, H + 2s, W + 2s], zero fill
        rows = offsets[0][:, None] + torch.arange(height, device=device)  # [B, H]
        cols = offsets[1][:, None] + torch.arange(width, device=device)  # [B, W]
        index = torch.arange(batch, device=device)[:, None, None]
        images = padded[index, rows[:, :, None], cols[:, None, :]]  # [B, H, W]
    if config.erase_prob:
        images = random_erase(images, config.erase_prob, generator)
    return images


# Random erasing's rectangle: area fraction and log aspect ratio ranges (Zhong et al., 2017).
ERASE_AREA = (0.02, 0.4)
ERASE_LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))


def random_erase(images: Tensor, prob: float, generator: torch.Generator) -> Tensor:
    """Random erasing (Zhong et al., 2017) of a batch [B, H, W]: with probability ``prob`` an
    image gets one rectangle of 2-40% of its area, aspect ratio 0.3-3.3, filled with uniform
    noise in [0, 1]. The rectangle is clipped to the image (rather than redrawn until it fits),
    so a few come out smaller than drawn. Draws from ``generator`` (CPU) only."""
    batch, height, width = images.shape
    device = images.device
    erase = torch.rand(batch, generator=generator) < prob  # [B]
    area = height * width * torch.empty(batch).uniform_(*ERASE_AREA, generator=generator)
    ratio = torch.empty(batch).uniform_(*ERASE_LOG_RATIO, generator=generator).exp()
    h = (area * ratio).sqrt().round().clamp(1, height).long()  # [B]
    w = (area / ratio).sqrt().round().clamp(1, width).long()
    top = (torch.rand(batch, generator=generator) * (height - h + 1)).long()
    left = (torch.rand(batch, generator=generator) * (width - w + 1)).long()
    noise = torch.rand(batch, height, width, generator=generator).to(device, images.dtype)
    rows = torch.arange(height)[None, :]  # [1, H]
    cols = torch.arange(width)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # [B, H]
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # [B, W]
    mask = erase[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]  # [B, H, W]
    return torch.where(mask.to(device), noise, images)


@torch.no_grad()
def predict_proba(
    model: nn.Module, images: Tensor, *, batch_size: int = 1000, tta_flip: bool = False
) -> Tensor:
    """Class probabilities float32 [N, C] for images [N, 28, 28], in eval mode.

    ``tta_flip`` averages the probabilities of each image and its left-right mirror.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for lo in range(0, len(images), batch_size):
            x = images[lo : lo + batch_size].to(device)  # [b, 28, 28]
            p = model(x).softmax(-1)
            if tta_flip:
                p = 0.5 * (p + model(x.flip(-1)).softmax(-1))
            out.append(p.float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.zeros(0, getattr(model, "num_classes", 10))
    return torch.cat(out)  # [N, C]


def evaluate(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    batch_size: int = 1000,
    tta_flip: bool = False,
    num_classes: int = 10,
) -> EvalResult:
    """Mean cross-entropy, accuracy and confusion matrix of ``model`` on a labelled set."""
    probs = predict_proba(model, images, batch_size=batch_size, tta_flip=tta_flip)  # [N, C]
    labels = labels.cpu()
    n = len(labels)
    if n == 0:
        empty = torch.zeros(num_classes, num_classes, dtype=torch.long)
        return EvalResult(float("nan"), float("nan"), empty, probs)
    loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels).item()
    pred = probs.argmax(-1)
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2)
    return EvalResult(
        loss=loss,
        accuracy=(pred == labels).double().mean().item(),
        confusion=confusion.view(num_classes, num_classes),
        probabilities=probs,
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


def rng_states(augment_generator: torch.Generator) -> dict[str, Tensor]:
    states = {"torch": torch.get_rng_state(), "augment": augment_generator.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{i}"] = s
    return states


def set_rng_states(states: dict[str, Tensor], augment_generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
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


def _evaluate_sharded(
    ctx: DistributedContext, model: nn.Module, images: Tensor, labels: Tensor, **kwargs: Any
) -> tuple[float, float]:
    """(loss, accuracy) on a labelled set, each rank scoring its ``rank::world_size`` rows."""
    local = evaluate(model, ctx.shard(images), ctx.shard(labels), **kwargs)
    if not ctx.parallel:
        return local.loss, local.accuracy
    n_local = int(local.confusion.sum())
    loss_sum = local.loss * n_local if n_local else 0.0
    totals = ctx.all_sum(
        torch.cat([local.confusion.flatten().to(torch.float64), torch.tensor([loss_sum])])
    )
    confusion = totals[:-1].round().to(torch.long).view_as(local.confusion)
    n = int(confusion.sum())
    return totals[-1].item() / n, int(confusion.diagonal().sum()) / n


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


def fit(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    train_data: tuple[Tensor, Tensor],
    val_data: tuple[Tensor, Tensor],
    num_classes: int = 10,
    resume: Checkpoint | None = None,
    metrics: MetricsLogger | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    stop_at_step: int | None = None,
    distributed: DistributedContext | None = None,
) -> tuple[SequenceClassifier, Progress]:
    """Train (or continue) the run in ``run_dir``; returns the final model and progress.

    Writes ``checkpoint.safetensors`` (everything needed to continue exactly) at every validation,
    at the end, and when stopped; ``best.safetensors`` (weights, config) when validation accuracy
    improves. With ``config.ema_decay > 0`` an exponential moving average of the weights is
    updated after every optimizer step (:func:`update_ema`, starting from the initial weights);
    validation scores the average, ``best.safetensors`` holds the average, and the checkpoint
    stores it (``ema.*`` tensors) for an exact resume; the returned model is still the raw one.
    ``should_stop()`` is polled after each optimizer step (the CLI's Ctrl-C flag);
    ``stop_at_step`` stops after that many steps (as an interruption would). Either way the run
    stops at a step boundary with a checkpoint, and ``progress.finished`` stays False.
    ``on_step(progress, info)`` is called after every step (for progress bars).

    ``distributed`` (from :func:`~rnnflow.training.distributed.init_distributed`, one call per
    process of a ``torchrun`` job) trains data-parallel: each rank computes the gradient of its
    shard of every global batch, DistributedDataParallel averages them, only rank 0 writes
    files; see :mod:`rnnflow.training.distributed` for why this equals the single-process run.
    Every rank must pass the same config, data and ``resume``; ``metrics`` and ``on_step``
    belong to rank 0.
    """
    ctx = distributed or SINGLE_PROCESS
    if config.batch_size % ctx.world_size:
        raise ValueError(
            f"fit: batch_size ({config.batch_size}) must be divisible by the number of "
            f"processes ({ctx.world_size}): each process trains on batch_size / processes "
            "examples of every global batch"
        )
    run_dir = Path(run_dir)
    device = ctx.device(config.device)
    augment_gen = torch.Generator()
    if resume is None:
        torch.manual_seed(config.seed)
        augment_gen.manual_seed(config.seed + 1)
        progress = Progress()
    else:
        progress = Progress(**resume.progress)
        check_weights_fit(resume, lambda: build_model(config, num_classes=num_classes))
    model = build_model(config, num_classes=num_classes)
    if resume is not None:
        load_model_state(model, resume)
    elif ctx.rank > 0:  # same initial weights as rank 0, own dropout stream from here on
        _seed_rank(ctx, config.seed, 0, device)
    model.to(device)
    ema: SequenceClassifier | None = None
    if config.ema_decay > 0:
        ema = copy.deepcopy(model).requires_grad_(False)
        if resume is not None:
            if not resume.ema:
                raise ValueError(
                    f"{resume.path}: holds no weight average (ema.* tensors) but its config has "
                    f"ema_decay={config.ema_decay}; cannot resume from it"
                )
            try:
                ema.load_state_dict(resume.ema, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"{resume.path}: the weight average does not fit: {exc}") from exc
    scored = model if ema is None else ema  # what validation scores and best.safetensors holds
    optimizer = build_optimizer(config, model)
    if resume is not None:
        if resume.optimizer is None:
            raise ValueError(f"{resume.path}: holds no optimizer state; cannot resume from it")
        optimizer.load_state_dict(resume.optimizer)
        set_rng_states(resume.rng, augment_gen)
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

    train_x, train_y = (t.to(device) for t in train_data)
    loader = BatchIterator(
        train_x, train_y, config.batch_size, shuffle=True, seed=config.seed, drop_last=True
    )
    if len(loader) == 0:
        raise ValueError(
            f"fit: the training set ({len(train_x)} examples) is smaller than one batch "
            f"({config.batch_size})"
        )
    params = [p for p in model.parameters()]
    saved_step = resume.progress["step"] if resume is not None else None

    def save(path: Path, *, full: bool) -> None:
        """Rank 0 writes; a full save is a collective (it gathers every rank's RNG state)."""
        nonlocal saved_step
        if full:
            saved_step = progress.step
        rng = None
        if full:
            rng = rng_states(augment_gen)
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
                progress=asdict(progress),
                optimizer=optimizer if full else None,
                rng=rng,
                ema=ema if full else None,
            )

    def validate() -> None:
        if len(val_data[0]) == 0:  # no validation set: the latest model is the best one
            progress.best_step = progress.step
            save(run_dir / BEST_NAME, full=False)
            return
        loss, accuracy = _evaluate_sharded(
            ctx,
            scored,
            *val_data,
            batch_size=config.eval_batch_size,
            tta_flip=config.tta_flip,
            num_classes=num_classes,
        )
        record = {"kind": "val", "step": progress.step, "examples": progress.examples}
        record |= {"loss": loss, "accuracy": accuracy}
        if metrics is not None:
            metrics.log(record)
        logger.info("step %d: validation accuracy %.4f", progress.step, accuracy)
        if accuracy > progress.best_val_accuracy:
            progress.best_val_accuracy = accuracy
            progress.best_step = progress.step
            save(run_dir / BEST_NAME, full=False)
        if on_step is not None:
            on_step(progress, record)

    model.train()
    total = config.steps
    window_loss, window_correct, window_n = 0.0, 0, 0
    window_start = time.perf_counter()
    window_examples = 0
    session_start = time.perf_counter()
    session_seconds_before = progress.train_seconds
    stopped = False
    try:
        while progress.step < total and not stopped:
            for x, y in loader.iter_from(progress.epoch, progress.batch_in_epoch):
                lr = learning_rate(config, progress.step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch_examples = len(y)  # the global batch, whichever rank(s) compute it
                x = ctx.shard(augment(x, config, augment_gen))  # [B / world_size, 28, 28]
                y = ctx.shard(y)
                logits = net(x)  # [B / world_size, C]
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                loss_value = loss.item()
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
                progress.examples += batch_examples
                progress.batch_in_epoch += 1
                session_seconds = time.perf_counter() - session_start
                progress.train_seconds = session_seconds_before + session_seconds
                window_loss += loss_value * len(y)
                window_correct += int((logits.argmax(-1) == y).sum())
                window_n += len(y)
                window_examples += batch_examples
                info: dict[str, Any] = {"kind": "step", "loss": loss_value, "lr": lr}
                done = progress.step >= total
                if before // config.log_every != progress.examples // config.log_every or done:
                    now = time.perf_counter()
                    totals = ctx.all_sum(
                        torch.tensor([window_loss, window_correct, window_n], dtype=torch.float64)
                    )
                    record = {
                        "kind": "train",
                        "step": progress.step,
                        "examples": progress.examples,
                        "epoch": progress.epoch,
                        "loss": totals[0].item() / totals[2].item(),
                        "accuracy": totals[1].item() / totals[2].item(),
                        "lr": lr,
                        "examples_per_s": window_examples / max(now - window_start, 1e-9),
                        "elapsed_s": progress.train_seconds,
                    }
                    if metrics is not None:
                        metrics.log(record)
                    info = record
                    window_loss, window_correct, window_n = 0.0, 0, 0
                    window_start, window_examples = now, 0
                if on_step is not None:
                    on_step(progress, info)
                validate_now = before // config.eval_every != progress.examples // config.eval_every
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
            else:  # the epoch is complete (a checkpoint may hold batch_in_epoch == len(loader))
                progress.epoch += 1
                progress.batch_in_epoch = 0
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


def load_trained_model(
    path: str | Path, *, device: str = "cpu"
) -> tuple[SequenceClassifier, Checkpoint]:
    """The model in a checkpoint (or a run folder's best checkpoint), in eval mode."""
    from rnnflow.training.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(find_checkpoint(path))
    check_weights_fit(checkpoint, lambda: build_model(checkpoint.config))
    model = build_model(checkpoint.config)
    load_model_state(model, checkpoint)
    model.to(resolve_device(device)).eval()
    return model, checkpoint
