"""The `rnnflow` command line: one sub-module per sub-command.

Each sub-command module defines ``add_parser(subparsers)`` which registers its arguments and sets
``func`` (a callable ``(argparse.Namespace) -> int``). This is the only package that prints.

``rnnflow --help`` and ``rnnflow COMMAND --help`` stay fast: only the named command's module is
imported (the others are listed from the table below), and command modules import torch inside
their run functions, not at import time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import shutil
import sys
from collections.abc import Sequence

# Sub-command name -> (module under rnnflow.cli, one-line help for `rnnflow --help`).
_COMMANDS: dict[str, tuple[str, str]] = {
    "download": (
        "download",
        "download and verify a registered dataset (mnist, kmnist, emnist-letters, ...)",
    ),
    "import-tf1": ("import_tf1", "list or import a TensorFlow-1 checkpoint (no TensorFlow needed)"),
    "train": ("train", "train a model: the row-by-row image classifier, or --task TASK"),
    "evaluate": ("evaluate", "accuracy and confusion matrix (or a text model's perplexity)"),
    "predict": ("predict", "classify image files with a trained model"),
    "generate": ("generate", "sample text (or a poem of a given form) from a character model"),
    "export": ("export", "export a trained model to ONNX or TorchScript, checked against PyTorch"),
    "serve": (
        "serve",
        "a local web page (and JSON API) to watch a model read a drawing or write a poem",
    ),
}


# The exit statuses of every command (`rnnflow --help` shows them; README "Command line").
EXIT_STATUS = (
    "exit status: 0 done; 2 a usage error, reported before any work: a flag or value "
    "argparse or the command refuses, a combination of flags, a dataset name, a path of the "
    "wrong kind (a file where a folder is needed) or a run of the wrong kind for the command; "
    "1 the command failed: missing, unreadable or corrupt files or data, a check that did not "
    "pass, a write that failed; 130 interrupted (Ctrl-C). Every command creates the missing "
    "parent folders of what it writes."
)


def version() -> str:
    """The installed rnnflow's version (package metadata: no torch import)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("rnnflow")
    except PackageNotFoundError:  # a source tree on PYTHONPATH, never installed
        return "unknown (not installed)"


def prog() -> str:
    """How to run this command line again, as the user can type it: ``rnnflow`` when that is on
    PATH (and is this program), else the path they used (``.venv/bin/rnnflow``), else
    ``python -m rnnflow``. Hints in messages ("Continue with: ...") start with it."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "rnnflow":
        found = shutil.which("rnnflow")
        if found and os.path.exists(argv0) and os.path.samefile(found, argv0):
            return "rnnflow"
        return shlex.quote(argv0)
    if argv0.endswith(os.path.join("rnnflow", "__main__.py")):  # python -m rnnflow
        python = shutil.which("python")
        same = python and os.path.samefile(python, sys.executable)
        return f"{'python' if same else shlex.quote(sys.executable)} -m rnnflow"
    return "rnnflow"


def command(*words: object) -> str:
    """A command line the user can paste as it is: :func:`prog` followed by ``words``, each
    quoted for the shell where it needs it (a run folder with a space, ``<``). Every hint that
    names a command to run is built with it."""
    return " ".join([prog(), *(shlex.quote(str(w)) for w in words)])


def report(command: str, message: str) -> None:
    """Print ``rnnflow COMMAND: message`` to standard error. A library message that starts with
    the command's own name (``generate: ...`` from ``generate()``) keeps it once, not twice."""
    print(f"rnnflow {command}: {message.removeprefix(f'{command}: ')}", file=sys.stderr)


def _wanted_command(argv: Sequence[str]) -> str | None:
    """The sub-command ``argv`` names (its first non-option word), if it names one."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in _COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given ``argv``, only the sub-command it names is built in full (the
    others are listed by name and help), so that no other command's module is imported."""
    parser = argparse.ArgumentParser(
        prog=prog(),
        description="TensorFlow-1 style recurrent networks on PyTorch: train, evaluate, predict, "
        "generate, export.",
        epilog=EXIT_STATUS,
    )
    parser.add_argument("--version", action="version", version=f"rnnflow {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = _wanted_command(argv) if argv is not None else None
    for name, (module_name, help_text) in _COMMANDS.items():
        if argv is None or name == wanted:
            module = importlib.import_module(f"rnnflow.cli.{module_name}")
            if name == "train":  # its flags depend on the task the command line asks for
                command = module.add_parser(subparsers, argv)
            else:
                command = module.add_parser(subparsers)
            command.set_defaults(command_parser=command)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(argv) if argv is not None else sys.argv[1:]
    try:
        status = _main(args_list)
        sys.stdout.flush()  # here, not at exit: a reader that left is handled below
        return status
    except BrokenPipeError:  # stdout's reader left (`| head`): exit quietly, no traceback
        # Python's documented recipe (signal module, "Note on SIGPIPE"): point stdout at
        # devnull so that the flush at exit cannot raise again; status 1: a write that failed
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:  # a command that keeps something says so itself (train)
        command = _wanted_command(args_list)
        print(f"{prog()}{' ' + command if command else ''}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130


def _main(args_list: list[str]) -> int:
    parser = build_parser(args_list)
    args, extras = parser.parse_known_args(args_list)
    if extras:  # the command's usage, and what the flags belong to when it knows (train)
        explain = getattr(args, "explain_unknown", None)
        message = f"unrecognized arguments: {' '.join(extras)}"
        getattr(args, "command_parser", parser).error(
            message + (explain(extras) if explain else "")
        )
    if os.environ.get("RNNFLOW_ISA"):  # refused before any command reads or writes a file
        from rnnflow.recurrence._ext import check_isa_name

        try:
            check_isa_name()
        except ValueError as exc:
            print(f"{prog()} {args.command}: {exc}", file=sys.stderr)
            return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
