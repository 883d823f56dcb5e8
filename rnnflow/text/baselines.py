"""Count-based baselines for a character LM: unigram and bigram perplexity on the same split.

Both predict the same targets as the model (every id after ``<bos>``: characters, ``<unk>``,
``<eos>``) from counts over the training documents, with parameter-free smoothing, so nothing
is tuned on the validation set:

    unigram  P(w)     = (c(w) + 1) / (N + |W|)                       add-one over the |W| targets
    bigram   P(w | h) = (c(h, w) + T(h) P(w)) / (c(h) + T(h))        Witten-Bell interpolation
                        T(h) = number of distinct w seen after h; P(w) the unigram above;
                        an unseen history h falls back to P(w)

Perplexity is ``exp(-mean log P)`` over all validation targets.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

__all__ = ["ngram_perplexity"]


def ngram_perplexity(
    train: Sequence[Sequence[int]],
    val: Sequence[Sequence[int]],
    *,
    order: int,
    vocab_size: int,
    excluded: Sequence[int] = (0, 2),
) -> float:
    """Perplexity of an add-one unigram (``order=1``) or Witten-Bell bigram (``order=2``).

    ``train``/``val`` are encoded documents (``[<bos>, ..., <eos>]``); the target of each step is
    every id after the first. ``excluded`` ids (default ``<pad>``, ``<bos>``) are never targets.
    """
    if order not in (1, 2):
        raise ValueError(f"ngram_perplexity: order must be 1 or 2, got {order}")
    targets = vocab_size - len(set(excluded))
    unigram: Counter[int] = Counter()
    following: dict[int, Counter[int]] = defaultdict(Counter)
    for ids in train:
        for h, w in zip(ids[:-1], ids[1:]):
            unigram[w] += 1
            following[h][w] += 1
    total = sum(unigram.values())
    seen_after = {h: (sum(c.values()), len(c)) for h, c in following.items()}  # c(h), T(h)

    def p_uni(w: int) -> float:
        return (unigram[w] + 1) / (total + targets)

    log_sum, count = 0.0, 0
    for ids in val:
        for h, w in zip(ids[:-1], ids[1:]):
            p = p_uni(w)
            if order == 2 and h in following:
                n_h, t_h = seen_after[h]
                p = (following[h][w] + t_h * p) / (n_h + t_h)
            log_sum += math.log(p)
            count += 1
    if count == 0:
        raise ValueError("ngram_perplexity: the validation documents have no target")
    return math.exp(-log_sum / count)
