"""TextClassifier: padding never matters, a batch equals each text run alone, float64 gradients
equal finite differences, and bad ids/lengths are refused at the boundary."""

from __future__ import annotations

import pytest
import torch

from rnnflow.models.text_classifier import TextClassifier

VOCAB = 13


def _model(cell: str = "gru", bidirectional: bool = True, **kw: object) -> TextClassifier:
    torch.manual_seed(0)
    return TextClassifier(
        vocab_size=VOCAB,
        num_classes=3,
        embedding_size=5,
        cell=cell,  # type: ignore[arg-type]
        num_units=4,
        bidirectional=bidirectional,
        **kw,  # type: ignore[arg-type]
    ).double()


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (4, 7), generator=g)
    lengths = torch.tensor([7, 3, 1, 5])
    return tokens, lengths


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", ["last", "max"])
def test_batch_equals_each_text_alone_and_padding_is_ignored(
    cell: str, bidirectional: bool, pooling: str
) -> None:
    model = _model(cell, bidirectional, pooling=pooling)
    tokens, lengths = _inputs()
    logits = model(tokens, lengths)
    assert logits.shape == (4, 3) and logits.dtype == torch.float64
    for row in range(4):  # the oracle: each text alone, exactly its length, no padding at all
        n = int(lengths[row])
        alone = model(tokens[row : row + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(logits[row : row + 1], alone, rtol=1e-12, atol=1e-12)
    garbage = tokens.clone()
    past = torch.arange(7)[None, :] >= lengths[:, None]
    garbage[past] = (garbage[past] + 5) % VOCAB
    assert not torch.equal(garbage, tokens)
    torch.testing.assert_close(model(garbage, lengths), logits, rtol=0, atol=0)
    wider = torch.cat([tokens, torch.full((4, 3), 2)], dim=1)  # more padding columns
    torch.testing.assert_close(model(wider, lengths), logits, rtol=1e-12, atol=1e-12)


def test_max_pooling_is_the_largest_output_of_each_feature_over_the_valid_steps() -> None:
    model = _model("gru", True, pooling="max").eval()
    tokens, lengths = _inputs()
    logits = model(tokens, lengths)
    c = model.classifier
    for row in range(4):
        n = int(lengths[row])
        steps = c.step_outputs(model.embedding(tokens[row : row + 1, :n]), torch.tensor([n]))[0]
        best = steps[0]
        for t in range(1, n):  # a plain loop over the text's own steps
            best = torch.maximum(best, steps[t])
        want = best @ c.weights_out + c.biases_out
        torch.testing.assert_close(logits[row], want, rtol=1e-12, atol=1e-12)
    assert not torch.equal(logits, _model("gru", True, pooling="last")(tokens, lengths))


def test_dropouts_act_in_training_mode_only() -> None:
    model = _model(pooling="max", dropout=0.5, embedding_dropout=0.3)
    tokens, lengths = _inputs()
    model.eval()
    torch.testing.assert_close(model(tokens, lengths), model(tokens, lengths), rtol=0, atol=0)
    plain = _model(pooling="max").eval()(tokens, lengths)
    torch.testing.assert_close(model(tokens, lengths), plain, rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(tokens, lengths), model(tokens, lengths))


def test_backward_direction_sees_the_text_start() -> None:
    """Changing a text's first id changes the logits (both directions read it)."""
    model = _model()
    tokens, lengths = _inputs()
    changed = tokens.clone()
    changed[:, 0] = (changed[:, 0] + 1) % VOCAB
    diff = (model(changed, lengths) - model(tokens, lengths)).abs().sum(dim=1)
    assert bool((diff > 0).all())


def test_float64_gradients_match_finite_differences() -> None:
    model = _model("lstm")
    tokens, lengths = _inputs()
    emb = model.embedding.weight.detach().clone().requires_grad_(True)
    params = dict(model.named_parameters())

    def logits_of(weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(
            model, {**params, "embedding.weight": weight}, (tokens, lengths)
        )

    assert torch.autograd.gradcheck(logits_of, (emb,), eps=1e-6, atol=1e-7)


def test_parameter_names_compose_sequence_classifier() -> None:
    names = set(dict(_model().named_parameters()))
    assert "embedding.weight" in names
    assert {
        "classifier.weights_in",
        "classifier.weights_out",
        "classifier.cell_fw.gates.kernel",
    } <= names


@pytest.mark.parametrize(
    ("tokens", "lengths", "message"),
    [
        (
            torch.zeros(2, 3),
            torch.tensor([1, 2]),
            r"tokens must be an int64 tensor \[batch, time\], got torch.float32 \(2, 3\)",
        ),
        (
            torch.zeros(2, dtype=torch.long),
            torch.tensor([1, 2]),
            r"tokens must be an int64 tensor \[batch, time\], got torch.int64 \(2,\)",
        ),
        (
            torch.zeros(2, 3, dtype=torch.long),
            torch.tensor([1.0, 2.0]),
            r"sequence_length must be an integer tensor of shape \(2,\), got torch.float32 \(2,\)",
        ),
        (
            torch.zeros(2, 3, dtype=torch.long),
            torch.tensor([1, 2, 3]),
            r"sequence_length must be an integer tensor of shape \(2,\), got torch.int64 \(3,\)",
        ),
        (
            torch.zeros(2, 3, dtype=torch.long),
            torch.tensor([0, 2]),
            r"sequence_length must be in \[1, 3\] .* got values in \[0, 2\]",
        ),
        (
            torch.zeros(2, 3, dtype=torch.long),
            torch.tensor([4, 2]),
            r"sequence_length must be in \[1, 3\] .* got values in \[2, 4\]",
        ),
        (
            torch.full((2, 3), VOCAB),
            torch.tensor([1, 2]),
            r"token ids must be in \[0, 13\), got values in \[13, 13\]",
        ),
    ],
)
def test_bad_inputs_are_refused(tokens: torch.Tensor, lengths: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match="TextClassifier: " + message):
        _model()(tokens, lengths)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"TextClassifier: vocab_size must be a positive int, got 0"
    ):
        TextClassifier(vocab_size=0, num_classes=2)
    with pytest.raises(
        ValueError, match=r"TextClassifier: embedding_size must be a positive int, got True"
    ):
        TextClassifier(vocab_size=3, num_classes=2, embedding_size=True)
    with pytest.raises(
        ValueError, match=r"SequenceClassifier: num_classes must be a positive int, got 0"
    ):
        TextClassifier(vocab_size=3, num_classes=0)
