"""CharLM: masked loss == loss of each unpadded sequence; carried state == one dynamic_rnn call."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rnnflow_testing import assert_close_tree

from rnnflow import _nest
from rnnflow.models.char_lm import CharLM, masked_cross_entropy
from rnnflow.recurrence import dynamic_rnn

CONFIGS = [
    {"cell": "lstm", "num_layers": 1},
    {"cell": "gru", "num_layers": 1},
    {"cell": "rnn", "num_layers": 1},
    {"cell": "lstm", "num_layers": 2, "dropout": 0.5},  # dropout is off in eval mode
    {"cell": "gru", "num_layers": 3},
]


def make(**kwargs) -> CharLM:
    kwargs.setdefault("num_units", 7)
    model = CharLM(vocab_size=11, embed_size=5, **kwargs).double()
    return model.eval()


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_masked_loss_equals_the_loss_of_each_unpadded_sequence(kwargs) -> None:
    model = make(**kwargs)
    lengths = torch.tensor([6, 1, 4, 6])
    tokens = torch.randint(0, 11, (4, 6))
    targets = torch.randint(0, 11, (4, 6))
    tokens[1, 1:] = 0  # padding (any value: it must not matter)
    targets[2, 4:] = 9
    logits, _ = model(tokens, sequence_length=lengths)
    total, count = masked_cross_entropy(logits, targets, lengths)
    assert count == int(lengths.sum())

    expected = torch.zeros((), dtype=torch.float64)
    for b, n in enumerate(lengths.tolist()):
        one, _ = model(tokens[b : b + 1, :n])  # no padding, no sequence_length
        expected = expected + F.cross_entropy(one[0], targets[b, :n], reduction="sum")
    torch.testing.assert_close(total, expected)
    total.backward()  # gradients flow through the masked sum


def test_padding_does_not_change_the_valid_logits_or_the_final_state() -> None:
    model = make(cell="lstm", num_layers=2)
    tokens = torch.randint(0, 11, (2, 5))
    lengths = torch.tensor([5, 3])
    logits, state = model(tokens, sequence_length=lengths)
    padded = tokens.clone()
    padded[1, 3:] = 7
    logits2, state2 = model(padded, sequence_length=lengths)
    torch.testing.assert_close(logits[1, :3], logits2[1, :3])
    assert_close_tree(state2, state)
    _, short_state = model(tokens[1:, :3])
    assert_close_tree(tuple(s[1:] for s in _layer_leaves(state)), _layer_leaves(short_state))


def _layer_leaves(state):
    return tuple(_nest.flatten(state))


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_carrying_the_state_step_by_step_equals_one_call(kwargs) -> None:
    model = make(**kwargs)
    tokens = torch.randint(0, 11, (3, 9))
    whole_logits, whole_state = model(tokens)  # one dynamic_rnn call over 9 steps

    state = None
    pieces = []
    for t in range(9):
        logits, state = model(tokens[:, t : t + 1], initial_state=state)
        pieces.append(logits)
    assert_close_tree((torch.cat(pieces, dim=1), state), (whole_logits, whole_state))

    # uneven chunks (a prime, then single steps) carry the same state
    first, state = model(tokens[:, :4])
    rest, state = model(tokens[:, 4:], initial_state=state)
    assert_close_tree((torch.cat([first, rest], 1), state), (whole_logits, whole_state))


def test_zero_state_matches_the_default_initial_state() -> None:
    model = make(cell="lstm", num_layers=2)
    tokens = torch.randint(0, 11, (2, 4))
    assert_close_tree(model(tokens, initial_state=model.zero_state(2)), model(tokens))


def test_constructor_and_input_errors() -> None:
    with pytest.raises(ValueError, match=r"CharLM: vocab_size must be a positive int, got 0"):
        CharLM(vocab_size=0)
    with pytest.raises(ValueError, match=r"CharLM: dropout must be in \[0, 1\), got 1\.0"):
        CharLM(vocab_size=5, dropout=1.0)
    model = CharLM(vocab_size=5, embed_size=3, num_units=4)
    with pytest.raises(
        ValueError, match=r"CharLM: tokens must be int64 \[B, T\], got torch.int64 \(4,\)"
    ):
        model(torch.zeros(4, dtype=torch.long))


# --- the adaptive softmax output layer (nn.AdaptiveLogSoftmaxWithLoss) --------------------------

ADAPTIVE = {"softmax": "adaptive", "cutoffs": (3, 7)}  # head: ids 0-2 + 2 clusters; tails 3-6, 7-10


def _by_hand_log_probs(model: CharLM, hidden: torch.Tensor) -> torch.Tensor:
    """Grave et al. 2017, eq. for p(w | h), from the layer's parameters (no call to its methods):
    p(w) = softmax(head(h))[w] for a head id; else softmax(head(h))[cluster] x
    softmax(tail_k(h))[w - cutoff_k] for an id of tail cluster k. [N, H] -> [N, V]."""
    layer = model.output
    head = torch.softmax(hidden @ layer.head.weight.T + layer.head.bias, dim=-1)  # [N, 3 + 2]
    columns = [head[:, :3]]
    for k, tail in enumerate(layer.tail):
        projection, out = tail[0].weight, tail[1].weight  # [H/4**(k+1), H], [size_k, H/4**(k+1)]
        inner = torch.softmax(hidden @ projection.T @ out.T, dim=-1)  # [N, size_k]
        columns.append(head[:, 3 + k : 4 + k] * inner)
    return torch.cat(columns, dim=-1).log()


def test_adaptive_log_probs_are_the_papers_distribution_and_sum_to_one() -> None:
    model = make(cell="lstm", num_layers=1, num_units=16, **ADAPTIVE)
    tokens = torch.randint(0, 11, (3, 5))
    log_probs, _ = model(tokens)  # [B, T, V]
    assert log_probs.shape == (3, 5, 11) and log_probs.dtype == torch.float64
    torch.testing.assert_close(
        log_probs.logsumexp(-1), torch.zeros(3, 5, dtype=torch.float64), atol=1e-12, rtol=0
    )
    hidden, _ = dynamic_rnn(model.cell, model.embedding(tokens))  # [B, T, H]
    expected = _by_hand_log_probs(model, hidden.reshape(15, 16)).view(3, 5, 11)
    torch.testing.assert_close(log_probs, expected)


@pytest.mark.parametrize("kwargs", [{}, ADAPTIVE])
def test_training_path_nll_is_minus_the_log_prob_of_each_target(kwargs) -> None:
    """``model(tokens, targets=...)`` (valid steps only) == -log_softmax(logits) at the target,
    0 past each length; its gradient == that of the masked loss of the full [B, T, V] logits."""
    model = make(cell="lstm", num_layers=2, num_units=16, **kwargs)
    lengths = torch.tensor([6, 1, 4])
    tokens = torch.randint(0, 11, (3, 6))
    targets = torch.randint(0, 11, (3, 6))
    nll, state = model(tokens, targets=targets, sequence_length=lengths)  # [B, T]
    logits, state_full = model(tokens, sequence_length=lengths)  # [B, T, V]
    expected = -torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    valid = torch.arange(6)[None, :] < lengths[:, None]
    torch.testing.assert_close(nll, expected.masked_fill(~valid, 0.0))
    assert_close_tree(state, state_full)

    grads = torch.autograd.grad(nll.sum(), list(model.parameters()))
    total, _ = masked_cross_entropy(logits, targets, lengths)
    expected_grads = torch.autograd.grad(total, list(model.parameters()))
    assert_close_tree(grads, expected_grads)


def test_full_softmax_keeps_the_parameter_names_of_older_checkpoints() -> None:
    names = set(CharLM(vocab_size=5, embed_size=3, num_units=4).state_dict())
    assert {"embedding.weight", "output.weight", "output.bias"} <= names


def test_softmax_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"CharLM: softmax must be 'full' or 'adaptive', got 'x'"):
        CharLM(vocab_size=11, softmax="x")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"CharLM: cutoffs are for softmax='adaptive', got cutoffs=\[3\] with"
    ):
        CharLM(vocab_size=11, cutoffs=(3,))
    for bad in [(), (7, 3), (0, 3), (3, 11), (3, 3), (True, 4)]:
        with pytest.raises(
            ValueError,
            match=r"CharLM: softmax='adaptive' needs cutoffs: increasing ints in \(0, "
            rf"vocab_size=11\), e\.g\. \(500, 2000\), got \[{', '.join(map(str, bad))}\]",
        ):
            CharLM(vocab_size=11, softmax="adaptive", cutoffs=bad)
    model = CharLM(vocab_size=11, embed_size=3, num_units=4)
    with pytest.raises(
        ValueError, match=r"CharLM: targets must be int64 \(2, 3\) like tokens, got torch.int64 "
    ):
        model(torch.zeros(2, 3, dtype=torch.long), targets=torch.zeros(2, 4, dtype=torch.long))


def test_every_parameter_gets_a_gradient_when_no_target_falls_in_a_tail() -> None:
    """DistributedDataParallel (find_unused_parameters=False) needs a gradient for every
    parameter on every rank; a rank whose targets all sit in the head must still give the tails
    one (zero)."""
    model = make(cell="lstm", num_layers=1, num_units=16, **ADAPTIVE)
    tokens = torch.randint(0, 11, (2, 4))
    targets = torch.randint(0, 3, (2, 4))  # head ids only
    nll, _ = model(tokens, targets=targets)
    nll.sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []
    assert all(float(p.grad.abs().sum()) == 0.0 for p in model.output.tail.parameters())
