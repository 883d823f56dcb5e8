"""Fixtures of the recurrence tests: the implementations every contract test runs on, and
a spy on the fused path."""

from __future__ import annotations

import pytest

from rnnflow.recurrence import _ext, fused

# (dynamic_rnn's impl=, RNNFLOW_NO_EXT): the reference loop; the fused path with the compiled
# time loops (csrc/loops.cpp); the fused path with its Python loops.
IMPLS = {
    "reference": ("reference", None),
    "fused-compiled": ("fused", "0"),
    "fused-python": ("fused", "1"),
}


@pytest.fixture(params=list(IMPLS))
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``impl=`` for ``dynamic_rnn``, with ``RNNFLOW_NO_EXT`` set for the loops wanted."""
    name, no_ext = IMPLS[request.param]
    if no_ext is None:
        monkeypatch.delenv("RNNFLOW_NO_EXT", raising=False)
    else:
        monkeypatch.setenv("RNNFLOW_NO_EXT", no_ext)
    if request.param == "fused-compiled" and not _ext.status()[0]:
        pytest.skip(f"compiled loops unavailable: {_ext.status()[1]}")
    return name


@pytest.fixture
def calls(monkeypatch):
    """Counts the runs that reach the fused path (the cell type of each)."""
    seen = []
    real = fused.fused_dynamic_rnn

    def spy(*args, **kwargs):
        seen.append(type(args[0]).__name__)
        return real(*args, **kwargs)

    monkeypatch.setattr(fused, "fused_dynamic_rnn", spy)
    return seen


def use_isa(isa: str, monkeypatch: pytest.MonkeyPatch):
    """Run the compiled loops' variant ``isa``; skip (naming what is missing) where it cannot."""
    monkeypatch.delenv("RNNFLOW_NO_EXT", raising=False)
    monkeypatch.delenv("RNNFLOW_ISA", raising=False)
    ok, reason = _ext.status()
    if not ok:
        pytest.skip(f"compiled loops unavailable: {reason}")
    missing = _ext.missing_flags(isa)
    if missing:
        pytest.skip(f"kernel variant {isa}: this CPU lacks {' '.join(missing)}")
    monkeypatch.setenv("RNNFLOW_ISA", isa)
    ops = _ext.loops()
    assert ops.isa() == isa
    return ops


@pytest.fixture
def force_isa(monkeypatch: pytest.MonkeyPatch):
    """``force_isa(name)``: run variant ``name`` of the compiled loops (skip where it cannot);
    returns their ops."""
    return lambda isa: use_isa(isa, monkeypatch)


@pytest.fixture(params=[*_ext.ISAS, "python"])
def loops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which time loops run: a variant of the compiled ones, or the Python ones."""
    if request.param == "python":
        monkeypatch.setenv("RNNFLOW_NO_EXT", "1")
    else:
        use_isa(request.param, monkeypatch)
    return request.param


@pytest.fixture(params=_ext.ISAS)
def packed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """The compiled loops' ops with variant ``request.param`` of the packed GEMM running."""
    return use_isa(request.param, monkeypatch)
