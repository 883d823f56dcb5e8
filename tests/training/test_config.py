"""TrainConfig: the tutorial preset is the tutorial; every field has a CLI flag; strict checks."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, fields, replace

import pytest

from rnnflow.cli import build_parser
from rnnflow.cli._config_args import config_overrides
from rnnflow.training.config import (
    DATA_RECORD_FIELDS,
    PRESETS,
    TRAIN_CONFIG_RANGES,
    TrainConfig,
    config_from_dict,
    field_type,
)


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
    recorded = {f"cfg_{name}" for name in DATA_RECORD_FIELDS}  # from the data, not flags
    assert {f"cfg_{f.name}" for f in fields(TrainConfig)} - recorded <= dests
    assert not recorded & dests
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
        ({"cell": "transformer"}, ValueError, r"cell must be one of \['rnn', 'lstm', 'gru', "),
        ({"num_units": 0}, ValueError, r"num_units must be > 0, got 0"),
        ({"num_units": 1.5}, TypeError, r"num_units must be int, got 1.5"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        ({"bidirectional": 1}, TypeError, r"bidirectional must be bool, got 1"),
        ({"max_shift": 28}, ValueError, r"max_shift must be in \[0, 28\), got 28"),
        (
            {"ema_decay": 1.0},
            ValueError,
            r"ema_decay must be in \[0, 1\) \(0 disables the weight "
            r"average\), got 1.0",
        ),
        ({"ema_decay": -0.5}, ValueError, r"ema_decay must be in \[0, 1\) .*, got -0.5"),
        ({"lr": 0.0}, ValueError, r"lr must be in \(0, 1e\+37\], got 0.0"),
        ({"lr": 1e38}, ValueError, r"lr must be in \(0, 1e\+37\], got 1e\+38"),
        ({"min_lr": 0.01}, ValueError, r"min_lr must be <= lr \(0.001\), got 0.01"),
        ({"grad_clip": -1.0}, ValueError, r"grad_clip must be >= 0 \(0 disables clipping\)"),
        ({"seed": -1}, ValueError, r"seed must be in \[0, 9223372036854775806\], got -1"),
        ({"threads": 5000}, ValueError, r"threads must be in \[0, 1024\] \(0: PyTorch's def"),
        ({"train_examples": 2**64}, ValueError, r"train_examples must fit in a 64-bit integer"),
    ],
)
def test_invalid_values(changes, error, message):
    with pytest.raises(error, match=r"TrainConfig: " + message):
        replace(TrainConfig(), **changes)


def test_config_from_dict_rejects_unknown_fields_and_accepts_whole_floats():
    with pytest.raises(ValueError, match=r"run/config.json: unknown TrainConfig fields \['lr2'\]"):
        config_from_dict({"lr2": 1}, source="run/config.json")
    assert config_from_dict({"lr": 1}).lr == 1.0


FLOAT_FIELDS = [f.name for f in fields(TrainConfig) if field_type(f.name) is float]
INT_FIELDS = [f.name for f in fields(TrainConfig) if field_type(f.name) in (int, int | None)]


def test_every_numeric_field_is_checked():
    """The ranges table covers every int and float field (the list below is written by hand)."""
    assert sorted(TRAIN_CONFIG_RANGES) == sorted(FLOAT_FIELDS + INT_FIELDS)
    assert len(FLOAT_FIELDS) == 9 and len(INT_FIELDS) == 15  # 13 + image_height, image_width


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused_for_every_field(name, value):
    """--lr inf, --weight-decay inf, --forget-bias nan, --grad-clip nan trained silently."""
    with pytest.raises(ValueError, match=rf"TrainConfig: {name} must be a finite number, got"):
        replace(TrainConfig(), **{name: value})


@pytest.mark.parametrize("name", INT_FIELDS)
def test_negative_and_huge_ints_are_refused_for_every_field(name):
    with pytest.raises(ValueError, match=rf"TrainConfig: {name} must be "):
        replace(TrainConfig(), **{name: -1})
    with pytest.raises(ValueError, match=rf"TrainConfig: {name} must "):
        replace(TrainConfig(), **{name: 2**63})


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--lr", "inf", "lr must be a finite number, got inf"),
        ("--weight-decay", "inf", "weight_decay must be a finite number, got inf"),
        ("--forget-bias", "nan", "forget_bias must be a finite number, got nan"),
        ("--grad-clip", "nan", "grad_clip must be a finite number, got nan"),
    ],
)
def test_the_cli_refuses_non_finite_values_before_anything_is_written(
    tmp_path, capsys, flag, value, message
):
    from rnnflow.cli import main

    assert main(["train", "--out", str(tmp_path / "r"), flag, value]) == 2
    assert f"rnnflow train: TrainConfig: {message}" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_config_flags_are_generated_for_any_task_config_tuple_fields_repeat():
    """A task config's fields become flags (dest cfg_<field>); a tuple[str, ...] field is a
    repeated flag whose values come back as the tuple the frozen config holds."""
    import argparse
    from dataclasses import dataclass

    from rnnflow._fit_config import FitConfig
    from rnnflow.cli._config_args import add_config_arguments

    @dataclass(frozen=True)
    class SomeConfig(FitConfig):
        files: tuple[str, ...] = ()
        width: int = 3

        @classmethod
        def ranges(cls):
            from rnnflow._config_checks import POSITIVE

            return {"width": POSITIVE}

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, SomeConfig, title="t", description="d", skip=("seed",))
    args = parser.parse_args(["--files", "a.npz", "--files", "b.npz", "--lr", "0.5"])
    overrides = config_overrides(args)
    assert overrides == {"files": ("a.npz", "b.npz"), "lr": 0.5}
    assert SomeConfig(**overrides).files == ("a.npz", "b.npz")
    with pytest.raises(SystemExit):
        parser.parse_args(["--seed", "1"])  # skipped
    with pytest.raises(ValueError, match=r"SomeConfig: width must be > 0, got 0"):
        SomeConfig(width=0)
