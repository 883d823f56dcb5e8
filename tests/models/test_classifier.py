"""SequenceClassifier: the tutorial's graph exactly, TF names and layouts, every option's shapes."""

from __future__ import annotations

import pytest
import torch

from rnnflow import dynamic_rnn
from rnnflow.models import SequenceClassifier


def test_tutorial_configuration_has_the_tutorials_variables():
    model = SequenceClassifier()  # the defaults are the tutorial
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {
        "weights_in": (28, 128),
        "biases_in": (128,),
        "cell.kernel": (128 + 128, 128),  # [projection + units, units]
        "cell.bias": (128,),
        "weights_out": (128, 10),
        "biases_out": (10,),
    }
    assert model.biases_in.eq(0.1).all() and model.biases_out.eq(0.1).all()
    # N(0, 1) projection weights (tf.random_normal): mean ~ 0, std ~ 1
    assert abs(model.weights_in.mean().item()) < 0.1
    assert abs(model.weights_in.std().item() - 1.0) < 0.1


def test_tutorial_forward_is_the_tf1_graph_written_out():
    model = SequenceClassifier().double()
    x = torch.rand(4, 28, 28, dtype=torch.float64)  # [B, T, D]
    xp = (x.reshape(-1, 28) @ model.weights_in + model.biases_in).reshape(4, 28, 128)
    h = torch.zeros(4, 128, dtype=torch.float64)
    for t in range(28):  # BasicRNNCell: h = tanh([x, h] @ kernel + bias)
        h = torch.tanh(torch.cat([xp[:, t], h], 1) @ model.cell.kernel + model.cell.bias)
    expected = h @ model.weights_out + model.biases_out  # [B, 10]
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_features_are_the_final_state_h(cell):
    model = SequenceClassifier(cell=cell, num_units=8, init="glorot").double()
    x = torch.randn(3, 5, 28, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 1])
    _, state = dynamic_rnn(model.cell, x @ model.weights_in + model.biases_in, lengths)
    h = state.h if cell == "lstm" else state
    torch.testing.assert_close(model.features(x, lengths), h)
    torch.testing.assert_close(model(x, lengths), h @ model.weights_out + model.biases_out)


def test_bidirectional_concatenates_both_final_states():
    model = SequenceClassifier(cell="gru", num_units=6, bidirectional=True).double()
    names = {n for n, _ in model.named_parameters()}
    assert any(n.startswith("cell_fw.") for n in names)
    assert any(n.startswith("cell_bw.") for n in names)
    assert model.weights_out.shape == (12, 10)
    x = torch.randn(2, 7, 28, dtype=torch.float64)
    xp = x @ model.weights_in + model.biases_in
    _, fw = dynamic_rnn(model.cell_fw, xp)
    _, bw = dynamic_rnn(model.cell_bw, xp.flip(1))
    torch.testing.assert_close(model.features(x), torch.cat([fw, bw], 1))


def test_layers_dropout_and_projection_size():
    model = SequenceClassifier(
        cell="lstm", num_units=16, num_layers=2, dropout=0.5, projection_size=32
    )
    names = {n for n, _ in model.named_parameters()}
    assert "cell.cell_0.cell.kernel" in names and "cell.cell_1.cell.kernel" in names
    assert model.weights_in.shape == (28, 32)
    x = torch.rand(4, 28, 28)
    model.train()
    assert not torch.equal(model(x), model(x))  # dropout draws new masks
    model.eval()
    assert torch.equal(model(x), model(x))
    assert model(x).shape == (4, 10)


def test_glorot_init_zero_biases():
    model = SequenceClassifier(init="glorot")
    limit = (6 / (28 + 128)) ** 0.5
    assert model.weights_in.abs().max() <= limit and model.biases_in.eq(0).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "lstmx"}, r"cell must be one of \('rnn', 'lstm', 'gru', .*\), got 'lstmx'"),
        ({"num_units": 0}, r"num_units must be a positive int, got 0"),
        ({"dropout": 1.0}, r"dropout must be a float in \[0, 1\), got 1.0"),
        ({"init": "he"}, r"init must be one of \('normal', 'glorot'\), got 'he'"),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=r"SequenceClassifier: " + message):
        SequenceClassifier(**kwargs)


def test_input_shape_error():
    with pytest.raises(
        ValueError, match=r"inputs must have shape \[batch, time, 28\], got \(2, 28\)"
    ):
        SequenceClassifier()(torch.zeros(2, 28))


def test_lstm_cell_kind_is_tf_lstmcell_with_basic_lstm_numbers():
    """cell="lstm_cell" builds tf.nn.rnn_cell.LSTMCell (TF names .../lstm_cell/...), the same
    function as BasicLSTMCell with the same weights."""
    from rnnflow.cells import BasicLSTMCell, LSTMCell

    torch.manual_seed(0)
    a = SequenceClassifier(cell="lstm_cell", num_units=8, num_layers=2, forget_bias=0.5)
    b = SequenceClassifier(cell="lstm", num_units=8, num_layers=2, forget_bias=0.5)
    assert all(type(c) is LSTMCell for c in a.cell.cells)
    assert all(type(c) is BasicLSTMCell for c in b.cell.cells)
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 28, 28)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
