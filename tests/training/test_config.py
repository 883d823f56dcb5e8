"""TrainConfig: the tutorial preset is the tutorial; every field has a CLI flag; strict checks."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields, replace

import pytest

from rnnflow.cli import build_parser
from rnnflow.cli._config_args import config_overrides
from rnnflow.training.config import PRESETS, TrainConfig, config_from_dict


def test_tutorial_preset_is_the_tutorial():
    c = PRESETS["tutorial"]
    assert (c.cell, c.num_units, c.num_layers, c.bidirectional) == ("rnn", 128, 1, False)
    assert (c.init, c.optimizer, c.lr, c.schedule) == ("normal", "adam", 0.001, "constant")
    assert (c.batch_size, c.train_examples, c.steps) == (128, 1_000_000, 7813)
    assert c.dropout == c.weight_decay == c.grad_clip == c.label_smoothing == 0.0
    assert not (c.hflip or c.max_shift or c.tta_flip or c.warmup_examples)
    assert c == TrainConfig()  # the defaults are the tutorial


def test_best_preset_is_a_valid_variation():
    best = PRESETS["best"]
    assert best.dataset == "fashion-mnist"
    assert config_from_dict(json.loads(json.dumps(asdict(best)))) == best


def test_every_field_has_a_flag_and_unset_flags_stay_unset():
    parser = build_parser()
    args = parser.parse_args(["train", "--out", "x"])
    assert config_overrides(args) == {}
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    dests = {a.dest for a in train._actions}
    assert {f"cfg_{f.name}" for f in fields(TrainConfig)} <= dests
    args = parser.parse_args(
        ["train", "--out", "x", "--cell", "lstm", "--bidirectional", "--lr", "0.01"]
        + ["--projection-size", "none", "--num-units", "64"]
    )
    assert config_overrides(args) == {
        "cell": "lstm",
        "bidirectional": True,
        "lr": 0.01,
        "projection_size": None,
        "num_units": 64,
    }


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (
            {"cell": "transformer"},
            ValueError,
            r"cell must be one of \['rnn', 'lstm', 'gru', 'lstm_cell'\]",
        ),
        ({"num_units": 0}, ValueError, r"num_units must be > 0, got 0"),
        ({"num_units": 1.5}, TypeError, r"num_units must be int, got 1.5"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        ({"bidirectional": 1}, TypeError, r"bidirectional must be bool, got 1"),
        ({"max_shift": 28}, ValueError, r"max_shift must be < 28, got 28"),
        (
            {"ema_decay": 1.0},
            ValueError,
            r"ema_decay must be in \[0, 1\) \(0 disables the weight "
            r"average\), got 1.0",
        ),
        ({"ema_decay": -0.5}, ValueError, r"ema_decay must be in \[0, 1\) .*, got -0.5"),
    ],
)
def test_invalid_values(changes, error, message):
    with pytest.raises(error, match=r"TrainConfig: " + message):
        replace(TrainConfig(), **changes)


def test_config_from_dict_rejects_unknown_fields_and_accepts_whole_floats():
    with pytest.raises(ValueError, match=r"run/config.json: unknown TrainConfig fields \['lr2'\]"):
        config_from_dict({"lr2": 1}, source="run/config.json")
    assert config_from_dict({"lr": 1}).lr == 1.0
