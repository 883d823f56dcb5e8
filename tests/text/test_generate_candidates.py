"""generate(candidates=k): each step's k most likely ids, against a rescoring with one call."""

from __future__ import annotations

import pytest
import torch

from rnnflow.models.char_lm import CharLM
from rnnflow.text.corpus import Vocabulary
from rnnflow.text.generate import generate
from rnnflow.text.poetry import FORMS

POEMS = ["床前明月光，疑是地上霜。\n举头望明月，低头思故乡。", "白日依山尽，黄河入海流。"]


def rescored(model, vocab, prime, ids, temperature):
    """Softmax(masked logits / T) [N, V] for each sampled id, from one model call."""
    tokens = torch.tensor([[vocab.bos_id, *vocab.encode(prime), *ids]])
    with torch.no_grad():
        logits, _ = model(tokens[:, :-1])  # [1, L, V]
    logits = logits[0, len(prime) :].clone()  # [N, V]: the distributions the ids came from
    logits[:, [vocab.pad_id, vocab.unk_id, vocab.bos_id]] = float("-inf")
    return (logits / (temperature or 1.0)).softmax(-1)


@pytest.mark.parametrize("temperature", [0.7, 0.0])
def test_candidates_are_the_top_of_each_step_distribution(temperature):
    vocab = Vocabulary.build(POEMS)
    torch.manual_seed(0)
    model = CharLM(vocab_size=len(vocab), embed_size=8, num_units=16).eval()
    sample = generate(
        model, vocab, prime="白日", length=12, seed=2, temperature=temperature, candidates=5
    )
    plain = generate(model, vocab, prime="白日", length=12, seed=2, temperature=temperature)
    assert sample.text == plain.text and plain.candidates == ()  # recording changes nothing
    probs = rescored(model, vocab, "白日", sample.ids, temperature)
    assert len(sample.candidates) == len(sample.ids)
    for step, (shown, p) in enumerate(zip(sample.candidates, probs)):
        values, ids = p.topk(5)
        assert [i for i, _ in shown] == ids.tolist(), step
        torch.testing.assert_close(torch.tensor([v for _, v in shown]), values, atol=1e-5, rtol=0)


def test_candidates_with_a_form_hold_only_allowed_ids_and_errors():
    vocab = Vocabulary.build(POEMS)
    model = CharLM(vocab_size=len(vocab), embed_size=8, num_units=16).eval()
    sample = generate(model, vocab, form=FORMS["5x4"], seed=1, candidates=3)
    punctuation = {vocab.index[c] for c in "，。\n"} | {vocab.eos_id}
    for position, shown in enumerate(sample.candidates):
        assert shown and len(shown) <= 3
        at_verse_end = position in (5, 11, 12, 18, 24, 25)  # then <eos>
        assert all((i in punctuation) == at_verse_end for i, _ in shown), position
    with pytest.raises(ValueError, match=r"generate: candidates must be an int >= 0, got -1"):
        generate(model, vocab, candidates=-1)
