"""Train the TF1 tutorial's classifier with real TensorFlow and save TF1 checkpoints as fixtures.

``rnnflow import-tf1`` turns TF1 checkpoints (``model.ckpt.index`` + ``model.ckpt.data-*``) into
rnnflow checkpoints. This script makes the checkpoints it is tested on, with real TensorFlow, so
that the tests (``tests/interop/``) can check the import without TensorFlow:

* ``<model>/``: the "MNIST row by row" tutorial's program, unchanged apart from the cell, trained
  for a few hundred Adam steps on real Fashion-MNIST and saved with ``tf.train.Saver``:

      x [B, 28, 28] -> reshape(x, [-1, 28]) @ W_in + b_in -> reshape [B, 28, P]
        -> dynamic_rnn(cell, initial_state=cell.zero_state(B))
        -> final h (LSTM: final_state[1]; MultiRNNCell: the top layer's) @ W_out + b_out

  with ``W_in``, ``W_out``, ``b_in``, ``b_out`` unnamed ``tf.Variable``s made in the tutorial's
  dict order (``Variable``, ``Variable_1``, ``Variable_2``, ``Variable_3``) and
  ``tf.train.AdamOptimizer(0.001)`` on the mean softmax cross-entropy. Models: ``basic_rnn``
  (exactly the tutorial: BasicRNNCell(128)), ``basic_lstm`` (BasicLSTMCell(64)), ``gru``
  (GRUCell(64)) and ``multi_lstm`` (MultiRNNCell of two BasicLSTMCell(32)); fewer units than
  the tutorial's 128 keep each committed file under 1.5 MB.
* ``<model>/expected.npz``: ``logits`` [N, 10] (float32, the trained TF graph on the fixed batch),
  ``logits_f64`` (the same weights in a float64 copy of the graph), ``logits_after_step``
  (float32 logits after one more TF Adam step on the fixed batch, starting from the saved
  state: checks that imported optimizer slots continue training as TF would) and ``loss``.
* ``batch.npz``: the fixed batch: the first N test images (uint8 [N, 28, 28]) and labels.
* ``names/<case>/``: tiny untrained cells under other scopes (user scopes, ``scope=``,
  ``bidirectional_rnn/fw|bw``, ``MultiRNNCell`` of mixed cells, ``DropoutWrapper``, named cells)
  with random inputs and TF's outputs and final states, for the name-mapping tests.
* ``MANIFEST.json``: TF version, command, steps, test accuracy, every variable and sha256s.

Run it from a virtual environment that has TensorFlow (never the project's .venv):

    python3 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0
    /work/tfvenv/bin/python tools/make_tf1_checkpoints.py          # writes tests/fixtures/tf1_ckpt

Fashion-MNIST is read from ``--data-dir`` (default ``/usr/share/datasets/fashion-mnist``: the
four gzip IDX files). TF's float training is not bit-reproducible across machines, so a rerun
writes slightly different checkpoints; the tests only compare rnnflow with the TF outputs saved
next to each checkpoint.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # must precede the TensorFlow import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_eager_execution()

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "tf1_ckpt"
DEFAULT_DATA = Path("/usr/share/datasets/fashion-mnist")
FORMAT = 1
N_STEPS = N_INPUTS = 28
N_CLASSES = 10
BATCH_SIZE = 128
LR = 0.001
EVAL_N = 64

# name -> (cell spec, units); the basic_rnn model is exactly the tutorial's (128 units).
MODELS: dict[str, dict] = {
    "basic_rnn": {"type": "BasicRNNCell", "num_units": 128},
    "basic_lstm": {"type": "BasicLSTMCell", "num_units": 64, "forget_bias": 1.0},
    "gru": {"type": "GRUCell", "num_units": 64},
    "multi_lstm": {
        "type": "MultiRNNCell",
        "cells": [
            {"type": "BasicLSTMCell", "num_units": 32, "forget_bias": 1.0},
            {"type": "BasicLSTMCell", "num_units": 32, "forget_bias": 1.0},
        ],
    },
    "lstm_cell": {"type": "LSTMCell", "num_units": 64},  # tf.nn.rnn_cell.LSTMCell, plain
}


# ----------------------------------------------------------------------------- data
def read_idx_gz(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    if data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(data_dir: Path) -> dict[str, np.ndarray]:
    files = {
        "train_x": "train-images-idx3-ubyte.gz",
        "train_y": "train-labels-idx1-ubyte.gz",
        "test_x": "t10k-images-idx3-ubyte.gz",
        "test_y": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [f for f in files.values() if not (data_dir / f).is_file()]
    if missing:
        sys.exit(
            f"make_tf1_checkpoints: {data_dir} lacks {missing}; install Fashion-MNIST "
            "(apt-get install -y dataset-fashion-mnist) or pass --data-dir"
        )
    return {k: read_idx_gz(data_dir / f) for k, f in files.items()}


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(N_CLASSES, dtype=np.float32)[labels]


def as_inputs(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    return (images.astype(np.float64) / 255.0).astype(dtype)  # [B, 28, 28] in [0, 1]


# ----------------------------------------------------------------------------- the programs
def build_cell(spec: dict):
    kind = spec["type"]
    name = spec.get("name")
    if kind == "BasicRNNCell":
        return tf1.nn.rnn_cell.BasicRNNCell(spec["num_units"], name=name)
    if kind == "BasicLSTMCell":
        return tf1.nn.rnn_cell.BasicLSTMCell(
            spec["num_units"], forget_bias=spec["forget_bias"], state_is_tuple=True, name=name
        )
    if kind == "GRUCell":
        return tf1.nn.rnn_cell.GRUCell(spec["num_units"], name=name)
    if kind == "LSTMCell":
        options = ("use_peepholes", "cell_clip", "num_proj", "proj_clip", "forget_bias")
        return tf1.nn.rnn_cell.LSTMCell(
            spec["num_units"], name=name, **{k: spec[k] for k in options if k in spec}
        )
    if kind == "MultiRNNCell":
        return tf1.nn.rnn_cell.MultiRNNCell([build_cell(c) for c in spec["cells"]])
    if kind == "DropoutWrapper":
        return tf1.nn.rnn_cell.DropoutWrapper(build_cell(spec["cell"]), output_keep_prob=1.0)
    raise ValueError(f"build_cell: unknown cell type {kind!r}")


def top_h(spec: dict, final_state):
    """The final output h of the (top) cell, as the tutorial feeds it to the output layer."""
    if spec["type"] == "MultiRNNCell":
        return top_h(spec["cells"][-1], final_state[-1])
    if spec["type"] in ("BasicLSTMCell", "LSTMCell"):
        return final_state[1]  # LSTMStateTuple(c, h)
    return final_state


def hidden_units(spec: dict) -> int:
    return hidden_units(spec["cells"][-1]) if spec["type"] == "MultiRNNCell" else spec["num_units"]


def first_units(spec: dict) -> int:
    return first_units(spec["cells"][0]) if spec["type"] == "MultiRNNCell" else spec["num_units"]


def tutorial_graph(spec: dict, dtype) -> dict:
    """The tutorial's program (in the current default graph) with ``spec`` as its cell."""
    p, h = first_units(spec), hidden_units(spec)
    x = tf1.placeholder(dtype, [None, N_STEPS, N_INPUTS])
    y = tf1.placeholder(dtype, [None, N_CLASSES])
    weights = {
        "in": tf.Variable(tf1.random_normal([N_INPUTS, p], dtype=dtype)),
        "out": tf.Variable(tf1.random_normal([h, N_CLASSES], dtype=dtype)),
    }
    biases = {
        "in": tf.Variable(tf.constant(0.1, shape=[p], dtype=dtype)),
        "out": tf.Variable(tf.constant(0.1, shape=[N_CLASSES], dtype=dtype)),
    }
    x_2d = tf.reshape(x, [-1, N_INPUTS])  # [B * 28, 28]
    x_in = tf.matmul(x_2d, weights["in"]) + biases["in"]  # [B * 28, P]
    x_in = tf.reshape(x_in, [-1, N_STEPS, p])  # [B, 28, P]
    cell = build_cell(spec)
    init_state = cell.zero_state(tf.shape(x)[0], dtype)
    _, final_state = tf1.nn.dynamic_rnn(cell, x_in, initial_state=init_state, time_major=False)
    logits = tf.matmul(top_h(spec, final_state), weights["out"]) + biases["out"]  # [B, 10]
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=logits, labels=y))
    return {"x": x, "y": y, "logits": logits, "loss": loss}


def tf_name(var) -> str:
    return var.name[: -len(":0")] if var.name.endswith(":0") else var.name


def train_model(name: str, spec: dict, data: dict, out: Path, steps: int, seed: int) -> dict:
    model_dir = out / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    eval_x, eval_y = as_inputs(data["test_x"][:EVAL_N]), one_hot(data["test_y"][:EVAL_N])

    graph = tf1.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        g = tutorial_graph(spec, tf.float32)
        train_op = tf1.train.AdamOptimizer(LR).minimize(g["loss"])
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            n_train = data["train_x"].shape[0]
            for step in range(steps):
                idx = rng.choice(n_train, BATCH_SIZE, replace=False)
                feed = {
                    g["x"]: as_inputs(data["train_x"][idx]),
                    g["y"]: one_hot(data["train_y"][idx]),
                }
                _, loss = sess.run([train_op, g["loss"]], feed)
                if step % 100 == 0 or step == steps - 1:
                    print(f"  {name} step {step}: loss {loss:.4f}", flush=True)
            saver.save(sess, str(model_dir / "model.ckpt"), write_meta_graph=False)
            eval_feed = {g["x"]: eval_x, g["y"]: eval_y}
            logits, loss = sess.run([g["logits"], g["loss"]], eval_feed)
            correct = 0
            for start in range(0, data["test_x"].shape[0], 1000):
                batch = as_inputs(data["test_x"][start : start + 1000])
                pred = sess.run(g["logits"], {g["x"]: batch}).argmax(1)
                correct += int((pred == data["test_y"][start : start + 1000]).sum())
            accuracy = correct / data["test_x"].shape[0]
            trainable = {tf_name(v): sess.run(v) for v in tf1.trainable_variables()}
            variables = {tf_name(v): list(v.shape.as_list()) for v in tf1.global_variables()}
            sess.run(train_op, eval_feed)  # one more Adam step, from the saved state
            logits_after_step = sess.run(g["logits"], eval_feed)

    # The same function in float64: a float64 copy of the graph with the trained weights.
    graph64 = tf1.Graph()
    with graph64.as_default():
        g64 = tutorial_graph(spec, tf.float64)
        with tf1.Session(graph=graph64) as sess:
            sess.run(tf1.global_variables_initializer())
            for v in tf1.trainable_variables():
                v.load(trainable[tf_name(v)].astype(np.float64), sess)
            x64 = as_inputs(data["test_x"][:EVAL_N], np.float64)
            logits_f64 = sess.run(g64["logits"], {g64["x"]: x64})

    np.savez(
        model_dir / "expected.npz",
        logits=logits.astype(np.float32),
        logits_f64=logits_f64.astype(np.float64),
        logits_after_step=logits_after_step.astype(np.float32),
        loss=np.float32(loss),
    )
    (model_dir / "checkpoint").unlink(missing_ok=True)  # Saver's bookkeeping file (abs paths)
    print(f"  {name}: test accuracy {accuracy:.4f}", flush=True)
    return {
        "cell": spec,
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "learning_rate": LR,
        "seed": seed,
        "test_accuracy": accuracy,
        "eval_loss": float(loss),
        "variables": variables,
        "max_abs_logits_f32_vs_f64": float(np.abs(logits - logits_f64).max()),
    }


# ----------------------------------------------------------------------------- name cases
NAME_CASES: dict[str, dict] = {
    # user variable_scope around dynamic_rnn: encoder/rnn/gru_cell/...
    "scoped_gru": {"kind": "uni", "outer": "encoder", "cell": {"type": "GRUCell", "num_units": 6}},
    # dynamic_rnn(scope="stack") with a MultiRNNCell of mixed cells
    "multi_mixed_scope": {
        "kind": "uni",
        "scope": "stack",
        "cell": {
            "type": "MultiRNNCell",
            "cells": [
                {"type": "GRUCell", "num_units": 4},
                {"type": "BasicRNNCell", "num_units": 3},
                {"type": "BasicLSTMCell", "num_units": 5, "forget_bias": 1.0},
            ],
        },
    },
    # bidirectional_rnn/fw|bw/basic_lstm_cell/...
    "bidi_lstm": {
        "kind": "bidi",
        "cell_fw": {"type": "BasicLSTMCell", "num_units": 4, "forget_bias": 1.0},
        "cell_bw": {"type": "BasicLSTMCell", "num_units": 3, "forget_bias": 1.0},
    },
    # bidirectional under a user scope, GRU
    "bidi_gru_scoped": {
        "kind": "bidi",
        "outer": "model/encoder",
        "cell_fw": {"type": "GRUCell", "num_units": 3},
        "cell_bw": {"type": "GRUCell", "num_units": 3},
    },
    # DropoutWrapper (keep_prob 1) around an LSTM, and a named BasicRNNCell in a stack
    "dropout_named": {
        "kind": "uni",
        "cell": {
            "type": "MultiRNNCell",
            "cells": [
                {
                    "type": "DropoutWrapper",
                    "cell": {"type": "BasicLSTMCell", "num_units": 4, "forget_bias": 1.0},
                },
                {"type": "BasicRNNCell", "num_units": 3, "name": "my_rnn"},
            ],
        },
    },
}


# LSTMCell in every variant (helper "lstm"): peepholes, clipping and projection under a user
# scope, bidirectional, stacked, and the CTC speech tutorial's layout (rnn/lstm_cell/kernel
# [128, 256] next to its unnamed output-layer Variables).
LSTM_CELL_CLIPPED = {
    "type": "LSTMCell",
    "num_units": 5,
    "use_peepholes": True,
    "cell_clip": 0.3,
    "num_proj": 3,
    "proj_clip": 0.05,
}
NAME_CASES.update(
    {
        "lstm_cell_peep_proj": {"kind": "uni", "outer": "encoder", "cell": LSTM_CELL_CLIPPED},
        "bidi_lstm_cell": {
            "kind": "bidi",
            "cell_fw": {"type": "LSTMCell", "num_units": 4, "use_peepholes": True, "num_proj": 2},
            "cell_bw": {"type": "LSTMCell", "num_units": 3},
        },
        "multi_lstm_cell": {
            "kind": "uni",
            "cell": {
                "type": "MultiRNNCell",
                "cells": [
                    {"type": "LSTMCell", "num_units": 4, "num_proj": 3},
                    {"type": "LSTMCell", "num_units": 3, "use_peepholes": True},
                ],
            },
        },
        "ctc_lstm_cell": {
            "kind": "uni",
            "depth": 64,
            "cell": {"type": "LSTMCell", "num_units": 64},
            "output_layer": 29,  # W [64, 29] and b [29]: the CTC tutorial's unnamed Variables
        },
    }
)


def name_case(name: str, case: dict, out: Path, seed: int) -> dict:
    case_dir = out / "names" / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((2, 3, case.get("depth", 5))).astype(np.float32)  # [B, T, D]
    graph = tf1.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)
        x = tf.constant(inputs)
        scope = tf1.variable_scope(case["outer"]) if "outer" in case else None
        if scope is not None:
            scope.__enter__()
        if case["kind"] == "uni":
            outputs, state = tf1.nn.dynamic_rnn(
                build_cell(case["cell"]), x, dtype=tf.float32, scope=case.get("scope")
            )
            results = {"outputs": outputs}
            leaves = tf.nest.flatten(state)
            if "output_layer" in case:  # logits = outputs @ W + b, as the CTC tutorial
                shape = [outputs.shape[-1], case["output_layer"]]
                w = tf.Variable(tf1.truncated_normal(shape, stddev=0.1))
                b = tf.Variable(tf.constant(0.0, shape=[case["output_layer"]]))
                results["logits"] = tf.tensordot(outputs, w, 1) + b
        else:
            (out_fw, out_bw), (st_fw, st_bw) = tf1.nn.bidirectional_dynamic_rnn(
                build_cell(case["cell_fw"]), build_cell(case["cell_bw"]), x, dtype=tf.float32
            )
            results = {"outputs/fw": out_fw, "outputs/bw": out_bw}
            leaves = tf.nest.flatten(st_fw) + tf.nest.flatten(st_bw)
        if scope is not None:
            scope.__exit__(None, None, None)
        for k, leaf in enumerate(leaves):
            results[f"state/{k}"] = leaf
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            # Non-zero biases everywhere, so that a bias mapped to the wrong place shows.
            for v in tf1.global_variables():
                value = (rng.standard_normal(v.shape.as_list()) * 0.5).astype(np.float32)
                v.load(value, sess)
            values = sess.run(results)
            tf1.train.Saver().save(sess, str(case_dir / "model.ckpt"), write_meta_graph=False)
            variables = {tf_name(v): list(v.shape.as_list()) for v in tf1.global_variables()}
    np.savez(case_dir / "expected.npz", inputs=inputs, **values)
    (case_dir / "checkpoint").unlink(missing_ok=True)
    return {**case, "variables": variables}


# ----------------------------------------------------------------------------- dtypes
DTYPE_CASES = [
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "int8",
    "uint8",
    "int32",
    "int64",
    "bool",
]


def dtypes_case(out: Path, seed: int) -> dict:
    """One variable per dtype (plus a scalar and an empty tensor), values saved next to it."""
    case_dir = out / "dtypes"
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    values: dict[str, np.ndarray] = {}
    graph = tf1.Graph()
    with graph.as_default():
        variables = {}
        for name in DTYPE_CASES:
            dtype = tf.as_dtype(name)
            if name == "bool":
                value = rng.random((3, 4)) < 0.5
            elif dtype.is_integer:
                info = np.iinfo(name)
                value = rng.integers(info.min, info.max, size=(3, 4), endpoint=True, dtype=name)
            else:
                value = rng.standard_normal((3, 4)) * 100
            variables[f"dtypes/{name}"] = tf.Variable(tf.constant(value, dtype=dtype), name=name)
        variables["scalar"] = tf.Variable(np.float64(np.pi), name="scalar")
        variables["empty"] = tf.Variable(np.zeros((0, 3), np.float32), name="empty")
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            for v in tf1.global_variables():
                value = sess.run(v)
                if v.dtype.base_dtype == tf.bfloat16:  # numpy has no bfloat16: keep the bits
                    value = sess.run(tf.bitcast(v.value(), tf.uint16)).astype(np.uint16)
                values[tf_name(v)] = value
            tf1.train.Saver().save(sess, str(case_dir / "model.ckpt"), write_meta_graph=False)
    np.savez(case_dir / "expected.npz", **values)
    (case_dir / "checkpoint").unlink(missing_ok=True)
    return {"variables": {k: [str(v.dtype), list(v.shape)] for k, v in values.items()}}


# ----------------------------------------------------------------------------- main
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per model")
    parser.add_argument(
        "--models",
        nargs="*",
        default=list(MODELS),
        choices=list(MODELS),
        help="models to (re)train; others keep their files and MANIFEST entries",
    )
    args = parser.parse_args(argv)

    data = load_fashion_mnist(args.data_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out / "batch.npz",
        images=data["test_x"][:EVAL_N].copy(),
        labels=data["test_y"][:EVAL_N].astype(np.int64),
    )
    manifest_path = args.out / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.update(
        {
            "format": FORMAT,
            "tf_version": tf.__version__,
            "command": "python tools/make_tf1_checkpoints.py " + " ".join(argv or sys.argv[1:]),
            "dataset": "fashion_mnist",
            "eval_batch": f"the first {EVAL_N} test images, batch.npz",
        }
    )
    models = manifest.setdefault("models", {})
    for k, name in enumerate(args.models):
        print(f"training {name} ({args.steps} steps)", flush=True)
        models[name] = train_model(name, MODELS[name], data, args.out, args.steps, seed=1234 + k)
    names = manifest.setdefault("names", {})
    for k, (name, case) in enumerate(NAME_CASES.items()):
        names[name] = name_case(name, case, args.out, seed=99 + k)
    manifest["dtypes"] = dtypes_case(args.out, seed=7)
    manifest["files"] = {
        str(p.relative_to(args.out)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(args.out.rglob("*"))
        if p.is_file() and p.name != "MANIFEST.json"
    }
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(f["bytes"] for f in manifest["files"].values())
    print(f"wrote {len(manifest['files'])} files, {total / 1e6:.2f} MB, to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
