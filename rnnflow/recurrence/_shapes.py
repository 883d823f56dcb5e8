"""Shape checks every path shares, made before any cell or kernel runs (R18)."""

from __future__ import annotations

import operator
from typing import Any

from rnnflow import _nest
from rnnflow.cells.dropout import DropoutWrapper
from rnnflow.cells.multi import MultiRNNCell


def _is_size(x: Any) -> bool:
    if type(x) is int:
        return x >= 0
    if isinstance(x, bool):
        return False
    try:
        return operator.index(x) >= 0
    except TypeError:
        return False


def check_sizes(owner: str, argument: str, cell: Any) -> None:
    """``state_size`` and ``output_size`` must be non-negative ints or ``tf.nest`` structures
    (tuples, namedtuples, lists, dicts) of them: the shapes every path builds from."""
    for name in ("state_size", "output_size"):
        sizes = getattr(cell, name)
        if not all(_is_size(size) for size in _nest.flatten(sizes)):
            raise ValueError(
                f"{owner}: {argument}.{name} must be an int or a nested structure (tuple, list, "
                f"dict) of ints, got {sizes!r}"
            )


def check_input_depth(owner: str, argument: str, cell: Any, depth: int) -> None:
    """Every (sub-)cell built for a known input depth must be fed that depth: the inputs' for
    the cell itself (and for the first cell of a ``MultiRNNCell`` stack), the output size of
    the cell below for every other layer. ``ValueError`` naming the (sub-)cell otherwise; cells
    that do not say their depth (no int ``input_size`` once built) are not checked here."""
    _check_depth(owner, argument, cell, depth, "the inputs")


def _check_depth(owner: str, path: str, cell: Any, depth: int, source: str) -> None:
    if isinstance(cell, MultiRNNCell):
        for k, sub in enumerate(cell.cells):
            _check_depth(owner, f"{path}.cell_{k}", sub, depth, source)
            depth, source = sub.output_size, f"{path}.cell_{k}.output_size"
            if not _is_size(depth):  # a nested output: what reads it cannot be checked here
                return
        return
    if isinstance(cell, DropoutWrapper):
        _check_depth(owner, f"{path}.cell", cell.cell, depth, source)
        return
    built_for = getattr(cell, "input_size", None) if getattr(cell, "built", True) else None
    if _is_size(built_for) and built_for != depth:
        raise ValueError(
            f"{owner}: {path} ({type(cell).__name__}) was built for input depth {built_for}, "
            f"got depth {depth} from {source}"
        )
