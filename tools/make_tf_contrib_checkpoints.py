"""Write small TF1 checkpoints of the tf.contrib cells and of CudnnLSTM/CudnnGRU, with TensorFlow.

For ``tests/interop/test_tf1_contrib_import.py``: each folder under ``tests/fixtures/tf1_ckpt/``
holds ``model.ckpt.index`` + ``.data-00000-of-00001`` written by ``tf.compat.v1.train.Saver``
and ``expected.npz`` with the inputs, TF's outputs and final states, and ``meta`` (JSON).
The cells are those of ``tools/make_tf_contrib_vectors.py`` (the r1.15 cells on TF 2.21's
kernels; float32).

* ``contrib_multi/``: ``tf.variable_scope("encoder")`` + ``dynamic_rnn`` of
  ``MultiRNNCell([LSTMBlockCell(6, cell_clip=0.4, use_peephole=True),
  LayerNormBasicLSTMCell(5), GRUBlockCellV2(4)])``, batch-major, with lengths; plus Adam slots.
* ``lstm_fused/``: ``LSTMBlockFusedCell(5, use_peephole=True)`` called in
  ``tf.variable_scope("model")`` on a time-major batch (variables ``model/lstm_fused_cell/...``).
* ``cudnn_lstm/`` and ``cudnn_gru_bidi/``: what a ``tf.contrib.cudnn_rnn.CudnnLSTM`` (2 layers,
  unidirectional, built at the root scope) and a ``CudnnGRU`` (2 layers, bidirectional, built in
  ``tf.variable_scope("encoder")``) save. TF 2.21 has no cuDNN layers (and this machine no GPU),
  so the checkpoint is assembled as the r1.15 saveable writes it (contrib/cudnn_rnn/python/ops/
  cudnn_rnn_ops.py): per-gate cuDNN matrices ``W_g`` [H, in], ``R_g`` [H, H] and biases
  ``b_W_g``, ``b_R_g`` [H] (cuDNN gate orders LSTM i, f, c, o; GRU r, z, h) are drawn, turned
  into the canonical tensors by a transcription of ``_cudnn_to_tf_weights`` /
  ``_cudnn_to_tf_biases`` (lines 486-550 LSTM, 592-636 GRU), and saved under the names of
  ``_tf_canonical_names`` (lines 877-960), next to the layer's own ``<layer>/opaque_kernel``
  (here the flat concatenation of the cuDNN matrices and biases; real buffers are
  device-specific and rnnflow does not read them) and its Adam slots. TF then restores those
  names into CudnnCompatible cells, the r1.15 inference recipe (layers/cudnn_rnn.py lines
  86-143), and its outputs are saved; the same inputs run through the cuDNN equations in float64
  from the per-gate matrices must agree (``meta["cudnn_formula_vs_tf"]``). ``expected.npz`` also
  holds the per-gate matrices (``cudnn/<layer>/<dir>/W_i`` ...), for a check against
  ``torch.nn.LSTM``/``GRU``.

Run: ``TF_USE_LEGACY_KERAS=1 /work/tfvenv/bin/python tools/make_tf_contrib_checkpoints.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_tf_contrib_vectors as cv  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = cv.tf1
base = cv.base
DEFAULT_OUT = cv.ROOT / "tests" / "fixtures" / "tf1_ckpt"
B, T, D = 3, 6, 5
LENGTHS = [6, 3, 0]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _save(graph, sess, folder: Path, arrays: dict, meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    with graph.as_default():
        tf1.train.Saver().save(sess, str(folder / "model.ckpt"), write_meta_graph=False)
    (folder / "checkpoint").unlink()
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    np.savez_compressed(folder / "expected.npz", **arrays)
    print(f"{folder.name}: {sorted(p.name for p in folder.iterdir())}", file=sys.stderr)


def _adam_slots(variables) -> None:
    """Adam slots for ``variables`` as TF1's AdamOptimizer names them (a training checkpoint)."""
    loss = tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])
    tf1.train.AdamOptimizer(0.001).minimize(loss, var_list=list(variables))


def _run_and_save(name: str, build, folder: Path, rng, *, time_major=False) -> None:
    graph = tf.Graph()
    with graph.as_default():
        shape = (T, B, D) if time_major else (B, T, D)
        x_np = (rng.standard_normal(shape) * 0.8).astype(np.float32)
        outputs, states = build(tf.constant(x_np), tf.constant(np.array(LENGTHS, np.int32)))
        model_vars = sorted(tf1.trainable_variables(), key=base.tf_name)
        _adam_slots(model_vars)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            for v in model_vars:
                v.load((rng.standard_normal(v.shape.as_list()) * 0.5).astype(np.float32), sess)
            out, st = sess.run([outputs, tf.nest.flatten(states)])
            arrays = {"inputs": x_np, "sequence_length": np.array(LENGTHS, np.int32)}
            arrays["outputs"] = out
            arrays.update({f"state/{i}": s for i, s in enumerate(st)})
            meta = {"case": name, "tf_version": tf.__version__, "time_major": time_major,
                    "variables": [base.tf_name(v) for v in model_vars]}  # fmt: skip
            _save(graph, sess, folder, arrays, meta)


def contrib_multi(x, seq):
    cells = [
        cv.build_cell(cv.lstm_block(6, cell_clip=0.4, use_peephole=True)),
        cv.build_cell(cv.layer_norm(5)),
        cv.build_cell(cv.gru_block(4)),
    ]
    with tf1.variable_scope("encoder"):
        return tf1.nn.dynamic_rnn(
            tf1.nn.rnn_cell.MultiRNNCell(cells), x, sequence_length=seq, dtype=tf.float32
        )


def lstm_fused(x, seq):
    """LSTMBlockWrapper.call + LSTMBlockFusedCell._call_cell (see make_tf_contrib_vectors)."""
    units = 5
    with tf1.variable_scope("model"), tf1.variable_scope("lstm_fused_cell"):
        kernel = tf1.get_variable("kernel", [D + units, 4 * units])
        bias = tf1.get_variable("bias", [4 * units], initializer=tf1.zeros_initializer())
        wci, wcf, wco = (tf1.get_variable(n, [units]) for n in ("w_i_diag", "w_f_diag", "w_o_diag"))
    zero = tf.zeros([B, units])
    out = tf.raw_ops.BlockLSTM(
        seq_len_max=tf.cast(tf.reduce_max(seq), tf.int64), x=x, cs_prev=zero, h_prev=zero,
        w=kernel, wci=wci, wcf=wcf, wco=wco, b=bias, forget_bias=1.0, cell_clip=-1.0,
        use_peephole=True,
    )  # fmt: skip
    mask = tf.transpose(tf.sequence_mask(seq, T, dtype=tf.float32), [1, 0])
    outputs = out.h * tf.expand_dims(mask, -1)
    idx = tf.stack([seq, tf.range(B)], axis=1)
    mod_c = tf.concat([tf.expand_dims(zero, 0), out.cs], 0)
    mod_h = tf.concat([tf.expand_dims(zero, 0), outputs], 0)
    return outputs, (tf.gather_nd(mod_c, idx), tf.gather_nd(mod_h, idx))


# ----------------------------------------------------------------------------- cuDNN layouts
def cudnn_to_tf_lstm(w: dict) -> tuple[np.ndarray, np.ndarray]:
    """r1.15 CudnnParamsFormatConverterLSTM._cudnn_to_tf_weights / _cudnn_to_tf_biases
    (cudnn_rnn_ops.py lines 486-550): gates i, f, c, o -> TF's i, c, f, o."""
    stacked = [np.concatenate([w[f"W_{g}"], w[f"R_{g}"]], axis=1) for g in "ifco"]
    i_g, f_g, c_g, o_g = stacked
    kernel = np.concatenate([i_g, c_g, f_g, o_g], axis=0).T
    sums = {g: w[f"b_W_{g}"] + w[f"b_R_{g}"] for g in "ifco"}
    bias = np.concatenate([sums["i"], sums["c"], sums["f"], sums["o"]])
    return kernel, bias


def cudnn_to_tf_gru(w: dict) -> dict[str, np.ndarray]:
    """r1.15 CudnnParamsFormatConverterGRU (cudnn_rnn_ops.py lines 592-636): r, z stacked."""
    gates = np.concatenate(
        [np.concatenate([w["W_r"], w["R_r"]], 1), np.concatenate([w["W_z"], w["R_z"]], 1)], 0
    ).T
    return {
        "gates/kernel": gates,
        "candidate/input_projection/kernel": w["W_h"].T,
        "candidate/hidden_projection/kernel": w["R_h"].T,
        "gates/bias": np.concatenate([w["b_W_r"], w["b_W_z"]])
        + np.concatenate([w["b_R_r"], w["b_R_z"]]),
        "candidate/input_projection/bias": w["b_W_h"],
        "candidate/hidden_projection/bias": w["b_R_h"],
    }


def cudnn_formula(kind: str, w: dict, x: np.ndarray, lengths, reverse: bool) -> np.ndarray:
    """cuDNN's equations in float64 from the per-gate matrices (cuDNN user guide, as quoted in
    cudnn_rnn_ops.py lines 94-102): batch-major x [B, T, in] -> outputs [B, T, H], zero past
    each row's length; ``reverse`` runs each row backwards within its length."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    units = w["R_h" if kind == "gru" else "R_i"].shape[0]
    out = np.zeros(x.shape[:2] + (units,))
    for b, n in enumerate(lengths):
        h, c = np.zeros(units), np.zeros(units)
        for t in reversed(range(n)) if reverse else range(n):
            xt = x[b, t].astype(np.float64)

            def lin(g, hh, xt=xt):
                return w[f"W_{g}"] @ xt + w[f"b_W_{g}"] + w[f"R_{g}"] @ hh + w[f"b_R_{g}"]

            if kind == "lstm":
                i, f, o = _sigmoid(lin("i", h)), _sigmoid(lin("f", h)), _sigmoid(lin("o", h))
                c = f * c + i * np.tanh(lin("c", h))
                h = o * np.tanh(c)
            else:
                r, z = _sigmoid(lin("r", h)), _sigmoid(lin("z", h))
                cand = np.tanh(w["W_h"] @ xt + w["b_W_h"] + r * (w["R_h"] @ h + w["b_R_h"]))
                h = (1 - z) * cand + z * h
            out[b, t] = h
    return out


def cudnn_case(kind: str, folder: Path, rng, *, layers: int, units: int, bidi: bool, prefix: str):
    gates = "ifco" if kind == "lstm" else "rzh"
    dirs = ["fw", "bw"] if bidi else [""]
    params: dict[tuple[int, str], dict] = {}
    for layer in range(layers):
        width = D if layer == 0 else units * len(dirs)
        for d in dirs:
            p = {}
            for g in gates:
                p[f"W_{g}"] = rng.standard_normal((units, width)) * 0.4
                p[f"R_{g}"] = rng.standard_normal((units, units)) * 0.4
                p[f"b_W_{g}"] = rng.standard_normal(units) * 0.3
                p[f"b_R_{g}"] = rng.standard_normal(units) * 0.3
            params[(layer, d)] = {k: v.astype(np.float32) for k, v in p.items()}
    x_np = (rng.standard_normal((B, T, D)) * 0.8).astype(np.float32)
    seq_np = np.array(LENGTHS, np.int32)

    graph = tf.Graph()
    with graph.as_default():
        spec = cv.cudnn_lstm(units) if kind == "lstm" else cv.cudnn_gru(units)
        x, seq = tf.constant(x_np), tf.constant(seq_np)
        scope = tf1.variable_scope(prefix.rstrip("/")) if prefix else contextlib.nullcontext()
        with scope:
            if bidi:  # r1.15 contrib/rnn/python/ops/rnn.py lines 215-245
                prev, states = x, []
                with tf1.variable_scope("stack_bidirectional_rnn"):
                    for layer in range(layers):
                        with tf1.variable_scope(f"cell_{layer}"):
                            outs, (s_fw, s_bw) = tf1.nn.bidirectional_dynamic_rnn(
                                cv.build_cell(spec), cv.build_cell(spec), prev,
                                sequence_length=seq, dtype=tf.float32,
                            )  # fmt: skip
                            prev = tf.concat(outs, 2)
                        states += [s_fw, s_bw]
                outputs = prev
            else:
                cell = tf1.nn.rnn_cell.MultiRNNCell([cv.build_cell(spec) for _ in range(layers)])
                outputs, states = tf1.nn.dynamic_rnn(cell, x, sequence_length=seq, dtype=tf.float32)
            layer_name = "cudnn_lstm" if kind == "lstm" else "cudnn_gru"
            flat = np.concatenate(
                [v.ravel() for p in params.values() for k, v in sorted(p.items()) if k[0] != "b"]
                + [v.ravel() for p in params.values() for k, v in sorted(p.items()) if k[0] == "b"]
            )
            opaque = tf1.get_variable(f"{layer_name}/opaque_kernel", initializer=flat)
        model_vars = sorted(tf1.trainable_variables(), key=base.tf_name)
        canonical = [v for v in model_vars if v is not opaque]
        _adam_slots([opaque])
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            values = {}
            for (layer, d), p in params.items():
                cell_scope = (
                    f"{prefix}stack_bidirectional_rnn/cell_{layer}/bidirectional_rnn/{d}"
                    if bidi
                    else f"{prefix}rnn/multi_rnn_cell/cell_{layer}"
                )
                cell_scope += f"/cudnn_compatible_{kind}_cell"
                if kind == "lstm":
                    kernel, bias = cudnn_to_tf_lstm(p)
                    values[f"{cell_scope}/kernel"], values[f"{cell_scope}/bias"] = kernel, bias
                else:
                    values.update({f"{cell_scope}/{k}": v for k, v in cudnn_to_tf_gru(p).items()})
            assert sorted(values) == sorted(base.tf_name(v) for v in canonical), sorted(values)
            for v in canonical:
                v.load(values[base.tf_name(v)], sess)
            out, st = sess.run([outputs, tf.nest.flatten(states)])
            # cuDNN's equations on the per-gate matrices, layer by layer.
            prev = x_np.astype(np.float64)
            for layer in range(layers):
                parts = [
                    cudnn_formula(kind, params[(layer, d)], prev, LENGTHS, reverse=d == "bw")
                    for d in dirs
                ]
                prev = np.concatenate(parts, axis=2)
            worst = float(np.max(np.abs(prev - out)))
            if worst > 1e-5:
                raise RuntimeError(f"{folder.name}: cuDNN equations differ from TF by {worst}")
            arrays = {"inputs": x_np, "sequence_length": seq_np, "outputs": out}
            arrays.update({f"state/{i}": s for i, s in enumerate(st)})
            for (layer, d), p in params.items():
                arrays.update({f"cudnn/{layer}/{d or 'uni'}/{k}": v for k, v in p.items()})
            meta = {
                "case": folder.name,
                "tf_version": tf.__version__,
                "kind": kind,
                "num_layers": layers,
                "num_units": units,
                "bidirectional": bidi,
                "prefix": prefix,
                "time_major": False,
                "cudnn_formula_vs_tf": worst,
                "variables": sorted(values) + [base.tf_name(opaque)],
            }
            _save(graph, sess, folder, arrays, meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="tf1_ckpt fixture folder")
    args = parser.parse_args(argv)
    cv._MODE["value"] = "raw_op"
    rng = np.random.default_rng(15)
    _run_and_save("contrib_multi", contrib_multi, args.out / "contrib_multi", rng)
    _run_and_save("lstm_fused", lstm_fused, args.out / "lstm_fused", rng, time_major=True)
    cudnn_case("lstm", args.out / "cudnn_lstm", rng, layers=2, units=6, bidi=False, prefix="")
    cudnn_case(
        "gru", args.out / "cudnn_gru_bidi", rng, layers=2, units=4, bidi=True, prefix="encoder/"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
