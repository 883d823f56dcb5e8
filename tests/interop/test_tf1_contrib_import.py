"""TF1 checkpoints of the tf.contrib cells and of CudnnLSTM/CudnnGRU import and reproduce TF.

Fixtures: ``tests/fixtures/tf1_ckpt/{contrib_multi,lstm_fused,cudnn_lstm,cudnn_gru_bidi}``,
written with TensorFlow 2.21 by ``tools/make_tf_contrib_checkpoints.py`` (``tf.compat.v1``
Saver; Adam slots included). The cuDNN cases are also checked against ``torch.nn.LSTM``/``GRU``
built from the per-gate cuDNN matrices the checkpoint was made from (an oracle independent of
both TF and rnnflow's cells).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnflow import (
    GRUBlockCellV2,
    LayerNormBasicLSTMCell,
    LSTMBlockCell,
    LSTMBlockFusedCell,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
)
from rnnflow.interop.tf1_checkpoint import TF1Checkpoint
from rnnflow.interop.tf1_import import load_tf1_cell
from rnnflow.interop.tf1_names import TF1NameError, parse_cudnn_variables

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf1_ckpt"
TOL = dict(atol=1e-5, rtol=1e-5)


def _fixture(name: str) -> tuple[TF1Checkpoint, dict, dict[str, np.ndarray]]:
    with np.load(FIXTURES / name / "expected.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    return TF1Checkpoint(FIXTURES / name / "model.ckpt"), meta, arrays


def _close(actual: torch.Tensor, expected: np.ndarray) -> None:
    torch.testing.assert_close(actual.detach(), torch.from_numpy(expected).to(actual.dtype), **TOL)


def test_contrib_multi_imports_unbuilt_and_reproduces_tf():
    ckpt, _, arrays = _fixture("contrib_multi")
    cell = MultiRNNCell(
        [LSTMBlockCell(6, cell_clip=0.4, use_peephole=True), LayerNormBasicLSTMCell(5),
         GRUBlockCellV2(4)]
    )  # fmt: skip
    assert load_tf1_cell(cell, ckpt) == "encoder/rnn"  # scope found; Adam slots ignored
    x = torch.from_numpy(arrays["inputs"])
    out, state = dynamic_rnn(cell, x, sequence_length=torch.from_numpy(arrays["sequence_length"]))
    _close(out, arrays["outputs"])
    leaves = [state[0].c, state[0].h, state[1].c, state[1].h, state[2]]
    for i, leaf in enumerate(leaves):
        _close(leaf, arrays[f"state/{i}"])


def test_lstm_fused_imports_and_reproduces_tf():
    ckpt, _, arrays = _fixture("lstm_fused")
    cell = LSTMBlockFusedCell(5, use_peephole=True)
    assert load_tf1_cell(cell, ckpt) == "model"
    out, (c, h) = cell(
        torch.from_numpy(arrays["inputs"]),
        sequence_length=torch.from_numpy(arrays["sequence_length"]),
    )
    _close(out, arrays["outputs"])
    _close(c, arrays["state/0"])
    _close(h, arrays["state/1"])


def test_cudnn_lstm_checkpoint_imports_into_compatible_cells():
    ckpt, meta, arrays = _fixture("cudnn_lstm")
    layout = parse_cudnn_variables(ckpt.shapes())
    assert (layout.kind, layout.num_layers, layout.num_units, layout.input_size) == (
        "lstm",
        2,
        6,
        5,
    )
    assert (layout.prefix, layout.bidirectional) == ("", False)
    assert "cudnn_lstm/opaque_kernel" not in layout.variables  # device-specific: not read
    cell = MultiRNNCell([layout.make_cell(k) for k in range(layout.num_layers)])
    load_tf1_cell(cell, ckpt, scope="rnn")
    x, seq = torch.from_numpy(arrays["inputs"]), torch.from_numpy(arrays["sequence_length"])
    out, state = dynamic_rnn(cell, x, sequence_length=seq)
    _close(out, arrays["outputs"])
    for i, leaf in enumerate([state[0].c, state[0].h, state[1].c, state[1].h]):
        _close(leaf, arrays[f"state/{i}"])

    # cuDNN itself (torch.nn.LSTM has cuDNN's layout: gates i, f, g, o; two bias sets).
    lstm = torch.nn.LSTM(5, 6, num_layers=2, batch_first=True)
    with torch.no_grad():
        for k in range(2):
            p = {n: torch.from_numpy(arrays[f"cudnn/{k}/uni/{n}"]) for n in _cudnn_names("ifco")}
            getattr(lstm, f"weight_ih_l{k}").copy_(torch.cat([p[f"W_{g}"] for g in "ifco"]))
            getattr(lstm, f"weight_hh_l{k}").copy_(torch.cat([p[f"R_{g}"] for g in "ifco"]))
            getattr(lstm, f"bias_ih_l{k}").copy_(torch.cat([p[f"b_W_{g}"] for g in "ifco"]))
            getattr(lstm, f"bias_hh_l{k}").copy_(torch.cat([p[f"b_R_{g}"] for g in "ifco"]))
    _compare_rows(lstm, x, seq, out)


def test_cudnn_gru_bidirectional_checkpoint_imports_into_compatible_cells():
    ckpt, meta, arrays = _fixture("cudnn_gru_bidi")
    layout = parse_cudnn_variables(ckpt.shapes())
    assert (layout.kind, layout.num_layers, layout.num_units, layout.input_size) == ("gru", 2, 4, 5)
    assert (layout.prefix, layout.bidirectional) == ("encoder/", True)
    x, seq = torch.from_numpy(arrays["inputs"]), torch.from_numpy(arrays["sequence_length"])
    prev, leaves = x, []
    for k in range(layout.num_layers):  # what stack_bidirectional_dynamic_rnn does
        cells = []
        for d in ("fw", "bw"):
            cell = layout.make_cell(k)
            load_tf1_cell(cell, ckpt, scope=layout.layer_scope(k, d))
            cells.append(cell)
        (o_fw, o_bw), (s_fw, s_bw) = bidirectional_dynamic_rnn(
            *cells, prev, sequence_length=seq, dtype=torch.float32
        )
        prev = torch.cat([o_fw, o_bw], 2)
        leaves += [s_fw, s_bw]
    _close(prev, arrays["outputs"])
    for i, leaf in enumerate(leaves):
        _close(leaf, arrays[f"state/{i}"])

    gru = torch.nn.GRU(5, 4, num_layers=2, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for k in range(2):
            for d, suffix in (("fw", ""), ("bw", "_reverse")):
                p = {n: torch.from_numpy(arrays[f"cudnn/{k}/{d}/{n}"]) for n in _cudnn_names("rzh")}
                getattr(gru, f"weight_ih_l{k}{suffix}").copy_(
                    torch.cat([p[f"W_{g}"] for g in "rzh"])
                )
                getattr(gru, f"weight_hh_l{k}{suffix}").copy_(
                    torch.cat([p[f"R_{g}"] for g in "rzh"])
                )
                getattr(gru, f"bias_ih_l{k}{suffix}").copy_(
                    torch.cat([p[f"b_W_{g}"] for g in "rzh"])
                )
                getattr(gru, f"bias_hh_l{k}{suffix}").copy_(
                    torch.cat([p[f"b_R_{g}"] for g in "rzh"])
                )
    _compare_rows(gru, x, seq, prev)


def _cudnn_names(gates: str) -> list[str]:
    return [f"{kind}_{g}" for kind in ("W", "R", "b_W", "b_R") for g in gates]


def _compare_rows(rnn: torch.nn.Module, x, seq, out) -> None:
    """PyTorch's cuDNN-layout RNN on each row's valid prefix; zeros past the length."""
    for b, n in enumerate(seq.tolist()):
        if n:
            expected, _ = rnn(x[b : b + 1, :n])
            torch.testing.assert_close(out[b : b + 1, :n].detach(), expected.detach(), **TOL)
        assert out[b, n:].eq(0).all()


# ----------------------------------------------------------------------------- errors
LSTM_NAME = "rnn/multi_rnn_cell/cell_{k}/cudnn_compatible_lstm_cell/{p}"


def _lstm_shapes(layers=(0, 1)) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for k in layers:
        shapes[LSTM_NAME.format(k=k, p="kernel")] = (11 if k == 0 else 12, 24)
        shapes[LSTM_NAME.format(k=k, p="bias")] = (24,)
    return shapes


def test_parse_cudnn_variables_refuses_what_does_not_fit():
    with pytest.raises(TF1NameError, match=r"parse_cudnn_variables: no CudnnLSTM/CudnnGRU"):
        parse_cudnn_variables({"rnn/lstm_cell/kernel": (8, 16)})
    with pytest.raises(TF1NameError, match=r"layers \[0, 2\] are not 0..n-1"):
        parse_cudnn_variables(_lstm_shapes((0, 2)))
    shapes = _lstm_shapes()
    del shapes[LSTM_NAME.format(k=1, p="bias")]
    with pytest.raises(TF1NameError, match=r"cell_1/cudnn_compatible_lstm_cell lacks \['bias'\]"):
        parse_cudnn_variables(shapes)
    mixed = {**_lstm_shapes(), **{f"enc/{k}": v for k, v in _lstm_shapes().items()}}
    with pytest.raises(TF1NameError, match=r"several cuDNN layers \(scopes \['', 'enc/'\]"):
        parse_cudnn_variables(mixed)
    one_dir = {
        "stack_bidirectional_rnn/cell_0/bidirectional_rnn/fw/cudnn_compatible_lstm_cell/kernel": (
            9,
            16,
        ),
        "stack_bidirectional_rnn/cell_0/bidirectional_rnn/fw/cudnn_compatible_lstm_cell/bias": (
            16,
        ),
    }
    with pytest.raises(
        TF1NameError, match=r"expected no direction or both fw and bw, got \['fw'\]"
    ):
        parse_cudnn_variables(one_dir)
    bad = {**_lstm_shapes(), LSTM_NAME.format(k=0, p="kernel"): (3, 24)}
    with pytest.raises(TF1NameError, match=r"kernel of shape \[3, 24\] does not fit a lstm cell"):
        parse_cudnn_variables(bad)


def test_the_tutorial_parser_points_contrib_checkpoints_to_the_cell_loader():
    from rnnflow.interop.tf1_names import parse_rnn_variables

    ckpt, _, _ = _fixture("cudnn_gru_bidi")
    with pytest.raises(
        TF1NameError,
        match=r"no RNN cell variables .* It holds tf.contrib cell variables "
        r"\(cudnn_compatible_gru_cell\): build the cells and load them with load_tf1_cell "
        r"\(CudnnLSTM/CudnnGRU: parse_cudnn_variables\)",
    ):
        parse_rnn_variables(ckpt.shapes())
