"""Under bfloat16 autocast a returned state is a valid ``initial_state`` (truncated BPTT,
streaming), as ``nn.LSTM``'s is: every entry point accepts a state in the inputs' dtype or in the
dtype autocast computes in (``cell.zero_state(B, torch.bfloat16)`` too), and the chained run
equals one run over the whole sequence."""

from __future__ import annotations

import pytest
import torch

import rnnflow
from rnnflow import _nest

B, T, D, H = 3, 8, 5, 6
CELLS = ("BasicLSTMCell", "GRUCell", "LSTMCell", "BasicRNNCell")
# One run carries its state in bfloat16 from step to step, so a chain of two runs rounds the
# carried state exactly as one run does; the only freedom is a kernel that keeps a wider
# accumulator inside one call. The state and the outputs are tanh/sigmoid products (|v| <= 1),
# so one bfloat16 rounding of it is at most 2**-9 (half an ulp of 8 mantissa bits at 1), and a
# recurrent step with these small weights does not amplify it: 2**-7 leaves a factor 4.
ATOL = 2.0**-7
autocast = torch.autocast("cpu", dtype=torch.bfloat16)


def _entry(entry: str, cell, x, state, lengths=None):
    """(outputs [B, t, O] or fw/bw concatenated, final state) of ``entry`` on ``x`` [B, t, D]."""
    if entry == "dynamic_rnn":
        return rnnflow.dynamic_rnn(
            cell, x, initial_state=state, sequence_length=lengths, dtype=torch.float32
        )
    if entry == "static_rnn":
        outs, s = rnnflow.static_rnn(
            cell, list(x.unbind(1)), initial_state=state, sequence_length=lengths,
            dtype=torch.float32,
        )  # fmt: skip
        return torch.stack(outs, 1), s
    (fw, bw), (s_fw, _) = rnnflow.bidirectional_dynamic_rnn(
        cell, cell, x, initial_state_fw=state, sequence_length=lengths, dtype=torch.float32
    )
    return torch.cat([fw, bw], -1), s_fw


@pytest.mark.parametrize("entry", ["dynamic_rnn", "static_rnn"])
@pytest.mark.parametrize("name", CELLS)
def test_a_returned_bf16_state_chains_like_one_run(name, entry):
    torch.manual_seed(0)
    cell = getattr(rnnflow, name)(H, input_size=D)
    x = torch.randn(B, T, D)
    with autocast:
        whole, state = _entry(entry, cell, x, None)
        first, mid = _entry(entry, cell, x[:, :4], None)
        assert {leaf.dtype for leaf in _nest.flatten(mid)} == {torch.bfloat16}
        second, last = _entry(entry, cell, x[:, 4:], mid)  # refused before (TypeError)
        ref, ref_state = rnnflow.dynamic_rnn(
            cell, x, dtype=torch.float32, impl="reference"
        )  # the plain loop under the same autocast
    chained = torch.cat([first, second], 1).float()
    torch.testing.assert_close(chained, whole.float(), atol=ATOL, rtol=0)
    torch.testing.assert_close(chained, ref.float(), atol=ATOL, rtol=0)
    for a, b in zip(_nest.flatten(last), _nest.flatten(ref_state)):
        torch.testing.assert_close(a.float(), b.float(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("entry", ["dynamic_rnn", "static_rnn", "bidirectional_dynamic_rnn"])
@pytest.mark.parametrize("name", CELLS)
def test_zero_state_in_the_autocast_dtype_is_accepted(name, entry):
    """zero_state(B, bfloat16) equals the default zero state (zeros are exact in bf16)."""
    torch.manual_seed(0)
    cell = getattr(rnnflow, name)(H, input_size=D)
    x, lengths = torch.randn(B, T, D), torch.tensor([8, 3, 0])
    with autocast:
        for lens in (None, lengths):
            got, _ = _entry(entry, cell, x, cell.zero_state(B, torch.bfloat16), lens)
            want, _ = _entry(entry, cell, x, None, lens)
            torch.testing.assert_close(got.float(), want.float(), atol=0, rtol=0)


def test_other_dtypes_are_still_refused_naming_both_accepted_ones():
    cell = rnnflow.GRUCell(H, input_size=D)
    x = torch.randn(B, T, D)
    with (
        autocast,
        pytest.raises(
            TypeError,
            match=r"dynamic_rnn: initial_state must have the inputs' dtype torch\.float32 \(or "
            r"autocast's torch\.bfloat16\) and device cpu, got dtype torch\.float64 on cpu",
        ),
    ):
        rnnflow.dynamic_rnn(cell, x, initial_state=cell.zero_state(B, torch.float64))
    with pytest.raises(  # no autocast: only the inputs' dtype
        TypeError,
        match=r"initial_state must have the inputs' dtype torch\.float32 and device cpu, got "
        r"dtype torch\.bfloat16",
    ):
        rnnflow.dynamic_rnn(cell, x, initial_state=cell.zero_state(B, torch.bfloat16))
