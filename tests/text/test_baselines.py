"""The interpolated Kneser-Ney trigram baseline against values computed by hand."""

from __future__ import annotations

import math
import random

import pytest

from rnnflow.text.baselines import kneser_ney_perplexity

BOS, EOS, A, B = 2, 3, 4, 5  # ids 0 (<pad>) and 2 (<bos>) are never targets: |W| = 4


def test_kneser_ney_trigram_by_hand() -> None:
    train = [[BOS, A, B, EOS], [BOS, A, A, EOS]]
    # trigrams (a 2nd <bos> pads): (2,2,4) x2, (2,4,5), (4,5,3), (2,4,4), (4,4,3)
    d3 = 4 / (4 + 2 * 1)  # n1 = 4, n2 = 1
    d2 = 0.5  # continuation bigrams all once: no n2, the fallback
    d1 = 1 / (1 + 2 * 2)  # N1+(. w): a 2, b 1, eos 2 -> n1 = 1, n2 = 2; N1+(. .) = 5
    p1 = {w: max(n - d1, 0) / 5 + d1 * 3 / 5 / 4 for w, n in {A: 2, B: 1, EOS: 2, 1: 0}.items()}
    assert sum(p1.values()) == pytest.approx(1.0)
    # validation "<bos> b a <eos>": histories (2,2) seen, (2,5) and (5,4) unseen
    p_b = (0 + d3 * 1 * (0 + d2 * 1 * p1[B]) / 1) / 2  # c(2 2 .) = 2, N1+(2 2 .) = 1
    p_a = (0 + d2 * 1 * p1[A]) / 1  # back to P2(a | b): N1+(. b .) = 1
    p_eos = (max(1 - d2, 0) + d2 * 3 * p1[EOS]) / 3  # P2(eos | a): N1+(. a .) = 3
    expected = math.exp(-(math.log(p_b) + math.log(p_a) + math.log(p_eos)) / 3)
    got = kneser_ney_perplexity(train, [[BOS, B, A, EOS]], vocab_size=6)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(7.65041, rel=1e-5)  # (0.031667 * 0.195 * 0.361667) ** (-1 / 3)


@pytest.mark.parametrize("history", [[], [A], [B, B], [EOS, 1]])
def test_kneser_ney_distribution_sums_to_one(history: list[int]) -> None:
    """For any history, P(w | history) over the |W| targets sums to 1 (a one-target validation
    document's perplexity is 1 / P)."""
    rng = random.Random(0)
    train = [
        [BOS, *(rng.choice([A, B, 1]) for _ in range(rng.randint(1, 8))), EOS] for _ in range(30)
    ]
    total = 0.0
    for w in (1, EOS, A, B):
        doc = [BOS, *history, w]
        before = (
            kneser_ney_perplexity(train, [[BOS, *history]], vocab_size=6) ** -len(history)
            if history
            else 1.0
        )
        after = kneser_ney_perplexity(train, [doc], vocab_size=6) ** -(len(history) + 1)
        total += after / before
    assert total == pytest.approx(1.0, rel=1e-9)


def test_kneser_ney_needs_a_target() -> None:
    with pytest.raises(
        ValueError, match="kneser_ney_perplexity: the validation documents have no target"
    ):
        kneser_ney_perplexity([[BOS, A, EOS]], [[BOS]], vocab_size=6)
