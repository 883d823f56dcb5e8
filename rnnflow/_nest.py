"""Nested structures of tensors, as TensorFlow's ``tf.nest`` sees them.

Cells keep their states (and custom cells their outputs) as a Tensor or as nested tuples,
namedtuples (``LSTMStateTuple``), lists and dicts of them, exactly the containers ``tf.nest``
walks. These helpers walk such structures the way ``tf.nest`` does, depth first, left to right,
dict values in sorted key order, so that flattened orders agree with TensorFlow's.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_LEAF, _SEQUENCE, _MAPPING = 0, 1, 2


@functools.cache
def _kind(cls: type) -> int:  # one dict lookup per call, not an ABC check: every step walks
    if issubclass(cls, Mapping):
        return _MAPPING
    return _SEQUENCE if issubclass(cls, (tuple, list)) else _LEAF


def is_sequence(x: Any) -> bool:
    """True for the containers a structure may be built of: tuples (named or not), lists and
    dicts (any ``Mapping``). Strings and tensors are leaves."""
    return _kind(type(x)) != _LEAF


def _is_mapping(x: Any) -> bool:
    return _kind(type(x)) == _MAPPING


def _sorted_keys(mapping: Mapping[Any, Any]) -> list[Any]:
    try:
        return sorted(mapping)
    except TypeError as err:  # tf.nest refuses unsortable keys too
        raise TypeError(
            f"nest: dict keys must be sortable (tf.nest flattens dicts in sorted key order), "
            f"got keys {list(mapping)!r}"
        ) from err


def children(x: Any) -> list[Any]:
    """The direct children of container ``x`` in ``tf.nest`` order (dicts: by sorted key)."""
    if _is_mapping(x):
        return [x[key] for key in _sorted_keys(x)]
    return list(x)


def flatten(structure: Any) -> list[Any]:
    """All leaves of ``structure``, depth first, in ``tf.nest.flatten`` order."""
    kind = _kind(type(structure))
    if kind == _LEAF:
        return [structure]
    leaves: list[Any] = []
    for item in children(structure) if kind == _MAPPING else structure:
        if _kind(type(item)) == _LEAF:
            leaves.append(item)
        else:
            leaves.extend(flatten(item))
    return leaves


def _rebuild(template: Any, items: Sequence[Any]) -> Any:
    if _is_mapping(template):  # the same mapping type, the template's key order
        by_key = dict(zip(_sorted_keys(template), items))
        pairs = [(key, by_key[key]) for key in template]
        if isinstance(template, collections.defaultdict):
            return type(template)(template.default_factory, pairs)
        return type(template)(pairs)
    if isinstance(template, tuple) and hasattr(template, "_fields"):  # NamedTuple
        return type(template)(*items)
    if isinstance(template, list):
        return list(items)
    return tuple(items)


def pack_sequence_as(structure: Any, flat: Sequence[Any]) -> Any:
    """The inverse of :func:`flatten`: ``flat``'s leaves in the shape of ``structure``."""
    flat = list(flat)
    n_expected = len(flatten(structure))
    if len(flat) != n_expected:
        raise ValueError(f"pack_sequence_as: structure has {n_expected} leaves, got {len(flat)}")

    return _build(structure, flat, 0)[0]


def _build(node: Any, flat: list[Any], pos: int) -> tuple[Any, int]:
    """``node`` rebuilt from ``flat[pos:]``, and the position after its leaves. Module-level, not
    a closure: a nested function that calls itself is a reference cycle that keeps ``flat`` (a
    step's outputs, and the buffers they view) alive until the garbage collector runs."""
    if not is_sequence(node):
        return flat[pos], pos + 1
    items = []
    for child in children(node):
        item, pos = _build(child, flat, pos)
        items.append(item)
    return _rebuild(node, items), pos


def same_structure(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` nest the same way (tuple and list count as the same; dicts
    must have the same keys)."""
    kind_a, kind_b = _kind(type(a)), _kind(type(b))
    if kind_a == _LEAF or kind_b == _LEAF:
        return kind_a == kind_b
    if kind_a == _MAPPING or kind_b == _MAPPING:
        if kind_a != kind_b or set(a) != set(b):
            return False
        return all(same_structure(a[key], b[key]) for key in a)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if not same_structure(x, y):
            return False
    return True


def map_structure(fn: Callable[..., Any], *structures: Any) -> Any:
    """Apply ``fn`` leaf-wise over same-shaped structures; the result has the first's shape."""
    first = structures[0]
    for other in structures[1:]:
        if not same_structure(first, other):
            raise ValueError(
                f"map_structure: structures differ: {describe(first)} vs {describe(other)}"
            )
    flats = [flatten(s) for s in structures]
    return pack_sequence_as(first, [fn(*leaves) for leaves in zip(*flats)])


def describe(structure: Any, leaf: Callable[[Any], str] | None = None) -> str:
    """A short picture of a structure for error messages; ``leaf`` formats non-tensor leaves."""
    if _is_mapping(structure):
        items = ", ".join(f"{key!r}: {describe(structure[key], leaf)}" for key in structure)
        return f"{{{items}}}"
    if is_sequence(structure):
        if isinstance(structure, tuple) and hasattr(structure, "_fields"):
            fields = ", ".join(
                f"{name}={describe(x, leaf)}" for name, x in zip(structure._fields, structure)
            )
            return f"{type(structure).__name__}({fields})"
        inner = ", ".join(describe(x, leaf) for x in structure)
        return f"({inner},)" if len(structure) == 1 else f"({inner})"
    shape = getattr(structure, "shape", None)
    if shape is not None:
        return f"Tensor{tuple(shape)}"
    return leaf(structure) if leaf is not None else repr(structure)
