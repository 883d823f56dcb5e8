"""This rank's rows of a global batch of variable-length rows, never none."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnflow.training.distributed import DistributedContext

__all__ = ["shard_rows"]


def shard_rows(ctx: DistributedContext, count: int) -> tuple[Tensor, float]:
    """``(rows, weight)``: the indices int64 [b] of this rank's rows of a global batch of
    ``count`` rows (``ctx.shard``: rows ``rank::world_size``) and 1.0; or, for a rank left
    without a row (a last batch of fewer rows than processes), row 0 and weight 0.0: DDP still
    needs this rank's forward and backward, which the weight makes count for nothing."""
    rows = ctx.shard(torch.arange(count))  # [b]
    if len(rows) == 0:
        return torch.arange(1), 0.0
    return rows, 1.0
