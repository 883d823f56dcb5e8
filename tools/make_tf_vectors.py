"""Generate TensorFlow-1 reference vectors for rnnflow's parity tests.

Runs real TensorFlow (the ``tf.compat.v1`` RNN cells, graph mode) on small random cases and saves
inputs, variables, outputs, final states and gradients to ``tests/fixtures/tf1/<case>.npz``. The
test suite (``tests/recurrence/test_tf_parity.py``) reads these files without TensorFlow.

Run it from a separate virtual environment that has TensorFlow (never the project's .venv):

    python3 -m venv /work/tfvenv
    /work/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0
    /work/tfvenv/bin/python tools/make_tf_vectors.py            # writes tests/fixtures/tf1/

Fixture format: one flat ``.npz`` per case (all keys are plain arrays; names use ``/``):

    meta                      0-d str array holding JSON: {"format": 1, "case", "tf_version",
                              "dtype" ("float32"|"float64"), "time_major", "bidirectional",
                              "has_sequence_length", "has_initial_state", "batch", "max_time",
                              "input_depth", "seed", and "cell" (unidirectional) or "cell_fw" and
                              "cell_bw" (bidirectional)}. A cell spec is
                              {"type": "BasicRNNCell", "num_units", "activation": "tanh"|"relu"}
                              {"type": "BasicLSTMCell", "num_units", "forget_bias",
                               "state_is_tuple", "activation": "tanh"}
                              {"type": "GRUCell", "num_units", "activation": "tanh"}
                              {"type": "MultiRNNCell", "state_is_tuple": true, "cells": [spec, ...]}
    inputs                    [B, T, D] (time_major false) or [T, B, D] (time_major true)
    sequence_length           int32 [B]                                  (if has_sequence_length)
    initial_state/<i>         tf.nest.flatten(initial_state)[i]          (if has_initial_state)
                              LSTMStateTuple -> c then h; MultiRNNCell -> cell_0's leaves then
                              cell_1's; bidirectional -> fw leaves then bw leaves.
                              state_is_tuple=False LSTM: one tensor [B, 2 * units] = concat([c, h])
    var/<tf name>             every trainable variable, name without ":0", e.g.
                              var/rnn/basic_lstm_cell/kernel, var/rnn/gru_cell/gates/bias,
                              var/rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel,
                              var/bidirectional_rnn/fw/basic_lstm_cell/kernel
    outputs                   dynamic_rnn outputs, same layout as inputs
    outputs/fw, outputs/bw    bidirectional_dynamic_rnn outputs (instead of ``outputs``)
    state/<i>                 tf.nest.flatten(final_state)[i] (bidirectional: fw then bw)
    w_out                     weights of the loss for ``outputs`` (w_out/fw, w_out/bw if bidi)
    w_state/<i>               weights of the loss for state/<i>
    grad/inputs               d loss / d inputs
    grad/var/<tf name>        d loss / d each variable
    grad/initial_state/<i>    d loss / d initial_state/<i>               (if has_initial_state)

    loss = sum(outputs * w_out) + sum_i sum(state_i * w_state_i)   (bidi: both outputs)

Variables, inputs, initial states and loss weights are drawn as ``normal * 0.5`` from a numpy
generator seeded per case (biases included, so that wrong bias handling shows) and assigned
to the TF variables after initialisation. ``defaults.json`` records TF's default initialisers
(shape, min, max, mean, std, distinct values) for each cell type, and ``MANIFEST.json`` lists
the cases (with sha256), the TF version and the command that wrote them. The ``.npz`` files and
the manifest are byte-for-byte reproducible; the ``defaults.json`` statistics are not (TF's
default initialiser draws differ between runs even with a graph seed), which does not matter
for the bounds the test checks.
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

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_eager_execution()

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "tf1"
FORMAT = 1
BATCH, MAX_TIME, DEPTH = 3, 5, 3
SEQ_LEN = [MAX_TIME, 2, 0]  # full, partial, empty


# ----------------------------------------------------------------------------- cell specs
def rnn(units: int = 4, activation: str = "tanh") -> dict:
    return {"type": "BasicRNNCell", "num_units": units, "activation": activation}


def lstm(units: int = 4, forget_bias: float = 1.0, state_is_tuple: bool = True) -> dict:
    return {
        "type": "BasicLSTMCell",
        "num_units": units,
        "forget_bias": forget_bias,
        "state_is_tuple": state_is_tuple,
        "activation": "tanh",
    }


def gru(units: int = 4) -> dict:
    return {"type": "GRUCell", "num_units": units, "activation": "tanh"}


def multi(*cells: dict) -> dict:
    return {"type": "MultiRNNCell", "state_is_tuple": True, "cells": list(cells)}


ACTIVATIONS = {"tanh": None, "relu": tf.nn.relu}  # None -> the cell's default (tanh)


def build_cell(spec: dict):
    kind = spec["type"]
    if kind in WRAPPER_TYPES:  # ResidualWrapper, DeviceWrapper, DropoutWrapper: see below
        return build_wrapper(spec)
    if kind == "BasicRNNCell":
        return tf1.nn.rnn_cell.BasicRNNCell(
            spec["num_units"], activation=ACTIVATIONS[spec["activation"]]
        )
    if kind == "BasicLSTMCell":
        return tf1.nn.rnn_cell.BasicLSTMCell(
            spec["num_units"],
            forget_bias=spec["forget_bias"],
            state_is_tuple=spec["state_is_tuple"],
        )
    if kind == "GRUCell":
        return tf1.nn.rnn_cell.GRUCell(spec["num_units"])
    if kind == "LSTMCell":
        return build_lstm_cell(spec)
    if kind == "MultiRNNCell":
        return tf1.nn.rnn_cell.MultiRNNCell(
            [build_cell(c) for c in spec["cells"]], state_is_tuple=spec["state_is_tuple"]
        )
    raise ValueError(f"build_cell: unknown cell type {kind!r}")


# ----------------------------------------------------------------------------- the case grid
def case_grid() -> list[dict]:
    """Each feature for each cell type at least once; the full grid for BasicRNN and BasicLSTM."""
    grid: list[tuple[str, dict, bool, bool, bool]] = []  # name, spec, time_major, seq, init
    flags = [(tm, sl, ini) for tm in (False, True) for sl in (False, True) for ini in (False, True)]
    for tm, sl, ini in flags:
        grid.append(("basic_rnn", rnn(4), tm, sl, ini))
        grid.append(("basic_lstm", lstm(4), tm, sl, ini))
    partial = [(False, True, True), (True, True, False), (True, False, True), (False, False, False)]
    for tm, sl, ini in partial:
        grid.append(("gru", gru(5), tm, sl, ini))
    for tm, sl, ini in partial[:2]:
        grid.append(("basic_rnn_relu", rnn(5, "relu"), tm, sl, ini))
        grid.append(("basic_lstm_fb0.5", lstm(5, forget_bias=0.5), tm, sl, ini))
        grid.append(("basic_lstm_concat", lstm(5, state_is_tuple=False), tm, sl, ini))
    for tm, sl, ini in partial[:3]:
        grid.append(("multi_lstm", multi(lstm(4), lstm(5)), tm, sl, ini))
        grid.append(("multi_gru_rnn", multi(gru(4), rnn(5)), tm, sl, ini))

    cases = []
    for name, spec, tm, sl, ini in grid:
        tag = f"{name}__{'tm' if tm else 'bm'}__{'seq' if sl else 'noseq'}__"
        tag += "init" if ini else "zero"
        cases.append({"name": tag, "cell": spec, "time_major": tm, "seq": sl, "init": ini})
    bidi = [
        ("bidi_lstm", lstm(4), lstm(5), False, True, False),
        ("bidi_lstm", lstm(4), lstm(5), True, True, True),
        ("bidi_lstm", lstm(4), lstm(4), False, False, True),
        ("bidi_gru", gru(4), gru(5), False, True, True),
        ("bidi_gru", gru(4), gru(5), True, True, False),
    ]
    for name, fw, bw, tm, sl, ini in bidi:
        tag = f"{name}__{'tm' if tm else 'bm'}__{'seq' if sl else 'noseq'}__"
        tag += "init" if ini else "zero"
        cases.append(
            {"name": tag, "cell_fw": fw, "cell_bw": bw, "time_major": tm, "seq": sl, "init": ini}
        )
    return in_both_dtypes(cases)


def in_both_dtypes(cases: list[dict]) -> list[dict]:
    """Each case in float32 then float64, named ``<case>__f32`` / ``<case>__f64``."""
    out = []
    for dtype in ("float32", "float64"):
        for c in cases:
            out.append(
                {
                    **c,
                    "name": f"{c['name']}__{'f32' if dtype == 'float32' else 'f64'}",
                    "dtype": dtype,
                }
            )
    return out


# ----------------------------------------------------------------------------- one case
def seed_for(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def tf_name(var) -> str:
    name = var.name
    return name[: -len(":0")] if name.endswith(":0") else name


def run_case(case: dict) -> tuple[dict[str, np.ndarray], dict]:
    dtype = np.dtype(case["dtype"])
    seed = seed_for(case["name"])
    rng = np.random.default_rng(seed)

    def draw(shape) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.5).astype(dtype)

    bidi = "cell_fw" in case
    tm = case["time_major"]
    shape = (MAX_TIME, BATCH, DEPTH) if tm else (BATCH, MAX_TIME, DEPTH)
    arrays: dict[str, np.ndarray] = {}

    graph = tf.Graph()
    with graph.as_default():
        x_np = draw(shape)
        arrays["inputs"] = x_np
        x = tf.constant(x_np)
        seq = None
        if case["seq"]:
            arrays["sequence_length"] = np.array(case.get("seq_values", SEQ_LEN), dtype=np.int32)
            seq = tf.constant(arrays["sequence_length"])

        cells = [build_cell(spec) for spec in case_specs(case)]
        init_structs = [None] * len(cells)
        init_leaves: list = []
        if case["init"]:
            for k, cell in enumerate(cells):
                zero = cell.zero_state(BATCH, tf.as_dtype(dtype))
                leaves = []
                for z in tf.nest.flatten(zero):
                    a = draw(tuple(z.shape.as_list()))
                    arrays[f"initial_state/{len(init_leaves) + len(leaves)}"] = a
                    leaves.append(tf.constant(a))
                init_leaves.extend(leaves)
                init_structs[k] = tf.nest.pack_sequence_as(zero, leaves)

        if case.get("driver"):
            out_list, states = run_driver(case, cells, x, seq, init_structs, tf.as_dtype(dtype))
        elif bidi:
            outs, states = tf1.nn.bidirectional_dynamic_rnn(
                cells[0],
                cells[1],
                x,
                sequence_length=seq,
                initial_state_fw=init_structs[0],
                initial_state_bw=init_structs[1],
                dtype=tf.as_dtype(dtype),
                time_major=tm,
            )
            out_list = [("outputs/fw", outs[0]), ("outputs/bw", outs[1])]
        else:
            out, states = tf1.nn.dynamic_rnn(
                cells[0],
                x,
                sequence_length=seq,
                initial_state=init_structs[0],
                dtype=tf.as_dtype(dtype),
                time_major=tm,
            )
            out_list = [("outputs", out)]
        state_leaves = tf.nest.flatten(states)

        loss = tf.constant(0, dtype=tf.as_dtype(dtype))
        for key, o in out_list:
            w = draw(tuple(o.shape.as_list()))
            arrays[key.replace("outputs", "w_out")] = w
            loss = loss + tf.reduce_sum(o * w)
        for i, s in enumerate(state_leaves):
            w = draw(tuple(s.shape.as_list()))
            arrays[f"w_state/{i}"] = w
            loss = loss + tf.reduce_sum(s * w)

        variables = sorted(tf1.trainable_variables(), key=tf_name)
        wrt = [x, *init_leaves, *variables]
        grads = tf1.gradients(loss, wrt)

        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            for v in variables:
                value = draw(tuple(v.shape.as_list()))
                arrays[f"var/{tf_name(v)}"] = value
                v.load(value, sess)
            fetched_outs, fetched_states, fetched_grads = sess.run(
                [[o for _, o in out_list], state_leaves, grads]
            )

    for (key, _), val in zip(out_list, fetched_outs, strict=True):
        arrays[key] = val
    for i, val in enumerate(fetched_states):
        arrays[f"state/{i}"] = val
    gx, *rest = fetched_grads
    arrays["grad/inputs"] = gx
    for i, g in enumerate(rest[: len(init_leaves)]):
        arrays[f"grad/initial_state/{i}"] = g
    for v, g in zip(variables, rest[len(init_leaves) :], strict=True):
        if g is None:
            raise RuntimeError(f"{case['name']}: no gradient for {tf_name(v)}")
        arrays[f"grad/var/{tf_name(v)}"] = np.asarray(g)
    for key, val in arrays.items():
        if key != "sequence_length" and val.dtype != dtype:
            raise RuntimeError(f"{case['name']}: {key} has dtype {val.dtype}, expected {dtype}")

    meta = {
        "format": FORMAT,
        "case": case["name"],
        "tf_version": tf.__version__,
        "dtype": case["dtype"],
        "time_major": tm,
        "bidirectional": bidi,
        "has_sequence_length": case["seq"],
        "has_initial_state": case["init"],
        "batch": BATCH,
        "max_time": MAX_TIME,
        "input_depth": DEPTH,
        "seed": seed,
    }
    for key in ("cell", "cell_fw", "cell_bw", "driver", "cells_fw", "cells_bw"):
        if key in case:
            meta[key] = case[key]
    check_clipping(case, arrays)
    return arrays, meta


# ----------------------------------------------------------------------------- LSTMCell and drivers
# (helper "lstm": tf.nn.rnn_cell.LSTMCell, static_rnn, static_bidirectional_rnn, raw_rnn and
# tf.contrib.rnn.stack_bidirectional_dynamic_rnn; kept in one block)
def lstm_cell(
    units: int = 4,
    *,
    peep: bool = False,
    cell_clip: float | None = None,
    proj: int | None = None,
    proj_clip: float | None = None,
    forget_bias: float = 1.0,
    state_is_tuple: bool = True,
) -> dict:
    return {
        "type": "LSTMCell",
        "num_units": units,
        "use_peepholes": peep,
        "cell_clip": cell_clip,
        "num_proj": proj,
        "proj_clip": proj_clip,
        "forget_bias": forget_bias,
        "state_is_tuple": state_is_tuple,
        "activation": "tanh",
    }


def build_lstm_cell(spec: dict):
    return tf1.nn.rnn_cell.LSTMCell(
        spec["num_units"],
        use_peepholes=spec["use_peepholes"],
        cell_clip=spec["cell_clip"],
        num_proj=spec["num_proj"],
        proj_clip=spec["proj_clip"],
        forget_bias=spec["forget_bias"],
        state_is_tuple=spec["state_is_tuple"],
    )


def case_specs(case: dict) -> list[dict]:
    """The cell specs of a case in initial-state order: one cell, fw then bw, or (stacked
    bidirectional) every forward layer then every backward layer."""
    if "cells_fw" in case:
        return [*case["cells_fw"], *case["cells_bw"]]
    if "cell_fw" in case:
        return [case["cell_fw"], case["cell_bw"]]
    return [case["cell"]]


# Clip values small enough that the inputs and variables (normal * 0.5) exceed them.
CELL_CLIP, PROJ_CLIP = 0.3, 0.05
RAW_RNN_SEQ = [4, 2, 0]  # max < MAX_TIME: raw_rnn must stop after 4 steps


def lstm_cell_grid() -> list[dict]:
    """LSTMCell in every option through dynamic_rnn, MultiRNNCell and bidirectional_dynamic_rnn,
    and the drivers (static_rnn, static_bidirectional_rnn, stack_bidirectional_dynamic_rnn,
    raw_rnn)."""
    plain = lstm_cell(4)
    peep = lstm_cell(4, peep=True)
    clip = lstm_cell(4, peep=True, cell_clip=CELL_CLIP)
    proj = lstm_cell(4, proj=3)
    everything = lstm_cell(5, peep=True, cell_clip=CELL_CLIP, proj=3, proj_clip=PROJ_CLIP)
    concat = lstm_cell(4, peep=True, proj=3, forget_bias=0.5, state_is_tuple=False)
    flags = [(tm, sl, ini) for tm in (False, True) for sl in (False, True) for ini in (False, True)]
    partial = [(False, True, True), (True, True, False), (True, False, True)]
    grid: list[dict] = []

    def add(name: str, tm: bool, sl: bool, ini: bool, **fields) -> None:
        tag = f"{name}__{'tm' if tm else 'bm'}__{'seq' if sl else 'noseq'}__"
        grid.append(
            {
                "name": tag + ("init" if ini else "zero"),
                "time_major": tm,
                "seq": sl,
                "init": ini,
                **fields,
            }
        )

    for tm, sl, ini in flags:
        add("lstm_cell", tm, sl, ini, cell=plain)
    for tm, sl, ini in partial:
        add("lstm_cell_peep", tm, sl, ini, cell=peep)
        add("lstm_cell_clip", tm, sl, ini, cell=clip)
        add("lstm_cell_proj", tm, sl, ini, cell=proj)
        add("lstm_cell_all", tm, sl, ini, cell=everything)
    for tm, sl, ini in partial[:2]:
        add("lstm_cell_concat", tm, sl, ini, cell=concat)
        add("multi_lstm_cell", tm, sl, ini, cell=multi(everything, lstm_cell(4, peep=True)))
        add("bidi_lstm_cell", tm, sl, ini, cell_fw=everything, cell_bw=lstm_cell(5, proj=2))
    # the drivers (static ones take a list of [B, D] steps: stored time-major)
    add("static_rnn_lstm_cell", True, True, True, cell=everything, driver="static_rnn")
    add("static_rnn_gru", True, False, False, cell=gru(4), driver="static_rnn")
    for sl, ini in ((True, True), (False, False)):
        add(
            "static_bidi_lstm_cell",
            True,
            sl,
            ini,
            cell_fw=everything,
            cell_bw=lstm(4),
            driver="static_bidirectional_rnn",
        )
    stack = {"cells_fw": [peep, lstm_cell(3, proj=2)], "cells_bw": [plain, gru(3)]}
    for tm, sl, ini in ((False, True, True), (True, True, False), (False, False, False)):
        add("stack_bidi", tm, sl, ini, driver="stack_bidirectional_dynamic_rnn", **stack)
    for ini in (True, False):
        add(
            "raw_rnn_lstm_cell",
            True,
            True,
            ini,
            cell=everything,
            driver="raw_rnn",
            seq_values=RAW_RNN_SEQ,
        )
    return in_both_dtypes(grid)


def run_driver(case: dict, cells: list, x, seq, init_structs: list, dtype):
    """Run ``case['driver']`` in TF; returns ([(fixture key, output tensor)], final states)."""
    driver = case["driver"]
    if driver in ("static_rnn", "static_bidirectional_rnn", "raw_rnn") and not case["time_major"]:
        raise ValueError(f"{case['name']}: {driver} cases store their inputs time-major")
    if driver == "static_rnn":
        outs, state = tf1.nn.static_rnn(
            cells[0],
            tf.unstack(x),
            initial_state=init_structs[0],
            dtype=dtype,
            sequence_length=seq,
        )
        return [("outputs", tf.stack(outs))], state
    if driver == "static_bidirectional_rnn":
        outs, state_fw, state_bw = tf1.nn.static_bidirectional_rnn(
            cells[0],
            cells[1],
            tf.unstack(x),
            initial_state_fw=init_structs[0],
            initial_state_bw=init_structs[1],
            dtype=dtype,
            sequence_length=seq,
        )
        return [("outputs", tf.stack(outs))], (state_fw, state_bw)
    if driver == "stack_bidirectional_dynamic_rnn":
        # tf.contrib.rnn.stack_bidirectional_dynamic_rnn (r1.15 contrib/rnn/python/ops/rnn.py),
        # which TF 2 no longer ships, transcribed line for line with the same variable scopes.
        n = len(case["cells_fw"])
        prev, states_fw, states_bw = x, [], []
        with tf1.variable_scope("stack_bidirectional_rnn"):
            for i in range(n):
                with tf1.variable_scope(f"cell_{i}"):
                    (out_fw, out_bw), (s_fw, s_bw) = tf1.nn.bidirectional_dynamic_rnn(
                        cells[i],
                        cells[n + i],
                        prev,
                        initial_state_fw=init_structs[i],
                        initial_state_bw=init_structs[n + i],
                        sequence_length=seq,
                        dtype=dtype,
                        time_major=case["time_major"],
                    )
                    prev = tf.concat([out_fw, out_bw], 2)
                states_fw.append(s_fw)
                states_bw.append(s_bw)
        return [("outputs", prev)], (tuple(states_fw), tuple(states_bw))
    if driver == "raw_rnn":
        # tf.nn.raw_rnn's documented example: dynamic_rnn written with a loop_fn.
        cell = cells[0]
        max_time, batch, depth = x.shape.as_list()
        inputs_ta = tf.TensorArray(dtype=dtype, size=max_time).unstack(x)
        first_state = init_structs[0] or cell.zero_state(batch, dtype)

        def loop_fn(time, cell_output, cell_state, loop_state):
            next_state = first_state if cell_output is None else cell_state
            elements_finished = time >= seq
            next_input = tf.cond(
                tf.reduce_all(elements_finished),
                lambda: tf.zeros([batch, depth], dtype=dtype),
                lambda: inputs_ta.read(time),
            )
            return elements_finished, next_input, next_state, cell_output, None

        emit_ta, state, _ = tf1.nn.raw_rnn(cell, loop_fn)
        emitted = emit_ta.stack()
        emitted.set_shape([max(case["seq_values"]), batch, cell.output_size])
        return [("outputs", emitted)], state
    raise ValueError(f"run_driver: unknown driver {driver!r}")


def check_clipping(case: dict, arrays: dict) -> None:
    """A clip case must actually clip: some TF output or state sits exactly on each bound
    (a MultiRNNCell's lower projections show in the state only)."""
    specs = [spec for s in case_specs(case) for spec in (s.get("cells") or [s])]
    bounds = {s[key] for s in specs for key in ("cell_clip", "proj_clip") if s.get(key)}
    values = np.concatenate(
        [np.abs(v).ravel() for k, v in arrays.items() if k.startswith(("state/", "outputs"))]
    )
    for bound in sorted(bounds):
        if not np.any(values == np.asarray(bound, dtype=values.dtype)):
            raise RuntimeError(f"{case['name']}: the clip value {bound} never clips")


# ----------------------------------------------------------------------------- default initialisers
def default_initialisers(input_depth: int = 20, units: int = 30) -> dict:
    """Statistics of TF's default-initialised variables for each cell type (float32)."""
    result = {"input_depth": input_depth, "num_units": units, "cells": {}}
    for spec in (rnn(units), lstm(units), gru(units), lstm_cell(units, peep=True, proj=20)):
        graph = tf.Graph()
        with graph.as_default():
            tf1.set_random_seed(0)
            cell = build_cell(spec)
            x = tf1.placeholder(tf.float32, [2, 3, input_depth])
            tf1.nn.dynamic_rnn(cell, x, dtype=tf.float32)
            variables = sorted(tf1.trainable_variables(), key=tf_name)
            with tf1.Session(graph=graph) as sess:
                sess.run(tf1.global_variables_initializer())
                values = sess.run(variables)
        stats = {}
        for v, a in zip(variables, values, strict=True):
            distinct = np.unique(a)
            stats[tf_name(v)] = {
                "shape": list(a.shape),
                "min": float(a.min()),
                "max": float(a.max()),
                "mean": float(a.mean()),
                "std": float(a.std()),
                "distinct_values": [float(d) for d in distinct] if distinct.size <= 4 else None,
            }
            if a.ndim == 2:  # glorot-uniform limit: sqrt(6 / (fan_in + fan_out))
                stats[tf_name(v)]["glorot_uniform_limit"] = float(np.sqrt(6.0 / sum(a.shape)))
            elif distinct.size > 4:  # a vector [n] (peepholes): fan_in = fan_out = n
                stats[tf_name(v)]["glorot_uniform_limit"] = float(np.sqrt(3.0 / a.shape[0]))
        result["cells"][spec["type"]] = {"spec": spec, "variables": stats}
    return result


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    manifest = {
        "format": FORMAT,
        "tf_version": tf.__version__,
        "tf_keras_version": _tf_keras_version(),
        "numpy_version": np.__version__,
        "command": "TF_USE_LEGACY_KERAS=1 python tools/make_tf_vectors.py",
        "cases": [],
    }
    for case in case_grid() + lstm_cell_grid():
        arrays, meta = run_case(case)
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        path = args.out / f"{case['name']}.npz"
        np.savez_compressed(path, **arrays)
        manifest["cases"].append({"file": path.name, "sha256": _sha256(path), **_summary(meta)})
        print(f"{path.name}: {path.stat().st_size} bytes", file=sys.stderr)

    (args.out / "defaults.json").write_text(json.dumps(default_initialisers(), indent=1) + "\n")
    write_wrapper_vectors(args.out.parent / "tf1_wrappers")
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"{len(manifest['cases'])} cases, {total} bytes in {args.out}", file=sys.stderr)
    return 0


def _summary(meta: dict) -> dict:
    keys = ("dtype", "time_major", "bidirectional", "has_sequence_length", "has_initial_state")
    return {k: meta[k] for k in keys}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tf_keras_version() -> str:
    import tf_keras

    return tf_keras.__version__


# ----------------------------------------------------------------------------- cell wrappers
# ResidualWrapper / DeviceWrapper / DropoutWrapper cases, read by tests/cells/test_wrappers_tf.py
# (not by test_tf_parity.py): their own directory tests/fixtures/tf1_wrappers/ and MANIFEST.json,
# the same .npz format. Extra cell specs:
#   {"type": "ResidualWrapper", "cell": spec}                      default residual_fn (x + y)
#   {"type": "DeviceWrapper", "cell": spec, "device": "/cpu:0"}
#   {"type": "DropoutWrapper", "cell": spec}                       every keep_prob 1.0
WRAPPER_TYPES = ("ResidualWrapper", "DeviceWrapper", "DropoutWrapper")


def residual(cell: dict) -> dict:
    return {"type": "ResidualWrapper", "cell": cell}


def on_device(cell: dict, device: str = "/cpu:0") -> dict:
    return {"type": "DeviceWrapper", "cell": cell, "device": device}


def keep_all(cell: dict) -> dict:
    return {"type": "DropoutWrapper", "cell": cell}


def build_wrapper(spec: dict):
    inner = build_cell(spec["cell"])
    if spec["type"] == "ResidualWrapper":
        return tf1.nn.rnn_cell.ResidualWrapper(inner)
    if spec["type"] == "DeviceWrapper":
        return tf1.nn.rnn_cell.DeviceWrapper(inner, spec["device"])
    return tf1.nn.rnn_cell.DropoutWrapper(inner)


def wrapper_case_grid() -> list[dict]:
    """Residual cells have num_units == DEPTH (TF's default residual_fn needs equal shapes)."""
    single = [
        ("residual_gru", residual(gru(DEPTH)), False, True, True),
        ("residual_lstm", residual(lstm(DEPTH)), True, True, False),
        ("device_rnn", on_device(rnn(4)), False, True, True),
        ("device_residual_rnn", on_device(residual(rnn(DEPTH))), True, False, True),
        ("dropout_residual_gru", keep_all(residual(gru(DEPTH))), False, False, False),
        (
            "multi_wrapped",
            multi(gru(DEPTH), residual(lstm(DEPTH)), on_device(residual(rnn(DEPTH)))),
            False,
            True,
            True,
        ),
    ]
    cases = []
    for name, spec, tm, sl, ini in single:
        tag = f"{name}__{'tm' if tm else 'bm'}__{'seq' if sl else 'noseq'}__"
        tag += "init" if ini else "zero"
        cases.append({"name": tag, "cell": spec, "time_major": tm, "seq": sl, "init": ini})
    fw, bw = residual(lstm(DEPTH)), on_device(gru(4))
    cases.append(
        {"name": "bidi_wrapped__tm__seq__init", "cell_fw": fw, "cell_bw": bw, "time_major": True}
        | {"seq": True, "init": True}
    )
    return [
        {**c, "name": f"{c['name']}__{'f32' if d == 'float32' else 'f64'}", "dtype": d}
        for d in ("float32", "float64")
        for c in cases
    ]


def write_wrapper_vectors(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT,
        "tf_version": tf.__version__,
        "tf_keras_version": _tf_keras_version(),
        "numpy_version": np.__version__,
        "command": "TF_USE_LEGACY_KERAS=1 python tools/make_tf_vectors.py",
        "cases": [],
    }
    for case in wrapper_case_grid():
        arrays, meta = run_case(case)
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        path = out / f"{case['name']}.npz"
        np.savez_compressed(path, **arrays)
        manifest["cases"].append({"file": path.name, "sha256": _sha256(path), **_summary(meta)})
        print(f"{path.name}: {path.stat().st_size} bytes", file=sys.stderr)
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
