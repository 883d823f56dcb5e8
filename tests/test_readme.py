"""The README's Python example runs exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_a_python_example():
    assert python_blocks()


def test_readme_python_examples_run():
    import math

    losses = []
    for block in python_blocks():
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
        if "loss" in namespace:
            losses.append(namespace["loss"].item())
    assert losses, "the tutorial example no longer computes `loss`"
    assert all(math.isfinite(v) and v > 0 for v in losses), losses
