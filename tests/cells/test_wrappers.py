"""ResidualWrapper and DeviceWrapper: TF1's semantics by hand, in every driver, and their errors.

(Their numbers against real TensorFlow are in ``test_wrappers_tf.py``.)
"""

from __future__ import annotations

import pytest
import torch

from rnnflow import (
    BasicLSTMCell,
    BasicRNNCell,
    DeviceWrapper,
    DropoutWrapper,
    GRUCell,
    LSTMStateTuple,
    MultiRNNCell,
    ResidualWrapper,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
)
from rnnflow.recurrence.fused import fusable

LENGTHS = torch.tensor([4, 2, 0])


def rnn_cell(units: int = 3, depth: int = 3) -> BasicRNNCell:
    """A BasicRNNCell with hand-set weights: kernel[i, j] = 0.1 * (i - j), bias = 0.05."""
    cell = BasicRNNCell(units, input_size=depth, dtype=torch.float64)
    with torch.no_grad():
        i = torch.arange(depth + units, dtype=torch.float64)[:, None]
        j = torch.arange(units, dtype=torch.float64)[None, :]
        cell.kernel.copy_(0.1 * (i - j))
        cell.bias.fill_(0.05)
    return cell


def by_hand(x: torch.Tensor, h: torch.Tensor, residual: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """rnn_cell's step written out: h' = tanh(sum_i [x, h]_i * 0.1 * (i - j) + 0.05)."""
    xh = torch.cat([x, h], 1)  # [B, D + H]
    i = torch.arange(xh.shape[1], dtype=torch.float64)
    new_h = torch.stack(
        [torch.tanh((xh * 0.1 * (i - j)).sum(1) + 0.05) for j in range(h.shape[1])], 1
    )
    return (x + new_h if residual else new_h), new_h


# ----------------------------------------------------------------------------- ResidualWrapper
def test_residual_output_is_inputs_plus_outputs_and_the_state_is_the_cells():
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    out, state = ResidualWrapper(rnn_cell())(x, h)
    expected_out, expected_state = by_hand(x, h, residual=True)
    torch.testing.assert_close(out, expected_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, expected_state, rtol=1e-12, atol=1e-12)


def test_residual_in_dynamic_rnn_zeroes_outputs_past_each_length_and_carries_the_state():
    x = torch.randn(3, 4, 3, dtype=torch.float64)
    out, state = dynamic_rnn(ResidualWrapper(rnn_cell()), x, sequence_length=LENGTHS)
    h = torch.zeros(3, 3, dtype=torch.float64)
    for t in range(4):
        expected_out, new_h = by_hand(x[:, t], h, residual=True)
        valid = (t < LENGTHS)[:, None]
        torch.testing.assert_close(out[:, t], torch.where(valid, expected_out, 0.0))
        h = torch.where(valid, new_h, h)
    torch.testing.assert_close(state, h)


def test_residual_fn_gets_the_raw_inputs_and_the_cells_outputs():
    seen = []

    def fn(inputs, outputs):
        seen.append(inputs)
        return 0.5 * inputs - outputs

    inner = DropoutWrapper(rnn_cell(), input_keep_prob=0.5)  # drops what the cell sees only
    x, h = torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
    torch.manual_seed(1)
    out, state = ResidualWrapper(inner, residual_fn=fn)(x, h)
    assert torch.equal(seen[0], x)
    torch.manual_seed(1)
    cell_out, _ = inner(x, h)
    torch.testing.assert_close(out, 0.5 * x - cell_out, rtol=0, atol=0)


def test_residual_lstm_keeps_the_state_tuple_and_names_parameters_like_tf():
    cell = ResidualWrapper(BasicLSTMCell(3, input_size=3))
    assert cell.state_size == LSTMStateTuple(3, 3) and cell.output_size == 3
    assert isinstance(cell.zero_state(2), LSTMStateTuple)
    assert [n for n, _ in cell.named_parameters()] == ["cell.kernel", "cell.bias"]
    assert cell.wrapped_cell is cell.cell


def test_residual_in_multi_bidirectional_and_dropout_builds_lazily():
    layers = [GRUCell(4), ResidualWrapper(BasicLSTMCell(4)), ResidualWrapper(GRUCell(4))]
    multi = DropoutWrapper(MultiRNNCell(layers), output_keep_prob=0.5)
    x = torch.randn(3, 5, 2)
    (out_fw, out_bw), _ = bidirectional_dynamic_rnn(
        multi, ResidualWrapper(BasicRNNCell(2)), x, sequence_length=LENGTHS + 1
    )
    assert multi.built and out_fw.shape == (3, 5, 4) and out_bw.shape == (3, 5, 2)
    assert layers[1].cell.kernel.shape == (4 + 4, 16)


def test_wrappers_are_not_fused_and_say_why():
    x = torch.randn(5, 2, 3)
    for cell, name in [
        (ResidualWrapper(BasicRNNCell(3, input_size=3)), "ResidualWrapper"),
        (DeviceWrapper(BasicRNNCell(3, input_size=3), "cpu"), "DeviceWrapper"),
    ]:
        assert fusable(cell, x) == (False, f"no fused kernel for {name}")
        with pytest.raises(
            ValueError, match=rf"impl='fused' unavailable \(no fused kernel for {name}\)"
        ):
            dynamic_rnn(cell, x, time_major=True, impl="fused")
        dynamic_rnn(cell, x, time_major=True)  # "auto" falls back to the loop


def test_residual_errors():
    with pytest.raises(TypeError, match=r"ResidualWrapper: cell must be an RNNCell, got function"):
        ResidualWrapper(lambda x, s: (x, s))
    with pytest.raises(
        TypeError, match=r"ResidualWrapper: residual_fn must be callable or None, got 3"
    ):
        ResidualWrapper(BasicRNNCell(2), residual_fn=3)
    with pytest.raises(
        ValueError,
        match=r"ResidualWrapper: the default residual_fn adds inputs and outputs, which must have "
        r"the same shape; got inputs \(2, 3\) and the cell's outputs \(2, 4\) \(make the cell's "
        r"num_units the input depth, or pass residual_fn=\)",
    ):
        ResidualWrapper(BasicRNNCell(4))(torch.zeros(2, 3), torch.zeros(2, 4))
    bad_type = ResidualWrapper(BasicRNNCell(2), residual_fn=lambda i, o: (i, o))
    with pytest.raises(TypeError, match=r"residual_fn must return a torch.Tensor, got tuple"):
        bad_type(torch.zeros(2, 2), torch.zeros(2, 2))
    bad_shape = ResidualWrapper(BasicRNNCell(2), residual_fn=lambda i, o: torch.cat([i, o], 1))
    with pytest.raises(
        ValueError,
        match=r"residual_fn must return shape \(2, 2\) \[batch, cell.output_size\], got \(2, 4\)",
    ):
        bad_shape(torch.zeros(2, 2), torch.zeros(2, 2))


# ----------------------------------------------------------------------------- DeviceWrapper
@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        "/cpu:0",
        "/device:CPU:0",
        "/job:localhost/replica:0/task:0/device:CPU:0",
        torch.device("cpu"),
    ],
)
def test_device_strings_tf_and_torch(device):
    assert DeviceWrapper(BasicRNNCell(2), device).device == torch.device("cpu")


@pytest.mark.parametrize(
    ("device", "error", "message"),
    [
        (
            lambda op: "/gpu:0",
            TypeError,
            r"device must be a torch.device or a device string; TF1's device functions have no "
            r"PyTorch equivalent, got <function",
        ),
        (3, TypeError, r"device must be a torch.device or a device string, got 3"),
        (
            "/job:worker/task:1/gpu:0",
            ValueError,
            r"device '/job:worker/task:1/gpu:0' is not a local TF1 device \(/cpu:0, /gpu:N, "
            r"/device:GPU:N\); rnnflow runs in one process, without jobs or tasks",
        ),
        ("nonsense", ValueError, r"device 'nonsense' is not a device string"),
        ("cuda:7", ValueError, r"device 'cuda:7' is not available here \(torch.cuda.device_count"),
    ],
)
def test_device_errors(device, error, message):
    if message.startswith("device 'cuda:7'") and torch.cuda.device_count() > 7:
        message = "never"  # a machine with 8 GPUs has cuda:7: the wrapper must accept it
        DeviceWrapper(BasicRNNCell(2), device)
        return
    with pytest.raises(error, match=rf"DeviceWrapper: {message}"):
        DeviceWrapper(BasicRNNCell(2), device)


def test_tf_gpu_strings_mean_cuda():
    if torch.cuda.is_available():
        assert DeviceWrapper(BasicRNNCell(2), "/device:GPU:0").device == torch.device("cuda:0")
    else:
        with pytest.raises(
            ValueError,
            match=r"DeviceWrapper: device 'cuda:0' is not available here "
            r"\(torch.cuda.device_count\(\) = 0\)",
        ):
            DeviceWrapper(BasicRNNCell(2), "/gpu:0")


# The "meta" device shows where tensors go on a machine without a GPU: PyTorch runs the ops for
# their shapes only, and a tensor that stayed on the CPU cannot mix with them.
def test_step_runs_on_the_device_and_answers_there():
    built = DeviceWrapper(BasicLSTMCell(3, input_size=2), "meta")
    lazy = DeviceWrapper(GRUCell(3), "meta")
    for wrapper in (built, lazy):
        out, state = wrapper(torch.randn(4, 2), wrapper.zero_state(4, device="cpu"))
        assert out.device.type == "meta" and out.shape == (4, 3)
        assert {s.device.type for s in (state if isinstance(state, tuple) else [state])} == {"meta"}
        assert {p.device.type for p in wrapper.parameters()} == {"meta"}
    unbuilt = DeviceWrapper(GRUCell(3), "meta")  # no parameters to take the device from
    assert unbuilt.zero_state(2).device.type == "meta"  # TF: zero_state under tf.device too
    assert unbuilt.zero_state(2, device="cpu").device.type == "cpu"


def test_device_wrapper_in_every_driver_with_lengths():
    x = torch.randn(3, 4, 2)
    out, state = dynamic_rnn(DeviceWrapper(GRUCell(3), "meta"), x, sequence_length=LENGTHS)
    assert out.device.type == state.device.type == "meta" and out.shape == (3, 4, 3)
    multi = MultiRNNCell([GRUCell(3), DeviceWrapper(ResidualWrapper(GRUCell(3)), "meta")])
    out, (s0, s1) = dynamic_rnn(DropoutWrapper(multi, 0.5, 0.5, 0.5), x, sequence_length=LENGTHS)
    assert (out.device.type, s0.device.type, s1.device.type) == ("meta", "cpu", "meta")
    (out_fw, out_bw), (s_fw, s_bw) = bidirectional_dynamic_rnn(
        GRUCell(3), DeviceWrapper(GRUCell(5), "meta"), x, sequence_length=LENGTHS
    )
    assert (out_fw.device.type, out_bw.device.type, s_bw.device.type) == ("cpu", "meta", "meta")
    assert out_bw.shape == (3, 4, 5)


def test_device_wrapper_on_cpu_computes_what_the_cell_computes():
    cell = rnn_cell()
    x = torch.randn(3, 4, 3, dtype=torch.float64)
    expected = dynamic_rnn(cell, x, sequence_length=LENGTHS, impl="reference")
    got = dynamic_rnn(DeviceWrapper(cell, "/cpu:0"), x, sequence_length=LENGTHS)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_a_cell_moved_away_from_its_wrapper_is_reported():
    wrapper = DeviceWrapper(BasicRNNCell(3, input_size=2), "cpu")
    wrapper.cell.to("meta")
    with pytest.raises(
        RuntimeError,
        match=r"DeviceWrapper: the wrapped cell's kernel is on meta, but this wrapper runs it "
        r"on cpu; move the cell back with wrapper.cell.to\('cpu'\) or make a new DeviceWrapper",
    ):
        wrapper(torch.zeros(1, 2), torch.zeros(1, 3))


def test_step_on_the_device_from_cpu_inputs_matches_the_cpu_cell_and_gradients_flow_back(device):
    cpu_cell = GRUCell(4, input_size=3, dtype=torch.float64)
    moved_cell = GRUCell(4, input_size=3, dtype=torch.float64)
    moved_cell.load_state_dict(cpu_cell.state_dict())
    wrapper = DeviceWrapper(moved_cell, device)
    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)  # on the CPU
    out, state = dynamic_rnn(wrapper, x, sequence_length=LENGTHS + 1)
    assert out.device.type == state.device.type == device.type
    (grad,) = torch.autograd.grad(out.sum() + state.sum(), x)
    expected = dynamic_rnn(cpu_cell, x, sequence_length=LENGTHS + 1, impl="reference")
    (expected_grad,) = torch.autograd.grad(expected[0].sum() + expected[1].sum(), x)
    torch.testing.assert_close((out.cpu(), state.cpu()), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)
