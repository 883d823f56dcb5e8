"""Generate reference vectors for rnnflow's ``tf.contrib`` cells from real TensorFlow.

TensorFlow 2.21 no longer ships ``tf.contrib``; it still ships the kernels the contrib cells
called (``tf.raw_ops.LSTMBlockCell``, ``BlockLSTM``, ``GRUBlockCell`` and their gradient ops).
The cells below are transcriptions of the r1.15 Python wrappers (TF 1.15.0 wheel,
``tensorflow_core/contrib/...``) onto those kernels, or onto ordinary TF ops where the r1.15
cell itself was ordinary TF ops; TF's own ``dynamic_rnn``, ``bidirectional_dynamic_rnn``,
``MultiRNNCell``, variable scoping and ``tf.gradients`` do the rest, so variable names are the
ones TF gives. Which oracle each case used is recorded in its ``meta["oracle"]``:

    raw_op    LSTMBlockCell / GRUBlockCell / BlockLSTM kernels of TF 2.21 (float32 only: the
              kernels have no float64). The per-step kernels' gradients are r1.15's
              ``_LSTMBlockCellGrad`` (contrib/rnn/python/ops/lstm_ops.py lines 230-287) and
              ``_GRUBlockCellGrad`` (contrib/rnn/python/ops/gru_ops.py lines 35-94), transcribed
              below and registered for the ops, calling the real gradient kernels
              (LSTMBlockCellGrad, GRUBlockCellGrad); BlockLSTM's gradient is TF 2.21's own.
    formula   float64: the op's documented equations (lstm_ops.py lines 58-76, gru_ops.py
              lines 113-127) in TF ops, including the op's gradient convention that the cell
              clip passes gradients through unchanged (LSTMBlockCellGrad ignores the clip);
              GRUBlockCellV2 in float64 is TF's own tf.compat.v1 GRUCell (the same formula
              and variable names). In every float32 raw_op case the formula is run too and must
              agree to 2e-5 (``meta["formula_vs_raw_op"]``), which checks the transcription.
    tf_ops    LayerNormBasicLSTMCell (contrib/rnn/python/ops/rnn_cell.py lines 1342-1463, its
              layer norm = contrib/layers/python/layers/layers.py lines 2275-2333) and
              CudnnCompatibleGRUCell (contrib/cudnn_rnn/python/ops/cudnn_rnn_ops.py lines
              81-180): their r1.15 code is ordinary TF ops, transcribed line by line.

Run it from the TensorFlow venv (never the project's .venv):

    TF_USE_LEGACY_KERAS=1 /work/tfvenv/bin/python tools/make_tf_contrib_vectors.py

It writes ``tests/fixtures/tf1_contrib/<case>.npz`` in the format of
``tools/make_tf_vectors.py`` (whose case runner it reuses: inputs, sequence lengths, initial
state, variables, outputs, final state, loss weights, gradients w.r.t. inputs, initial state and
every variable), plus ``MANIFEST.json``. Cell specs added here:

    {"type": "LSTMBlockCell", "num_units", "forget_bias", "cell_clip" (null: none),
     "use_peephole"}
    {"type": "GRUBlockCellV2", "num_units"}, {"type": "GRUBlockCell", "num_units"} (V1 names)
    {"type": "LayerNormBasicLSTMCell", "num_units", "forget_bias", "layer_norm"}
    {"type": "CudnnCompatibleLSTMCell", "num_units"}
    {"type": "CudnnCompatibleGRUCell", "num_units"}
    {"type": "LSTMBlockFusedCell", ...LSTMBlockCell's keys}   whole-sequence call, time-major:
        outputs [T, B, H], state/0 = c, state/1 = h, loss and gradients as for dynamic_rnn;
        variables under ``lstm_fused_cell/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # must precede the TensorFlow import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_tf_vectors as base  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tf_keras.src.layers.rnn import legacy_cells  # noqa: E402

tf1 = base.tf1
ROOT = base.ROOT
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "tf1_contrib"
FORMAT = 1


# ----------------------------------------------------------------------------- r1.15 gradients
@tf.RegisterGradient("LSTMBlockCell")
def _lstm_block_cell_grad(op, *grad):
    """r1.15 contrib/rnn/python/ops/lstm_ops.py lines 230-287 (``_LSTMBlockCellGrad``)."""
    (x, cs_prev, h_prev, w, wci, wcf, wco, b) = op.inputs
    (i, cs, f, o, ci, co, _) = op.outputs
    (_, cs_grad, _, _, _, _, h_grad) = grad
    input_size = x.shape[1]
    cs_prev_grad, dicfo, wci_grad, wcf_grad, wco_grad = tf.raw_ops.LSTMBlockCellGrad(
        x=x, cs_prev=cs_prev, h_prev=h_prev, w=w, wci=wci, wcf=wcf, wco=wco, b=b,
        i=i, cs=cs, f=f, o=o, ci=ci, co=co, cs_grad=cs_grad, h_grad=h_grad,
        use_peephole=op.get_attr("use_peephole"),
    )  # fmt: skip
    xh_grad = tf.matmul(dicfo, w, transpose_b=True)
    x_grad = xh_grad[:, :input_size]
    h_prev_grad = xh_grad[:, input_size:]
    w_grad = tf.matmul(tf.concat([x, h_prev], 1), dicfo, transpose_a=True)
    b_grad = tf.raw_ops.BiasAddGrad(out_backprop=dicfo)
    return (x_grad, cs_prev_grad, h_prev_grad, w_grad, wci_grad, wcf_grad, wco_grad, b_grad)


@tf.RegisterGradient("GRUBlockCell")
def _gru_block_cell_grad(op, *grad):
    """r1.15 contrib/rnn/python/ops/gru_ops.py lines 35-94 (``_GRUBlockCellGrad``)."""
    x, h_prev, w_ru, w_c, b_ru, b_c = op.inputs
    r, u, c, _ = op.outputs
    _, _, _, d_h = grad
    d_x, d_h_prev, d_c_bar, d_r_bar_u_bar = tf.raw_ops.GRUBlockCellGrad(
        x=x, h_prev=h_prev, w_ru=w_ru, w_c=w_c, b_ru=b_ru, b_c=b_c, r=r, u=u, c=c, d_h=d_h
    )
    d_w_ru = tf.matmul(tf.concat([x, h_prev], 1), d_r_bar_u_bar, transpose_a=True)
    d_b_ru = tf.raw_ops.BiasAddGrad(out_backprop=d_r_bar_u_bar)
    d_w_c = tf.matmul(tf.concat([x, h_prev * r], 1), d_c_bar, transpose_a=True)
    d_b_c = tf.raw_ops.BiasAddGrad(out_backprop=d_c_bar)
    return d_x, d_h_prev, d_w_ru, d_w_c, d_b_ru, d_b_c


def _straight_through_clip(cs, clip: float):
    """clip_by_value forward, identity backward: what LSTMBlockCellGrad computes."""
    return cs + tf.stop_gradient(tf.clip_by_value(cs, -clip, clip) - cs)


def lstm_block_formula(x, cs_prev, h_prev, w, b, wci, wcf, wco, forget_bias, cell_clip, peep):
    """The LSTMBlockCell op's equations (r1.15 lstm_ops.py lines 58-76): (cs, h)."""
    i, ci, f, o = tf.split(tf.matmul(tf.concat([x, h_prev], 1), w) + b, 4, axis=1)
    if peep:
        i = i + cs_prev * wci
        f = f + cs_prev * wcf
    cs = tf.sigmoid(i) * tf.tanh(ci) + cs_prev * tf.sigmoid(f + forget_bias)
    if cell_clip > 0:
        cs = _straight_through_clip(cs, cell_clip)
    if peep:
        o = o + cs * wco
    return cs, tf.tanh(cs) * tf.sigmoid(o)


# ----------------------------------------------------------------------------- the cells
class LSTMBlockCell(legacy_cells.LayerRNNCell):
    """r1.15 contrib/rnn/python/ops/lstm_ops.py lines 290-399 on tf.raw_ops.LSTMBlockCell
    (``mode="raw_op"``) or on :func:`lstm_block_formula` (``mode="formula"``)."""

    def __init__(self, num_units, forget_bias=1.0, cell_clip=None, use_peephole=False,
                 name="lstm_cell", mode="raw_op"):  # fmt: skip
        super().__init__(name=name)
        self._num_units = num_units
        self._forget_bias = forget_bias
        self._use_peephole = use_peephole
        self._cell_clip = cell_clip if cell_clip is not None else -1
        self._mode = mode

    @property
    def state_size(self):
        return tf1.nn.rnn_cell.LSTMStateTuple(self._num_units, self._num_units)

    @property
    def output_size(self):
        return self._num_units

    def build(self, inputs_shape):
        input_size = inputs_shape[1]
        self._kernel = self.add_weight(
            "kernel", [input_size + self._num_units, self._num_units * 4]
        )
        self._bias = self.add_weight(
            "bias", [self._num_units * 4], initializer=tf1.constant_initializer(0.0)
        )
        if self._use_peephole:
            self._w_i_diag = self.add_weight("w_i_diag", [self._num_units])
            self._w_f_diag = self.add_weight("w_f_diag", [self._num_units])
            self._w_o_diag = self.add_weight("w_o_diag", [self._num_units])
        self.built = True

    def call(self, inputs, state):
        if self._use_peephole:
            wci, wcf, wco = self._w_i_diag, self._w_f_diag, self._w_o_diag
        else:
            wci = wcf = wco = tf.zeros([self._num_units], dtype=self.dtype)
        cs_prev, h_prev = state
        if self._mode == "raw_op":
            out = tf.raw_ops.LSTMBlockCell(
                x=inputs, cs_prev=cs_prev, h_prev=h_prev, w=self._kernel, wci=wci, wcf=wcf,
                wco=wco, b=self._bias, forget_bias=self._forget_bias,
                cell_clip=self._cell_clip, use_peephole=self._use_peephole,
            )  # fmt: skip
            cs, h = out.cs, out.h
        else:
            cs, h = lstm_block_formula(
                inputs, cs_prev, h_prev, self._kernel, self._bias, wci, wcf, wco,
                self._forget_bias, self._cell_clip, self._use_peephole,
            )  # fmt: skip
        return h, tf1.nn.rnn_cell.LSTMStateTuple(cs, h)


class GRUBlockCellV2(legacy_cells.LayerRNNCell):
    """r1.15 contrib/rnn/python/ops/gru_ops.py lines 97-236 (GRUBlockCell.call, V2's build)
    on tf.raw_ops.GRUBlockCell (``mode="raw_op"``) or on the op's equations (gru_ops.py lines
    113-127) in TF ops (``mode="formula"``); ``v1_names``: GRUBlockCell's (V1) build, lines
    174-191."""

    def __init__(self, num_units, name="gru_cell", mode="raw_op", v1_names=False):
        super().__init__(name=name)
        self._cell_size = num_units
        self._mode = mode
        self._names = (
            ("w_ru", "b_ru", "w_c", "b_c")
            if v1_names
            else ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias")
        )

    @property
    def state_size(self):
        return self._cell_size

    @property
    def output_size(self):
        return self._cell_size

    def build(self, input_shape):
        input_size = input_shape[1]
        n = self._cell_size
        w_ru, b_ru, w_c, b_c = self._names
        self._gate_kernel = self.add_weight(w_ru, [input_size + n, n * 2])
        self._gate_bias = self.add_weight(b_ru, [n * 2], initializer=tf1.constant_initializer(1.0))
        self._candidate_kernel = self.add_weight(w_c, [input_size + n, n])
        self._candidate_bias = self.add_weight(b_c, [n], initializer=tf1.constant_initializer(0.0))
        self.built = True

    def call(self, inputs, h_prev):
        if self._mode == "raw_op":
            out = tf.raw_ops.GRUBlockCell(
                x=inputs, h_prev=h_prev, w_ru=self._gate_kernel, w_c=self._candidate_kernel,
                b_ru=self._gate_bias, b_c=self._candidate_bias,
            )  # fmt: skip
            return out.h, out.h
        ru = tf.sigmoid(
            tf.matmul(tf.concat([inputs, h_prev], 1), self._gate_kernel) + self._gate_bias
        )
        r, u = tf.split(ru, 2, axis=1)
        c_bar = tf.matmul(tf.concat([inputs, h_prev * r], 1), self._candidate_kernel)
        c = tf.tanh(c_bar + self._candidate_bias)
        h = (1 - u) * c + u * h_prev
        return h, h


class LayerNormBasicLSTMCell(tf1.nn.rnn_cell.RNNCell):
    """r1.15 contrib/rnn/python/ops/rnn_cell.py lines 1342-1463, line by line (no dropout)."""

    def __init__(self, num_units, forget_bias=1.0, layer_norm=True, norm_gain=1.0, norm_shift=0.0):
        super().__init__()
        self._num_units = num_units
        self._activation = tf.tanh
        self._forget_bias = forget_bias
        self._layer_norm = layer_norm
        self._norm_gain = norm_gain
        self._norm_shift = norm_shift

    @property
    def state_size(self):
        return tf1.nn.rnn_cell.LSTMStateTuple(self._num_units, self._num_units)

    @property
    def output_size(self):
        return self._num_units

    def _norm(self, inp, scope, dtype):
        shape = inp.get_shape()[-1:]
        with tf1.variable_scope(scope):
            gamma = tf1.get_variable(
                "gamma", shape=shape, initializer=tf1.constant_initializer(self._norm_gain),
                dtype=dtype,
            )  # fmt: skip
            beta = tf1.get_variable(
                "beta", shape=shape, initializer=tf1.constant_initializer(self._norm_shift),
                dtype=dtype,
            )  # fmt: skip
        # contrib.layers.layer_norm (layers.py lines 2316-2329): moments over the last axis,
        # batch_normalization with variance_epsilon 1e-12.
        mean, variance = tf.nn.moments(inp, [1], keepdims=True)
        return tf.nn.batch_normalization(inp, mean, variance, beta, gamma, 1e-12)

    def _linear(self, args):
        out_size = 4 * self._num_units
        proj_size = args.get_shape()[-1]
        weights = tf1.get_variable("kernel", [proj_size, out_size], dtype=args.dtype)
        out = tf.matmul(args, weights)
        if not self._layer_norm:
            bias = tf1.get_variable("bias", [out_size], dtype=args.dtype)
            out = tf.nn.bias_add(out, bias)
        return out

    def call(self, inputs, state):
        c, h = state
        args = tf.concat([inputs, h], 1)
        concat = self._linear(args)
        dtype = args.dtype
        i, j, f, o = tf.split(value=concat, num_or_size_splits=4, axis=1)
        if self._layer_norm:
            i = self._norm(i, "input", dtype=dtype)
            j = self._norm(j, "transform", dtype=dtype)
            f = self._norm(f, "forget", dtype=dtype)
            o = self._norm(o, "output", dtype=dtype)
        g = self._activation(j)
        new_c = c * tf.sigmoid(f + self._forget_bias) + tf.sigmoid(i) * g
        if self._layer_norm:
            new_c = self._norm(new_c, "state", dtype=dtype)
        new_h = self._activation(new_c) * tf.sigmoid(o)
        return new_h, tf1.nn.rnn_cell.LSTMStateTuple(new_c, new_h)


class CudnnCompatibleGRUCell(legacy_cells.GRUCell):
    """r1.15 contrib/cudnn_rnn/python/ops/cudnn_rnn_ops.py lines 81-180, line by line."""

    def build(self, inputs_shape):
        input_depth = inputs_shape[1]
        n = self._num_units
        self._gate_kernel = self.add_weight("gates/kernel", [input_depth + n, 2 * n])
        self._gate_bias = self.add_weight(
            "gates/bias", [2 * n], initializer=tf1.constant_initializer(1.0)
        )
        self._candidate_input_kernel = self.add_weight(
            "candidate/input_projection/kernel", [input_depth, n]
        )
        self._candidate_hidden_kernel = self.add_weight(
            "candidate/hidden_projection/kernel", [n, n]
        )
        self._candidate_input_bias = self.add_weight(
            "candidate/input_projection/bias", [n], initializer=tf1.zeros_initializer()
        )
        self._candidate_hidden_bias = self.add_weight(
            "candidate/hidden_projection/bias", [n], initializer=tf1.zeros_initializer()
        )
        self.built = True

    def call(self, inputs, state):
        gate_inputs = tf.matmul(tf.concat([inputs, state], 1), self._gate_kernel)
        gate_inputs = tf.nn.bias_add(gate_inputs, self._gate_bias)
        value = tf.sigmoid(gate_inputs)
        r, u = tf.split(value=value, num_or_size_splits=2, axis=1)
        candidate = tf.nn.bias_add(
            tf.matmul(inputs, self._candidate_input_kernel), self._candidate_input_bias
        )
        candidate += r * tf.nn.bias_add(
            tf.matmul(state, self._candidate_hidden_kernel), self._candidate_hidden_bias
        )
        candidate = self._activation(candidate)
        new_h = (1 - u) * candidate + u * state
        return new_h, new_h


# ----------------------------------------------------------------------------- specs
def lstm_block(units=4, forget_bias=1.0, cell_clip=None, use_peephole=False) -> dict:
    return {
        "type": "LSTMBlockCell",
        "num_units": units,
        "forget_bias": forget_bias,
        "cell_clip": cell_clip,
        "use_peephole": use_peephole,
    }


def gru_block(units=4, v1=False) -> dict:
    return {"type": "GRUBlockCell" if v1 else "GRUBlockCellV2", "num_units": units}


def layer_norm(units=4, forget_bias=1.0, norm=True) -> dict:
    return {
        "type": "LayerNormBasicLSTMCell",
        "num_units": units,
        "forget_bias": forget_bias,
        "layer_norm": norm,
    }


def cudnn_lstm(units=4) -> dict:
    return {"type": "CudnnCompatibleLSTMCell", "num_units": units}


def cudnn_gru(units=4) -> dict:
    return {"type": "CudnnCompatibleGRUCell", "num_units": units}


_ORIGINAL_BUILD = base.build_cell
_MODE = {"value": "raw_op"}  # "raw_op" (float32) or "formula" (float64 / the cross-check)


def build_cell(spec: dict):
    """A TF cell from a spec; the block cells use the kernel or the formula per ``_MODE``."""
    kind, mode = spec["type"], _MODE["value"]
    if kind == "LSTMBlockCell":
        return LSTMBlockCell(
            spec["num_units"], spec["forget_bias"], spec["cell_clip"], spec["use_peephole"],
            mode=mode,
        )  # fmt: skip
    if kind == "CudnnCompatibleLSTMCell":
        return LSTMBlockCell(spec["num_units"], 0.0, name="cudnn_compatible_lstm_cell", mode=mode)
    if kind == "GRUBlockCellV2":
        if mode == "raw_op":
            return GRUBlockCellV2(spec["num_units"])
        return tf1.nn.rnn_cell.GRUCell(spec["num_units"], name="gru_cell")
    if kind == "GRUBlockCell":
        return GRUBlockCellV2(spec["num_units"], mode=mode, v1_names=True)
    if kind == "LayerNormBasicLSTMCell":
        return LayerNormBasicLSTMCell(spec["num_units"], spec["forget_bias"], spec["layer_norm"])
    if kind == "CudnnCompatibleGRUCell":
        return CudnnCompatibleGRUCell(spec["num_units"])
    return _ORIGINAL_BUILD(spec)


base.build_cell = build_cell  # base.run_case (and MultiRNNCell specs) build through this


def _uses_kernels(spec: dict) -> bool:
    if spec["type"] == "MultiRNNCell":
        return any(_uses_kernels(s) for s in spec["cells"])
    kernel_cells = ("LSTMBlockCell", "CudnnCompatibleLSTMCell", "GRUBlockCellV2", "GRUBlockCell")
    return spec["type"] in kernel_cells


def _specs(case: dict) -> list[dict]:
    return [case[k] for k in ("cell", "cell_fw", "cell_bw") if k in case]


# ----------------------------------------------------------------------------- LSTMBlockFusedCell
def run_fused_case(case: dict) -> tuple[dict[str, np.ndarray], dict]:
    """r1.15 lstm_ops.py lines 441-538 (LSTMBlockWrapper.call) and 608-667 (_call_cell) on
    tf.raw_ops.BlockLSTM (float32) or a loop of :func:`lstm_block_formula` (float64)."""
    dtype = np.dtype(case["dtype"])
    seed = base.seed_for(case["name"])
    rng = np.random.default_rng(seed)
    spec = case["cell"]
    units = spec["num_units"]
    peep = spec["use_peephole"]
    clip = spec["cell_clip"] if spec["cell_clip"] is not None else -1.0

    def draw(shape) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.5).astype(dtype)

    tt, bb, dd = base.MAX_TIME, base.BATCH, base.DEPTH
    arrays: dict[str, np.ndarray] = {}
    graph = tf.Graph()
    with graph.as_default():
        arrays["inputs"] = draw((tt, bb, dd))
        x = tf.constant(arrays["inputs"])
        seq = None
        if case["seq"]:
            arrays["sequence_length"] = np.array(base.SEQ_LEN, dtype=np.int32)
            seq = tf.constant(arrays["sequence_length"])
        init_leaves = []
        if case["init"]:
            for k in range(2):
                arrays[f"initial_state/{k}"] = draw((bb, units))
                init_leaves.append(tf.constant(arrays[f"initial_state/{k}"]))
            c0, h0 = init_leaves
        else:
            c0 = h0 = tf.zeros([bb, units], dtype=dtype)
        with tf1.variable_scope("lstm_fused_cell"):
            kernel = tf1.get_variable("kernel", [dd + units, 4 * units], dtype=dtype)
            bias = tf1.get_variable("bias", [4 * units], dtype=dtype)
            if peep:
                wci, wcf, wco = (
                    tf1.get_variable(n, [units], dtype=dtype)
                    for n in ("w_i_diag", "w_f_diag", "w_o_diag")
                )
            else:
                wci = wcf = wco = tf.zeros([units], dtype=dtype)
        max_len = tf.cast(tt if seq is None else tf.reduce_max(seq), tf.int64)
        if _MODE["value"] == "raw_op":
            out = tf.raw_ops.BlockLSTM(
                seq_len_max=max_len, x=x, cs_prev=c0, h_prev=h0, w=kernel, wci=wci, wcf=wcf,
                wco=wco, b=bias, forget_bias=spec["forget_bias"], cell_clip=clip,
                use_peephole=peep,
            )  # fmt: skip
            cell_states, outputs = out.cs, out.h
        else:  # the kernel's loop: every step up to max(lengths), zeros after it
            cs, h, c_list, h_list = c0, h0, [], []
            for t in range(tt):
                cs, h = lstm_block_formula(
                    x[t], cs, h, kernel, bias, wci, wcf, wco, spec["forget_bias"], clip, peep
                )
                live = tf.cast(t < max_len, dtype)
                c_list.append(cs * live)
                h_list.append(h * live)
            cell_states, outputs = tf.stack(c_list), tf.stack(h_list)
        if seq is not None:  # LSTMBlockWrapper.call's masking and gathering
            mask = tf.transpose(tf.sequence_mask(seq, tt, dtype=dtype), [1, 0])
            outputs *= tf.tile(tf.expand_dims(mask, -1), [1, 1, units])
            mod_c = tf.concat([tf.expand_dims(c0, 0), cell_states], 0)
            mod_h = tf.concat([tf.expand_dims(h0, 0), outputs], 0)
            idx = tf.stack([seq, tf.range(bb)], axis=1)
            final = [tf.gather_nd(mod_c, idx), tf.gather_nd(mod_h, idx)]
        else:
            final = [cell_states[-1], outputs[-1]]
        arrays["w_out"] = draw((tt, bb, units))
        loss = tf.reduce_sum(outputs * arrays["w_out"])
        for k, s in enumerate(final):
            arrays[f"w_state/{k}"] = draw((bb, units))
            loss += tf.reduce_sum(s * arrays[f"w_state/{k}"])
        variables = sorted(tf1.trainable_variables(), key=base.tf_name)
        grads = tf1.gradients(loss, [x, *init_leaves, *variables])
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            for v in variables:
                arrays[f"var/{base.tf_name(v)}"] = draw(tuple(v.shape.as_list()))
                v.load(arrays[f"var/{base.tf_name(v)}"], sess)
            got_out, got_final, got_grads = sess.run([outputs, final, grads])
    arrays["outputs"] = got_out
    for k, s in enumerate(got_final):
        arrays[f"state/{k}"] = s
    arrays["grad/inputs"] = got_grads[0]
    for k in range(len(init_leaves)):
        arrays[f"grad/initial_state/{k}"] = got_grads[1 + k]
    for v, g in zip(variables, got_grads[1 + len(init_leaves) :], strict=True):
        arrays[f"grad/var/{base.tf_name(v)}"] = np.asarray(g)
    meta = {
        "format": FORMAT,
        "case": case["name"],
        "tf_version": tf.__version__,
        "dtype": case["dtype"],
        "time_major": True,
        "bidirectional": False,
        "has_sequence_length": case["seq"],
        "has_initial_state": case["init"],
        "batch": bb,
        "max_time": tt,
        "input_depth": dd,
        "seed": seed,
        "cell": spec,
    }
    return arrays, meta


# ----------------------------------------------------------------------------- the grid
def case_grid() -> list[dict]:
    clipped = lstm_block(4, forget_bias=0.5, cell_clip=0.3, use_peephole=True)
    rows: list[tuple[str, dict, bool, bool, bool]] = [
        ("lstm_block", lstm_block(4), False, True, True),
        ("lstm_block", lstm_block(4), True, False, False),
        ("lstm_block_peep_clip", clipped, False, True, True),
        ("lstm_block_peep_clip", clipped, True, True, False),
        ("lstm_block_peep_clip", clipped, False, False, False),
        ("lstm_block_clip", lstm_block(5, cell_clip=0.3), True, True, True),
        ("lstm_block_peep", lstm_block(5, use_peephole=True), False, True, False),
        ("gru_block", gru_block(4), False, True, True),
        ("gru_block", gru_block(5), True, False, False),
        ("gru_block_v1", gru_block(4, v1=True), False, True, True),
        ("layer_norm_lstm", layer_norm(4), False, True, True),
        ("layer_norm_lstm", layer_norm(4, forget_bias=0.5), True, True, False),
        ("layer_norm_lstm", layer_norm(5), False, False, False),
        ("layer_norm_lstm_nonorm", layer_norm(4, norm=False), False, True, True),
        ("cudnn_lstm", cudnn_lstm(4), False, True, True),
        ("cudnn_lstm", cudnn_lstm(5), True, False, False),
        ("cudnn_gru", cudnn_gru(4), False, True, True),
        ("cudnn_gru", cudnn_gru(4), True, True, False),
        ("cudnn_gru", cudnn_gru(5), False, False, False),
        ("multi_block_cudnn", base.multi(clipped, cudnn_gru(5)), False, True, True),
        ("multi_ln_gru_block", base.multi(layer_norm(4), gru_block(3)), True, True, False),
    ]
    cases = []
    for name, spec, tm, sl, ini in rows:
        cases.append({"name": _tag(name, tm, sl, ini), "cell": spec, "time_major": tm, "seq": sl,
                      "init": ini})  # fmt: skip
    for name, fw, bw, tm, sl, ini in [
        ("bidi_block_ln", clipped, layer_norm(5), False, True, True),
        ("bidi_cudnn", cudnn_lstm(4), cudnn_gru(5), True, True, False),
    ]:
        cases.append({"name": _tag(name, tm, sl, ini), "cell_fw": fw, "cell_bw": bw,
                      "time_major": tm, "seq": sl, "init": ini})  # fmt: skip
    for spec, sl, ini in [
        ({**clipped, "type": "LSTMBlockFusedCell"}, True, True),
        ({**clipped, "type": "LSTMBlockFusedCell"}, False, False),
        ({**lstm_block(5), "type": "LSTMBlockFusedCell"}, True, False),
    ]:
        name = "lstm_fused" + ("_peep_clip" if spec["use_peephole"] else "")
        cases.append({"name": _tag(name, True, sl, ini), "cell": spec, "time_major": True,
                      "seq": sl, "init": ini, "fused": True})  # fmt: skip
    return [
        {**c, "name": f"{c['name']}__{'f32' if d == 'float32' else 'f64'}", "dtype": d}
        for d in ("float32", "float64")
        for c in cases
    ]


def _tag(name: str, tm: bool, sl: bool, ini: bool) -> str:
    layout = "tm" if tm else "bm"
    return f"{name}__{layout}__{'seq' if sl else 'noseq'}__{'init' if ini else 'zero'}"


def run(case: dict) -> tuple[dict[str, np.ndarray], dict]:
    runner = run_fused_case if case.get("fused") else base.run_case
    kernels = any(_uses_kernels(s) for s in _specs(case)) or case.get("fused", False)
    if not kernels:
        arrays, meta = runner(case)
        meta["oracle"] = "tf_ops"
        return arrays, meta
    if case["dtype"] == "float64":
        _MODE["value"] = "formula"
        arrays, meta = runner(case)
        meta["oracle"] = "formula"
        return arrays, meta
    _MODE["value"] = "raw_op"
    arrays, meta = runner(case)
    _MODE["value"] = "formula"
    check, _ = runner(case)
    worst = max(
        float(np.max(np.abs(arrays[k] - check[k]), initial=0.0))
        for k in arrays
        if k.startswith(("outputs", "state/", "grad/"))
    )
    if worst > 2e-5:
        raise RuntimeError(f"{case['name']}: the formula differs from the kernels by {worst}")
    meta["oracle"] = "raw_op"
    meta["formula_vs_raw_op"] = worst
    return arrays, meta


def default_initialisers(input_depth: int = 20, units: int = 30) -> dict:
    """Statistics of TF's default-initialised variables of each contrib cell (float32); the
    layer-norm cell with norm_gain=1.3, norm_shift=0.2 to show both reach its variables."""
    specs = [
        lstm_block(units, use_peephole=True),
        gru_block(units),
        gru_block(units, v1=True),
        {**layer_norm(units), "norm_gain": 1.3, "norm_shift": 0.2},
        layer_norm(units, norm=False),
        cudnn_lstm(units),
        cudnn_gru(units),
    ]
    result: dict = {"input_depth": input_depth, "num_units": units, "cases": []}
    for spec in specs:
        graph = tf.Graph()
        with graph.as_default():
            tf1.set_random_seed(0)
            if spec["type"] == "LayerNormBasicLSTMCell":
                cell = LayerNormBasicLSTMCell(
                    units, layer_norm=spec["layer_norm"], norm_gain=spec.get("norm_gain", 1.0),
                    norm_shift=spec.get("norm_shift", 0.0),
                )  # fmt: skip
            else:
                cell = build_cell(spec)
            x = tf1.placeholder(tf.float32, [2, 3, input_depth])
            tf1.nn.dynamic_rnn(cell, x, dtype=tf.float32)
            variables = sorted(tf1.trainable_variables(), key=base.tf_name)
            with tf1.Session(graph=graph) as sess:
                sess.run(tf1.global_variables_initializer())
                values = sess.run(variables)
        stats = {}
        for v, a in zip(variables, values, strict=True):
            distinct = np.unique(a)
            fan = sum(a.shape) if a.ndim == 2 else 2 * a.shape[0]  # TF: 1-D fan_in = fan_out
            stats[base.tf_name(v)] = {
                "shape": list(a.shape),
                "min": float(a.min()),
                "max": float(a.max()),
                "distinct_values": [float(d) for d in distinct] if distinct.size <= 4 else None,
                "glorot_uniform_limit": float(np.sqrt(6.0 / fan)),
            }
        result["cases"].append({"spec": spec, "variables": stats})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT,
        "tf_version": tf.__version__,
        "numpy_version": np.__version__,
        "command": "TF_USE_LEGACY_KERAS=1 python tools/make_tf_contrib_vectors.py",
        "cases": [],
    }
    for case in case_grid():
        arrays, meta = run(case)
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        path = args.out / f"{case['name']}.npz"
        np.savez_compressed(path, **arrays)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        manifest["cases"].append({"file": path.name, "sha256": digest, "oracle": meta["oracle"]})
        print(f"{path.name}: {meta['oracle']}", file=sys.stderr)
    defaults = json.dumps(default_initialisers(), indent=1) + "\n"
    (args.out / "defaults.json").write_text(defaults)
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(manifest['cases'])} cases in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
