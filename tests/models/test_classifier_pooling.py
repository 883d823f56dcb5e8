"""SequenceClassifier(pooling="mean"): the mean of the valid outputs, checked against each row run
alone, cut at its length, on the reference loop (float64), and its gradients likewise."""

from __future__ import annotations

import pytest
import torch

from rnnflow.models import SequenceClassifier
from rnnflow.recurrence import bidirectional_dynamic_rnn, dynamic_rnn


def model(bidirectional: bool, cell: str) -> SequenceClassifier:
    torch.manual_seed(0)
    m = SequenceClassifier(
        input_size=3,
        num_classes=4,
        cell=cell,
        num_units=5,
        bidirectional=bidirectional,
        init="glorot",
        pooling="mean",
    )
    return m.double()


def row_alone(m: SequenceClassifier, x: torch.Tensor) -> torch.Tensor:
    """Logits [C] of one row x [t, D] (t >= 1): mean over its t outputs, reference loop."""
    p = (x @ m.weights_in + m.biases_in)[None]  # [1, t, P]
    if m.bidirectional:
        (fw, bw), _ = bidirectional_dynamic_rnn(m.cell_fw, m.cell_bw, p, impl="reference")
        out = torch.cat([fw, bw], dim=2)  # [1, t, 2H]
    else:
        out, _ = dynamic_rnn(m.cell, p, impl="reference")  # [1, t, H]
    return out[0].mean(dim=0) @ m.weights_out + m.biases_out


@pytest.mark.parametrize(("bidirectional", "cell"), [(False, "gru"), (True, "lstm"), (True, "rnn")])
def test_mean_pooling_equals_each_row_alone(bidirectional: bool, cell: str) -> None:
    m = model(bidirectional, cell)
    x = torch.randn(4, 6, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 1, 3, 5])
    got = m(x, lengths)  # [4, C]
    want = torch.stack([row_alone(m, x[b, :n]) for b, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(got)
    grads = torch.autograd.grad((got * weights).sum(), [x, *m.parameters()])
    grads_alone = torch.autograd.grad((want * weights).sum(), [x, *m.parameters()])
    for g, w in zip(grads, grads_alone):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert grads[0][1, 1:].eq(0).all()  # steps past a length get no gradient


def test_mean_pooling_without_lengths_and_at_length_zero() -> None:
    m = model(False, "gru")
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(m(x), m(x, torch.tensor([4, 4])))
    empty = m(x, torch.tensor([0, 4]))[0]  # no valid step: the features are zeros
    torch.testing.assert_close(empty, m.biases_out)


def test_pooling_is_checked() -> None:
    with pytest.raises(ValueError, match=r"pooling must be one of \('last', 'mean'\), got 'max'"):
        SequenceClassifier(pooling="max")  # type: ignore[arg-type]
