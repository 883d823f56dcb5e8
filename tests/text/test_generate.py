"""Sampling: reproducible with a seed, forms always well formed, state carried like one call."""

from __future__ import annotations

import pytest
import torch

from rnnflow.models.char_lm import CharLM
from rnnflow.text.corpus import Vocabulary
from rnnflow.text.generate import generate
from rnnflow.text.poetry import FORMS, PoemForm, is_well_formed

POEMS = [
    "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。",
    "白日依山尽，黄河入海流。\n欲穷千里目，更上一层楼。",
    "劝君莫惜金缕衣，劝君惜取少年时。\n花开堪折直须折，莫待无花空折枝！",
    "ab c?",
]


@pytest.fixture
def vocab() -> Vocabulary:
    return Vocabulary.build(POEMS)


def model_for(vocab: Vocabulary, cell: str = "lstm", num_layers: int = 1) -> CharLM:
    torch.manual_seed(1)
    return CharLM(
        vocab_size=len(vocab), embed_size=8, num_units=16, cell=cell, num_layers=num_layers
    )


def test_same_seed_same_text_other_seed_other_text(vocab: Vocabulary) -> None:
    model = model_for(vocab)
    a = generate(model, vocab, prime="床前", length=40, seed=7, temperature=1.0, top_k=5)
    b = generate(model, vocab, prime="床前", length=40, seed=7, temperature=1.0, top_k=5)
    assert a == b and a.text.startswith("床前")
    assert generate(model, vocab, prime="床前", length=40, seed=8).text != a.text
    assert model.training  # the caller's mode is restored


def test_sampled_log_prob_matches_a_rescoring_with_one_call(vocab: Vocabulary) -> None:
    """The state carried step by step gives the distribution one dynamic_rnn call gives."""
    model = model_for(vocab, cell="gru", num_layers=2).eval()
    sample = generate(model, vocab, prime="白日", length=30, seed=3, temperature=1.0)
    tokens = torch.tensor([[vocab.bos_id, *vocab.encode("白日"), *sample.ids]])
    logits, _ = model(tokens[:, :-1])  # [1, L, V]
    logits = logits[0, 2:].clone()  # predictions of the sampled ids
    logits[:, [vocab.pad_id, vocab.unk_id, vocab.bos_id]] = float("-inf")
    expected = logits.log_softmax(-1).gather(1, torch.tensor(sample.ids)[:, None]).sum()
    torch.testing.assert_close(
        torch.tensor(sample.log_prob, dtype=torch.float64), expected.double(), rtol=1e-5, atol=1e-4
    )


def test_greedy_is_deterministic_and_never_emits_specials(vocab: Vocabulary) -> None:
    model = model_for(vocab)
    a = generate(model, vocab, length=50, temperature=0, seed=1)
    b = generate(model, vocab, length=50, temperature=0, seed=2)
    assert a.text == b.text
    assert not set(a.ids) & {vocab.pad_id, vocab.unk_id, vocab.bos_id}
    assert len(a.ids) <= 50


@pytest.mark.parametrize("form", ["5x4", "7x4", "5x8", "7x8"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_form_constraint_always_gives_well_formed_poems(
    vocab: Vocabulary, form: str, cell: str
) -> None:
    model = model_for(vocab, cell=cell)  # untrained: the mask alone must make the form
    shape = FORMS[form]
    for seed in range(3):
        for temperature, top_k in ((1.0, 0), (2.0, 3), (0.0, 0)):
            sample = generate(
                model, vocab, form=shape, seed=seed, temperature=temperature, top_k=top_k
            )
            assert is_well_formed(sample.text, shape), sample.text
            assert sample.finished and sample.ids[-1] == vocab.eos_id
    primed = generate(model, vocab, form=shape, prime="床前明", seed=0)
    assert primed.text.startswith("床前明") and is_well_formed(primed.text, shape)


def test_prime_and_argument_errors(vocab: Vocabulary) -> None:
    model = model_for(vocab)
    with pytest.raises(
        ValueError, match=r"the prime has characters the model does not know: \['龙'\]"
    ):
        generate(model, vocab, prime="龙")
    with pytest.raises(ValueError, match=r"does not know: \['龙', '熊'\]$"):  # as typed, once
        generate(model, vocab, prime="龙熊龙")
    with pytest.raises(ValueError, match=r"does not fit the 5x4 form: character 0 is 'a'"):
        generate(model, vocab, prime="a", form=PoemForm(5, 4))
    for bad in (-1, float("nan"), float("inf"), True):
        with pytest.raises(
            ValueError, match=rf"temperature must be a finite number >= 0 \(0: greedy\), got {bad}"
        ):
            generate(model, vocab, temperature=bad)
    for name, bad in (("top_k", -2), ("top_k", 2.5), ("length", -1), ("length", True)):
        with pytest.raises(ValueError, match=rf"generate: {name} must be an int >= 0, got {bad}"):
            generate(model, vocab, **{name: bad})
    smaller = Vocabulary.build(POEMS[:1])  # a valid vocabulary, not the model's
    with pytest.raises(
        ValueError, match=rf"the vocabulary has {len(smaller)} symbols, the model {len(vocab)}"
    ):
        generate(model, smaller)


def test_cli_form_names_are_the_library_forms() -> None:
    from rnnflow.cli.generate import FORM_NAMES

    assert sorted(FORM_NAMES) == sorted(FORMS)


def test_adaptive_softmax_samples_score_as_its_training_path_says(vocab: Vocabulary) -> None:
    """With the adaptive softmax, generate masks the full log-probabilities: a sample's log-prob
    is the training path's -NLL of each drawn id, renormalised over the ids the sampler allows
    (everything but <pad>, <unk>, <bos>)."""
    torch.manual_seed(1)
    model = CharLM(
        vocab_size=len(vocab), embed_size=8, num_units=16, softmax="adaptive", cutoffs=(6, 20)
    ).eval()
    sample = generate(model, vocab, prime="白日", length=30, seed=3, temperature=1.0)
    tokens = torch.tensor([[vocab.bos_id, *vocab.encode("白日"), *sample.ids]])
    with torch.no_grad():
        nll, _ = model(tokens[:, :-1], targets=tokens[:, 1:])  # [1, L]
        log_probs, _ = model(tokens[:, :-1])  # [1, L, V]
    specials = log_probs[0, 2:, [vocab.pad_id, vocab.unk_id, vocab.bos_id]].exp().sum(-1)  # [n]
    expected = (-nll[0, 2:] - torch.log1p(-specials)).sum()
    torch.testing.assert_close(
        torch.tensor(sample.log_prob, dtype=torch.float64), expected.double(), rtol=1e-5, atol=1e-4
    )
    poem = generate(model, vocab, form=FORMS["5x4"], seed=2, temperature=1.5)
    assert is_well_formed(poem.text, FORMS["5x4"])


@pytest.mark.parametrize("temperature", [1e-45, 5e-324, 1e-300, 1e-40])
def test_a_tiny_temperature_is_the_greedy_limit(vocab: Vocabulary, temperature: float) -> None:
    """softmax(l / t) tends to the one-hot of argmax l as t -> 0+: a temperature below float32's
    smallest number still samples (no inf - inf = NaN) and draws exactly the greedy text, each
    id with probability 1 (log_prob 0)."""
    model = model_for(vocab)
    greedy = generate(model, vocab, length=30, temperature=0)
    for seed in (0, 1):
        sample = generate(model, vocab, length=30, temperature=temperature, seed=seed)
        assert sample.ids == greedy.ids
        assert sample.log_prob == 0.0
    poem = generate(model, vocab, form=FORMS["5x4"], temperature=temperature)
    assert is_well_formed(poem.text, FORMS["5x4"])


@pytest.mark.parametrize("top_p", [5e-324, 1e-300, 1e-46, 1e-9])
def test_a_tiny_top_p_keeps_the_most_likely_id(vocab: Vocabulary, top_p: float) -> None:
    """The nucleus is the smallest set of the most likely ids whose mass reaches top_p: for any
    top_p below the largest probability that is the most likely id alone (greedy), even when
    top_p rounds to 0 in float32."""
    model = model_for(vocab)
    greedy = generate(model, vocab, length=30, temperature=0)
    for temperature in (1.0, 100.0):
        sample = generate(model, vocab, length=30, temperature=temperature, top_p=top_p)
        assert sample.ids == greedy.ids


def test_top_p_keeps_the_nucleus_computed_by_hand() -> None:
    """p = (0.5, 0.3, 0.2): top_p 0.6 keeps {0, 1} renormalised to (0.625, 0.375, 0); top_p 0.4
    keeps {0} (0.5 already reaches it); top_p 1 keeps all."""
    from rnnflow.text.generate import _draw

    logits = torch.tensor([0.5, 0.3, 0.2]).log()
    allowed = torch.ones(3, dtype=torch.bool)
    for top_p, expected in ((0.6, [0.625, 0.375, 0.0]), (0.4, [1.0, 0.0, 0.0]), (1.0, None)):
        _, _, probs = _draw(logits, allowed, 1.0, 0, top_p, torch.Generator().manual_seed(0))
        want = torch.tensor(expected or [0.5, 0.3, 0.2])
        torch.testing.assert_close(probs, want)


def test_seed_and_huge_temperature_errors(vocab: Vocabulary) -> None:
    model = model_for(vocab)
    for bad in (-1, 2**63, 1.0, True):
        with pytest.raises(
            ValueError, match=rf"generate: seed must be an int in \[0, 2\*\*63 - 1\], got {bad}"
        ):
            generate(model, vocab, seed=bad)
    assert len(generate(model, vocab, length=5, seed=2**63 - 1).ids) <= 5
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0 .*, got 1000"):
        generate(model, vocab, temperature=10**400)  # an int no float holds


def test_cli_seed_takes_the_api_range(tmp_path, capsys) -> None:
    """`generate --seed` and /api/generate take the same seeds (SERVE.md: same options and seed,
    same poem): [0, 2**62]; anything else is argparse's usage error naming the flag."""
    from rnnflow.cli import main
    from rnnflow.cli.generate import MAX_SEED
    from rnnflow.text.generate import MAX_SEED as LIBRARY_MAX_SEED

    assert MAX_SEED == LIBRARY_MAX_SEED == 4611686018427387904
    for bad in ("-5", "99999999999999999999999", "4611686018427387905", "1.5", "x"):
        with pytest.raises(SystemExit) as exit_info:
            main(["generate", str(tmp_path / "run"), "--seed", bad])
        assert exit_info.value.code == 2
        assert (
            f"error: argument --seed: expected an integer in [0, 4611686018427387904], got '{bad}'"
            in capsys.readouterr().err
        )
    assert main(["generate", str(tmp_path / "run"), "--seed", str(2**62)]) == 1  # parsed
    assert "rnnflow generate: " in capsys.readouterr().err
