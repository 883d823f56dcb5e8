"""argparse flags generated from a task config's fields (``TrainConfig``, ``CharLMConfig``, ...):
no second list of defaults."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from dataclasses import fields
from typing import Any


def positive_int(text: str) -> int:
    """argparse ``type=`` for a count option (batch size, examples, classes to show): an integer
    >= 1; anything else is argparse's one-line usage error (exit status 2) naming the flag, e.g.
    ``argument --batch-size: expected an integer >= 1, got '0'``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _optional(parse: typing.Callable[[str], Any]) -> typing.Callable[[str], Any]:
    def convert(text: str) -> Any:
        return None if text.lower() == "none" else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def field_comments(config_cls: type) -> dict[str, str]:
    """{field: the comment ending its line} over ``config_cls`` and its bases: the configs
    document each field there, and ``--help`` shows it (one copy of each field's meaning)."""
    comments: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(cls))
        except (OSError, TypeError):  # no source (a frozen app): flags keep their defaults only
            continue
        lines = source.splitlines()
        for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                line = lines[node.end_lineno - 1]  # type: ignore[operator]
                found = [t for t in _tokens(line) if t.type == tokenize.COMMENT]
                if found:
                    comments[node.target.id] = found[0].string.lstrip("#").strip()
    return comments


def _tokens(line: str) -> list[tokenize.TokenInfo]:
    try:
        return list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, SyntaxError):  # a line inside a bracket: no comment read
        return []


# One flag name per meaning across every task and command: config fields whose flag is not
# simply ``--field-name`` (the character model's ``embed_size`` is the text classifier's
# ``embedding_size``: both are ``--embedding-size``), and the spellings still accepted as
# hidden aliases (not shown in --help).
FLAG_NAMES: dict[str, str] = {"embed_size": "embedding-size"}
HIDDEN_ALIASES: dict[str, tuple[str, ...]] = {
    "embed_size": ("--embed-size",),
    "embedding_size": ("--embed-size",),
}


def flag_name(field: str) -> str:
    """The command-line flag of config field ``field``: ``--field-name`` (``FLAG_NAMES``)."""
    return "--" + FLAG_NAMES.get(field, field.replace("_", "-"))


def field_flags(field: str) -> tuple[str, ...]:
    """Every flag that sets config field ``field``: its own, then its hidden aliases."""
    return (flag_name(field), *HIDDEN_ALIASES.get(field, ()))


def choice_type(
    choices: typing.Sequence[str], aliases: typing.Mapping[str, str] | None = None
) -> typing.Callable[[str], str]:
    """argparse ``type=`` for a flag with ``choices``: maps the other spelling of a choice to
    the canonical one (``-`` for ``_`` or back: ``fashion_mnist`` -> ``fashion-mnist``,
    ``lstm-block`` -> ``lstm_block``; any case) and the names in ``aliases`` (alias ->
    choice), so that every command takes what another one spells; anything else is returned as
    given, for argparse's "invalid choice" (exit status 2)."""
    by_key = {_choice_key(c): c for c in choices}
    for alias, choice in (aliases or {}).items():
        by_key.setdefault(_choice_key(alias), choice)

    def choice(text: str) -> str:
        return text if text in choices else by_key.get(_choice_key(text), text)

    choice.__name__ = "choice"
    return choice


def dataset_aliases() -> dict[str, str]:
    """{alias: dataset} of the dataset catalog (``kuzushiji-mnist`` -> ``kmnist``): every
    command that takes a dataset name takes these (torch-free: ``--help`` stays fast)."""
    from rnnflow.data.catalog import DATASETS

    return {alias: name for name, spec in DATASETS.items() for alias in spec.aliases}


def dataset_choices(*, idx: bool = True) -> list[str]:
    """The catalogued dataset names as every command spells them (``fashion-mnist``), and
    ``idx`` (any IDX folder) unless ``idx=False``."""
    from rnnflow.data.catalog import DATASETS

    return [*DATASETS, *(["idx"] if idx else [])]


def dataset_type() -> typing.Callable[[str], str]:
    """argparse ``type=`` of a dataset flag: :func:`choice_type` over :func:`dataset_choices`
    with the catalog's aliases (``fashion_mnist`` and ``FASHION-MNIST`` are
    ``fashion-mnist``)."""
    return choice_type(dataset_choices(), dataset_aliases())


def _choice_key(text: str) -> str:
    return text.strip().lower().replace("_", "-")


def add_field_argument(
    group: Any,
    name: str,
    tp: Any,
    default: Any,
    meaning: str | None = None,
    *,
    aliases: typing.Mapping[str, str] | None = None,
) -> None:
    """``--field-name`` (:func:`flag_name`) for one config field of type ``tp`` (Literal ->
    choices, their other spellings and ``aliases`` mapped by :func:`choice_type`; bool ->
    --x/--no-x, int/float/str, optionally None; ``tuple[str, ...]`` -> a repeated flag, whose
    list :func:`config_overrides` turns into a tuple). Unset, it stays out of the namespace
    (``dest="cfg_<name>"``, so :func:`config_overrides` finds exactly the given ones)."""
    flag = flag_name(name)
    kwargs: dict[str, Any] = {"dest": f"cfg_{name}", "default": argparse.SUPPRESS}
    shown = f"(default: {default!r})"
    help_text = (f"{meaning} {shown}" if meaning else shown).replace(
        "%", "%%"
    )  # argparse %-formats
    _add_hidden_aliases(group, name, tp, kwargs)
    if typing.get_origin(tp) is typing.Literal:
        choices = typing.get_args(tp)
        group.add_argument(
            flag,
            choices=choices,
            type=choice_type(choices, aliases),
            help=help_text,
            **kwargs,
        )
        return
    if tp is bool:
        group.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text, **kwargs)
        return
    if typing.get_origin(tp) is tuple:  # tuple[X, ...]: the flag repeats; a list in the namespace
        help_text = "repeat for several; " + help_text
        item = typing.get_args(tp)[0]  # str, int or float
        kwargs.update(action="append", type=item, metavar=item.__name__.upper())
        group.add_argument(flag, help=help_text, **kwargs)
        return
    parse, metavar = _scalar_type(tp)
    if type(None) in typing.get_args(tp):
        help_text += "; 'none' for None"
    group.add_argument(flag, type=parse, metavar=metavar, help=help_text, **kwargs)


def _scalar_type(tp: Any) -> tuple[typing.Callable[[str], Any], str]:
    """(argparse ``type``, metavar) of an int/float/str field, optionally None."""
    args = typing.get_args(tp)
    base = next((a for a in args if a is not type(None)), tp)
    parse = {int: int, float: float, str: str}[base]
    return (_optional(parse) if type(None) in args else parse), base.__name__.upper()


def _add_hidden_aliases(group: Any, name: str, tp: Any, kwargs: dict[str, Any]) -> None:
    """The old spellings of field ``name``'s flag (``HIDDEN_ALIASES``), same destination, out
    of --help (scalar fields only: the ones renamed)."""
    for alias in HIDDEN_ALIASES.get(name, ()):
        parse, metavar = _scalar_type(tp)
        group.add_argument(alias, type=parse, metavar=metavar, help=argparse.SUPPRESS, **kwargs)


def _flag_text(name: str, value: Any) -> str:
    flag = flag_name(name)
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    if isinstance(value, tuple):  # a repeated flag
        return " ".join(f"{flag} {item}" for item in value) or f"no {flag}"
    return f"{flag} {value}"


def preset_epilog(title: str, presets: dict[str, Any], shown: dict[str, Any] | None = None) -> str:
    """Help text listing, for each preset, the values that differ from the defaults ``--help``
    shows (``shown``: field -> default; the first preset's dataclass defaults when None), so
    that ``--help`` does not pass one preset's defaults off as every preset's."""
    from dataclasses import asdict

    if shown is None:
        shown = asdict(type(next(iter(presets.values())))())
    lines = [f"{title}; each replaces the defaults shown above with:"]
    for name in sorted(presets):
        changed = {k: v for k, v in asdict(presets[name]).items() if shown.get(k) != v}
        values = ", ".join(_flag_text(k, v) for k, v in changed.items())
        text = f"{name}: {values or '(the defaults shown)'}"
        lines += textwrap.wrap(
            text, width=96, initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False
        )
    return "\n".join(lines)


def add_config_arguments(
    parser: argparse.ArgumentParser,
    config_cls: type,
    *,
    title: str,
    description: str,
    skip: typing.Collection[str] = (),
    aliases: typing.Mapping[str, typing.Mapping[str, str]] | None = None,
) -> argparse._ArgumentGroup:
    """One ``--field-name`` per field of the config dataclass ``config_cls`` (but ``skip``), in
    an argument group; unset flags stay out of the namespace (:func:`config_overrides`).
    ``aliases``: field -> {other name: choice} accepted for a Literal field's choices."""
    group = parser.add_argument_group(title, description)
    hints = typing.get_type_hints(config_cls)
    meanings = field_comments(config_cls)
    for f in fields(config_cls):
        if f.name not in skip:
            add_field_argument(
                group,
                f.name,
                hints[f.name],
                f.default,
                meanings.get(f.name),
                aliases=(aliases or {}).get(f.name),
            )
    return group


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """{field: value} for the config flags given on the command line (repeated flags' lists as
    tuples, as the frozen configs hold them)."""
    return {
        k[4:]: tuple(v) if isinstance(v, list) else v
        for k, v in vars(args).items()
        if k.startswith("cfg_")
    }
