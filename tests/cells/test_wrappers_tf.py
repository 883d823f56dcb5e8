"""ResidualWrapper, DeviceWrapper (and DropoutWrapper around them) == TensorFlow 1.

The vectors in ``tests/fixtures/tf1_wrappers/`` were written by real TensorFlow 2.21
(``tf.compat.v1.nn.rnn_cell`` wrappers, graph mode) with ``tools/make_tf_vectors.py``
(``write_wrapper_vectors``; the format is ``tests/fixtures/tf1/README.md``'s). Each case's cells
are rebuilt here, TF's variables are copied in through ``rnnflow.interop.tf1_names`` (so the
wrappers' TF naming is checked too), and outputs, final states and the gradients of the recorded
loss w.r.t. inputs, initial state and every variable are compared: 1e-5 in float32, 1e-10 in
float64.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
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
    _nest,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
)
from rnnflow.interop.tf1_names import cell_tf_names

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tf1_wrappers"
CASES = sorted(FIXTURES.glob("*.npz"))
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def build(spec: dict, input_size: int, dtype: torch.dtype) -> Any:
    kind = spec["type"]
    if kind == "ResidualWrapper":
        return ResidualWrapper(build(spec["cell"], input_size, dtype))
    if kind == "DeviceWrapper":
        return DeviceWrapper(build(spec["cell"], input_size, dtype), spec["device"])
    if kind == "DropoutWrapper":
        return DropoutWrapper(build(spec["cell"], input_size, dtype))
    if kind == "MultiRNNCell":
        cells = []
        for sub in spec["cells"]:
            cells.append(build(sub, input_size, dtype))
            input_size = cells[-1].output_size
        return MultiRNNCell(cells)
    common = dict(input_size=input_size, dtype=dtype)
    if kind == "BasicRNNCell":
        return BasicRNNCell(spec["num_units"], **common)
    if kind == "BasicLSTMCell":
        return BasicLSTMCell(spec["num_units"], forget_bias=spec["forget_bias"], **common)
    assert kind == "GRUCell", kind
    return GRUCell(spec["num_units"], **common)


def run(path: Path, impl: str) -> list[tuple[str, torch.Tensor, np.ndarray]]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    dtype = getattr(torch, meta["dtype"])
    bidi = meta["bidirectional"]
    scopes = {"bidirectional_rnn/fw": "cell_fw", "bidirectional_rnn/bw": "cell_bw"}
    specs = {s: meta[key] for s, key in scopes.items()} if bidi else {"rnn": meta["cell"]}
    cells = {s: build(spec, meta["input_depth"], dtype) for s, spec in specs.items()}
    variables: dict[str, torch.Tensor] = {}
    for scope, cell in cells.items():
        params = dict(cell.named_parameters())
        for name, tf_name in cell_tf_names(cell, scope).items():
            with torch.no_grad():
                params[name].copy_(torch.from_numpy(arrays[f"var/{tf_name}"]))
            variables[tf_name] = params[name]
    assert sorted(variables) == sorted(k[4:] for k in arrays if k.startswith("var/"))

    x = torch.tensor(arrays["inputs"], requires_grad=True)
    seq = torch.from_numpy(arrays["sequence_length"]) if meta["has_sequence_length"] else None
    n_init = sum(1 for k in arrays if k.startswith("initial_state/"))
    init_leaves = [
        torch.tensor(arrays[f"initial_state/{i}"], requires_grad=True) for i in range(n_init)
    ]
    init = {s: None for s in cells}
    if n_init:
        leaves = iter(init_leaves)
        for s, cell in cells.items():
            zero = cell.zero_state(meta["batch"], dtype)
            init[s] = _nest.pack_sequence_as(zero, [next(leaves) for _ in _nest.flatten(zero)])
    common = dict(sequence_length=seq, time_major=meta["time_major"], impl=impl, dtype=dtype)
    if bidi:
        (fw, bw), (init_fw, init_bw) = cells.values(), init.values()
        outs, states = bidirectional_dynamic_rnn(
            fw, bw, x, initial_state_fw=init_fw, initial_state_bw=init_bw, **common
        )
        outputs = {"outputs/fw": outs[0], "outputs/bw": outs[1]}
    else:
        out, states = dynamic_rnn(cells["rnn"], x, initial_state=init["rnn"], **common)
        outputs = {"outputs": out}
    state = _nest.flatten(states)

    loss = sum(
        (o * torch.from_numpy(arrays[k.replace("outputs", "w_out")])).sum()
        for k, o in outputs.items()
    )
    loss = loss + sum(
        (s * torch.from_numpy(arrays[f"w_state/{i}"])).sum() for i, s in enumerate(state)
    )
    wrt = [x, *init_leaves, *variables.values()]
    grads = torch.autograd.grad(loss, wrt)
    got = [(k, o, arrays[k]) for k, o in outputs.items()]
    got += [(f"state/{i}", s, arrays[f"state/{i}"]) for i, s in enumerate(state)]
    got.append(("grad/inputs", grads[0], arrays["grad/inputs"]))
    got += [
        (f"grad/initial_state/{i}", g, arrays[f"grad/initial_state/{i}"])
        for i, g in enumerate(grads[1 : 1 + n_init])
    ]
    got += [
        (f"grad/var/{n}", g, arrays[f"grad/var/{n}"])
        for n, g in zip(variables, grads[1 + n_init :], strict=True)
    ]
    return got


def test_fixtures_match_their_manifest():
    manifest = json.loads((FIXTURES / "MANIFEST.json").read_text())
    listed = {c["file"]: c["sha256"] for c in manifest["cases"]}
    assert sorted(listed) == [p.name for p in CASES] and len(CASES) == 14
    for path in CASES:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[path.name], path.name


@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_wrappers_match_tensorflow(path: Path, impl: str):
    got = run(path, impl)
    for key, actual, expected in got:
        tol = TOLERANCE[actual.dtype]
        torch.testing.assert_close(
            actual.detach(),
            torch.from_numpy(expected),
            atol=tol,
            rtol=tol,
            msg=lambda m, key=key: f"{path.stem} [{impl}] {key}: {m}",
        )


def test_lstm_state_tuples_survive_the_wrappers():
    cell = DeviceWrapper(ResidualWrapper(BasicLSTMCell(3, input_size=3)), "/cpu:0")
    assert isinstance(cell.zero_state(2), LSTMStateTuple)
