"""LSTMCell: TF1's names and shapes, peepholes, clipping, projection, both state layouts.

The numbers against TensorFlow itself are in tests/recurrence/test_tf_parity.py (lstm_cell_*
fixtures); here: a NumPy transcription of r1.15's ``LSTMCell.call``, layouts and errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnflow import LSTMCell, LSTMStateTuple, dynamic_rnn


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm_cell(x, c, m, p, *, forget_bias, cell_clip=None, proj_clip=None):
    """r1.15 rnn_cell_impl.LSTMCell.call, in NumPy; ``p`` holds the TF variables."""
    i, j, f, o = np.split(np.concatenate([x, m], 1) @ p["kernel"] + p["bias"], 4, axis=1)
    if "w_f_diag" in p:
        new_c = sigmoid(f + forget_bias + p["w_f_diag"] * c) * c + sigmoid(
            i + p["w_i_diag"] * c
        ) * np.tanh(j)
    else:
        new_c = sigmoid(f + forget_bias) * c + sigmoid(i) * np.tanh(j)
    if cell_clip is not None:
        new_c = np.clip(new_c, -cell_clip, cell_clip)
    gate_o = o + p["w_o_diag"] * new_c if "w_o_diag" in p else o
    new_m = sigmoid(gate_o) * np.tanh(new_c)
    if "projection.kernel" in p:
        new_m = new_m @ p["projection.kernel"]
        if proj_clip is not None:
            new_m = np.clip(new_m, -proj_clip, proj_clip)
    return new_m, new_c


def random_cell(seed=2, **options):
    cell = LSTMCell(3, input_size=2, dtype=torch.float64, **options)
    rng = np.random.default_rng(seed)
    values = {}
    with torch.no_grad():
        for name, param in cell.named_parameters():
            values[name] = rng.normal(size=tuple(param.shape))
            param.copy_(torch.from_numpy(values[name]))
    return cell, values


OPTIONS = [
    {},
    {"use_peepholes": True},
    {"cell_clip": 0.3},
    {"num_proj": 2},
    {"num_proj": 2, "proj_clip": 0.2},
    {"use_peepholes": True, "cell_clip": 0.3, "num_proj": 2, "proj_clip": 0.2, "forget_bias": 0.5},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o) or "plain")
def test_step_matches_the_r1_15_formulas(options):
    cell, values = random_cell(**options)
    rng = np.random.default_rng(3)
    p_size = options.get("num_proj", 3)
    x, c, m = rng.normal(size=(4, 2)), rng.normal(size=(4, 3)), rng.normal(size=(4, p_size))
    out, state = cell(torch.from_numpy(x), LSTMStateTuple(torch.from_numpy(c), torch.from_numpy(m)))
    want_m, want_c = numpy_lstm_cell(
        x,
        c,
        m,
        values,
        forget_bias=options.get("forget_bias", 1.0),
        cell_clip=options.get("cell_clip"),
        proj_clip=options.get("proj_clip"),
    )
    assert isinstance(state, LSTMStateTuple)
    np.testing.assert_allclose(out.detach().numpy(), want_m, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state.c.detach().numpy(), want_c, rtol=1e-12, atol=1e-14)
    assert state.h is out
    if "cell_clip" in options:  # the case really clips
        assert (state.c.abs() == options["cell_clip"]).any()
    if "proj_clip" in options:
        assert (out.abs() == options["proj_clip"]).any()


def test_tf_names_and_shapes():
    cell = LSTMCell(4, use_peepholes=True, num_proj=3, input_size=5)
    assert {n: tuple(p.shape) for n, p in cell.named_parameters()} == {
        "kernel": (5 + 3, 16),  # [D + num_proj, 4H]
        "bias": (16,),
        "w_f_diag": (4,),
        "w_i_diag": (4,),
        "w_o_diag": (4,),
        "projection.kernel": (4, 3),
    }
    assert cell.state_size == LSTMStateTuple(4, 3) and cell.output_size == 3
    plain = LSTMCell(4, input_size=5)
    assert [n for n, _ in plain.named_parameters()] == ["kernel", "bias"]
    assert tuple(plain.kernel.shape) == (9, 16)
    assert LSTMCell(4, num_proj=3, state_is_tuple=False).state_size == 7


def test_default_initialisers_are_tf1s():
    torch.manual_seed(1)
    cell = LSTMCell(400, use_peepholes=True, num_proj=300, input_size=100)
    assert torch.equal(cell.bias, torch.zeros(1600))  # forget_bias is not stored
    for name, limit in (
        ("kernel", math.sqrt(6 / (400 + 1600))),
        ("projection.kernel", math.sqrt(6 / (400 + 300))),
        ("w_f_diag", math.sqrt(3 / 400)),  # TF: a vector's fan_in = fan_out = its length
    ):
        p = cell.get_parameter(name).detach()
        assert p.abs().max() <= limit and p.abs().max() > 0.97 * limit, name


def test_initializer_fills_every_weight_but_the_bias():
    cell = LSTMCell(
        3, use_peepholes=True, num_proj=2, input_size=2, initializer=torch.nn.init.ones_
    )
    for name, p in cell.named_parameters():
        assert torch.equal(p, torch.full_like(p, 0.0 if name == "bias" else 1.0)), name


def test_concatenated_state_is_c_then_m():
    tuple_cell, values = random_cell(use_peepholes=True, num_proj=2)
    concat_cell = LSTMCell(3, use_peepholes=True, num_proj=2, state_is_tuple=False)
    concat_cell.load_state_dict(tuple_cell.state_dict())
    x = torch.randn(4, 2, dtype=torch.float64)
    c, m = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    out_t, (new_c, new_m) = tuple_cell(x, LSTMStateTuple(c, m))
    out_c, new_state = concat_cell(x, torch.cat([c, m], 1))
    torch.testing.assert_close(out_c, out_t, rtol=0, atol=0)
    torch.testing.assert_close(new_state, torch.cat([new_c, new_m], 1), rtol=0, atol=0)


def test_an_unbuilt_cell_takes_its_input_depth_from_the_kernel():
    built = LSTMCell(3, num_proj=2, input_size=5)
    lazy = LSTMCell(3, num_proj=2)
    lazy.load_state_dict(built.state_dict())
    assert lazy.input_size == 5  # kernel rows 7 = 5 inputs + 2 projected (not + 3 units)


def test_lazy_build_and_dynamic_rnn():
    cell = LSTMCell(3, use_peepholes=True, num_proj=2)
    out, state = dynamic_rnn(cell, torch.randn(2, 4, 6))
    assert out.shape == (2, 4, 2) and state.c.shape == (2, 3) and state.h.shape == (2, 2)
    assert cell.input_size == 6


def test_gradcheck_with_every_option():
    cell, _ = random_cell(**OPTIONS[-1])
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    m = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)

    names = [n for n, _ in cell.named_parameters()]

    def step(x, c, m, *params):
        out, state = torch.func.functional_call(
            cell, dict(zip(names, params)), (x, LSTMStateTuple(c, m))
        )
        return out, state.c

    assert torch.autograd.gradcheck(step, (x, c, m, *cell.parameters()))


def test_shards_are_accepted_and_change_nothing():
    a = LSTMCell(3, num_proj=2, num_unit_shards=2, num_proj_shards=2, input_size=2)
    b = LSTMCell(3, num_proj=2, input_size=2)
    assert {n: p.shape for n, p in a.named_parameters()} == {
        n: p.shape for n, p in b.named_parameters()
    }


def test_trainable_false_freezes_the_parameters():
    cell = LSTMCell(3, use_peepholes=True, trainable=False)
    cell(torch.randn(1, 2), cell.zero_state(1))  # built lazily: still frozen
    assert not any(p.requires_grad for p in cell.parameters())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"proj_clip": 1.0}, ValueError, r"LSTMCell: proj_clip=1.0 needs num_proj"),
        (
            {"cell_clip": -1.0},
            ValueError,
            r"cell_clip must be None or a positive finite number, got -1.0",
        ),
        ({"cell_clip": float("inf")}, ValueError, r"cell_clip must be None or a positive finite"),
        ({"num_proj": 0}, ValueError, r"num_proj must be a positive int or None, got 0$"),
        ({"num_proj": 2.0}, ValueError, r"num_proj must be a positive int or None, got 2\.0$"),
        (
            {"num_unit_shards": 0},
            ValueError,
            r"num_unit_shards must be a positive int or None, got 0$",
        ),
        ({"forget_bias": True}, TypeError, r"forget_bias must be a number, got True"),
        (
            {"forget_bias": float("nan")},
            ValueError,
            r"LSTMCell: forget_bias must be finite, got nan",
        ),
        ({"initializer": "zeros"}, TypeError, r"initializer must be a callable or None"),
        ({"use_peepholes": 1}, TypeError, r"use_peepholes must be a bool, got 1"),
        ({"input_dim": 3}, TypeError, r"unexpected keyword arguments \['input_dim'\]"),
        ({"activation": "swish"}, ValueError, r"LSTMCell: activation must be a callable or one"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        LSTMCell(3, **kwargs)


def test_a_state_of_the_wrong_width_is_refused():
    cell = LSTMCell(3, num_proj=2, input_size=2)
    with pytest.raises(ValueError, match=r"LSTMCell: state must match the cell's state structure"):
        cell(torch.randn(1, 2), LSTMStateTuple(torch.zeros(1, 3), torch.zeros(1, 3)))
