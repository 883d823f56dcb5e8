"""The sequence-classifier task: a recurrent network reads a variable-length multivariate series
[T_i, D] and names its class (UEA/UCR sets such as JapaneseVowels, or your ``.npz``/``.ts`` files).

The model is :class:`rnnflow.models.SequenceClassifier` called with ``sequence_length``: it
classifies from the last VALID output (bidirectional: the forward direction's output at step
T_i - 1 and the backward direction's at step 0, after reading T_i - 1 .. 0), so the zero padding
of a batch never reaches the logits. Options: a masked convolutional branch beside it
(``conv_branch``, :mod:`rnnflow.models.fcn`) and delta channels (``deltas``: each channel's
first difference, standardised with the statistics of the training part's differences, recorded
as ``delta_mean``/``delta_std``); the japanese-vowels preset uses both. Series are standardised
per channel with statistics of the training part only (``rnnflow.data.sequence_norm``),
recorded in the run's config and applied by evaluate, predict and export. Trained by the one
``rnnflow.training.engine.fit`` through :class:`SequenceTask`; config:
:class:`rnnflow.tasks.sequence_config.SequenceConfig`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnflow._words import count
from rnnflow.data.sequence_augment import random_crop
from rnnflow.data.sequence_batches import SequenceBatch, SequenceBatchIterator
from rnnflow.data.sequence_files import load_uea, read_sequence_npz, read_sequence_ts, uea_path
from rnnflow.data.sequence_norm import ChannelStats, delta_stats
from rnnflow.data.sequences import SequenceDataset, pad_series
from rnnflow.models import SequenceClassifier
from rnnflow.tasks._classifier_args import recurrent_args
from rnnflow.tasks.sequence_config import SequenceConfig
from rnnflow.training.checkpoint import Checkpoint
from rnnflow.training.distributed import DistributedContext
from rnnflow.training.task import StepOutput, Validation

__all__ = [
    "NAME",
    "SequenceEval",
    "SequenceTask",
    "build_model",
    "evaluate",
    "load_trained_model",
    "make_task",
    "normaliser",
    "predict_proba",
    "read_splits",
]

NAME = "sequence"


def _sha256(path: Path) -> str:
    return f"{path.name}={hashlib.sha256(path.read_bytes()).hexdigest()}"


def _read_raw(config: SequenceConfig) -> tuple[SequenceDataset, SequenceDataset, tuple[str, ...]]:
    """(train, test, sha256 records) as stored on disk, not normalised."""
    try:
        if config.dataset in ("japanese-vowels", "pickup-gesture-wiimote-z"):
            files = [uea_path(config.dataset, "train"), uea_path(config.dataset, "test")]
            train, test = load_uea(config.dataset, "train"), load_uea(config.dataset, "test")
        elif config.dataset == "ts":
            files = [Path(config.train_file), Path(config.test_file)]  # type: ignore[arg-type]
            train = read_sequence_ts(files[0])
            test = read_sequence_ts(files[1], class_names=train.class_names)
    except ModuleNotFoundError as exc:  # aeon is absent: a run that cannot start, said plainly
        raise ValueError(f"dataset {config.dataset!r}: {exc}") from exc
    if config.dataset == "npz":  # npz: two files, or one file holding x_train and x_test
        files = [Path(config.train_file)]  # type: ignore[arg-type]
        kwargs = {"allow_pickle": config.allow_pickle}
        if config.test_file:
            files.append(Path(config.test_file))
            train = read_sequence_npz(files[0], **kwargs)
            test = read_sequence_npz(files[1], class_names=train.class_names, **kwargs)
        else:
            train = read_sequence_npz(files[0], split="train", **kwargs)
            test = read_sequence_npz(
                files[0], split="test", class_names=train.class_names, **kwargs
            )
    if train.num_classes < 2 or len(set(train.labels.tolist())) < 2:
        present = sorted({train.class_names[i] for i in train.labels.tolist()})
        raise ValueError(
            f"{train.source}: the training series must hold at least 2 classes (a classifier "
            f"needs 2 to tell apart), got classes {present} among {len(train)} series"
        )
    if test.num_channels != train.num_channels:
        raise ValueError(
            f"{test.source}: series have {count(test.num_channels, 'channel')}, the training "
            f"series "
            f"({train.source}) {train.num_channels}"
        )
    return train, test, tuple(_sha256(p) for p in files)


def _hold_out(data: SequenceDataset, size: int, seed: int) -> tuple[SequenceDataset, ...]:
    """(train part, validation part): ``size`` series picked by ``seed``, both in file order."""
    if not 0 < size < len(data):
        raise ValueError(
            f"SequenceConfig: val_size must leave both parts non-empty (0 < val_size < "
            f"{len(data)}, the training series of {data.source}), got {size}"
        )
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).numpy()
    parts = []
    for idx in (np.sort(perm[size:]), np.sort(perm[:size])):
        series = tuple(data.series[i] for i in idx)
        parts.append(SequenceDataset(series, data.labels[idx], data.class_names, data.source))
    return tuple(parts)


def normaliser(config: SequenceConfig) -> ChannelStats:
    """The run's recorded per-channel statistics (``ValueError`` before they are recorded)."""
    if not config.recorded:
        raise ValueError("SequenceConfig: no statistics recorded (the run never read its data)")
    return ChannelStats(config.norm_mean, config.norm_std)


def read_splits(
    config: SequenceConfig,
) -> tuple[SequenceConfig, SequenceDataset, SequenceDataset | None, SequenceDataset]:
    """``(config, train, validation or None, test)``, all standardised with the statistics of
    the training part (after the ``val_size`` hold-out). The returned config records the
    channels, classes, statistics and files' sha256; a config that already records them (a
    resumed run) must see the same files: ``ValueError`` naming both lists otherwise.
    Raises the readers' errors (``SequenceDataError`` naming the file) too, and ``ValueError``
    naming the extra ``sequence`` when a built-in set or a ``.ts`` file needs aeon and it is
    absent."""
    train, test, sha256 = _read_raw(config)
    if config.data_sha256 and config.data_sha256 != sha256:
        raise ValueError(
            f"dataset {config.dataset!r}: the files differ from those this run recorded "
            f"(config.json data_sha256): recorded {list(config.data_sha256)}, found {list(sha256)}"
        )
    val = None
    if config.val_size:
        train, val = _hold_out(train, config.val_size, config.seed)
    stats = ChannelStats.fit(train)
    deltas = delta_stats(train) if config.deltas else None
    recorded = replace(
        config,
        num_channels=train.num_channels,
        class_names=train.class_names,
        norm_mean=stats.mean,
        norm_std=stats.std,
        data_sha256=sha256,
        delta_mean=deltas.mean if deltas else (),
        delta_std=deltas.std if deltas else (),
    )
    norm = stats.normalise
    return recorded, norm(train), (norm(val) if val is not None else None), norm(test)


def build_model(
    config: SequenceConfig, metadata: dict[str, str] | None = None
) -> SequenceClassifier:
    """The model a recorded config describes (initialised from torch's global RNG)."""
    if not config.recorded:
        raise ValueError(
            "SequenceConfig: num_channels/class_names are not recorded; build the model from "
            "the config that make_task returns"
        )
    model = SequenceClassifier(
        input_size=config.num_channels,
        num_classes=config.num_classes,
        pooling=config.pooling,
        conv_branch=config.conv_branch,
        deltas=config.deltas,
        **recurrent_args(config),
    )
    if config.deltas:  # the model reads standardised x: its differences are delta / norm_std
        if len(config.delta_std) != config.num_channels:
            raise ValueError(
                "SequenceConfig: deltas needs delta_mean/delta_std recorded; build the model from "
                "the config that make_task returns"
            )
        model.set_delta_standardisation(
            [s / d for s, d in zip(config.norm_std, config.delta_std, strict=True)],
            [-m / d for m, d in zip(config.delta_mean, config.delta_std, strict=True)],
        )
    return model


@torch.no_grad()
def predict_proba(
    model: nn.Module, series: Sequence[np.ndarray], *, batch_size: int = 1000
) -> Tensor:
    """Class probabilities float32 [N, C] for N (already standardised) series [T_i, D], in
    eval mode, ``batch_size`` series at a time, each batch padded to its own longest series and
    run with ``sequence_length`` (padding never reaches the logits)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for lo in range(0, len(series), batch_size):
            x, lengths = pad_series(series[lo : lo + batch_size])  # [b, T_b, D], [b]
            logits = model(torch.from_numpy(x).to(device), torch.from_numpy(lengths).to(device))
            out.append(logits.softmax(-1).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.zeros(0, getattr(model, "num_classes", 0))
    return torch.cat(out)  # [N, C]


@dataclass
class SequenceEval:
    """``loss`` (mean cross-entropy), ``accuracy``, ``confusion`` int64 [C, C] (rows: true
    class), ``probabilities`` float32 [N, C]."""

    loss: float
    accuracy: float
    confusion: Tensor
    probabilities: Tensor


def evaluate(model: nn.Module, data: SequenceDataset, *, batch_size: int = 1000) -> SequenceEval:
    """Loss, accuracy and confusion matrix of ``model`` on standardised labelled series."""
    probs = predict_proba(model, data.series, batch_size=batch_size)  # [N, C]
    labels = torch.from_numpy(data.labels)  # [N]
    c = data.num_classes
    pred = probs.argmax(-1)
    confusion = torch.bincount(labels * c + pred, minlength=c * c).view(c, c)
    return SequenceEval(
        loss=F.nll_loss(probs.clamp_min(1e-12).log(), labels).item(),
        accuracy=(pred == labels).double().mean().item(),
        confusion=confusion,
        probabilities=probs,
    )


@dataclass
class SequenceTask:
    """The sequence classifier as a :class:`~rnnflow.training.task.Task`.

    ``train``/``val``/``test``: standardised datasets (``val`` None: no validation, the latest
    model is the best). Batches: :class:`~rnnflow.data.sequence_batches.SequenceBatchIterator`
    (shuffled by ``(seed, epoch)``, optionally length-bucketed, last batch kept), each padded
    to its own longest series. ``step`` trains this rank's rows on ``F.cross_entropy`` (label
    smoothing from the config), summed and divided by the GLOBAL batch's count times the world
    size, so DDP's gradient average equals the single-process gradient even for a last batch
    that does not split evenly. With ``crop_min`` < 1 each training series is first cut to a
    random window (:func:`~rnnflow.data.sequence_augment.random_crop`); with ``noise_std`` > 0
    every training value (the padding too, which the model never reads) gets Gaussian noise;
    both drawn from fit's generator (so a resumed run draws what an uninterrupted one does).
    Validation scores accuracy on every rank (the set is small).
    """

    config: SequenceConfig
    train: SequenceDataset
    val: SequenceDataset | None
    test: SequenceDataset
    name: str = NAME
    _loader: SequenceBatchIterator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        c = self.config
        self._loader = SequenceBatchIterator(
            self.train, c.batch_size, shuffle=True, seed=c.seed, bucket=c.bucket
        )

    def build_model(self) -> nn.Module:
        return build_model(self.config)

    def epoch_length(self) -> int:
        return len(self._loader)

    def total_steps(self) -> int:
        return self.config.epochs * len(self._loader)

    def batches(self, epoch: int, start: int) -> Iterator[SequenceBatch]:
        return self._loader.iter_from(epoch, start)

    def step(
        self,
        model: nn.Module,
        batch: SequenceBatch,
        ctx: DistributedContext,
        generator: torch.Generator,
    ) -> StepOutput:
        x, lengths, labels = batch  # [B, T_b, D], [B], [B]: the global batch
        count = len(labels)
        device = next(model.parameters()).device
        if self.config.crop_min < 1.0:  # drawn for the global batch, before sharding, on the CPU
            x, lengths = random_crop(x, lengths, crop_min=self.config.crop_min, generator=generator)
        if self.config.noise_std:  # drawn for the global batch, before sharding, on the CPU
            x = x + self.config.noise_std * torch.randn(x.shape, generator=generator)
        x, lengths, y = (ctx.shard(t).to(device) for t in (x, lengths, labels))
        if len(y) == 0:  # more ranks than rows: DDP still waits for every gradient
            loss = sum(p.sum() for p in model.parameters()) * 0.0
            return StepOutput(
                loss=loss, examples=count, stats={"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
            )
        logits = model(x, lengths)  # [b, C]
        loss_sum = F.cross_entropy(
            logits, y, label_smoothing=self.config.label_smoothing, reduction="sum"
        )
        loss = loss_sum * (ctx.world_size / count)
        stats = {
            "loss_sum": loss_sum.item(),
            "correct": float(int((logits.argmax(-1) == y).sum())),
            "count": float(len(y)),
        }
        return StepOutput(loss=loss, examples=count, stats=stats)

    def summarize(self, stats: dict[str, float], seconds: float) -> dict[str, float]:
        n = max(stats["count"], 1.0)
        return {"loss": stats["loss_sum"] / n, "accuracy": stats["correct"] / n}

    def validate(self, model: nn.Module, ctx: DistributedContext) -> Validation | None:
        if self.val is None:
            return None
        result = evaluate(model, self.val, batch_size=self.config.eval_batch_size)
        return Validation(
            score=result.accuracy, record={"loss": result.loss, "accuracy": result.accuracy}
        )

    def checkpoint_metadata(self) -> dict[str, str]:
        return {}  # the config records channels, classes and statistics

    def check_resume(self, checkpoint: Checkpoint) -> None:
        """Nothing beyond the config: :func:`read_splits` already refused changed files."""


def make_task(config: SequenceConfig) -> SequenceTask:
    """The task of a run of ``config``: its data read and standardised (:func:`read_splits`)."""
    recorded, train, val, test = read_splits(config)
    return SequenceTask(recorded, train, val, test)


def load_trained_model(
    path: str | os.PathLike[str], *, device: str = "cpu"
) -> tuple[SequenceClassifier, Checkpoint]:
    """The sequence classifier in a checkpoint (or a run folder's best checkpoint), in eval
    mode; ``CheckpointError`` for a checkpoint of another task."""
    from rnnflow.tasks import load_trained

    model, checkpoint = load_trained(path, device=device, task=NAME)
    if not isinstance(model, SequenceClassifier):
        raise TypeError(f"{path}: expected a SequenceClassifier, got {type(model).__name__}")
    return model, checkpoint
