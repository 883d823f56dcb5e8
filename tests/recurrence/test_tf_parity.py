"""rnnflow == TensorFlow 1: outputs, final state and every gradient, against recorded TF vectors.

The vectors in ``tests/fixtures/tf1/`` were written by real TensorFlow
(``tools/make_tf_vectors.py``; the format is in that directory's README). This module needs no
TensorFlow: it rebuilds each case's cells from ``meta``, copies TF's variables into them by name,
runs ``dynamic_rnn`` / ``bidirectional_dynamic_rnn`` and compares outputs, final state, and the
gradients of the recorded loss w.r.t. inputs, initial state and every parameter: atol = rtol = 1e-5
in float32, 1e-10 in float64. Each case runs with ``impl="reference"`` and, when the fast path can
take it, ``impl="fused"``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from rnnflow import (
    BasicLSTMCell,
    BasicRNNCell,
    GRUCell,
    LSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
    raw_rnn,
    stack_bidirectional_dynamic_rnn,
    static_bidirectional_rnn,
    static_rnn,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tf1"
CASES = sorted(FIXTURES.glob("*.npz"))
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
ACTIVATIONS = {"tanh": None, "relu": torch.relu}  # None: the cell's default, TF's tanh
CELL_SCOPES = {
    "basic_rnn_cell",
    "basic_lstm_cell",
    "gru_cell",
    "lstm_cell",
}  # TF scopes with no rnnflow module


# ----------------------------------------------------------------------------- helpers
def load_case(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def build_cell(spec: dict, input_size: int, dtype: torch.dtype) -> torch.nn.Module:
    """A built rnnflow cell from a fixture's cell spec."""
    kind = spec["type"]
    if kind == "BasicRNNCell":
        act = ACTIVATIONS[spec["activation"]]
        return BasicRNNCell(spec["num_units"], activation=act, input_size=input_size, dtype=dtype)
    if kind == "BasicLSTMCell":
        return BasicLSTMCell(
            spec["num_units"],
            forget_bias=spec["forget_bias"],
            state_is_tuple=spec["state_is_tuple"],
            input_size=input_size,
            dtype=dtype,
        )
    if kind == "GRUCell":
        return GRUCell(spec["num_units"], input_size=input_size, dtype=dtype)
    if kind == "LSTMCell":
        options = ("use_peepholes", "cell_clip", "num_proj", "proj_clip", "forget_bias")
        return LSTMCell(
            spec["num_units"],
            state_is_tuple=spec["state_is_tuple"],
            input_size=input_size,
            dtype=dtype,
            **{k: spec[k] for k in options},
        )
    if kind == "MultiRNNCell":
        cells = []
        for sub in spec["cells"]:
            cells.append(build_cell(sub, input_size, dtype))
            input_size = cells[-1].output_size
        return MultiRNNCell(cells, state_is_tuple=spec["state_is_tuple"])
    raise ValueError(f"build_cell: unknown cell type {kind!r}")


def tf_to_param(tf_name: str) -> tuple[str | None, str]:
    """A TF variable name -> (direction, rnnflow parameter name).

    ``rnn/basic_lstm_cell/kernel``                      -> (None, "kernel")
    ``rnn/multi_rnn_cell/cell_1/gru_cell/gates/bias``   -> (None, "cell_1.gates.bias")
    ``bidirectional_rnn/bw/gru_cell/candidate/kernel``  -> ("bw", "candidate.kernel")
    ``stack_bidirectional_rnn/cell_1/bidirectional_rnn/fw/lstm_cell/projection/kernel``
                                                        -> ("fw1", "projection.kernel")
    """
    parts = tf_name.split("/")
    layer = ""
    if parts[0] == "stack_bidirectional_rnn" and parts[1].startswith("cell_"):
        layer, parts = parts[1][len("cell_") :], parts[2:]
    if parts[0] == "rnn":
        direction, rest = None, parts[1:]
    elif parts[0] == "bidirectional_rnn" and parts[1] in ("fw", "bw"):
        direction, rest = parts[1] + layer, parts[2:]
    else:
        raise ValueError(f"tf_to_param: unexpected TF variable name {tf_name!r}")
    if rest[0] == "multi_rnn_cell":
        rest = rest[1:]
    return direction, ".".join(p for p in rest if p not in CELL_SCOPES)


def flatten(state: Any) -> list[Tensor]:
    """Nested tuples / NamedTuples -> leaves, in tf.nest.flatten order."""
    if isinstance(state, (tuple, list)):
        return [leaf for part in state for leaf in flatten(part)]
    return [state]


def pack(spec: dict, leaves: Iterator[Tensor]) -> Any:
    """Flat leaves -> the state structure of a cell spec (the inverse of ``flatten``)."""
    if spec["type"] == "MultiRNNCell":
        return tuple(pack(sub, leaves) for sub in spec["cells"])
    if spec["type"] in ("BasicLSTMCell", "LSTMCell") and spec["state_is_tuple"]:
        return LSTMStateTuple(next(leaves), next(leaves))
    return next(leaves)


def load_variables(cells: dict[str | None, torch.nn.Module], arrays: dict) -> dict[str, Tensor]:
    """Copy every ``var/<tf name>`` into its cell; return {tf name: parameter}."""
    params = {d: dict(c.named_parameters()) for d, c in cells.items()}
    found: dict[str, Tensor] = {}
    for key, value in arrays.items():
        if not key.startswith("var/"):
            continue
        name = key[len("var/") :]
        direction, param_name = tf_to_param(name)
        if param_name not in params[direction]:
            raise KeyError(f"{name} -> {param_name!r}: not in {sorted(params[direction])}")
        param = params[direction][param_name]
        if tuple(param.shape) != value.shape:
            raise ValueError(f"{name}: TF shape {value.shape}, rnnflow {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(torch.from_numpy(value))
        found[name] = param
    unmatched = {(d, n) for d, p in params.items() for n in p} - {tf_to_param(n) for n in found}
    if unmatched:
        raise KeyError(f"rnnflow parameters with no TF variable: {sorted(unmatched, key=str)}")
    return found


def fused_unavailable(cells: list[torch.nn.Module], inputs: Tensor) -> str | None:
    """Why impl='fused' cannot run this case, or None if it can."""
    try:
        from rnnflow.recurrence.fused import fusable
    except ImportError as e:
        return f"rnnflow.recurrence.fused is not importable ({e})"
    for cell in cells:
        ok, reason = fusable(cell, inputs)
        if not ok:
            return f"fusable() is false for {type(cell).__name__}: {reason}"
    return None


def run_case(path: Path, impl: str) -> dict[str, tuple[Tensor, np.ndarray]]:
    """Run one fixture through rnnflow; return {fixture key: (rnnflow value, TF value)}.

    Skips when ``impl="fused"`` cannot take the case.
    """
    meta, arrays = load_case(path)
    dtype = getattr(torch, meta["dtype"])
    bidi = meta["bidirectional"]
    driver = meta.get("driver", "dynamic_rnn")
    if "cells_fw" in meta:  # stack_bidirectional_dynamic_rnn: fw layers, then bw layers
        specs = {f"{d}{k}": s for d in ("fw", "bw") for k, s in enumerate(meta[f"cells_{d}"])}
    elif bidi:
        specs = {"fw": meta["cell_fw"], "bw": meta["cell_bw"]}
    else:
        specs = {None: meta["cell"]}
    cells = {}
    # A stacked layer k > 0 reads layer k-1's concatenated outputs: build layer by layer.
    for d in sorted(specs, key=lambda d: (d or "")[2:]):
        depth = meta["input_depth"]
        if d and d[2:] not in ("", "0"):
            depth = sum(cells[f"{e}{int(d[2:]) - 1}"].output_size for e in ("fw", "bw"))
        cells[d] = build_cell(specs[d], depth, dtype)
    variables = load_variables(cells, arrays)

    x = torch.tensor(arrays["inputs"], requires_grad=True)
    if impl == "fused":
        reason = fused_unavailable(list(cells.values()), x)
        if reason is not None:
            pytest.skip(reason)
    seq = None
    if meta["has_sequence_length"]:
        seq = torch.from_numpy(arrays["sequence_length"])
    init_leaves: list[Tensor] = []
    init = {d: None for d in specs}
    if meta["has_initial_state"]:
        n = sum(1 for k in arrays if k.startswith("initial_state/"))
        init_leaves = [
            torch.tensor(arrays[f"initial_state/{i}"], requires_grad=True) for i in range(n)
        ]
        leaves = iter(init_leaves)
        init = {d: pack(s, leaves) for d, s in specs.items()}
        assert next(leaves, None) is None, "initial_state leaves left over"

    common = dict(sequence_length=seq, time_major=meta["time_major"], impl=impl)
    if not meta["has_initial_state"]:
        common["dtype"] = dtype
    if driver != "dynamic_rnn":
        outputs, state = run_driver(driver, cells, x, seq, init, common)
    elif bidi:
        (out_fw, out_bw), (st_fw, st_bw) = bidirectional_dynamic_rnn(
            cells["fw"],
            cells["bw"],
            x,
            initial_state_fw=init["fw"],
            initial_state_bw=init["bw"],
            **common,
        )
        outputs = {"outputs/fw": out_fw, "outputs/bw": out_bw}
        state = flatten((st_fw, st_bw))
    else:
        out, st = dynamic_rnn(cells[None], x, initial_state=init[None], **common)
        outputs = {"outputs": out}
        state = flatten(st)

    n_state = sum(1 for k in arrays if k.startswith("state/"))
    assert len(state) == n_state, f"final state has {len(state)} leaves, TF has {n_state}"
    loss = torch.zeros((), dtype=dtype)
    for key, o in outputs.items():
        loss = loss + (o * torch.from_numpy(arrays[key.replace("outputs", "w_out")])).sum()
    for i, s in enumerate(state):
        loss = loss + (s * torch.from_numpy(arrays[f"w_state/{i}"])).sum()
    wrt = [x, *init_leaves, *variables.values()]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads, strict=True)]

    got: dict[str, tuple[Tensor, np.ndarray]] = {}
    for key, o in outputs.items():
        got[key] = (o, arrays[key])
    for i, s in enumerate(state):
        got[f"state/{i}"] = (s, arrays[f"state/{i}"])
    got["grad/inputs"] = (grads[0], arrays["grad/inputs"])
    for i, g in enumerate(grads[1 : 1 + len(init_leaves)]):
        got[f"grad/initial_state/{i}"] = (g, arrays[f"grad/initial_state/{i}"])
    for name, g in zip(variables, grads[1 + len(init_leaves) :], strict=True):
        got[f"grad/var/{name}"] = (g, arrays[f"grad/var/{name}"])
    return got


def run_driver(
    driver: str, cells: dict, x: Tensor, seq: Tensor | None, init: dict, common: dict
) -> tuple[dict[str, Tensor], list[Tensor]]:
    """The drivers other than dynamic_rnn/bidirectional_dynamic_rnn, as the generator ran them
    in TF (static and raw_rnn cases are time-major): (outputs by fixture key, state leaves)."""
    impl, dtype = common["impl"], common.get("dtype")
    if driver == "static_rnn":
        outs, st = static_rnn(cells[None], list(x.unbind(0)), init[None], dtype, seq, impl=impl)
        return {"outputs": torch.stack(outs)}, flatten(st)
    if driver == "static_bidirectional_rnn":
        outs, st_fw, st_bw = static_bidirectional_rnn(
            cells["fw"],
            cells["bw"],
            list(x.unbind(0)),
            init["fw"],
            init["bw"],
            dtype,
            seq,
            impl=impl,
        )
        return {"outputs": torch.stack(outs)}, flatten((st_fw, st_bw))
    if driver == "stack_bidirectional_dynamic_rnn":
        layers = len(cells) // 2
        fw = [cells[f"fw{k}"] for k in range(layers)]
        bw = [cells[f"bw{k}"] for k in range(layers)]
        given = init["fw0"] is not None
        out, st_fw, st_bw = stack_bidirectional_dynamic_rnn(
            fw,
            bw,
            x,
            [init[f"fw{k}"] for k in range(layers)] if given else None,
            [init[f"bw{k}"] for k in range(layers)] if given else None,
            **common,
        )
        return {"outputs": out}, flatten((st_fw, st_bw))
    if driver == "raw_rnn":  # tf.nn.raw_rnn's documented dynamic_rnn example, as generated
        cell = cells[None]
        max_time, batch, depth = x.shape
        first = init[None] if init[None] is not None else cell.zero_state(batch, x.dtype)

        def loop_fn(time, cell_output, cell_state, loop_state):
            next_state = first if cell_output is None else cell_state
            finished = time >= seq
            next_input = x.new_zeros(batch, depth) if bool(finished.all()) else x[time]
            return finished, next_input, next_state, cell_output, None

        emitted, st, loop_state = raw_rnn(cell, loop_fn)
        assert loop_state is None
        return {"outputs": emitted}, flatten(st)
    raise ValueError(f"run_driver: unknown driver {driver!r}")


# ----------------------------------------------------------------------------- tests
def test_fixtures_are_present_and_match_the_manifest():
    manifest = json.loads((FIXTURES / "MANIFEST.json").read_text())
    listed = {c["file"]: c["sha256"] for c in manifest["cases"]}
    assert sorted(listed) == [p.name for p in CASES]
    for path in CASES:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == listed[path.name], (
            f"{path.name}: sha256 {digest}, manifest {listed[path.name]}"
        )


# raw_rnn calls the cell step by step (it has no impl= and no fused path): reference only.
PARITY = [
    pytest.param(path, impl, id=f"{path.stem}-{impl}")
    for path in CASES
    for impl in ("reference", "fused")
    if not (impl == "fused" and path.name.startswith("raw_rnn"))
]


@pytest.mark.parametrize(("path", "impl"), PARITY)
def test_matches_tensorflow(path: Path, impl: str):
    torch.manual_seed(0)
    got = run_case(path, impl)
    dtype = next(iter(got.values()))[0].dtype
    tol = TOLERANCE[dtype]
    for key, (actual, expected) in got.items():
        torch.testing.assert_close(
            actual.detach(),
            torch.from_numpy(expected),
            atol=tol,
            rtol=tol,
            msg=lambda m, key=key: f"{path.stem} [{impl}] {key}: {m}",
        )


DEFAULTS = json.loads((FIXTURES / "defaults.json").read_text())


@pytest.mark.parametrize("cell_type", sorted(DEFAULTS["cells"]))
def test_default_initialisers_match_tensorflow(cell_type: str):
    """Kernels: glorot-uniform over the whole stacked kernel. Biases: TF's constants."""
    torch.manual_seed(0)
    recorded = DEFAULTS["cells"][cell_type]["variables"]
    spec = DEFAULTS["cells"][cell_type]["spec"]
    cell = build_cell(spec, DEFAULTS["input_depth"], torch.float32)
    params = dict(cell.named_parameters())
    assert sorted(params) == sorted(tf_to_param(n)[1] for n in recorded)
    for tf_name, stats in recorded.items():
        p = params[tf_to_param(tf_name)[1]].detach()
        assert list(p.shape) == stats["shape"], tf_name
        if stats["distinct_values"] is not None:  # a constant initialiser
            assert torch.unique(p).tolist() == stats["distinct_values"], tf_name
            continue
        limit = stats["glorot_uniform_limit"]
        assert stats["max"] <= limit and stats["min"] >= -limit  # the fixture agrees with itself
        assert p.abs().max().item() <= limit, tf_name
        if p.numel() < 1000:  # a peephole vector [H]: too few draws for the statistics
            continue
        assert p.abs().max().item() > 0.95 * limit, tf_name  # thousands of draws reach the edge
        assert abs(p.std().item() - limit / 3**0.5) < 0.05 * limit, tf_name  # U(-l, l): l/sqrt(3)
        assert abs(p.mean().item()) < 0.05 * limit, tf_name
