"""The tf.contrib cells' arguments, errors, recurrent dropout and LSTMBlockFusedCell's contract.

Their numbers against TensorFlow are in ``test_contrib_tf_parity.py``.
"""

from __future__ import annotations

import re

import pytest
import torch

from rnnflow import (
    CudnnCompatibleGRUCell,
    CudnnCompatibleLSTMCell,
    GRUBlockCell,
    GRUBlockCellV2,
    GRUCell,
    LayerNormBasicLSTMCell,
    LSTMBlockCell,
    LSTMBlockFusedCell,
    LSTMStateTuple,
    MultiRNNCell,
    dynamic_rnn,
)
from rnnflow.cells.lstm_block import straight_through_clip
from rnnflow.interop.tf1_names import cell_tf_names
from rnnflow.recurrence.fused import fusable


# ----------------------------------------------------------------------------- constructors
@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: LSTMBlockCell(0), ValueError, r"LSTMBlockCell: num_units must be a positive int"),
        (lambda: LSTMBlockCell(4, forget_bias="1"), TypeError, r"forget_bias must be a number"),
        (lambda: LSTMBlockCell(4, forget_bias=float("inf")), ValueError, r"must be finite"),
        (lambda: LSTMBlockCell(4, cell_clip="3"), TypeError, r"cell_clip must be a number or None"),
        (lambda: LSTMBlockCell(4, cell_clip=float("nan")), ValueError, r"cell_clip must not be"),
        (lambda: LSTMBlockCell(4, use_peephole=1), TypeError, r"use_peephole must be a bool"),
        (lambda: LSTMBlockFusedCell(-1), ValueError, r"LSTMBlockFusedCell: num_units must be"),
        (
            lambda: GRUBlockCellV2(4, cell_size=4),
            ValueError,
            r"GRUBlockCellV2: exactly one of num_units or cell_size must be given, "
            r"got num_units=4, cell_size=4",
        ),
        (lambda: GRUBlockCellV2(), ValueError, r"exactly one of num_units or cell_size"),
        (lambda: GRUBlockCellV2(2.5), ValueError, r"GRUBlockCellV2: num_units must be a positive"),
        (
            lambda: LayerNormBasicLSTMCell(4, dropout_keep_prob=0.0),
            ValueError,
            r"LayerNormBasicLSTMCell: dropout_keep_prob must be a float in \(0, 1\], got 0.0",
        ),
        (lambda: LayerNormBasicLSTMCell(4, layer_norm=None), TypeError, r"layer_norm must be a"),
        (
            lambda: LayerNormBasicLSTMCell(4, norm_gain="x"),
            TypeError,
            r"LayerNormBasicLSTMCell: norm_gain must be a number, got 'x'",
        ),
        (
            lambda: LayerNormBasicLSTMCell(4, norm_shift=float("inf")),
            ValueError,
            r"LayerNormBasicLSTMCell: norm_shift must be finite, got inf",
        ),
        (
            lambda: LayerNormBasicLSTMCell(4, forget_bias=float("nan")),
            ValueError,
            r"LayerNormBasicLSTMCell: forget_bias must be finite, got nan",
        ),
        (lambda: LayerNormBasicLSTMCell(4, dropout_prob_seed=1.5), TypeError, r"dropout_prob_se"),
        (lambda: CudnnCompatibleGRUCell(0), ValueError, r"CudnnCompatibleGRUCell: num_units"),
        (
            lambda: CudnnCompatibleGRUCell(3, kernel_initializer=1),
            TypeError,
            r"CudnnCompatibleGRUCell: kernel_initializer must be a callable or None, got 1",
        ),
    ],
)
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_tf_defaults_and_aliases():
    cell = LSTMBlockCell(4, cell_clip=-2.0)
    assert (cell.forget_bias, cell.cell_clip, cell.use_peephole, cell.name) == (
        1.0,
        -1.0,  # TF: any value <= 0 is "no clipping", stored as -1
        False,
        "lstm_cell",
    )
    assert LSTMBlockFusedCell(4).name == "lstm_fused_cell"
    assert GRUBlockCellV2(cell_size=3).num_units == 3
    assert isinstance(GRUBlockCellV2(3), GRUCell)  # same maths and names as GRUCell
    cudnn = CudnnCompatibleLSTMCell(4)
    assert (cudnn.forget_bias, cudnn.cell_clip, cudnn.use_peephole) == (0.0, -1.0, False)


def test_straight_through_clip_gradient_is_the_identity():
    c = torch.tensor([-2.0, -0.1, 0.3, 5.0], requires_grad=True)
    out = straight_through_clip(c, 0.5)
    assert out.tolist() == pytest.approx([-0.5, -0.1, 0.3, 0.5])
    (grad,) = torch.autograd.grad(out.sum(), c)
    assert grad.tolist() == [1.0, 1.0, 1.0, 1.0]  # TF's LSTMBlockCellGrad ignores the clip
    assert straight_through_clip(c, -1.0) is c


# ----------------------------------------------------------------------------- names
def test_tf_names_follow_the_configuration_built_or_not():
    assert sorted(cell_tf_names(LSTMBlockCell(4, use_peephole=True), "rnn").values()) == [
        f"rnn/lstm_cell/{p}" for p in ("bias", "kernel", "w_f_diag", "w_i_diag", "w_o_diag")
    ]
    named = cell_tf_names(LSTMBlockCell(4, name="enc_lstm"), "")
    assert named == {"kernel": "enc_lstm/kernel", "bias": "enc_lstm/bias"}
    assert cell_tf_names(GRUBlockCell(4), "rnn") == {
        "gates.kernel": "rnn/gru_cell/w_ru",
        "gates.bias": "rnn/gru_cell/b_ru",
        "candidate.kernel": "rnn/gru_cell/w_c",
        "candidate.bias": "rnn/gru_cell/b_c",
    }
    plain = cell_tf_names(LayerNormBasicLSTMCell(4, layer_norm=False), "rnn")
    assert plain == {
        "kernel": "rnn/layer_norm_basic_lstm_cell/kernel",
        "bias": "rnn/layer_norm_basic_lstm_cell/bias",
    }
    gru = cell_tf_names(CudnnCompatibleGRUCell(3, input_size=2), "x")
    assert gru["candidate.hidden_projection.bias"] == (
        "x/cudnn_compatible_gru_cell/candidate/hidden_projection/bias"
    )
    assert set(gru) == {k for k, _ in CudnnCompatibleGRUCell(3, input_size=2).named_parameters()}


# ----------------------------------------------------------------------------- dropout
def _ln_cell(keep: float, seed: int | None = 7) -> LayerNormBasicLSTMCell:
    torch.manual_seed(0)
    return LayerNormBasicLSTMCell(
        4, dropout_keep_prob=keep, dropout_prob_seed=seed, input_size=3, dtype=torch.float64
    )


def test_recurrent_dropout_is_off_in_eval_mode_and_seeded_in_training():
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    full, _ = dynamic_rnn(_ln_cell(1.0), x)
    dropped = _ln_cell(0.5).eval()
    torch.testing.assert_close(dynamic_rnn(dropped, x)[0], full, rtol=0, atol=0)
    first, second, other = _ln_cell(0.5).train(), _ln_cell(0.5).train(), _ln_cell(0.5, 8)
    torch.manual_seed(1)
    a, _ = dynamic_rnn(first, x)
    torch.manual_seed(2)  # the global RNG does not matter: dropout_prob_seed does
    b, _ = dynamic_rnn(second, x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.manual_seed(1)
    assert (dynamic_rnn(other.train(), x)[0] - a).abs().max() > 1e-3  # another seed
    assert (a - full).abs().max() > 1e-3


def test_recurrent_dropout_drops_the_candidate_only_and_scales_by_keep_prob():
    """One step from c = 0: c' = sigmoid(i) * g * mask / keep, so every unit of c' before the
    state norm is either 0 or 1/keep times the undropped value; with layer_norm=False that is
    c' itself."""
    torch.manual_seed(0)
    cell = LayerNormBasicLSTMCell(
        64, layer_norm=False, dropout_keep_prob=0.25, input_size=3, dtype=torch.float64
    )
    x = torch.randn(8, 3, dtype=torch.float64)
    zero = cell.zero_state(8)
    _, (c_ref, _) = cell.eval()(x, zero)
    _, (c_drop, _) = cell.train()(x, zero)
    ratio = c_drop / c_ref
    kept = ratio != 0
    torch.testing.assert_close(ratio[kept], torch.full_like(ratio[kept], 4.0))
    assert 0.15 < kept.double().mean().item() < 0.35  # about keep_prob of 512 units


# ----------------------------------------------------------------------------- fused cell
def test_fused_cell_equals_dynamic_rnn_of_the_block_cell():
    """Same parameters: the whole-sequence call == dynamic_rnn(LSTMBlockCell), time-major,
    lengths 0 / partial / full, gradients included (float64, 1e-12)."""
    torch.manual_seed(0)
    fused = LSTMBlockFusedCell(
        4, cell_clip=0.5, use_peephole=True, input_size=3, dtype=torch.float64
    )
    step = LSTMBlockCell(4, cell_clip=0.5, use_peephole=True, input_size=3, dtype=torch.float64)
    step.load_state_dict(fused.state_dict())
    x = torch.randn(6, 3, 3, dtype=torch.float64, requires_grad=True)
    init = LSTMStateTuple(*torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True))
    lengths = torch.tensor([6, 2, 0])
    weights = torch.randn(6, 3, 4, dtype=torch.float64)

    def run(cell, out, state):
        loss = (out * weights).sum() + (state.c * state.h).sum()
        grads = torch.autograd.grad(loss, [x, *init, *cell.parameters()])
        return [out, *state, *grads]

    got = run(fused, *fused(x, initial_state=tuple(init), sequence_length=lengths))
    want = run(
        step,
        *dynamic_rnn(step, x, sequence_length=lengths, initial_state=init, time_major=True),
    )
    assert len(got) == len(want) == 3 + 3 + 5
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fused_cell_defaults_and_errors():
    cell = LSTMBlockFusedCell(4, input_size=3)
    out, state = cell(torch.randn(5, 2, 3))
    assert out.shape == (5, 2, 4) and isinstance(state, LSTMStateTuple)
    torch.testing.assert_close(state.h, out[-1])
    empty, (c, h) = cell(torch.randn(0, 2, 3))
    assert empty.shape == (0, 2, 4) and c.eq(0).all() and h.eq(0).all()
    wanted = r"LSTMBlockFusedCell: inputs must be a floating time-major tensor \[time, batch, de"
    with pytest.raises(ValueError, match=wanted + r"pth\].*got shape \(2, 3\)"):
        cell(torch.randn(2, 3), cell.zero_state(2))
    with pytest.raises(TypeError, match=r"dtype torch.float64 does not match the inputs'"):
        cell(torch.randn(5, 2, 3), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"initial_state must be a pair \(c, h\) or None, got"):
        cell(torch.randn(5, 2, 3), initial_state=torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"initial_state must match the cell's state structure"):
        cell(torch.randn(5, 2, 3), initial_state=(torch.zeros(2, 4), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match=r"sequence_length must be <= the time axis length 5"):
        cell(torch.randn(5, 2, 3), sequence_length=torch.tensor([6, 1]))


# ----------------------------------------------------------------------------- fused path
@pytest.mark.parametrize("time_major", [False, True])
def test_fused_path_equals_reference_loop_for_contrib_cells(time_major: bool, device):
    """LSTMBlockCell without peepholes/clip, CudnnCompatibleLSTMCell and GRUBlockCellV2 run on
    the built-in cells' fused kernels: == the reference loop in float64 at 1e-10, gradients
    w.r.t. inputs, initial state and every parameter included."""
    torch.manual_seed(0)
    f64 = dict(dtype=torch.float64, device=device)
    cell = MultiRNNCell(
        [
            LSTMBlockCell(4, forget_bias=0.7, input_size=3, **f64),
            GRUBlockCellV2(5, input_size=4, **f64),
            CudnnCompatibleLSTMCell(3, input_size=5, **f64),
        ]
    )
    shape = (6, 3, 3) if time_major else (3, 6, 3)
    x = torch.randn(*shape, **f64, requires_grad=True)
    init = cell.zero_state(3, torch.float64, device=device)
    init = tuple(
        type(s)(*(torch.randn_like(t).requires_grad_() for t in s))
        if isinstance(s, tuple)
        else torch.randn_like(s).requires_grad_()
        for s in init
    )
    leaves = [t for s in init for t in (s if isinstance(s, tuple) else (s,))]
    lengths = torch.tensor([6, 2, 0], device=device)
    assert fusable(cell, x if time_major else x.transpose(0, 1)) == (True, "")
    results = {}
    for impl in ("reference", "fused"):
        out, state = dynamic_rnn(
            cell, x, sequence_length=lengths, initial_state=init, time_major=time_major, impl=impl
        )
        flat = [state[0].c, state[0].h, state[1], state[2].c, state[2].h]
        loss = (out * out.detach().cos()).sum() + sum((s * s.detach().sin()).sum() for s in flat)
        grads = torch.autograd.grad(loss, [x, *leaves, *cell.parameters()])
        results[impl] = [out, *flat, *grads]
    for a, b in zip(results["fused"], results["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "cell, reason",
    [
        (
            LSTMBlockCell(4, use_peephole=True, input_size=3),
            r"no fused kernel for LSTMBlockCell with use_peephole=True, cell_clip=None",
        ),
        (
            LSTMBlockCell(4, cell_clip=2.0, input_size=3),
            r"LSTMBlockCell with use_peephole=False, cell_clip=2.0 \(only without peepholes",
        ),
        (LayerNormBasicLSTMCell(4, input_size=3), r"LayerNormBasicLSTMCell \(layer normal"),
        (CudnnCompatibleGRUCell(4, input_size=3), r"CudnnCompatibleGRUCell \(cuDNN's reset-af"),
    ],
)
def test_fusable_names_the_contrib_cells_it_does_not_take(cell, reason):
    x = torch.randn(2, 5, 3)
    ok, why = fusable(cell, x)
    assert not ok
    assert re.search(reason, why), why
    with pytest.raises(ValueError, match=r"dynamic_rnn: impl='fused' unavailable \(.*" + reason):
        dynamic_rnn(cell, x, dtype=torch.float32, impl="fused")


@pytest.mark.parametrize("dtype, eps", [(torch.float64, 1e-12), (torch.float16, 1e-3)])
def test_layer_norm_epsilon_is_tfs(dtype, eps):
    """TF's contrib layer_norm: variance_epsilon 1e-12, but 1e-3 for float16. A row [0, d] has
    mean d/2 and variance d^2/4, so its normalised values are -+ (d/2) / sqrt(d^2/4 + eps)."""
    from rnnflow.cells.layer_norm_lstm import _layer_norm

    d = 2e-3
    x = torch.tensor([[0.0, d]], dtype=dtype)
    one, zero = torch.ones(2, dtype=dtype), torch.zeros(2, dtype=dtype)
    expected = (d / 2) / (d * d / 4 + eps) ** 0.5
    got = _layer_norm(x, one, zero).double()
    torch.testing.assert_close(
        got, torch.tensor([[-expected, expected]], dtype=torch.float64), rtol=2e-3, atol=0
    )
