"""CharLM: masked loss == loss of each unpadded sequence; carried state == one dynamic_rnn call."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rnnflow_testing import assert_close_tree

from rnnflow import _nest
from rnnflow.models.char_lm import CharLM, masked_cross_entropy

CONFIGS = [
    {"cell": "lstm", "num_layers": 1},
    {"cell": "gru", "num_layers": 1},
    {"cell": "rnn", "num_layers": 1},
    {"cell": "lstm", "num_layers": 2, "dropout": 0.5},  # dropout is off in eval mode
    {"cell": "gru", "num_layers": 3},
]


def make(**kwargs) -> CharLM:
    model = CharLM(vocab_size=11, embed_size=5, num_units=7, **kwargs).double()
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
