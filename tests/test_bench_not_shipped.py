"""The wheel ships `rnnflow/` only: no module of it may import `benchmarks`, `tests` or `tools`.

`rnnflow bench` used to import `benchmarks.bench_recurrence` from the source checkout and failed
in a wheel; it is gone (the benchmarks are developer tools: `python -m benchmarks.bench_recurrence`
or `make bench` in a checkout), and this guard keeps any other command from doing the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rnnflow
from rnnflow.cli import _COMMANDS, main

PACKAGE = Path(rnnflow.__file__).resolve().parent
UNSHIPPED = {"benchmarks", "tests", "tools"}


def unshipped_imports(source: str) -> list[str]:
    """``import x`` / ``from x import ...`` / ``importlib.import_module("x...")`` of UNSHIPPED."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        found += [n for n in names if n.split(".")[0] in UNSHIPPED]
    return found


def test_the_guard_sees_each_form_of_import() -> None:
    source = (
        "import benchmarks.harness\n"
        "from tools import x\n"
        "def f():\n"
        "    import importlib\n"
        "    return importlib.import_module('tests.conftest')\n"
        "from rnnflow import tools\n"
    )
    assert unshipped_imports(source) == ["benchmarks.harness", "tools", "tests.conftest"]


def test_no_package_module_imports_an_unshipped_folder() -> None:
    offenders = {
        str(path.relative_to(PACKAGE.parent)): names
        for path in sorted(PACKAGE.rglob("*.py"))
        if (names := unshipped_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_bench_is_not_a_command(capsys) -> None:
    assert "bench" not in _COMMANDS
    with pytest.raises(SystemExit, match="2"):
        main(["bench"])
    assert "invalid choice: 'bench'" in capsys.readouterr().err
