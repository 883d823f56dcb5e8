"""rnnflow._nest walks structures as tf.nest does: dict values by sorted key, containers rebuilt
with their own type and key order (expected values as tf.nest documents them)."""

from __future__ import annotations

import collections
import gc
import weakref
from typing import NamedTuple

import pytest

from rnnflow import _nest


class Point(NamedTuple):
    x: object
    y: object


def test_dicts_flatten_by_sorted_key_and_rebuild_in_their_own_key_order():
    structure = {"b": 1, "a": (2, Point(3, [4, 5]))}
    assert _nest.flatten(structure) == [2, 3, 4, 5, 1]  # tf.nest.flatten's order
    rebuilt = _nest.pack_sequence_as(structure, [20, 30, 40, 50, 10])
    assert rebuilt == {"b": 10, "a": (20, Point(30, [40, 50]))}
    assert list(rebuilt) == ["b", "a"] and isinstance(rebuilt["a"][1], Point)


@pytest.mark.parametrize(
    "mapping",
    [collections.OrderedDict(z=1, y=2), collections.defaultdict(list, z=1, y=2)],
    ids=["OrderedDict", "defaultdict"],
)
def test_mapping_types_are_kept(mapping):
    rebuilt = _nest.map_structure(lambda v: v * 10, mapping)
    assert type(rebuilt) is type(mapping) and list(rebuilt) == ["z", "y"]
    assert dict(rebuilt) == {"z": 10, "y": 20}
    if isinstance(mapping, collections.defaultdict):
        assert rebuilt.default_factory is list


def test_same_structure_with_dicts():
    assert _nest.same_structure({"a": 1, "b": (2,)}, {"b": [0], "a": 5})
    assert not _nest.same_structure({"a": 1}, {"b": 1})
    assert not _nest.same_structure({"a": 1}, (1,))
    assert not _nest.same_structure({"a": (1, 2)}, {"a": (1,)})
    assert _nest.same_structure((1, [2]), [1, (2,)])  # tuple and list alike


def test_unsortable_keys_are_refused():
    with pytest.raises(TypeError, match=r"nest: dict keys must be sortable .* got keys \[1, 'a'\]"):
        _nest.flatten({1: 0, "a": 0})


def test_describe_dicts():
    assert _nest.describe({"h": 3, "c": (4,)}, leaf=lambda n: f"<{n}>") == "{'h': <3>, 'c': (<4>,)}"


def test_pack_sequence_as_leaves_no_reference_cycle():
    """The leaves are freed as soon as the rebuilt structure is, without the garbage collector:
    a reference cycle (a self-calling closure holding the leaves) kept the fused LSTM's outputs,
    and the pooled [T+1, B, H] buffer they view, alive until gc ran, so each training step
    page-faulted in a fresh one (~1,600 page faults per step at the tutorial size)."""

    class Leaf:
        pass

    leaf = Leaf()
    alive = weakref.ref(leaf)
    gc.disable()
    try:
        packed = _nest.pack_sequence_as((0, [0, {"a": 0}]), [leaf, 1, 2])
        assert packed[0] is leaf
        del packed, leaf
        assert alive() is None
    finally:
        gc.enable()
