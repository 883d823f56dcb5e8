"""Training a CharLM: the data, the loop, checkpoints (``CharLMConfig``: ``rnnflow.text.config``).

A run folder follows the classifier's conventions (``rnnflow.training``)::

    config.json              asdict(CharLMConfig)
    run.json                 run-level options (--tensorboard), restored by --resume
    vocab.json               the vocabulary (also inside every checkpoint)
    metrics.jsonl            "train" and "val" records: loss (nats/char), perplexity, accuracy
    checkpoint.safetensors   model + optimizer + RNG + progress: exact resume
    best.safetensors         the weights of the best validation loss (what ``generate`` loads)
    curves.png               loss and next-character accuracy, train and validation
    summary.json             validation perplexity vs the unigram and bigram baselines, time

Checkpoints use the ``rnnflow.checkpoint`` safetensors layout of ``rnnflow.training.checkpoint``
(same helpers: atomic write, flattened optimizer state), with two more metadata keys: ``task``
(``"charlm"``) and ``vocab``. Data order is a pure function of ``(seed, epoch)``, the learning
rate of the step, and the dropout RNG is saved, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save
from torch import Tensor, nn

from rnnflow.models.char_lm import CharLM, masked_cross_entropy
from rnnflow.text.baselines import kneser_ney_perplexity, ngram_perplexity
from rnnflow.text.config import (  # re-exported: the config's home is rnnflow.text.config
    CHARLM_CONFIG_RANGES,
    PRESETS,
    TASK,
    CharLMConfig,
    charlm_config_from_dict,
    field_type,
)
from rnnflow.text.corpus import (
    BucketBatches,
    Vocabulary,
    make_examples,
    split_documents,
)
from rnnflow.text.sources import load_documents
from rnnflow.training.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    _flatten_optimizer,
    atomic_write_bytes,
    check_progress,
    check_progress_bounds,
    check_weights_fit,
    load_model_state,
    read_checkpoint_file,
)
from rnnflow.training.logging import MetricsLogger, file_errors
from rnnflow.training.loop import check_step, find_checkpoint

__all__ = [
    "CHARLM_CONFIG_RANGES",
    "PRESETS",
    "TASK",
    "CharData",
    "CharLMCheckpoint",
    "CharLMConfig",
    "CharLMProgress",
    "build_model",
    "charlm_config_from_dict",
    "evaluate",
    "field_type",
    "fit",
    "load_charlm",
    "load_charlm_checkpoint",
    "prepare_data",
    "save_charlm_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.safetensors"
BEST_NAME = "best.safetensors"


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class CharData:
    """A corpus ready to train on: the split documents, the vocabulary and the windows."""

    vocab: Vocabulary
    train_docs: list[str]
    val_docs: list[str]
    train_encoded: list[list[int]]
    val_encoded: list[list[int]]
    train_examples: list[list[int]]
    val_examples: list[list[int]]

    @property
    def train_tokens(self) -> int:
        return sum(len(e) - 1 for e in self.train_examples)

    @property
    def val_tokens(self) -> int:
        return sum(len(e) - 1 for e in self.val_examples)


def prepare_data(config: CharLMConfig, *, documents: list[str] | None = None) -> CharData:
    """Read (unless ``documents`` is given), split, build the vocabulary on the training part,
    encode and window. Deterministic: the same config gives the same data."""
    docs = load_documents(config) if documents is None else documents
    train_docs, val_docs = split_documents(docs, val_fraction=config.val_fraction, seed=config.seed)
    vocab = Vocabulary.build(train_docs, min_count=config.min_count)
    train_encoded = [vocab.encode_document(d) for d in train_docs]
    val_encoded = [vocab.encode_document(d) for d in val_docs]
    return CharData(
        vocab=vocab,
        train_docs=train_docs,
        val_docs=val_docs,
        train_encoded=train_encoded,
        val_encoded=val_encoded,
        train_examples=make_examples(train_encoded, max_len=config.max_len),
        val_examples=make_examples(val_encoded, max_len=config.max_len),
    )


def baselines(data: CharData) -> dict[str, float]:
    """Unigram, bigram and Kneser-Ney trigram validation perplexities on ``data``'s split (see
    ``baselines.py``)."""
    if not data.val_encoded:
        return {}
    kwargs = {"vocab_size": len(data.vocab), "excluded": (data.vocab.pad_id, data.vocab.bos_id)}
    return {
        "unigram_perplexity": ngram_perplexity(
            data.train_encoded, data.val_encoded, order=1, **kwargs
        ),
        "bigram_perplexity": ngram_perplexity(
            data.train_encoded, data.val_encoded, order=2, **kwargs
        ),
        "kn3_perplexity": kneser_ney_perplexity(data.train_encoded, data.val_encoded, **kwargs),
    }


# ---------------------------------------------------------------------------------------------
# model, checkpoints


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    return torch.device(name)


def build_model(config: CharLMConfig, vocab_size: int) -> CharLM:
    """The model a config describes (initialised from torch's global RNG)."""
    return CharLM(
        vocab_size=vocab_size,
        embed_size=config.embed_size,
        cell=config.cell,
        num_units=config.num_units,
        num_layers=config.num_layers,
        dropout=config.dropout,
        forget_bias=config.forget_bias,
    )


@dataclass
class CharLMProgress:
    """Where a run is; saved in every checkpoint's metadata."""

    step: int = 0
    examples: int = 0  # windows seen
    tokens: int = 0  # predicted characters seen
    epoch: int = 0
    batch_in_epoch: int = 0
    train_seconds: float = 0.0
    best_val_loss: float | None = None
    best_step: int = -1
    finished: bool = False


@dataclass
class CharLMCheckpoint:
    path: Path
    config: CharLMConfig
    vocab: Vocabulary
    model: dict[str, Tensor]
    progress: dict[str, Any]
    optimizer: dict[str, Any] | None = None
    rng: dict[str, Tensor] = field(default_factory=dict)


def save_charlm_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    config: CharLMConfig,
    vocab: Vocabulary,
    progress: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, Tensor] | None = None,
) -> None:
    """Write a charlm checkpoint atomically (the ``rnnflow.checkpoint`` layout + task, vocab)."""
    tensors = {
        f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()
    }
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "task": TASK,
        "config": json.dumps(asdict(config)),
        "vocab": vocab.to_json(),
        "progress": json.dumps(progress),
    }
    if optimizer is not None:
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
        metadata["optimizer"] = json.dumps(opt_meta)
    for name, value in (rng or {}).items():
        tensors[f"rng.{name}"] = value.detach().cpu().clone().contiguous()
    atomic_write_bytes(path, st_save(tensors, metadata=metadata))


def load_charlm_checkpoint(path: str | os.PathLike[str]) -> CharLMCheckpoint:
    """Read a checkpoint written by :func:`save_charlm_checkpoint`; never unpickles anything.

    Raises ``FileNotFoundError`` if missing and ``CheckpointError`` for a truncated, foreign or
    newer file, or an rnnflow checkpoint of another task (e.g. a classifier).
    """
    path = Path(path)
    meta, groups, optimizer = read_checkpoint_file(
        path, reader="load_charlm_checkpoint", groups=("model", "optimizer", "rng")
    )
    if meta.get("task") != TASK:
        raise CheckpointError(
            f"{path}: not a character-LM checkpoint (task {meta.get('task', 'classifier')!r}); "
            "`rnnflow generate` needs a run of `rnnflow train --task charlm`"
        )
    try:
        config = charlm_config_from_dict(json.loads(meta["config"]), source=f"{path}: config")
        vocab = Vocabulary.from_json(meta["vocab"])
        progress = json.loads(meta["progress"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata: {exc}") from exc
    progress = check_progress(path, progress, CharLMProgress)
    # the total steps depend on the corpus: fit() checks them against its data
    check_progress_bounds(path, progress, batch_size=config.batch_size, window=config.max_len)
    checkpoint = CharLMCheckpoint(
        path=path,
        config=config,
        vocab=vocab,
        model=groups["model"],
        progress=progress,
        optimizer=optimizer,
        rng=groups["rng"],
    )
    # the config must describe the stored tensors before any model is built (#14: a small file
    # never allocates big)
    check_weights_fit(checkpoint, lambda: build_model(config, len(vocab)))
    return checkpoint


def find_charlm_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run folder's ``best.safetensors`` (else its last checkpoint)."""
    return find_checkpoint(path, written_by="`rnnflow train --task charlm`")


def load_charlm(
    path: str | os.PathLike[str], *, device: str = "cpu"
) -> tuple[CharLM, Vocabulary, CharLMCheckpoint]:
    """The model and vocabulary of a run folder (its best checkpoint) or file, in eval mode."""
    checkpoint = load_charlm_checkpoint(find_charlm_checkpoint(path))
    model = build_model(checkpoint.config, len(checkpoint.vocab))
    load_model_state(model, checkpoint)
    model.to(resolve_device(device)).eval()
    return model, checkpoint.vocab, checkpoint


# ---------------------------------------------------------------------------------------------
# training


@dataclass
class CharEval:
    loss: float  # mean nats per predicted character
    accuracy: float  # next-character top-1
    tokens: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if math.isfinite(self.loss) else float("nan")


@torch.no_grad()
def evaluate(model: CharLM, batches: BucketBatches) -> CharEval:
    """Mean masked cross-entropy, perplexity and accuracy of ``model`` over ``batches``."""
    was_training = model.training
    model.eval()
    device = model.output.weight.device
    total, correct, count = 0.0, 0, 0
    try:
        for batch in batches.iter_from(0):
            lengths = batch.lengths.to(device)
            logits, _ = model(batch.inputs.to(device), sequence_length=lengths)  # [B, T, V]
            targets = batch.targets.to(device)
            loss_sum, n = masked_cross_entropy(logits, targets, lengths)
            valid = torch.arange(targets.shape[1], device=device)[None, :] < lengths[:, None]
            correct += int(((logits.argmax(-1) == targets) & valid).sum())
            total += float(loss_sum)
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        return CharEval(float("nan"), float("nan"), 0)
    return CharEval(total / count, correct / count, count)


def learning_rate(config: CharLMConfig, step: int, total_steps: int) -> float:
    """Constant, or cosine from ``lr`` to ``min_lr`` over the run."""
    if config.schedule == "constant":
        return config.lr
    progress = min(step / max(total_steps, 1), 1.0)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * progress))


def _rng_states() -> dict[str, Tensor]:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{i}"] = s
    return states


def _set_rng_states(states: dict[str, Tensor]) -> None:
    torch.set_rng_state(states["torch"])
    cuda = [states[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in states]
    if cuda and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


StepCallback = Callable[[CharLMProgress, dict[str, Any]], None]


def fit(
    config: CharLMConfig,
    run_dir: str | os.PathLike[str],
    *,
    data: CharData,
    resume: CharLMCheckpoint | None = None,
    metrics: MetricsLogger | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    stop_at_step: int | None = None,
) -> tuple[CharLM, CharLMProgress]:
    """Train (or continue) the character LM in ``run_dir``; returns the final model and progress.

    Writes ``checkpoint.safetensors`` at every validation, at the end and when stopped, and
    ``best.safetensors`` (weights) when the validation loss improves. ``should_stop()`` is polled
    after each step; ``stop_at_step`` stops after that many steps, as an interruption would.
    """
    run_dir = Path(run_dir)
    device = resolve_device(config.device)
    vocab = data.vocab
    if resume is not None and resume.vocab != vocab:
        raise ValueError(
            f"{resume.path}: the vocabulary differs from the one of the corpus now on disk "
            f"({len(resume.vocab)} vs {len(vocab)} symbols): the corpus changed since the run began"
        )
    if resume is None:
        torch.manual_seed(config.seed)
        progress = CharLMProgress()
    else:
        progress = CharLMProgress(**resume.progress)
    model = build_model(config, len(vocab))
    if resume is not None:
        load_model_state(model, resume)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if resume is not None:
        if resume.optimizer is None:
            raise ValueError(f"{resume.path}: holds no optimizer state; cannot resume from it")
        optimizer.load_state_dict(resume.optimizer)
        _set_rng_states(resume.rng)

    loader = BucketBatches(
        data.train_examples, config.batch_size, shuffle=True, seed=config.seed, pad_id=vocab.pad_id
    )
    if len(loader) == 0:
        raise ValueError("fit: the training split holds no example")
    val_loader = BucketBatches(
        data.val_examples, config.eval_batch_size, shuffle=False, pad_id=vocab.pad_id
    )
    total = config.epochs * len(loader)
    if resume is not None:
        check_progress_bounds(
            resume.path, resume.progress, batch_size=config.batch_size, total_steps=total
        )
    params = list(model.parameters())
    saved_step = resume.progress["step"] if resume is not None else None

    def save(path: Path, *, full: bool) -> None:
        nonlocal saved_step
        if full:
            saved_step = progress.step
        with file_errors(path):
            save_charlm_checkpoint(
                path,
                model=model,
                config=config,
                vocab=vocab,
                progress=asdict(progress),
                optimizer=optimizer if full else None,
                rng=_rng_states() if full else None,
            )

    def validate() -> None:
        if not data.val_examples:
            progress.best_step = progress.step
            save(run_dir / BEST_NAME, full=False)
            return
        result = evaluate(model, val_loader)
        record = {"kind": "val", "step": progress.step, "examples": progress.examples}
        record |= {"epoch": progress.epoch, "loss": result.loss, "accuracy": result.accuracy}
        record |= {"perplexity": result.perplexity, "tokens": result.tokens}
        if metrics is not None:
            metrics.log(record)
        logger.info("step %d: validation perplexity %.2f", progress.step, result.perplexity)
        if progress.best_val_loss is None or result.loss < progress.best_val_loss:
            progress.best_val_loss = result.loss
            progress.best_step = progress.step
            save(run_dir / BEST_NAME, full=False)
        if on_step is not None:
            on_step(progress, record)

    model.train()
    window = {"loss": 0.0, "correct": 0, "tokens": 0, "start": time.perf_counter()}
    session_start = time.perf_counter()
    seconds_before = progress.train_seconds
    while progress.step < total:
        stopped = False
        for batch in loader.iter_from(progress.epoch, progress.batch_in_epoch):
            lr = learning_rate(config, progress.step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            lengths = batch.lengths.to(device)
            targets = batch.targets.to(device)
            logits, _ = model(batch.inputs.to(device), sequence_length=lengths)  # [B, T, V]
            loss_sum, n = masked_cross_entropy(logits, targets, lengths)
            loss = loss_sum / n
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
            )

            progress.step += 1
            progress.examples += len(lengths)
            progress.tokens += n
            progress.batch_in_epoch += 1
            progress.train_seconds = seconds_before + time.perf_counter() - session_start
            with torch.no_grad():
                valid = torch.arange(targets.shape[1], device=device)[None, :] < lengths[:, None]
                window["correct"] += int(((logits.argmax(-1) == targets) & valid).sum())
            window["loss"] += loss_sum.item()
            window["tokens"] += n
            done = progress.step >= total
            end_of_epoch = progress.batch_in_epoch == len(loader)
            info: dict[str, Any] = {"kind": "step", "loss": loss_value, "lr": lr}
            before = progress.examples - len(lengths)
            if before // config.log_every != progress.examples // config.log_every or done:
                now = time.perf_counter()
                mean = window["loss"] / window["tokens"]
                info = {
                    "kind": "train",
                    "step": progress.step,
                    "examples": progress.examples,
                    "epoch": progress.epoch,
                    "loss": mean,
                    "perplexity": math.exp(mean),
                    "accuracy": window["correct"] / window["tokens"],
                    "lr": lr,
                    "tokens_per_s": window["tokens"] / max(now - window["start"], 1e-9),
                    "elapsed_s": progress.train_seconds,
                }
                if metrics is not None:
                    metrics.log(info)
                window = {"loss": 0.0, "correct": 0, "tokens": 0, "start": now}
            if on_step is not None:
                on_step(progress, info)
            if end_of_epoch:
                progress.epoch += 1
                progress.batch_in_epoch = 0
            every = config.eval_every
            validate_now = before // every != progress.examples // every if every else end_of_epoch
            if done:
                progress.finished = True
            if validate_now or done:
                validate()
                model.train()
                save(run_dir / CHECKPOINT_NAME, full=True)
            if done:
                break
            interrupted = should_stop is not None and should_stop()
            if interrupted or (stop_at_step is not None and progress.step >= stop_at_step):
                save(run_dir / CHECKPOINT_NAME, full=True)
                logger.info("stopped at step %d; checkpoint saved", progress.step)
                stopped = True
                break
        if stopped:
            break
    return model, progress
