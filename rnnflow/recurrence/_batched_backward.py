"""The fused layers' backward under batched gradients, one example at a time.

``torch.autograd.functional.jacobian(f, x, vectorize=True)`` and ``torch.autograd.grad(...,
is_grads_batched=True)`` run an ordinary forward, then the backward under ``vmap`` over a batch
of output gradients: each node's backward receives functorch ``BatchedTensor`` gradients. The
fused layers' backward (``_fused_kernels``, ``_fused_lstm_cell``) writes into step buffers and
calls compiled loops, neither of which a ``BatchedTensor`` can go through. Their forward cannot
know that a batched backward will come (nothing is wrapped then), so ``impl="auto"`` cannot
avoid them; instead :func:`per_example_backward` runs such a backward once per batch entry on
the plain gradients and stacks the results, batched again at the same level: the rule
``vmap``'s own fallback applies to operators without a batching rule. The same numbers as
``vectorize=False`` (which loops the same way), in one call.

Forwards under a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, ...) never reach the
fused layers: ``fused.fusable`` refuses them and ``impl="auto"`` runs the reference loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

_functorch = torch._C._functorch


def _legacy_level() -> int:
    """The nesting level of the running legacy ``vmap`` (``torch._vmap_internals``, which
    ``is_grads_batched`` uses): one past it is what the next nesting would get."""
    following = torch._C._vmapmode_increment_nesting()
    torch._C._vmapmode_decrement_nesting()
    return following - 1


def _batched(g: Any) -> bool:
    return isinstance(g, Tensor) and (
        _functorch.is_legacy_batchedtensor(g) or _functorch.is_batchedtensor(g)
    )


def _unbatch(g: Any) -> tuple[Any, Callable[[Tensor], Tensor] | None]:
    """``(g with its batch dimension first, rebatch)`` for a batched gradient, where
    ``rebatch(stacked)`` batches a [N, ...] result again at ``g``'s level; ``(g, None)`` for
    anything else (a plain gradient, None)."""
    if not isinstance(g, Tensor):
        return g, None
    if _functorch.is_legacy_batchedtensor(g):
        level = _legacy_level()
        plain = torch._remove_batch_dim(g, level, 1, 0)  # batched: its own size, moved to 0
        return plain, lambda t: torch._add_batch_dim(t, 0, level)
    if _functorch.is_batchedtensor(g):
        level = _functorch.maybe_get_level(g)
        plain, bdim = _functorch._unwrap_batched(g, level)
        plain = plain.movedim(bdim, 0) if bdim is not None else plain.unsqueeze(0)
        return plain, lambda t: _functorch._add_batch_dim(t, 0, level)
    return g, None


def per_example_backward(backward: Callable[..., tuple[Any, ...]]) -> Callable[..., Any]:
    """Wrap an ``autograd.Function.backward(ctx, *grads)``: plain gradients go straight through;
    gradients batched by ``vmap`` (see the module docstring) run ``backward`` once per batch
    entry and come back stacked and batched at the same level. Each call's results are copied
    before the next (the layers' buffers may be reused)."""

    @functools.wraps(backward)
    def run(ctx: Any, *grads: Any) -> tuple[Any, ...]:
        if not any(map(_batched, grads)):  # every training step: one pass of cheap checks
            return backward(ctx, *grads)
        unbatched = [_unbatch(g) for g in grads]
        batched = [(g, rebatch) for g, rebatch in unbatched if rebatch is not None]
        rebatch = batched[0][1]
        rows = []
        for i in range(batched[0][0].shape[0]):
            one = [g if again is None else g[i] for g, again in unbatched]
            rows.append([r if r is None else r.clone() for r in backward(ctx, *one)])
        return tuple(
            None if column[0] is None else rebatch(torch.stack(column)) for column in zip(*rows)
        )

    return run
