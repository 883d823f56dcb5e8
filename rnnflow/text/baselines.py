"""Count-based baselines for a character LM: unigram and bigram perplexity on the same split.

Both predict the same targets as the model (every id after ``<bos>``: characters, ``<unk>``,
``<eos>``) from counts over the training documents, with parameter-free smoothing, so nothing
is tuned on the validation set:

    unigram  P(w)     = (c(w) + 1) / (N + |W|)                       add-one over the |W| targets
    bigram   P(w | h) = (c(h, w) + T(h) P(w)) / (c(h) + T(h))        Witten-Bell interpolation
                        T(h) = number of distinct w seen after h; P(w) the unigram above;
                        an unseen history h falls back to P(w)

    KN-3     interpolated Kneser-Ney trigram (Chen & Goodman 1998, "An Empirical Study of
             Smoothing Techniques for Language Modeling", TR-10-98, eqs. 17-19 with one
             discount per order, D_n = n1 / (n1 + 2 n2), Ney, Essen & Kneser 1994):

        P3(w | u v) = max(c(u v w) - D3, 0) / c(u v ·)
                      + D3 N1+(u v ·) / c(u v ·) * P2(w | v)
        P2(w | v)   = max(N1+(· v w) - D2, 0) / N1+(· v ·)
                      + D2 N1+(v ·) / N1+(· v ·) * P1(w)
        P1(w)       = max(N1+(· w) - D1, 0) / N1+(· ·) + D1 N1+(·) / N1+(· ·) / |W|

             c: counts; N1+(· v w): distinct u before "v w" (continuation counts: the lower
             orders count contexts, not tokens); N1+(u v ·): distinct w after "u v";
             n1, n2: how many n-grams (continuation n-grams for the lower orders) occur exactly
             once and twice; P1 ends on the uniform 1/|W|, so no target has probability 0. An
             unseen history drops to the next order. The first target's history is
             ``<bos> <bos>`` (a second ``<bos>`` pads the trigram).

Perplexity is ``exp(-mean log P)`` over all validation targets.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

__all__ = ["kneser_ney_perplexity", "ngram_perplexity"]


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


def _discount(counts: Counter) -> float:
    """D = n1 / (n1 + 2 n2) over the values of ``counts`` (0.5 when there is no n1 or n2)."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def kneser_ney_perplexity(
    train: Sequence[Sequence[int]],
    val: Sequence[Sequence[int]],
    *,
    vocab_size: int,
    excluded: Sequence[int] = (0, 2),
) -> float:
    """Perplexity of an interpolated Kneser-Ney trigram (formula in the module docstring).

    ``train``/``val`` are encoded documents (``[<bos>, ..., <eos>]``, ``<bos>`` = ``ids[0]``);
    the targets are every id after the first, as in :func:`ngram_perplexity`. ``|W|`` is
    ``vocab_size`` minus the ``excluded`` ids (never targets). Raises ``ValueError`` when the
    validation documents have no target.
    """
    size = vocab_size - len(set(excluded))
    tri: Counter[tuple[int, int, int]] = Counter()
    for ids in train:
        padded = [ids[0], *ids] if ids else []
        tri.update(zip(padded, padded[1:], padded[2:]))
    # order 3: token counts; c(u v .) and N1+(u v .)
    ctx3: Counter[tuple[int, int]] = Counter()
    types3: Counter[tuple[int, int]] = Counter()
    # order 2: continuation counts N1+(. v w), then per history v
    cont2: Counter[tuple[int, int]] = Counter()
    for (u, v, w), c in tri.items():
        ctx3[u, v] += c
        types3[u, v] += 1
        cont2[v, w] += 1
    ctx2: Counter[int] = Counter()
    types2: Counter[int] = Counter()
    cont1: Counter[int] = Counter()  # N1+(. w): distinct v before w
    for (v, w), n in cont2.items():
        ctx2[v] += n
        types2[v] += 1
        cont1[w] += 1
    total1 = sum(cont1.values())
    d3, d2, d1 = _discount(tri), _discount(cont2), _discount(cont1)

    def p1(w: int) -> float:
        return max(cont1[w] - d1, 0) / total1 + d1 * len(cont1) / total1 / size

    def p2(v: int, w: int) -> float:
        n = ctx2.get(v, 0)
        if n == 0:
            return p1(w)
        return (max(cont2.get((v, w), 0) - d2, 0) + d2 * types2[v] * p1(w)) / n

    def p3(u: int, v: int, w: int) -> float:
        n = ctx3.get((u, v), 0)
        if n == 0:
            return p2(v, w)
        return (max(tri.get((u, v, w), 0) - d3, 0) + d3 * types3[u, v] * p2(v, w)) / n

    log_sum, count = 0.0, 0
    for ids in val:
        padded = [ids[0], *ids] if ids else []
        for u, v, w in zip(padded, padded[1:], padded[2:]):
            log_sum += math.log(p3(u, v, w))
            count += 1
    if count == 0:
        raise ValueError("kneser_ney_perplexity: the validation documents have no target")
    return math.exp(-log_sum / count)
