"""Time-domain augmentation of padded variable-length batches: a random window of each series.

Window slicing (Le Guennec et al., "Data augmentation for time series classification using
convolutional neural networks", 2016): each training series is replaced by a random contiguous
window covering a random fraction of its length, shifted to step 0, with its new length; the
label is kept. Used by the sequence task (``SequenceConfig.crop_min``) on training batches only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["random_crop"]


def random_crop(
    x: Tensor, lengths: Tensor, *, crop_min: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """A random window of each padded series: ``(x', lengths')``, [B, T', D] and [B].

    For row b with length L_b >= 1: a fraction f ~ U[crop_min, 1) (two draws per row from
    ``generator``, on the CPU, whatever ``x``'s device), window length
    ``n_b = max(1, ceil(f * L_b))`` (<= L_b), start s_b uniform in {0, ..., L_b - n_b}; then
    ``x'[b, t] = x[b, s_b + t]`` for t < n_b and 0 past n_b, ``lengths'[b] = n_b``; the time
    axis is cut to T' = max_b n_b (less padding to run). A row of length 0 stays empty.
    ``crop_min`` = 1 returns the inputs unchanged (no draw).

    Args:
        x: float [B, T, D], padded past each length (the padding is never read).
        lengths: int [B], each in [0, T].
        crop_min: the smallest fraction of a series kept, in (0, 1].
        generator: the source of the draws (fit's augmentation generator: resumable).

    Raises:
        ValueError: naming the argument, for ``crop_min`` outside (0, 1] or shapes that do
            not match.
    """
    if isinstance(crop_min, bool) or not isinstance(crop_min, int | float):
        raise ValueError(f"random_crop: crop_min must be a float in (0, 1], got {crop_min!r}")
    if not (math.isfinite(crop_min) and 0.0 < crop_min <= 1.0):
        raise ValueError(f"random_crop: crop_min must be a float in (0, 1], got {crop_min!r}")
    if x.dim() != 3 or lengths.shape != (x.shape[0],):
        raise ValueError(
            f"random_crop: x must be [batch, time, channels] and lengths [batch], got "
            f"{tuple(x.shape)} and {tuple(lengths.shape)}"
        )
    if crop_min == 1.0:
        return x, lengths
    batch, max_time, channels = x.shape
    lengths_cpu = lengths.to("cpu", torch.long)  # [B]
    u = torch.rand(2, batch, generator=generator, dtype=torch.float64)  # [2, B]
    fraction = crop_min + (1.0 - crop_min) * u[0]  # [B] in [crop_min, 1)
    kept = torch.ceil(fraction * lengths_cpu).long().clamp(min=1)  # [B]
    kept = torch.minimum(kept, lengths_cpu)  # a length-0 row keeps 0 steps
    start = torch.floor(u[1] * (lengths_cpu - kept + 1)).long()  # [B] in [0, L - n]
    steps = torch.arange(max_time)  # [T]
    index = (start[:, None] + steps[None, :]).clamp(max=max(max_time - 1, 0))  # [B, T]
    index = index.to(x.device)[:, :, None].expand(batch, max_time, channels)  # [B, T, D]
    cropped = x.gather(1, index) if max_time else x
    past = (steps[None, :] >= kept[:, None]).to(x.device)[:, :, None]  # [B, T, 1]
    longest = int(kept.max()) if batch else 0
    cropped = cropped.masked_fill(past, 0.0)[:, :longest]  # [B, T', D]
    return cropped, kept.to(lengths.device, lengths.dtype)
