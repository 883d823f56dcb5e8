"""The layers import downwards only: ``data``, ``text`` and ``interop`` never import ``training``,
``tasks`` or ``cli`` (not even inside a function); ``training`` never imports ``tasks`` or
``cli``; ``tasks`` never imports ``cli``. Read from the source with ``ast``, so an import inside a
function body counts too."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rnnflow"

FORBIDDEN = {
    "data": ("rnnflow.training", "rnnflow.tasks", "rnnflow.cli"),
    "text": ("rnnflow.training", "rnnflow.tasks", "rnnflow.cli"),
    "interop": ("rnnflow.training", "rnnflow.tasks", "rnnflow.cli"),
    "training": ("rnnflow.tasks", "rnnflow.cli"),
    "tasks": ("rnnflow.cli",),
}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for line, module in imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return sorted(set(out))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_layer_imports_a_layer_above_it(package):
    assert violations(package, FORBIDDEN[package]) == []


def test_the_scan_sees_imports_inside_functions(tmp_path, monkeypatch):
    """The check can fail: an import of training inside a function of a text module is found."""
    fake = tmp_path / "rnnflow" / "text"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text(
        "def f():\n    from rnnflow.training import fit\n    import rnnflow.cli\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "rnnflow")
    assert violations("text", FORBIDDEN["text"]) == [
        "rnnflow/text/bad.py:2 imports rnnflow.training",
        "rnnflow/text/bad.py:2 imports rnnflow.training.fit",
        "rnnflow/text/bad.py:3 imports rnnflow.cli",
    ]
