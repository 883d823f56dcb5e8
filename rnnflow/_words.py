"""Counted nouns in messages: ``count(1, "step")`` is "1 step", ``count(3, "step")`` "3 steps".

Every message that prints a count the user did not choose to be plural (a run of 1 step, 1
image that could not be read, a checkpoint with 1 variable) goes through :func:`count`. No torch.
"""

from __future__ import annotations

# Nouns whose plural is not singular + "s".
_PLURALS = {"series": "series", "shard": "shards", "class": "classes"}


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``f"{n} {noun}"`` with the noun in the plural unless ``n`` is 1 (or -1): ``plural``, else
    the irregular table (series, class), else ``noun + "s"``."""
    if abs(n) == 1:
        return f"{n} {noun}"
    return f"{n} {plural or _PLURALS.get(noun, noun + 's')}"
