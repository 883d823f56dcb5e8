"""A cell built under ``torch.inference_mode()`` trains afterwards.

A lazily built cell whose first call ran in inference mode (a quick prediction before
training, a serving warm-up) used to get inference tensors as parameters, after which every
training step failed with "Inference tensors cannot be saved for backward". Parameters are now
created outside inference mode: the truth for each cell kind is the same cell built normally
from the same seed, whose gradients and one optimizer step it must equal bit for bit.
"""

from __future__ import annotations

import pytest
import torch

import rnnflow
from rnnflow import dynamic_rnn

DEPTH = 3


def _kinds() -> dict[str, object]:
    r = rnnflow
    return {
        "BasicRNNCell": lambda **kw: r.BasicRNNCell(4, **kw),
        "BasicLSTMCell": lambda **kw: r.BasicLSTMCell(4, **kw),
        "LSTMCell": lambda **kw: r.LSTMCell(4, use_peepholes=True, num_proj=2, **kw),
        "GRUCell": lambda **kw: r.GRUCell(4, **kw),
        "LSTMBlockCell": lambda **kw: r.LSTMBlockCell(4, use_peephole=True, **kw),
        "LSTMBlockFusedCell": lambda **kw: r.LSTMBlockFusedCell(4, **kw),
        "GRUBlockCell": lambda **kw: r.GRUBlockCell(4, **kw),
        "GRUBlockCellV2": lambda **kw: r.GRUBlockCellV2(4, **kw),
        "LayerNormBasicLSTMCell": lambda **kw: r.LayerNormBasicLSTMCell(4, **kw),
        "CudnnCompatibleLSTMCell": lambda **kw: r.CudnnCompatibleLSTMCell(4, **kw),
        "CudnnCompatibleGRUCell": lambda **kw: r.CudnnCompatibleGRUCell(4, **kw),
        "MultiRNNCell": lambda **kw: r.MultiRNNCell(
            [r.GRUCell(4, **kw), r.BasicLSTMCell(2, **({"input_size": 4} if kw else {}))]
        ),
        "DropoutWrapper": lambda **kw: r.DropoutWrapper(r.GRUCell(4, **kw), output_keep_prob=0.7),
        "ResidualWrapper": lambda **kw: r.ResidualWrapper(r.BasicRNNCell(DEPTH, **kw)),
        "DeviceWrapper": lambda **kw: r.DeviceWrapper(r.BasicLSTMCell(4, **kw), "cpu"),
    }


def _run(cell, x):
    if isinstance(cell, rnnflow.LSTMBlockFusedCell):  # whole sequences, time-major
        out, _ = cell(x.transpose(0, 1))
        return out
    out, _ = dynamic_rnn(cell, x)
    return out


def _train_step(cell, x):
    """Gradients of one loss and the parameters after one Adam step."""
    optimizer = torch.optim.Adam(cell.parameters(), lr=0.1)
    loss = _run(cell, x).pow(2).sum()
    loss.backward()
    grads = [p.grad.clone() for p in cell.parameters()]
    optimizer.step()
    return grads, [p.detach().clone() for p in cell.parameters()]


@pytest.mark.parametrize("kind", list(_kinds()))
@pytest.mark.parametrize("how", ["first call", "input_size"])
def test_a_cell_built_in_inference_mode_trains_like_one_built_normally(kind, how):
    make = _kinds()[kind]
    kwargs = {"input_size": DEPTH} if how == "input_size" else {}
    x = torch.randn(2, 5, DEPTH)

    torch.manual_seed(7)
    with torch.inference_mode():
        cell = make(**kwargs)  # "input_size": built here
        predicted = _run(cell, x)  # "first call": built here
    assert not any(p.is_inference() for p in cell.parameters())

    torch.manual_seed(7)
    normal = make(**kwargs)
    with torch.no_grad():
        expected = _run(normal, x)
    torch.testing.assert_close(predicted, expected, rtol=0, atol=0)

    torch.manual_seed(8)  # dropout draws the same masks in both
    grads, params = _train_step(cell, x)
    torch.manual_seed(8)
    expected_grads, expected_params = _train_step(normal, x)
    for got, want in zip([*grads, *params], [*expected_grads, *expected_params]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert any(g.abs().sum() > 0 for g in grads)
