"""Fixtures for the TF1 interop tests (helpers live in _tf1_bundle.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from interop._tf1_bundle import FIXTURES, write_bundle


@pytest.fixture
def bundle_writer() -> Callable[..., Path]:
    return write_bundle


@pytest.fixture
def tf1_copy(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a committed TF checkpoint into tmp_path (to corrupt it); returns its prefix."""

    def copy(model: str) -> Path:
        target = tmp_path / model
        shutil.copytree(FIXTURES / model, target)
        return target / "model.ckpt"

    return copy
