"""argparse flags generated from ``TrainConfig``'s fields: no second list of defaults."""

from __future__ import annotations

import argparse
import typing
from dataclasses import fields
from typing import Any

from rnnflow.training.config import TrainConfig, field_choices, field_type


def _optional(parse: typing.Callable[[str], Any]) -> typing.Callable[[str], Any]:
    def convert(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` per TrainConfig field; unset flags stay out of the namespace."""
    group = parser.add_argument_group(
        "config overrides", "any TrainConfig field; the preset's value when not given"
    )
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        tp = field_type(f.name)
        help_text = f"(default: {f.default!r})"
        choices = field_choices(f.name)
        kwargs: dict[str, Any] = {"dest": f"cfg_{f.name}", "default": argparse.SUPPRESS}
        if choices is not None:
            group.add_argument(flag, choices=choices, help=help_text, **kwargs)
            continue
        if tp is bool:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, help=help_text, **kwargs
            )
            continue
        args = typing.get_args(tp)
        base = next((a for a in args if a is not type(None)), tp)
        parse = {int: int, float: float, str: str}[base]
        if type(None) in args:
            parse = _optional(parse)
            help_text += "; 'none' for None"
        metavar = base.__name__.upper()
        group.add_argument(flag, type=parse, metavar=metavar, help=help_text, **kwargs)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """{field: value} for the config flags given on the command line."""
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
