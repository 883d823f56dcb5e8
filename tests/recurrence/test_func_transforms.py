"""``torch.func`` transforms and vectorized Jacobians through every RNN entry point.

The fused layers are custom autograd Functions over compiled loops: they have no vmap rule and
cannot run on functorch's wrapped tensors. Under a transform (``vmap``, ``grad``, ``jacrev``,
``jacfwd``) ``impl="auto"`` runs the reference loop and ``impl="fused"`` refuses, naming
``impl="reference"``; a vectorized Jacobian (ordinary forward on the fused path, backward under
vmap) runs the fused backward once per output row. The truth each result is checked against is
computed without any transform: ``jacobian(vectorize=False)`` (one ``autograd.grad`` per output
element) or a loop over examples, on the reference loop, in float64.
"""

from __future__ import annotations

import pytest
import torch
from rnnflow_testing import CELL_INPUT_DEPTH, CELL_KINDS, make_cell
from torch.func import functional_call, grad, jacfwd, jacrev, vmap

from rnnflow import (
    BasicLSTMCell,
    GRUCell,
    LSTMBlockCell,
    LSTMCell,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
    stack_bidirectional_dynamic_rnn,
    static_rnn,
)
from rnnflow.recurrence import fused

KINDS = [*CELL_KINDS, "lstm_cell_options", "lstm_block_clip"]
LENGTHS = torch.tensor([4, 2, 3])  # partial rows too: the masking runs under the transform


def _cell(kind: str) -> torch.nn.Module:
    common = dict(input_size=CELL_INPUT_DEPTH, dtype=torch.float64)
    if kind == "lstm_cell_options":  # the fused Python loop of _fused_lstm_cell
        return LSTMCell(4, use_peepholes=True, cell_clip=0.5, num_proj=3, **common)
    if kind == "lstm_block_clip":  # the reference loop's straight-through clip Function
        return LSTMBlockCell(4, cell_clip=0.2, **common)
    return make_cell(kind, torch.float64)


def _inputs() -> torch.Tensor:
    return torch.randn(3, 4, CELL_INPUT_DEPTH, dtype=torch.float64)


def _outputs(cell, impl):
    """x [B, T, D] -> every output and final-state element, one flat vector."""

    def f(x):
        out, state = dynamic_rnn(cell, x, sequence_length=LENGTHS, impl=impl)
        leaves = [out, *(state if isinstance(state, tuple) else (state,))]
        flat = []
        for leaf in leaves:
            flat += list(leaf) if isinstance(leaf, tuple) else [leaf]
        return torch.cat([t.reshape(-1) for t in flat])

    return f


@pytest.mark.parametrize("kind", KINDS)
def test_vectorized_jacobian_through_the_fused_path_equals_the_loop_jacobian(kind, calls):
    torch.manual_seed(0)
    cell, x = _cell(kind), _inputs()
    truth = torch.autograd.functional.jacobian(_outputs(cell, "reference"), x)
    for impl in ("auto", "fused") if kind != "lstm_block_clip" else ("auto",):
        got = torch.autograd.functional.jacobian(_outputs(cell, impl), x, vectorize=True)
        torch.testing.assert_close(got, truth, rtol=1e-10, atol=1e-12)
    if kind != "lstm_block_clip":  # fusable: the vectorized backward went through the layers
        assert calls


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("transform", ["jacrev", "jacfwd"])
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_jacobians_under_torch_func_run_the_reference_loop(kind, transform, calls):
    torch.manual_seed(1)
    cell, x = _cell(kind), _inputs()
    truth = torch.autograd.functional.jacobian(_outputs(cell, "reference"), x)
    got = {"jacrev": jacrev, "jacfwd": jacfwd}[transform](_outputs(cell, "auto"))(x)
    torch.testing.assert_close(got, truth, rtol=1e-10, atol=1e-12)
    assert calls == []  # impl="auto" chose the reference loop


@pytest.mark.parametrize("kind", KINDS)
def test_per_example_parameter_gradients_with_vmap_of_grad(kind):
    """The DP-SGD recipe: vmap(grad(loss)) over examples, parameters passed functionally
    (whole rows: vmapped sequence lengths cannot be range-checked, a data-dependent check)."""
    torch.manual_seed(2)
    cell, x = _cell(kind), _inputs()
    params = {f"cell.{k}": v.detach() for k, v in cell.named_parameters()}
    runner = _Runner(cell)

    def example_loss(p, xi):  # one example: [1, T, D]
        out, _ = functional_call(runner, p, (xi[None],))
        return out.pow(2).sum()

    per_example = vmap(grad(example_loss), in_dims=(None, 0))(params, x)
    for b in range(x.shape[0]):
        out, _ = dynamic_rnn(cell, x[b : b + 1], impl="reference")
        truth = torch.autograd.grad(out.pow(2).sum(), list(cell.parameters()))
        for (name, _), expected in zip(cell.named_parameters(), truth):
            got = per_example[f"cell.{name}"][b]
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


class _Runner(torch.nn.Module):
    """``dynamic_rnn`` as a module, so ``functional_call`` can swap the cell's parameters."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x):
        return dynamic_rnn(self.cell, x)


def test_vmap_without_gradients_runs_the_reference_loop(calls, monkeypatch):
    """No gradient anywhere: the plain inference call (``fused.infer_fast``) leaves a batched
    tensor to the reference loop too (its compiled op would run under vmap's slow per-row
    fallback, with a warning from C++)."""
    import importlib

    driver = importlib.import_module("rnnflow.recurrence.dynamic_rnn")

    loops = []
    real = driver.reference_dynamic_rnn
    monkeypatch.setattr(
        driver, "reference_dynamic_rnn", lambda *a, **k: loops.append(1) or real(*a, **k)
    )
    torch.manual_seed(3)
    cell = BasicLSTMCell(4, input_size=3, dtype=torch.float64)
    x = torch.randn(5, 2, 6, 3, dtype=torch.float64)  # 5 independent batches
    with torch.no_grad():
        got = vmap(lambda xb: dynamic_rnn(cell, xb)[0])(x)
        truth = torch.stack([dynamic_rnn(cell, xb, impl="reference")[0] for xb in x])
    torch.testing.assert_close(got, truth, rtol=1e-12, atol=1e-14)
    assert calls == [] and len(loops) == 1 + len(x)  # the vmapped call, then the truth's


def _entry_points():
    """Every public driver that can pick the fused path, as x [B, T, D] -> one tensor."""

    def bidirectional(impl):
        fw, bw = (
            GRUCell(3, input_size=3, dtype=torch.float64),
            BasicLSTMCell(2, input_size=3, dtype=torch.float64),
        )

        def f(x):
            (out_fw, out_bw), _ = bidirectional_dynamic_rnn(fw, bw, x, dtype=x.dtype, impl=impl)
            return torch.cat([out_fw, out_bw], -1)

        return f

    def static(impl):
        cell = MultiRNNCell(
            [
                GRUCell(3, input_size=3, dtype=torch.float64),
                BasicLSTMCell(2, input_size=3, dtype=torch.float64),
            ]
        )

        def f(x):
            outputs, _ = static_rnn(cell, list(x.unbind(1)), dtype=x.dtype, impl=impl)
            return torch.stack(outputs, 1)

        return f

    def stack(impl):
        fws = [
            BasicLSTMCell(2, input_size=3, dtype=torch.float64),
            GRUCell(2, input_size=4, dtype=torch.float64),
        ]
        bws = [
            GRUCell(2, input_size=3, dtype=torch.float64),
            BasicLSTMCell(2, input_size=4, dtype=torch.float64),
        ]

        def f(x):
            out, _, _ = stack_bidirectional_dynamic_rnn(fws, bws, x, dtype=x.dtype, impl=impl)
            return out

        return f

    return {
        "bidirectional_dynamic_rnn": bidirectional,
        "static_rnn": static,
        "stack_bidirectional_dynamic_rnn": stack,
    }


@pytest.mark.parametrize("name", list(_entry_points()))
def test_every_driver_under_jacrev_and_vectorized_jacobian(name, calls):
    make = _entry_points()[name]
    torch.manual_seed(4)
    f_auto = make("auto")
    torch.manual_seed(4)
    f_ref = make("reference")
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    truth = torch.autograd.functional.jacobian(f_ref, x)
    torch.testing.assert_close(jacrev(f_auto)(x), truth, rtol=1e-10, atol=1e-12)
    assert calls == []
    got = torch.autograd.functional.jacobian(f_auto, x, vectorize=True)
    torch.testing.assert_close(got, truth, rtol=1e-10, atol=1e-12)
    assert calls  # the vectorized Jacobian's forward ran the fused path


@pytest.mark.parametrize("transform", ["vmap", "grad", "jacrev"])
def test_impl_fused_under_a_transform_is_refused_naming_the_reference_loop(transform):
    cell = GRUCell(3, input_size=3, dtype=torch.float64)
    x = torch.randn(2, 4, 3, dtype=torch.float64)

    def f(xb):
        return dynamic_rnn(cell, xb, impl="fused")[0].sum()

    run = {"vmap": vmap(f), "grad": grad(f), "jacrev": jacrev(f)}[transform]
    with pytest.raises(
        ValueError,
        match=r"dynamic_rnn: impl='fused' unavailable \(a torch\.func transform \(vmap, grad, "
        r"jacrev, jacfwd, \.\.\.\) is running, and the fused layers have no rule for it; run "
        r"the RNN with impl='reference'\)",
    ):
        run(x[None] if transform == "vmap" else x)
    ok, reason = fused.fusable(cell, x.transpose(0, 1))
    assert ok and reason == ""  # outside the transform the same call fuses


def test_an_empty_run_under_grad_has_zero_gradients():
    """T = 0: zero outputs that still depend on the inputs (the reference loop's empty-run
    path), under torch.func.grad too."""
    cell = GRUCell(3, input_size=2, dtype=torch.float64)
    x = torch.randn(2, 0, 2, dtype=torch.float64)
    dx = grad(lambda x: dynamic_rnn(cell, x)[0].sum() + dynamic_rnn(cell, x)[1].sum())(x)
    assert dx.shape == x.shape


def test_vectorized_jacobian_through_onednns_lstm(monkeypatch):
    """float32 LSTM where oneDNN's LSTM serves the layer (CPUs without the packed kernel): its
    backward, and the weight conversion's, under batched gradients."""
    monkeypatch.setattr(fused, "_compiled_lstm_faster", lambda cell, x: False)
    peer = []
    real = fused._peer_layer
    monkeypatch.setattr(fused, "_peer_layer", lambda *a: peer.append(1) or real(*a))
    torch.manual_seed(5)
    cell = BasicLSTMCell(4, input_size=3)
    x = torch.randn(2, 5, 3)

    def f(impl):
        return lambda x: dynamic_rnn(cell, x, impl=impl)[0].sum(-1)

    truth = torch.autograd.functional.jacobian(f("reference"), x)
    got = torch.autograd.functional.jacobian(f("auto"), x, vectorize=True)
    torch.testing.assert_close(got, truth, rtol=1e-5, atol=1e-6)
    if torch.backends.mkldnn.is_available():
        assert peer
