"""The character language model task (``rnnflow train --task charlm``; config: ``CharLMConfig``).

A :class:`~rnnflow.models.char_lm.CharLM` learns to predict the next character of documents (the
built-in Tang/Song poems or the user's text files), trained by the one ``rnnflow.training.engine``
engine through :class:`CharLMTask`: so it has what every task has (exact resume, DDP under
torchrun, EMA, warm-up, AdamW). The run folder also holds ``vocab.json``; every checkpoint
carries the vocabulary as metadata ``vocab``. Data order is a pure function of
``(seed, epoch)`` (length-bucketed windows, ``rnnflow.text.corpus.BucketBatches``).

Loss: the summed cross-entropy of the valid (unpadded) steps divided by the GLOBAL batch's
count of predicted characters (times the number of processes: DDP averages the ranks'
gradients), so N processes take the single process's optimizer steps even though the ranks'
rows hold different numbers of characters.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from rnnflow.models.char_lm import CharLM, masked_cross_entropy
from rnnflow.tasks._shard import shard_rows
from rnnflow.tasks._vocab import VocabCheckpoints, vocab_size
from rnnflow.tasks._vocab import checkpoint_vocab as _checkpoint_vocab
from rnnflow.text.baselines import kneser_ney_perplexity, ngram_perplexity
from rnnflow.text.config import TASK, CharLMConfig, charlm_config_from_dict
from rnnflow.text.corpus import (
    Batch,
    BucketBatches,
    Vocabulary,
    make_examples,
    split_documents,
)
from rnnflow.text.sources import load_documents
from rnnflow.training.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from rnnflow.training.distributed import SINGLE_PROCESS, DistributedContext
from rnnflow.training.task import StepOutput, Validation

__all__ = [
    "NAME",
    "CharData",
    "CharEval",
    "CharLMTask",
    "baselines",
    "build_model",
    "checkpoint_vocab",
    "evaluate",
    "load_charlm",
    "load_charlm_checkpoint",
    "make_task",
    "prepare_data",
]

NAME = TASK  # "charlm"
_KIND = "a character-LM"  # how checkpoint errors name this task's files


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
    """Unigram, bigram and interpolated Kneser-Ney 3-gram validation perplexities on ``data``'s
    split (see ``rnnflow.text.baselines``)."""
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


def build_model(config: CharLMConfig, metadata: dict[str, str] | int) -> CharLM:
    """The model a config describes (initialised from torch's global RNG), for a vocabulary of
    ``metadata`` symbols (an int) or a checkpoint's metadata (its ``vocab``)."""
    size = vocab_size(metadata)
    _check_cutoffs(config, size)
    return CharLM(
        vocab_size=size,
        embed_size=config.embed_size,
        cell=config.cell,
        num_units=config.num_units,
        num_layers=config.num_layers,
        dropout=config.dropout,
        forget_bias=config.forget_bias,
        softmax=config.softmax,
        cutoffs=config.cutoffs,
    )


def _check_cutoffs(config: CharLMConfig, vocab_size: int) -> None:
    """ValueError unless the adaptive softmax's cutoffs stay below the vocabulary size."""
    if config.cutoffs and config.cutoffs[-1] >= vocab_size:
        raise ValueError(
            f"charlm: --cutoffs {list(config.cutoffs)} must stay below the vocabulary size "
            f"{vocab_size} (a larger corpus or a lower --min-count gives more characters; or "
            "lower the cutoffs)"
        )


@dataclass
class CharEval:
    loss: float  # mean nats per predicted character
    accuracy: float  # next-character top-1
    tokens: int  # predicted characters scored (>= 1)

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if math.isfinite(self.loss) else float("nan")


@torch.no_grad()
def evaluate(model: CharLM, batches: BucketBatches) -> CharEval:
    """Mean masked cross-entropy, perplexity and accuracy of ``model`` over ``batches``.
    Raises ``ValueError`` when ``batches`` holds no example (an empty split: nothing to score;
    a run trained with ``val_fraction=0`` has no validation documents)."""
    if len(batches) == 0:
        raise ValueError("evaluate: no characters to score (an empty split)")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, correct, count = 0.0, 0, 0
    try:
        for batch in batches.iter_from(0):
            lengths = batch.lengths.to(device)
            logits, _ = model(batch.inputs.to(device), sequence_length=lengths)  # [B, T, V]
            targets = batch.targets.to(device)
            loss_sum, n = masked_cross_entropy(logits, targets, lengths)
            correct += _correct(logits, targets, lengths)
            total += float(loss_sum)
            count += n
    finally:
        model.train(was_training)
    return CharEval(total / count, correct / count, count)


def _correct(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> int:
    """Next-character top-1 hits over the valid steps (logits [B, T, V], targets [B, T])."""
    with torch.no_grad():
        steps = torch.arange(targets.shape[1], device=targets.device)
        valid = steps[None, :] < lengths[:, None]  # [B, T]
        return int(((logits.argmax(-1) == targets) & valid).sum())


@dataclass
class CharLMTask(VocabCheckpoints):
    """The character LM as a :class:`~rnnflow.training.task.Task` over prepared ``data``."""

    config: CharLMConfig
    data: CharData
    name: str = NAME
    kind: ClassVar[str] = _KIND
    _loader: BucketBatches = field(init=False, repr=False)
    _val_loader: BucketBatches = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pad = self.data.vocab.pad_id
        self._loader = BucketBatches(
            self.data.train_examples,
            self.config.batch_size,
            shuffle=True,
            seed=self.config.seed,
            pad_id=pad,
        )
        self._val_loader = BucketBatches(
            self.data.val_examples, self.config.eval_batch_size, shuffle=False, pad_id=pad
        )

    def build_model(self) -> nn.Module:
        return build_model(self.config, len(self.data.vocab))

    def epoch_length(self) -> int:
        if len(self._loader) == 0:
            raise ValueError("fit: the training split holds no example")
        return len(self._loader)

    def total_steps(self) -> int:
        return self.config.epochs * self.epoch_length()

    def batches(self, epoch: int, start: int) -> Iterator[Batch]:
        return self._loader.iter_from(epoch, start)

    def step(
        self, model: nn.Module, batch: Batch, ctx: DistributedContext, generator: torch.Generator
    ) -> StepOutput:
        device = next(model.parameters()).device
        global_tokens = batch.tokens  # predicted characters of the whole global batch
        rows, weight = shard_rows(ctx, len(batch.lengths))  # this rank's rows (weight 0: none)
        lengths = batch.lengths[rows].to(device)  # [b]
        targets = batch.targets[rows].to(device)  # [b, T]
        inputs = batch.inputs[rows].to(device)  # [b, T]
        stats: dict[str, float] = {}
        if self.config.softmax == "adaptive":  # the cheap path: no [b, T, V] tensor, no accuracy
            nll, _ = model(inputs, targets=targets, sequence_length=lengths)  # [b, T]
            loss_sum, n = nll.sum(), int(lengths.sum())
        else:
            logits, _ = model(inputs, sequence_length=lengths)  # [b, T, V]
            loss_sum, n = masked_cross_entropy(logits, targets, lengths)
            stats["correct"] = float(_correct(logits, targets, lengths)) * weight
        loss = loss_sum / global_tokens * ctx.world_size  # x 1 (exact) in one process
        if weight != 1.0:
            loss = loss * weight
        stats["loss_sum"] = loss_sum.item() * weight
        stats["tokens"] = float(n) * weight
        return StepOutput(loss=loss, examples=len(batch.lengths), stats=stats)

    def summarize(self, stats: dict[str, float], seconds: float) -> dict[str, float]:
        """The window's mean loss, perplexity, characters per second and (full softmax only:
        the adaptive one's training path never scores every id) next-character accuracy."""
        mean = stats["loss_sum"] / stats["tokens"]
        summary = {"loss": mean, "perplexity": math.exp(mean)}
        if "correct" in stats:
            summary["accuracy"] = stats["correct"] / stats["tokens"]
        return {**summary, "tokens_per_s": stats["tokens"] / seconds}

    def validate(
        self, model: nn.Module, ctx: DistributedContext = SINGLE_PROCESS
    ) -> Validation | None:
        """Every rank scores the whole validation split (small; the same result everywhere)."""
        if not self.data.val_examples:
            return None
        result = evaluate(model, self._val_loader)  # type: ignore[arg-type]
        record = {
            "loss": result.loss,
            "accuracy": result.accuracy,
            "perplexity": result.perplexity,
            "tokens": result.tokens,
        }
        return Validation(score=-result.loss, record=record)


def make_task(config: CharLMConfig) -> CharLMTask:
    """The task of a run of ``config``: its corpus read, split, encoded and windowed. Raises
    ``ValueError`` before any run file is written when the data cannot make the run: cutoffs at
    or above the vocabulary size, or a validation split left empty by ``val_fraction > 0`` (its
    perplexity would be NaN)."""
    data = prepare_data(config)
    _check_cutoffs(config, len(data.vocab))
    if config.val_fraction > 0 and not data.val_examples:
        documents = len(data.train_docs) + len(data.val_docs)
        raise ValueError(
            f"charlm: --val-fraction {config.val_fraction} leaves no validation document: the "
            f"corpus holds {documents} document(s) (a line holding only {config.delimiter!r} "
            "ends a document; with --delimiter '' each file is one); split the text into "
            "documents, give more files, or pass --val-fraction 0"
        )
    return CharLMTask(config, data)


def checkpoint_vocab(checkpoint: Checkpoint) -> Vocabulary:
    """The vocabulary a char-LM checkpoint carries (metadata ``vocab``); ``CheckpointError``
    naming the file when it is missing or malformed."""
    return _checkpoint_vocab(checkpoint, kind=_KIND)


def load_charlm_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a char-LM checkpoint; never unpickles anything. Raises ``FileNotFoundError`` if
    missing and ``CheckpointError`` for a truncated, foreign or newer file, or an rnnflow
    checkpoint of another task (e.g. a classifier). The config must describe the stored tensors
    (checked before any model is built)."""
    from rnnflow.tasks import checkpoint_task
    from rnnflow.training.checkpoint import check_weights_fit

    path = Path(path)
    task = checkpoint_task(path) if path.is_file() else NAME
    if task not in (NAME, None):
        raise CheckpointError(
            f"{path}: not a character-LM checkpoint (task {task!r}); `rnnflow generate` needs "
            "a run of `rnnflow train --task charlm`"
        )
    checkpoint = load_checkpoint(path, config_from_dict=charlm_config_from_dict, task=NAME)
    vocab = checkpoint_vocab(checkpoint)
    check_weights_fit(checkpoint, lambda: build_model(checkpoint.config, len(vocab)))
    return checkpoint


def load_charlm(
    path: str | os.PathLike[str], *, device: str = "cpu"
) -> tuple[CharLM, Vocabulary, Checkpoint]:
    """The model and vocabulary of a run folder (its best checkpoint) or file, in eval mode."""
    from rnnflow.training.checkpoint import load_model_state
    from rnnflow.training.engine import find_checkpoint, resolve_device

    found = find_checkpoint(path, written_by="`rnnflow train --task charlm`")
    checkpoint = load_charlm_checkpoint(found)
    vocab = checkpoint_vocab(checkpoint)
    model = build_model(checkpoint.config, len(vocab))
    load_model_state(model, checkpoint)
    model.to(resolve_device(device)).eval()
    return model, vocab, checkpoint


def describe(data: CharData, config: CharLMConfig) -> dict[str, Any]:
    """The corpus facts a run reports (documents, characters, vocabulary)."""
    return {
        "corpus": config.corpus,
        "train_documents": len(data.train_docs),
        "val_documents": len(data.val_docs),
        "train_characters": data.train_tokens,
        "val_characters": data.val_tokens,
        "vocab_size": len(data.vocab),
    }
