"""The character-LM run's config: ``CharLMConfig`` (every default), its ranges and presets.

Torch-free (the CLI's ``rnnflow train --help`` builds its flags from these without importing
torch); the task module ``rnnflow.tasks.charlm`` trains it.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

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
    # tang, song, tang-song: Debian's fortunes-zh (313 + 94 poems, offline); tang-full,
    # tang-song-full: the npm package chinese-poetry (rnnflow.text.chinese_poetry); text: --text
    corpus: Literal["tang", "song", "tang-song", "tang-full", "tang-song-full", "text"] = "tang"
    text: tuple[str, ...] = ()  # UTF-8 files, with corpus="text"
    data_dir: str | None = None  # *-full: folder of chinese-poetry-2.0.1.tgz (else the cache)
    script: Literal["simplified", "traditional"] = "simplified"  # *-full: OpenCC t2s or as is
    forms: tuple[str, ...] = ()  # keep only poems of these forms (e.g. 5x8); empty: keep all
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
    # output layer: "full" softmax, or "adaptive" (nn.AdaptiveLogSoftmaxWithLoss, Grave et al.
    # 2017) whose head holds the ids below cutoffs[0] (ids are ordered by training frequency)
    softmax: Literal["full", "adaptive"] = "full"
    cutoffs: tuple[int, ...] = ()  # adaptive only: increasing ids in (0, vocabulary size)
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
    task_name: ClassVar[str] = TASK  # config.json's "task" key

    @classmethod
    def ranges(cls) -> dict[str, Range]:
        return CHARLM_CONFIG_RANGES

    def check(self) -> None:
        if self.corpus == "text" and not self.text:
            raise ValueError("CharLMConfig: corpus='text' needs at least one file in text")
        bad = [f for f in self.forms if re.fullmatch(r"[1-9][0-9]*x[1-9][0-9]*", f) is None]
        if bad:
            raise ValueError(f"CharLMConfig: forms are CHARSxVERSES names such as '5x8', got {bad}")
        if self.softmax == "adaptive" and not self.cutoffs:
            raise ValueError(
                "CharLMConfig: softmax='adaptive' needs cutoffs (e.g. --cutoffs 500 --cutoffs 2000)"
            )
        if self.softmax == "full" and self.cutoffs:
            raise ValueError(
                f"CharLMConfig: cutoffs={list(self.cutoffs)} are for softmax='adaptive' "
                "(--softmax adaptive), got softmax='full'"
            )
        if list(self.cutoffs) != sorted(set(self.cutoffs)) or any(c < 1 for c in self.cutoffs):
            raise ValueError(
                f"CharLMConfig: cutoffs must be increasing positive ids, got {list(self.cutoffs)}"
            )
        if self.corpus != "text" and self.text:
            raise ValueError(
                f"CharLMConfig: text files are read only with corpus='text', got "
                f"corpus={self.corpus!r}"
            )


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

# The 50,024 cleaned Tang poems of chinese-poetry (5% held out), three epochs: see
# docs/RESULTS.md. The adaptive softmax (its head: the 500 most frequent ids, 74% of the training
# characters) reached the full softmax's one-epoch perplexity (155.7 against 155.2) at 1.7x less
# CPU; three epochs of it trained in 13.5 minutes on 2 shared cores to 106.6 (0.67 x KN-3).
_TANG_FULL = replace(
    _DEFAULT,
    corpus="tang-full",
    val_fraction=0.05,
    min_count=10,
    num_units=256,
    softmax="adaptive",
    cutoffs=(500, 2000),
    batch_size=64,
    dropout=0.0,
    epochs=3,
    lr=0.004,
    min_lr=0.0004,
    log_every=3200,
    eval_every=24000,
)

PRESETS: dict[str, CharLMConfig] = {
    # One LSTM layer on the 313 Tang poems: a few minutes on 2 CPU cores.
    "tang": _DEFAULT,
    # Tang + Song poems, two layers.
    "tang-song": replace(_DEFAULT, corpus="tang-song", num_layers=2, epochs=30),
    "tang-full": _TANG_FULL,
    # tang-full with a twice wider LSTM: see docs/RESULTS.md for what it reached against the
    # 0.7 x Kneser-Ney target of issue #18.
    "tang-full-512": replace(_TANG_FULL, num_units=512, epochs=1, eval_every=13152),
    # Five-character regulated poems (五言律诗, 5x8) of the full Tang set: 14,222 poems.
    # Twenty epochs with dropout 0.3: 68.15 (0.46 x KN-3) in 12.4 minutes at 1 thread
    # (docs/RESULTS.md; dropout 0.1: 69.29).
    "tang-5x8": replace(
        _TANG_FULL,
        forms=("5x8",),
        min_count=5,
        dropout=0.3,
        epochs=20,
        eval_every=0,
    ),
    # Seconds: smoke tests and CI.
    "tiny": replace(
        _DEFAULT, embed_size=16, num_units=32, batch_size=8, epochs=2, min_count=1, dropout=0.0
    ),
}
