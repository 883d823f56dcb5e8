"""The `rnnflow` command line: one sub-module per sub-command.

Each sub-command module defines ``add_parser(subparsers)`` which registers its arguments and sets
``func`` (a callable ``(argparse.Namespace) -> int``). This is the only package that prints.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Sub-command name -> module under rnnflow.cli. Modules import heavy dependencies inside their
# run functions so that `rnnflow --help` stays fast.
_COMMANDS: dict[str, str] = {
    "download": "download",
    "bench": "bench",
    "import-tf1": "import_tf1",
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "generate": "generate",
    "export": "export",
    "serve": "serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnflow",
        description="TensorFlow-1 style recurrent networks on PyTorch: train, evaluate, predict.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in _COMMANDS.values():
        importlib.import_module(f"rnnflow.cli.{module_name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
