"""The image classifier task: a recurrent network reads each image row by row (rows are time steps).

The TensorFlow-1 tutorial's model (``rnnflow.models.SequenceClassifier``) on MNIST,
Fashion-MNIST or any IDX set (``TrainConfig``: ``rnnflow.training.config``), trained by the one
``rnnflow.training.engine`` engine through :class:`ImageTask`. Also here: the augmentation
(mirror, shift, random erasing), class probabilities and evaluation used by ``rnnflow
evaluate``/``predict``/``serve``.

Checkpoints record the task as ``"classifier"`` (files of older versions record none).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnflow._words import count
from rnnflow.data import BatchIterator
from rnnflow.models import SequenceClassifier
from rnnflow.tasks._classifier_args import recurrent_args
from rnnflow.training.checkpoint import Checkpoint
from rnnflow.training.config import TrainConfig
from rnnflow.training.distributed import DistributedContext
from rnnflow.training.task import StepOutput, Validation

__all__ = [
    "NAME",
    "EvalResult",
    "ImageTask",
    "augment",
    "build_model",
    "evaluate",
    "import_tutorial",
    "load_data",
    "load_trained_model",
    "make_task",
    "predict_proba",
    "random_erase",
]

NAME = "classifier"


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


def build_model(
    config: TrainConfig, metadata: dict[str, str] | None = None, *, num_classes: int | None = None
) -> SequenceClassifier:
    """The model a config describes (initialised from torch's global RNG); ``num_classes``
    defaults to ``config.num_classes``, the input size is ``config.image_width``. ``metadata``
    (a checkpoint's) is not needed: the config says everything."""
    return SequenceClassifier(
        input_size=config.image_width,
        num_classes=config.num_classes if num_classes is None else num_classes,
        **recurrent_args(config),
    )


def augment(images: Tensor, config: TrainConfig, generator: torch.Generator) -> Tensor:
    """Random mirror, translation and erasing of a batch [B, H, W], drawn from ``generator``
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
    """Class probabilities float32 [N, C] for images [N, H, W], in eval mode.

    ``tta_flip`` averages the probabilities of each image and its left-right mirror.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for lo in range(0, len(images), batch_size):
            x = images[lo : lo + batch_size].to(device)  # [b, H, W]
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


@dataclass
class ImageTask:
    """The image classifier as a :class:`~rnnflow.training.task.Task`.

    ``train_data``/``val_data``: (images float32 [N, H, W] in [0, 1], labels int64 [N]) on the
    CPU; an empty validation set (``val_size=0``) makes the latest model the best one.
    Batches are the seeded :class:`~rnnflow.data.BatchIterator` order (incomplete last batch
    dropped); ``step`` augments the global batch, then trains this rank's rows on
    ``F.cross_entropy`` (label smoothing from the config); validation scores accuracy.
    """

    config: TrainConfig
    train_data: tuple[Tensor, Tensor]
    val_data: tuple[Tensor, Tensor]
    num_classes: int = 10
    test_data: tuple[Tensor, Tensor] | None = None  # for the CLI's final test evaluation
    name: str = NAME
    _loader: BatchIterator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        x, y = self.train_data
        self._loader = BatchIterator(
            x, y, self.config.batch_size, shuffle=True, seed=self.config.seed, drop_last=True
        )

    def build_model(self) -> nn.Module:
        return build_model(self.config, num_classes=self.num_classes)

    def epoch_length(self) -> int:
        if len(self._loader) == 0:
            raise ValueError(
                f"fit: the training set ({count(len(self.train_data[0]), 'example')}) is "
                f"smaller than one "
                f"batch ({self.config.batch_size})"
            )
        return len(self._loader)

    def total_steps(self) -> int:
        return self.config.steps

    def batches(self, epoch: int, start: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._loader.iter_from(epoch, start)

    def step(
        self,
        model: nn.Module,
        batch: tuple[Tensor, Tensor],
        ctx: DistributedContext,
        generator: torch.Generator,
    ) -> StepOutput:
        images, labels = batch
        device = next(model.parameters()).device
        examples = len(labels)  # the global batch, whichever rank(s) compute it
        x = ctx.shard(augment(images.to(device), self.config, generator))  # [B / world, H, W]
        y = ctx.shard(labels.to(device))
        logits = model(x)  # [B / world, C]
        # equal shards: the local mean is local_sum / global_count * world_size
        loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        stats = {
            "loss_sum": loss.item() * len(y),
            "correct": float(int((logits.argmax(-1) == y).sum())),
            "count": float(len(y)),
        }
        return StepOutput(loss=loss, examples=examples, stats=stats)

    def summarize(self, stats: dict[str, float], seconds: float) -> dict[str, float]:
        return {
            "loss": stats["loss_sum"] / stats["count"],
            "accuracy": stats["correct"] / stats["count"],
        }

    def validate(self, model: nn.Module, ctx: DistributedContext) -> Validation | None:
        if len(self.val_data[0]) == 0:
            return None
        loss, accuracy = _evaluate_sharded(
            ctx,
            model,
            *self.val_data,
            batch_size=self.config.eval_batch_size,
            tta_flip=self.config.tta_flip,
            num_classes=self.num_classes,
        )
        return Validation(score=accuracy, record={"loss": loss, "accuracy": accuracy})

    def checkpoint_metadata(self) -> dict[str, str]:
        return {}

    def check_resume(self, checkpoint: Checkpoint) -> None:
        """Nothing beyond the config: ``make_task`` already refused changed ``--dataset idx``
        files (the config records their sha256)."""


def load_data(
    config: TrainConfig,
) -> tuple[TrainConfig, tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``(config, (train x, y), (test x, y))`` of a run: a registered dataset (checked against
    its published checksums) or, for ``dataset="idx"``, the four IDX files of ``data_dir``
    (the returned config records their sizes, classes and sha256; a resumed run must see the
    files it recorded: ``ValueError`` otherwise). Raises the data loaders' errors."""
    if config.dataset != "idx":
        from rnnflow.data import load_split

        train = load_split(config.dataset, "train", config.data_dir)
        test = load_split(config.dataset, "test", config.data_dir)
        return config, train, test
    from rnnflow.data.idx_folder import check_recorded_sha256, load_idx_folder_split

    train_split = load_idx_folder_split(config.data_dir, "train")
    test_split = load_idx_folder_split(config.data_dir, "test")
    height, width = train_split.images.shape[1:]
    if test_split.images.shape[1:] != train_split.images.shape[1:]:
        raise ValueError(
            f"--dataset idx: test images are {list(test_split.images.shape[1:])}, training "
            f"images {[height, width]} (in {config.data_dir})"
        )
    found = {**train_split.sha256, **test_split.sha256}
    if config.data_sha256:  # a resumed run: the files it recorded (a .gz is the same file)
        check_recorded_sha256(config.data_dir, config.data_sha256, found)
    sha256 = tuple(f"{n}={h}" for n, h in found.items())
    recorded = replace(
        config,
        image_height=height,
        image_width=width,
        class_names=train_split.class_names,
        data_sha256=sha256,
    )
    return (
        recorded,
        (train_split.images, train_split.labels),
        (test_split.images, test_split.labels),
    )


def make_task(config: TrainConfig) -> ImageTask:
    """The task of a run of ``config``: its data read (:func:`load_data`) and the validation
    set (``val_size`` images, seeded) carved out of the training split."""
    from rnnflow.data import CLASS_NAMES, train_val_split

    config, (x, y), test = load_data(config)
    if config.val_size:
        _check_val_size(config.val_size, len(x))
        train_data, val_data = train_val_split(x, y, val_size=config.val_size, seed=config.seed)
    else:
        train_data, val_data = (x, y), (x[:0], y[:0])
    names = config.class_names or CLASS_NAMES[config.dataset]
    return ImageTask(config, train_data, val_data, num_classes=len(names), test_data=test)


def _check_val_size(val_size: int | float, n: int) -> None:
    """``ValueError`` naming ``--val-size`` (and a value that fits) when ``val_size`` would
    leave no training or no validation image out of the ``n`` training-split images."""
    n_val = round(n * val_size) if isinstance(val_size, float) else val_size
    if not 0 < n_val < n:
        fits = f"--val-size {max(1, n // 10)} (a tenth) or " if n >= 2 else ""
        raise ValueError(
            f"--val-size {val_size}: the training split holds {count(n, 'image')}, so the "
            f"validation "
            f"set must hold between 1 and {n - 1} of them, got {n_val}; use {fits}"
            "--val-size 0 (no validation set)"
        )


def load_trained_model(
    path: str | os.PathLike[str], *, device: str = "cpu"
) -> tuple[SequenceClassifier, Checkpoint]:
    """The classifier in a checkpoint (or a run folder's best checkpoint), in eval mode;
    ``CheckpointError`` for a checkpoint of another task."""
    from rnnflow.tasks import load_trained

    model, checkpoint = load_trained(path, device=device, task=NAME)
    return model, checkpoint  # type: ignore[return-value]


def import_tutorial(
    checkpoint: Any, *, base_config: TrainConfig | None = None, **kwargs: Any
) -> Any:
    """:func:`rnnflow.interop.tf1_import.import_tutorial` with this task's model and optimizer,
    starting from ``base_config`` (default: the ``tutorial`` preset); returns its
    ``ImportedModel``. The other keyword arguments (``overrides``, ``ignore``, ``beta1``,
    ``beta2``, ``with_optimizer``) are passed through."""
    from rnnflow.interop.tf1_import import import_tutorial as import_model
    from rnnflow.training.config import PRESETS
    from rnnflow.training.engine import build_optimizer

    return import_model(
        checkpoint,
        base_config=PRESETS["tutorial"] if base_config is None else base_config,
        build_model=build_model,
        build_optimizer=build_optimizer,
        **kwargs,
    )
