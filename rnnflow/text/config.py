"""The character-LM run's config: ``CharLMConfig`` (every default), its ranges and presets.

Torch-free (the CLI's ``rnnflow train --help`` builds its flags from these without importing
torch); the task module ``rnnflow.tasks.charlm`` trains it.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from rnnflow._config_checks import FINITE, POSITIVE, PROBABILITY, Range
from rnnflow._fit_config import FIT_CONFIG_RANGES, FitConfig
from rnnflow._fit_config import config_from_dict as _config_from_dict

__all__ = [
    "CHARLM_CONFIG_RANGES",
    "PRESETS",
    "TASK",
    "CharLMConfig",
    "charlm_config_from_dict",
    "field_type",
]

TASK = "charlm"  # the "task" key of config.json and of checkpoint metadata


@dataclass(frozen=True)
class CharLMConfig(FitConfig):
    """Everything that defines a character-LM run: the shared fields of
    :class:`~rnnflow._fit_config.FitConfig` (optimizer, warm-up, EMA, ...; the defaults below
    replace some of theirs) and the fields below. Frozen: derive variants with ``replace``."""

    # data
    corpus: Literal["tang", "song", "tang-song", "text"] = "tang"  # "text": the --text files
    text: tuple[str, ...] = ()  # UTF-8 files, with corpus="text"
    delimiter: str = "%"  # a line holding only this ends a document; "" : one document per file
    fortunes_dir: str | None = None  # None: $RNNFLOW_FORTUNES_DIR or /usr/share/games/fortunes
    val_fraction: float = 0.1  # documents held out (seeded) for validation
    min_count: int = 2  # rarer training characters become <unk>
    max_len: int = 128  # longer documents are cut into windows of this many steps
    # model
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    embed_size: int = 128
    num_units: int = 256
    num_layers: int = 1
    dropout: float = 0.3  # embeddings, between layers, top outputs
    forget_bias: float = 1.0  # BasicLSTMCell only
    # optimisation: FitConfig's fields, these with other defaults
    lr: float = 0.003
    min_lr: float = 0.0003  # cosine floor
    schedule: Literal["constant", "cosine"] = "cosine"
    grad_clip: float = 5.0  # global gradient norm; 0 disables
    batch_size: int = 32  # windows per batch
    epochs: int = 25
    # bookkeeping: FitConfig's fields, these with other defaults
    log_every: int = 320  # training windows between "train" records
    eval_every: int = 0  # training windows between validations; 0: at the end of every epoch
    eval_batch_size: int = 64

    @classmethod
    def ranges(cls) -> dict[str, Range]:
        return CHARLM_CONFIG_RANGES

    def check(self) -> None:
        if self.corpus == "text" and not self.text:
            raise ValueError("CharLMConfig: corpus='text' needs at least one file in text")
        if self.corpus != "text" and self.text:
            raise ValueError(
                f"CharLMConfig: text files are read only with corpus='text', got "
                f"corpus={self.corpus!r}"
            )

    def to_json(self) -> str:
        return json.dumps({"task": TASK, **asdict(self)}, indent=2, ensure_ascii=False)


CHARLM_CONFIG_RANGES: dict[str, Range] = {
    **FIT_CONFIG_RANGES,
    "val_fraction": PROBABILITY,
    "min_count": POSITIVE,
    "max_len": POSITIVE,
    "embed_size": POSITIVE,
    "num_units": POSITIVE,
    "num_layers": POSITIVE,
    "dropout": PROBABILITY,
    "forget_bias": FINITE,
    "epochs": POSITIVE,
}


def field_type(name: str) -> Any:
    """The resolved annotation of CharLMConfig field ``name``."""
    return typing.get_type_hints(CharLMConfig)[name]


def charlm_config_from_dict(data: Any, *, source: str = "config") -> CharLMConfig:
    """A CharLMConfig from ``config.json`` (the ``task`` key is checked and dropped); unknown keys
    are an error, missing keys take the defaults."""
    return _config_from_dict(CharLMConfig, data, source=source, task=TASK)


_DEFAULT = CharLMConfig()

PRESETS: dict[str, CharLMConfig] = {
    # One LSTM layer on the 313 Tang poems: a few minutes on 2 CPU cores.
    "tang": _DEFAULT,
    # Tang + Song poems, two layers.
    "tang-song": replace(_DEFAULT, corpus="tang-song", num_layers=2, epochs=30),
    # Seconds: smoke tests and CI.
    "tiny": replace(
        _DEFAULT, embed_size=16, num_units=32, batch_size=8, epochs=2, min_count=1, dropout=0.0
    ),
}
