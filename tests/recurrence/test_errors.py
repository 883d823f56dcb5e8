"""Bad input to dynamic_rnn is refused at the boundary with a message naming what was wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnflow import BasicLSTMCell, BasicRNNCell, RNNCell, bidirectional_dynamic_rnn, dynamic_rnn

X = torch.zeros(3, 5, 2)  # [B=3, T=5, D=2]


@pytest.mark.parametrize(
    ("sequence_length", "error", "message"),
    [
        (
            torch.ones(3, 1, dtype=torch.long),
            ValueError,
            r"dynamic_rnn: sequence_length must have shape \(3,\), got \(3, 1\)",
        ),
        (
            torch.ones(4, dtype=torch.long),
            ValueError,
            r"sequence_length must have shape \(3,\), got \(4,\)",
        ),
        (
            torch.tensor([1, -1, 2]),
            ValueError,
            r"dynamic_rnn: sequence_length must be >= 0, got a minimum of -1",
        ),
        (
            torch.tensor([1, 6, 2]),
            ValueError,
            r"sequence_length must be <= the time axis length 5, got a maximum of 6",
        ),
        (
            torch.tensor([1.0, 2.0, 3.0]),
            TypeError,
            r"sequence_length must be an integer tensor, got dtype torch.float32",
        ),
        (
            np.array([True, False, True]),
            TypeError,
            r"sequence_length must be an integer tensor, got dtype torch.bool",
        ),
        ("5", TypeError, r"sequence_length must be an integer tensor of shape \(3,\), got str"),
        # a bool among ints: NumPy would make the list int64 and the bool a length of 0 or 1
        ([True, 3, 1], TypeError, r"dynamic_rnn: sequence_length must hold integers, got True "),
        (
            (3, np.True_, 1),
            TypeError,
            r"sequence_length must hold integers, got np\.True_ at index 1",
        ),
    ],
)
def test_bad_sequence_length(sequence_length, error, message):
    with pytest.raises(error, match=message):
        dynamic_rnn(BasicRNNCell(4), X, sequence_length=sequence_length)


def test_lists_and_numpy_lengths_are_accepted():
    cell = BasicRNNCell(4, input_size=2)
    a, _ = dynamic_rnn(cell, X, sequence_length=[5, 1, 0])
    b, _ = dynamic_rnn(cell, X, sequence_length=np.array([5, 1, 0], dtype=np.int32))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("inputs", "kwargs", "error", "message"),
    [
        (
            torch.zeros(3, 5),
            {},
            ValueError,
            r"dynamic_rnn: inputs must have rank 3 \(\[batch, time, depth\]\), got shape \(3, 5\)",
        ),
        (
            torch.zeros(3, 5),
            {"time_major": True},
            ValueError,
            r"inputs must have rank 3 \(\[time, batch, depth\]\), got shape \(3, 5\)",
        ),
        (
            torch.zeros(3, 5, 2, dtype=torch.long),
            {},
            TypeError,
            r"dynamic_rnn: inputs must be floating point, got dtype torch.int64",
        ),
        (
            np.zeros((3, 5, 2)),
            {},
            TypeError,
            r"dynamic_rnn: inputs must be a torch.Tensor, got ndarray",
        ),
        (
            X,
            {"dtype": torch.float64},
            TypeError,
            r"dtype must be None or the inputs' dtype torch.float32, got torch.float64",
        ),
        (X, {"time_major": 1}, TypeError, r"time_major must be a bool, got 1"),
        (
            X,
            {"parallel_iterations": 0},
            ValueError,
            r"parallel_iterations must be a positive int or None, got 0",
        ),
        (X, {"swap_memory": "yes"}, TypeError, r"swap_memory must be a bool, got 'yes'"),
        (X, {"scope": 3}, TypeError, r"scope must be a str or None, got 3"),
        (
            X,
            {"impl": "cudnn"},
            ValueError,
            r"impl must be one of \('auto', 'fused', 'reference'\), got 'cudnn'",
        ),
    ],
)
def test_bad_inputs_and_flags(inputs, kwargs, error, message):
    with pytest.raises(error, match=message):
        dynamic_rnn(BasicRNNCell(4), inputs, **kwargs)


def test_initial_state_batch_mismatch():
    with pytest.raises(
        ValueError,
        match=r"dynamic_rnn: initial_state must match the cell's state "
        r"structure Tensor\(3, 4\), got Tensor\(2, 4\)",
    ):
        dynamic_rnn(BasicRNNCell(4), X, initial_state=torch.zeros(2, 4))


def test_initial_state_structure_mismatch():
    with pytest.raises(
        ValueError,
        match=r"initial_state must match the cell's state structure "
        r"LSTMStateTuple\(c=Tensor\(3, 4\), h=Tensor\(3, 4\)\), got Tensor\(3, 8\)",
    ):
        dynamic_rnn(BasicLSTMCell(4), X, initial_state=torch.zeros(3, 8))


def test_initial_state_dtype_mismatch():
    with pytest.raises(
        TypeError,
        match=r"initial_state must have the inputs' dtype torch.float32 "
        r"and device cpu, got dtype torch.float64 on cpu",
    ):
        dynamic_rnn(BasicRNNCell(4), X, initial_state=torch.zeros(3, 4, dtype=torch.float64))


def test_cell_must_be_a_cell():
    with pytest.raises(TypeError, match=r"dynamic_rnn: cell must be an RNNCell .*got Linear"):
        dynamic_rnn(torch.nn.Linear(2, 2), X)


def test_fused_request_that_cannot_be_met_says_why():
    class Custom(RNNCell):
        state_size = output_size = 4

        def forward(self, inputs, state):
            return state, state

    with pytest.raises(
        ValueError,
        match=r"dynamic_rnn: impl='fused' unavailable \(.+\); "
        r"use impl='auto' to fall back",
    ):
        dynamic_rnn(Custom(), X, impl="fused")


def test_bidirectional_errors_name_the_function_and_argument():
    with pytest.raises(ValueError, match=r"bidirectional_dynamic_rnn: initial_state_bw must match"):
        bidirectional_dynamic_rnn(
            BasicRNNCell(4), BasicRNNCell(4), X, initial_state_bw=torch.zeros(3, 5)
        )
    with pytest.raises(TypeError, match=r"bidirectional_dynamic_rnn: cell_bw must be an RNNCell"):
        bidirectional_dynamic_rnn(BasicRNNCell(4), object(), X)
    with pytest.raises(
        ValueError, match=r"bidirectional_dynamic_rnn: sequence_length must be >= 0"
    ):
        bidirectional_dynamic_rnn(BasicRNNCell(4), BasicRNNCell(4), X, sequence_length=[-1, 0, 0])


def _run(driver, cell_fn, x, **kwargs):
    if driver == "dynamic_rnn":
        return dynamic_rnn(cell_fn(), x, **kwargs)[0]
    return torch.cat(bidirectional_dynamic_rnn(cell_fn(), cell_fn(), x, **kwargs)[0], dim=-1)


DRIVERS = ["dynamic_rnn", "bidirectional_dynamic_rnn"]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    "lengths",
    [
        torch.tensor([5, 1, 0], dtype=torch.uint8),
        torch.tensor([5, 1, 0], dtype=torch.uint16),
        torch.tensor([5, 1, 0], dtype=torch.uint32),
        torch.tensor([5, 1, 0], dtype=torch.uint64),
        torch.tensor([5, 1, 0], dtype=torch.int8),
        np.array([5, 1, 0], dtype=np.uint64),
        (5, 1, 0),
        [np.int16(5), np.int64(1), 0],
    ],
    ids=["uint8", "uint16", "uint32", "uint64", "int8", "np-uint64", "tuple", "numpy-scalars"],
)
def test_every_integer_kind_of_sequence_length_is_accepted(driver, lengths):
    """As TF1 (which converts lists and casts any integer dtype): the same run as int64."""
    x = torch.randn(3, 5, 2)
    cell = BasicRNNCell(4, input_size=2)
    want = _run(driver, lambda: cell, x, sequence_length=torch.tensor([5, 1, 0]))
    got = _run(driver, lambda: cell, x, sequence_length=lengths)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("lengths", [[], np.array([], dtype=np.int32), torch.tensor([])])
def test_empty_sequence_length_for_an_empty_batch(driver, lengths):
    if isinstance(lengths, torch.Tensor):  # a float tensor stays refused, even empty
        with pytest.raises(TypeError, match=r"got dtype torch.float32"):
            _run(driver, lambda: BasicRNNCell(4), torch.zeros(0, 5, 2), sequence_length=lengths)
        return
    out = _run(driver, lambda: BasicRNNCell(4), torch.zeros(0, 5, 2), sequence_length=lengths)
    assert out.shape[:2] == (0, 5)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("sequence_length", "error", "message"),
    [
        (
            torch.tensor([5, 1, 0], device="meta"),
            TypeError,
            r"sequence_length must hold values, got a meta tensor \(it has none\)",
        ),
        (
            torch.tensor([5, 1, 0]).to_sparse(),
            TypeError,
            r"sequence_length must be a dense integer tensor, got a torch.sparse_coo tensor",
        ),
        (
            torch.tensor([5, 2**64 - 1, 0], dtype=torch.uint64),
            ValueError,
            r"sequence_length must be <= the time axis length 5, "
            r"got a maximum of 18446744073709551615",
        ),
        (
            np.array([5, -3, 0]),
            ValueError,
            r"sequence_length must be >= 0, got a minimum of -3",
        ),
        ([5.0, 1.0, 0.0], TypeError, r"sequence_length must be an integer tensor, got dtype"),
        (
            [True, False, True],
            TypeError,
            r"sequence_length must be an integer tensor, got dtype torch.bool",
        ),
        (
            ["5", "1", "0"],
            TypeError,
            r"sequence_length must be an integer tensor, got \['5', '1', '0'\]",
        ),
        (
            [[5], [1, 0]],
            TypeError,
            r"sequence_length must be an integer tensor, got \[\[5\], \[1, 0\]\]",
        ),
        (
            [2**80, 1, 0],
            TypeError,
            r"sequence_length must be an integer tensor, got \[1208925819614629174706176",
        ),
        (5, TypeError, r"sequence_length must be an integer tensor of shape \(3,\), got int"),
        (True, TypeError, r"sequence_length must be an integer tensor of shape \(3,\), got bool"),
    ],
    ids=[
        "meta",
        "sparse",
        "uint64-huge",
        "negative",
        "floats",
        "bools",
        "strings",
        "ragged",
        "too-big-for-int64",
        "int",
        "bool",
    ],
)
def test_sequence_length_of_every_kind_is_refused_clearly(driver, sequence_length, error, message):
    with pytest.raises(error, match=rf"^{driver}: {message}"):
        _run(driver, lambda: BasicRNNCell(4), X, sequence_length=sequence_length)


@pytest.mark.parametrize("driver", DRIVERS)
def test_lazy_cell_fed_zero_depth_inputs(driver):
    cell = "cell_fw" if driver == "bidirectional_dynamic_rnn" else "cell"
    with pytest.raises(
        ValueError,
        match=rf"^{driver}: inputs must have a depth of at least 1 to build {cell} "
        r"\(BasicLSTMCell\), got depth 0$",
    ):
        _run(driver, lambda: BasicLSTMCell(4), torch.zeros(3, 5, 0))


@pytest.mark.parametrize("driver", DRIVERS)
def test_numpy_ints_and_bools_are_taken_where_tf1_takes_ints_and_bools(driver):
    x = torch.randn(3, 5, 2)
    cell = BasicRNNCell(4, input_size=2)
    want = _run(driver, lambda: cell, x)
    got = _run(
        driver,
        lambda: cell,
        x.transpose(0, 1),
        parallel_iterations=np.int64(32),
        time_major=np.bool_(True),
        swap_memory=np.bool_(False),
    )
    torch.testing.assert_close(got.transpose(0, 1), want, rtol=0, atol=0)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("make", "kwargs", "error", "message"),
    [
        (
            lambda: BasicRNNCell(4),
            {"inputs": X.to_sparse()},
            TypeError,
            r"inputs must be a dense tensor, got a torch.sparse_coo tensor",
        ),
        (
            lambda: BasicRNNCell(4, input_size=2),
            {"inputs": torch.zeros(3, 5, 2, device="meta")},
            TypeError,
            r"cell(_fw)?\.kernel must be on the inputs' device meta, got cpu "
            r"\(move the cell with \.to\('meta'\)\)",
        ),
        (
            lambda: BasicRNNCell(4, input_size=2),
            {"state": torch.zeros(3, 4).to_sparse()},
            TypeError,
            r"initial_state(_fw)? must hold dense tensors, got torch.sparse_coo",
        ),
        (
            lambda: BasicRNNCell(4),
            {"parallel_iterations": 2.0},
            ValueError,
            r"parallel_iterations must be a positive int or None, got 2.0",
        ),
        (
            lambda: BasicRNNCell(4),
            {"parallel_iterations": np.bool_(True)},
            ValueError,
            r"parallel_iterations must be a positive int or None, got np.True_",
        ),
        (
            lambda: BasicRNNCell(4),
            {"swap_memory": np.int64(1)},
            TypeError,
            r"swap_memory must be a bool, got np.int64\(1\)",
        ),
    ],
    ids=["sparse-inputs", "cell-elsewhere", "sparse-state", "float-int", "bool-int", "int-bool"],
)
def test_other_argument_kinds_are_refused_clearly(driver, make, kwargs, error, message):
    kwargs = dict(kwargs)
    x = kwargs.pop("inputs", X)
    state = kwargs.pop("state", None)
    if state is not None:
        key = "initial_state" if driver == "dynamic_rnn" else "initial_state_fw"
        kwargs[key] = state
    with pytest.raises(error, match=rf"^{driver}: {message}"):
        _run(driver, make, x, **kwargs)
