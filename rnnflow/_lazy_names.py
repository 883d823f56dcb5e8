"""A package's public names imported on first use (PEP 562 module ``__getattr__``), so that
importing the package (``rnnflow.cli``'s parsers do) imports no torch."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, home: Mapping[str, str], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the module named ``package``: ``name`` in ``home`` is
    imported from module ``home[name]`` on first access and kept in the package's namespace;
    any other name raises ``AttributeError`` as a plain module does. ``__dir__`` lists the
    namespace and ``public`` (the package's ``__all__``)."""

    def __getattr__(name: str) -> Any:
        if name in home:
            value = getattr(importlib.import_module(home[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return __getattr__, __dir__
