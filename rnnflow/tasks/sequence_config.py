"""SequenceConfig: every field of a variable-length sequence-classifier run, and its presets.

Torch-free (the CLI builds ``rnnflow train --task sequence``'s flags from it). A run saves
``asdict(config)`` in ``config.json`` and in every checkpoint; the fields under "recorded from the
data" are filled in from the training split when the run starts (no flags), so that evaluate,
predict and export read and normalise new series exactly as training did.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, replace
from typing import Literal

from rnnflow._config_checks import FINITE, NON_NEGATIVE, POSITIVE, PROBABILITY, Range
from rnnflow._fit_config import FIT_CONFIG_RANGES, FitConfig
from rnnflow._fit_config import config_from_dict as _config_from_dict
from rnnflow.models.cell_kinds import CellKind, ConvBranch, Init

# rnnflow.models.classifier.POOLINGS (that module needs torch; a test keeps the two equal)
Pooling = Literal["last", "mean", "max", "last+max", "last+mean+max"]

__all__ = ["BUILTIN", "DATA_RECORD_FIELDS", "PRESETS", "SequenceConfig", "config_from_dict"]

TASK = "sequence"  # the "task" key of config.json and of checkpoint metadata
BUILTIN = ("japanese-vowels", "pickup-gesture-wiimote-z")  # .ts files inside the aeon wheel


@dataclass(frozen=True)
class SequenceConfig(FitConfig):
    """A sequence-classifier run: series [T_i, D] -> one of C classes (rnnflow.tasks.sequence).

    Data: ``dataset`` is a built-in UEA/UCR set read offline from the installed aeon
    (``japanese-vowels``, ``pickup-gesture-wiimote-z``; extra ``sequence``) or your files:
    ``npz`` (``train_file``, ``test_file``; one file holding ``x_train``/``x_test`` needs only
    ``train_file``) or ``ts`` (both files). Features are standardised per channel with the
    training split's statistics (``norm_mean``/``norm_std``, recorded). ``val_size`` series are
    held out of the training split for validation and model selection; with 0 (the default)
    there is no validation and the last model is kept: the test split is never used for
    selection, only by ``rnnflow evaluate``.
    """

    # shared fields with this task's defaults: the japanese-vowels recipe (docs/RESULTS.md)
    lr: float = 0.003
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup_examples: int = 2700  # 10 epochs of JapaneseVowels' 270 training series
    batch_size: int = 16
    log_every: int = 2700
    eval_every: int = 2700  # validation (with --val-size) and a checkpoint every 2700 examples
    # data
    dataset: Literal["japanese-vowels", "pickup-gesture-wiimote-z", "npz", "ts"] = "japanese-vowels"
    train_file: str | None = None  # npz / ts: the training series
    test_file: str | None = None  # npz / ts: the test series (npz: default x_test of train_file)
    allow_pickle: bool = False  # npz: accept object arrays (pickle: only files you trust)
    val_size: int = 0  # held out of the training split (seeded); 0: no validation
    bucket: bool = False  # batch series of similar lengths together (less padding)
    # recorded from the data (no flags; see DATA_RECORD_FIELDS)
    num_channels: int = 0  # D, values per time step
    class_names: tuple[str, ...] = ()
    norm_mean: tuple[float, ...] = ()  # per channel, over the valid steps of the training split
    norm_std: tuple[float, ...] = ()
    data_sha256: tuple[str, ...] = ()  # "file name=sha256 of its bytes" of every file read
    delta_mean: tuple[float, ...] = ()  # with deltas: the statistics of the training split's
    delta_std: tuple[float, ...] = ()  # first differences (rnnflow.data.sequence_norm.delta_stats)
    # model (rnnflow.models.classifier.SequenceClassifier)
    cell: CellKind = "gru"
    num_units: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.0  # drop probability on each layer's outputs (DropoutWrapper)
    projection_size: int | None = None  # width of the input projection; None: num_units
    init: Init = "glorot"
    forget_bias: float = 1.0
    pooling: Pooling = "last"  # the last valid output(s), the mean or max of the valid outputs,
    # or a concatenation of them (rnnflow.models.classifier.pool_outputs)
    conv_branch: ConvBranch = "none"  # a masked convolutional branch beside the recurrent one:
    # LSTM-FCN's ("fcn") or MLSTM-FCN's with squeeze-and-excitation ("fcn-se"; rnnflow.models.fcn)
    deltas: bool = False  # append each channel's first difference x[t] - x[t-1] (0 at t = 0),
    # standardised with its own training statistics, as D more channels (append_deltas)
    # optimisation (the rest: FitConfig)
    label_smoothing: float = 0.0
    noise_std: float = 0.0  # training batches: add N(0, noise_std^2) to every standardised value
    crop_min: float = 1.0  # training batches: a random window of >= this fraction of each series
    epochs: int = 100  # passes over the training split

    @classmethod
    def ranges(cls) -> dict[str, Range]:
        return SEQUENCE_CONFIG_RANGES

    def check(self) -> None:
        own = self.dataset in ("npz", "ts")
        if own and not self.train_file:
            raise ValueError(
                f"SequenceConfig: dataset {self.dataset!r} needs train_file (--train-file FILE)"
            )
        if self.dataset == "ts" and not self.test_file:
            raise ValueError("SequenceConfig: dataset 'ts' needs test_file (--test-file FILE)")
        if not own and (self.train_file or self.test_file):
            raise ValueError(
                f"SequenceConfig: train_file and test_file are for datasets 'npz' and 'ts', not "
                f"the built-in {self.dataset!r}"
            )
        for name in ("norm", "delta"):  # the series' and their deltas' training statistics
            mean, std = getattr(self, f"{name}_mean"), getattr(self, f"{name}_std")
            if len(mean) != len(std) or len(mean) not in (0, self.num_channels):
                raise ValueError(
                    f"SequenceConfig: {name}_mean and {name}_std must hold num_channels "
                    f"({self.num_channels}) values each, got {len(mean)} and {len(std)}"
                )
            if any(s <= 0 for s in std):
                raise ValueError(f"SequenceConfig: {name}_std must be > 0, got {min(std)}")

    def to_json(self) -> str:
        """``config.json``'s text: the fields and ``"task": "sequence"`` (so that a run that
        stopped before its first checkpoint is still known as a sequence run)."""
        return json.dumps({"task": TASK, **asdict(self)}, indent=2, ensure_ascii=False)

    @property
    def recorded(self) -> bool:
        """Whether the data's facts (channels, classes, statistics) are filled in."""
        return self.num_channels > 0 and bool(self.class_names) and bool(self.norm_mean)

    @property
    def num_classes(self) -> int:
        """C (0 before the data is read)."""
        return len(self.class_names)


SEQUENCE_CONFIG_RANGES: dict[str, Range] = {
    **FIT_CONFIG_RANGES,
    "val_size": NON_NEGATIVE,
    "num_channels": NON_NEGATIVE,
    "num_units": POSITIVE,
    "num_layers": POSITIVE,
    "dropout": PROBABILITY,
    "projection_size": POSITIVE,
    "forget_bias": FINITE,
    "label_smoothing": PROBABILITY,
    "noise_std": NON_NEGATIVE,
    "crop_min": Range(low=0, high=1, low_open=True, note=" (1: no cropping)"),
    "epochs": POSITIVE,
}

DATA_RECORD_FIELDS = (
    "num_channels",
    "class_names",
    "norm_mean",
    "norm_std",
    "data_sha256",
    "delta_mean",
    "delta_std",
)
"""Fields the run records from the training data, not set by flags or presets."""

config_from_dict = functools.partial(_config_from_dict, SequenceConfig, task=TASK)
"""A SequenceConfig from ``asdict`` output (``config.json``, a checkpoint's config)."""

_BASE = SequenceConfig()

PRESETS: dict[str, SequenceConfig] = {
    # JapaneseVowels (12 channels, 7-29 steps, 9 speakers): a bidirectional GRU of 128 units per
    # direction beside MLSTM-FCN's masked convolutional branch with squeeze-and-excitation, both
    # reading the 12 channels and their 12 standardised first differences (deltas); Adam 3e-3,
    # 10 epochs of warm-up then cosine to 0 over 100 epochs of batch 16; the defaults above but
    # conv_branch and deltas (whose defaults stay off: configs of older runs, which lack the
    # fields, load as they trained). Chosen by 5-fold stratified cross-validation of the 270
    # TRAINING series (the test split unread), held-out errors for seeds 0, 1, 2: the GRU alone
    # 5, 7, 6; with the branch 4, 5, 5; with the branch and deltas 2, 3, 2. Earlier rounds:
    # EMA, input noise, AdamW weight decay, random crops and 200-300 epochs tied the GRU alone;
    # mean, max and concatenated pooling, 2 layers, 256 units with dropout, 64 units, LSTM and
    # the N(0, 1) input projection were worse. docs/RESULTS.md has the numbers.
    "japanese-vowels": replace(_BASE, conv_branch="fcn-se", deltas=True),
}
