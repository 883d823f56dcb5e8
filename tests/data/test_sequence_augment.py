"""random_crop: every output row is a contiguous window of its input row, at least crop_min of
its length, zeros past the new length; checked against the input itself (a window found by
search), not against the function's own arithmetic."""

from __future__ import annotations

import math

import pytest
import torch

from rnnflow.data.sequence_augment import random_crop


def padded(lengths: list[int], channels: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct values at every valid step, garbage (-1e9) in the padding."""
    t = max(lengths)
    x = torch.full((len(lengths), t, channels), -1e9)
    for b, n in enumerate(lengths):
        x[b, :n] = (
            torch.arange(1, n * channels + 1, dtype=torch.float32).view(n, channels) + 100 * b
        )
    return x, torch.tensor(lengths)


@pytest.mark.parametrize("crop_min", [0.3, 0.8, 0.999])
def test_each_row_is_a_window_of_its_series(crop_min: float) -> None:
    x, lengths = padded([7, 1, 12, 3, 29, 0])
    g = torch.Generator().manual_seed(0)
    starts, kept_seen = set(), set()
    for _ in range(50):
        out, kept = random_crop(x, lengths, crop_min=crop_min, generator=g)
        assert out.shape[1] == int(kept.max())
        for b, n in enumerate(lengths.tolist()):
            k = int(kept[b])
            assert (k == 0) if n == 0 else math.ceil(crop_min * n) <= k <= n
            windows = [s for s in range(n - k + 1) if torch.equal(out[b, :k], x[b, s : s + k])]
            assert len(windows) == 1  # a contiguous window of the valid steps
            assert out[b, k:].eq(0).all()  # zeros past the new length, never the garbage
            if b == 4:
                starts.add(windows[0])
                kept_seen.add(k)
    if crop_min < 0.99:  # it does vary
        assert len(starts) > 3 and len(kept_seen) > 3
    else:  # ceil(0.999 * 29) = 29: the whole series
        assert starts == {0} and kept_seen == {29}


def test_no_crop_and_determinism() -> None:
    x, lengths = padded([5, 3])
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    same, same_len = random_crop(x, lengths, crop_min=1.0, generator=g)
    assert same is x and same_len is lengths and torch.equal(g.get_state(), state)
    a = random_crop(x, lengths, crop_min=0.5, generator=torch.Generator().manual_seed(1))
    b = random_crop(x, lengths, crop_min=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, float("nan"), True, "0.5"])
def test_crop_min_is_checked(bad: object) -> None:
    x, lengths = padded([5])
    with pytest.raises(ValueError, match=r"random_crop: crop_min must be a float in \(0, 1\], got"):
        random_crop(x, lengths, crop_min=bad, generator=torch.Generator())  # type: ignore[arg-type]


def test_shapes_are_checked() -> None:
    with pytest.raises(
        ValueError, match=r"random_crop: x must be \[batch, time, channels\] and lengths "
        r"\[batch\], got \(2, 3, 1\) and \(3,\)"
    ):  # fmt: skip
        random_crop(torch.zeros(2, 3, 1), torch.ones(3), crop_min=0.5, generator=torch.Generator())
