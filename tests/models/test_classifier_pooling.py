"""SequenceClassifier's poolings (the mean, the max, the last valid output and their
concatenations), checked against each row run alone, cut at its length, on the reference loop
(float64), and its gradients likewise; the padding holds random garbage that must not matter."""

from __future__ import annotations

import pytest
import torch

from rnnflow.models import SequenceClassifier
from rnnflow.models.classifier import pool_outputs
from rnnflow.recurrence import bidirectional_dynamic_rnn, dynamic_rnn


def model(bidirectional: bool, cell: str, pooling: str = "mean") -> SequenceClassifier:
    torch.manual_seed(0)
    m = SequenceClassifier(
        input_size=3,
        num_classes=4,
        cell=cell,
        num_units=5,
        bidirectional=bidirectional,
        init="glorot",
        pooling=pooling,  # type: ignore[arg-type]
    )
    return m.double()


def row_alone(m: SequenceClassifier, x: torch.Tensor) -> torch.Tensor:
    """Logits [C] of one row x [t, D] (t >= 1) run alone on the reference loop: its t outputs
    [t, F] reduced by each named pooling (the last: forward at t - 1, backward at 0)."""
    p = (x @ m.weights_in + m.biases_in)[None]  # [1, t, P]
    if m.bidirectional:
        (fw, bw), _ = bidirectional_dynamic_rnn(m.cell_fw, m.cell_bw, p, impl="reference")
        out = torch.cat([fw, bw], dim=2)[0]  # [t, 2H]
        last = torch.cat([fw[0, -1], bw[0, 0]])  # [2H]
    else:
        out = dynamic_rnn(m.cell, p, impl="reference")[0][0]  # [t, H]
        last = out[-1]
    reduce = {"last": last, "mean": out.mean(dim=0), "max": out.max(dim=0).values}
    h = torch.cat([reduce[part] for part in m.pooling.split("+")])  # [K * F]
    return h @ m.weights_out + m.biases_out


POOLED = [
    (False, "gru", "mean"),
    (True, "lstm", "mean"),
    (True, "rnn", "mean"),
    (False, "gru", "max"),
    (True, "gru", "max"),
    (True, "lstm", "last+max"),
    (False, "rnn", "last+mean+max"),
    (True, "gru", "last+mean+max"),
]


@pytest.mark.parametrize(("bidirectional", "cell", "pooling"), POOLED)
def test_pooling_equals_each_row_alone(bidirectional: bool, cell: str, pooling: str) -> None:
    m = model(bidirectional, cell, pooling)
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


@pytest.mark.parametrize("pooling", ["mean", "max", "last+mean+max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_pooling_without_lengths_and_at_length_zero(pooling: str, bidirectional: bool) -> None:
    m = model(bidirectional, "gru", pooling)
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(m(x), m(x, torch.tensor([4, 4])))
    empty = m(x, torch.tensor([0, 4]))[0]  # no valid step: the features are zeros
    torch.testing.assert_close(empty, m.biases_out)
    assert m(x[:, :0], torch.tensor([0, 0])).eq(m.biases_out).all()  # no step at all


def test_max_pooling_by_hand() -> None:
    """pool_outputs on a tiny tensor against values written out by hand."""
    out = torch.tensor(
        [[[1.0, -5.0], [3.0, -2.0], [9.0, 9.0]], [[-1.0, -4.0], [0.0, 0.0], [0.0, 0.0]]]
    )  # [B=2, T=3, F=2]; row 1 has length 1 (zeros past it, as dynamic_rnn returns)
    lengths = torch.tensor([2, 1])
    got = pool_outputs(out, lengths, pooling="last+mean+max")
    want = torch.tensor(
        [[3.0, -2.0, 2.0, -3.5, 3.0, -2.0], [-1.0, -4.0, -1.0, -4.0, -1.0, -4.0]]
    )  # last | mean | max: row 1's max is its only step, not the 0.0 padding
    torch.testing.assert_close(got, want)
    bi = pool_outputs(out, lengths, pooling="last", backward_units=1)  # backward: step 0
    torch.testing.assert_close(bi, torch.tensor([[3.0, -5.0], [-1.0, -4.0]]))


def test_pooling_is_checked() -> None:
    choices = r"\('last', 'mean', 'max', 'last\+max', 'last\+mean\+max'\)"
    with pytest.raises(
        ValueError, match=rf"SequenceClassifier: pooling must be one of {choices}, got 'sum'"
    ):
        SequenceClassifier(pooling="sum")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=rf"pool_outputs: pooling must be one of {choices}, got 'min'"
    ):
        pool_outputs(torch.zeros(1, 2, 3), None, pooling="min")  # type: ignore[arg-type]


def test_the_config_offers_the_model_s_poolings() -> None:
    from typing import get_args

    from rnnflow.models.classifier import POOLINGS
    from rnnflow.tasks.sequence_config import Pooling

    assert get_args(Pooling) == POOLINGS
