"""SequenceClassifier.prefix_logits: the prediction after each step, against independent truths
(the model run on the cut input; for one direction, the cell stepped by hand)."""

from __future__ import annotations

import pytest
import torch

from rnnflow.models.classifier import SequenceClassifier


@pytest.mark.parametrize(
    ("cell", "pooling"), [("rnn", "last"), ("lstm", "last"), ("gru", "last"), ("gru", "max"),
                          ("lstm", "last+mean+max")],
)  # fmt: skip
@pytest.mark.parametrize("bidirectional", [False, True])
def test_prefix_logits_equal_the_model_on_the_cut_input(cell, pooling, bidirectional):
    torch.manual_seed(0)
    model = SequenceClassifier(
        input_size=5, num_classes=4, cell=cell, num_units=6, bidirectional=bidirectional,
        pooling=pooling,
    ).double()  # fmt: skip
    x = torch.randn(2, 7, 5, dtype=torch.float64)
    prefix = model.prefix_logits(x)  # [2, 8, 4]
    assert prefix.shape == (2, 8, 4)
    torch.testing.assert_close(prefix[:, 0], model.biases_out.expand(2, 4))  # nothing read yet
    for t in range(1, 8):
        torch.testing.assert_close(prefix[:, t], model(x[:, :t]), rtol=1e-12, atol=1e-12)


def test_one_direction_prefix_is_the_output_layer_on_each_step_state():
    torch.manual_seed(1)
    model = SequenceClassifier(input_size=3, num_classes=2, cell="rnn", num_units=4).double()
    x = torch.randn(1, 5, 3, dtype=torch.float64)
    kernel, bias = model.cell.kernel, model.cell.bias  # TF layout [D + H, H], [H]
    h = torch.zeros(1, 4, dtype=torch.float64)
    expected = [model.biases_out[None]]
    for t in range(5):  # BasicRNNCell by hand: h = tanh([x_p, h] @ kernel + bias)
        xp = x[:, t] @ model.weights_in + model.biases_in
        h = torch.tanh(torch.cat([xp, h], 1) @ kernel + bias)
        expected.append(h @ model.weights_out + model.biases_out)
    torch.testing.assert_close(model.prefix_logits(x)[0], torch.cat(expected), rtol=0, atol=1e-12)


def test_prefix_logits_refuse_a_bad_shape():
    model = SequenceClassifier(input_size=3, num_classes=2, num_units=4)
    with pytest.raises(
        ValueError, match=r"inputs must have shape \[batch, time, 3\], got \(5, 3\)"
    ):
        model.prefix_logits(torch.zeros(5, 3))
