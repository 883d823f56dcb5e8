"""The tf.contrib cells == TensorFlow: outputs, final state and every gradient.

The vectors in ``tests/fixtures/tf1_contrib/`` were written by ``tools/make_tf_contrib_vectors.py``
with TensorFlow 2.21 (its README says which oracle each case used: TF's LSTMBlockCell /
GRUBlockCell / BlockLSTM kernels, their equations in TF ops in float64, or the r1.15 cell code
in TF ops). Variables are copied in through :func:`rnnflow.interop.tf1_names.cell_tf_names`, so
these tests also check that rnnflow names every parameter as TensorFlow does.
Tolerance: atol = rtol = 1e-5 in float32, 1e-10 in float64.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from rnnflow import (
    CudnnCompatibleGRUCell,
    CudnnCompatibleLSTMCell,
    DropoutWrapper,
    GRUBlockCell,
    GRUBlockCellV2,
    LayerNormBasicLSTMCell,
    LSTMBlockCell,
    LSTMBlockFusedCell,
    LSTMStateTuple,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
)
from rnnflow.interop.tf1_names import cell_tf_names
from rnnflow.recurrence.fused import fusable

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tf1_contrib"
CASES = sorted(FIXTURES.glob("*.npz"))
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def load_case(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def build_cell(
    spec: dict, input_size: int, dtype: torch.dtype, *, drop_clip: bool = False
) -> torch.nn.Module:
    """A built rnnflow cell for a fixture spec (``drop_clip``: every cell_clip set to None)."""
    kind, units = spec["type"], spec.get("num_units")
    common = dict(input_size=input_size, dtype=dtype)
    if kind in ("LSTMBlockCell", "LSTMBlockFusedCell"):
        cls = LSTMBlockCell if kind == "LSTMBlockCell" else LSTMBlockFusedCell
        return cls(
            units,
            forget_bias=spec["forget_bias"],
            cell_clip=None if drop_clip else spec["cell_clip"],
            use_peephole=spec["use_peephole"],
            **common,
        )
    if kind == "GRUBlockCellV2":
        return GRUBlockCellV2(units, **common)
    if kind == "GRUBlockCell":
        return GRUBlockCell(units, **common)
    if kind == "LayerNormBasicLSTMCell":
        return LayerNormBasicLSTMCell(
            units, forget_bias=spec["forget_bias"], layer_norm=spec["layer_norm"], **common
        )
    if kind == "CudnnCompatibleLSTMCell":
        return CudnnCompatibleLSTMCell(units, **common)
    if kind == "CudnnCompatibleGRUCell":
        return CudnnCompatibleGRUCell(units, **common)
    if kind == "MultiRNNCell":
        cells = []
        for sub in spec["cells"]:
            cells.append(build_cell(sub, input_size, dtype, drop_clip=drop_clip))
            input_size = sub["num_units"]
        return MultiRNNCell(cells)
    raise ValueError(f"build_cell: unknown cell type {kind!r}")


def flatten(state: Any) -> list[Tensor]:
    if isinstance(state, (tuple, list)):
        return [leaf for part in state for leaf in flatten(part)]
    return [state]


def pack(spec: dict, leaves) -> Any:
    if spec["type"] == "MultiRNNCell":
        return tuple(pack(sub, leaves) for sub in spec["cells"])
    if spec["type"] in ("GRUBlockCell", "GRUBlockCellV2", "CudnnCompatibleGRUCell"):
        return next(leaves)
    return LSTMStateTuple(next(leaves), next(leaves))


def load_variables(cells: dict[str, torch.nn.Module], arrays: dict) -> dict[str, Tensor]:
    """TF name -> the rnnflow parameter it was copied into, through cell_tf_names."""
    found: dict[str, Tensor] = {}
    for scope, cell in cells.items():
        params = dict(cell.named_parameters())
        for key, tf_name in cell_tf_names(cell, scope).items():
            with torch.no_grad():
                params[key].copy_(torch.from_numpy(arrays[f"var/{tf_name}"]))
            found[tf_name] = params[key]
    tf_names = sorted(k[len("var/") :] for k in arrays if k.startswith("var/"))
    assert sorted(found) == tf_names, "rnnflow's TF names differ from TensorFlow's"
    return found


class NotFusable(Exception):
    """fusable() refused a cell of the case (the reason is the exception's text)."""


def run_case(
    path: Path, impl: str, *, drop_clip: bool = False
) -> dict[str, tuple[Tensor, np.ndarray]]:
    """{fixture key: (rnnflow's value, TF's)} for one case."""
    meta, arrays = load_case(path)
    dtype = getattr(torch, meta["dtype"])
    fused_cell = meta.get("cell", {}).get("type") == "LSTMBlockFusedCell"
    if meta["bidirectional"]:
        specs = {"bidirectional_rnn/fw": meta["cell_fw"], "bidirectional_rnn/bw": meta["cell_bw"]}
    else:
        specs = {"" if fused_cell else "rnn": meta["cell"]}
    cells = {
        s: build_cell(spec, meta["input_depth"], dtype, drop_clip=drop_clip)
        for s, spec in specs.items()
    }
    variables = load_variables(cells, arrays)
    x = torch.tensor(arrays["inputs"], requires_grad=True)
    if impl == "fused":
        for cell in cells.values():
            ok, reason = fusable(cell, x)
            if not ok:
                raise NotFusable(reason, cell, x.detach(), meta["time_major"])
    seq = torch.from_numpy(arrays["sequence_length"]) if meta["has_sequence_length"] else None
    init_leaves: list[Tensor] = []
    init: dict[str, Any] = {s: None for s in specs}
    if meta["has_initial_state"]:
        n = sum(1 for k in arrays if k.startswith("initial_state/"))
        init_leaves = [
            torch.tensor(arrays[f"initial_state/{i}"], requires_grad=True) for i in range(n)
        ]
        leaves = iter(init_leaves)
        init = {s: pack(spec, leaves) for s, spec in specs.items()}
    if fused_cell:
        (cell,) = cells.values()
        out, st = cell(x, initial_state=init[""], dtype=dtype, sequence_length=seq)
        outputs, state = {"outputs": out}, flatten(st)
    elif meta["bidirectional"]:
        (out_fw, out_bw), states = bidirectional_dynamic_rnn(
            *cells.values(),
            x,
            sequence_length=seq,
            initial_state_fw=init["bidirectional_rnn/fw"],
            initial_state_bw=init["bidirectional_rnn/bw"],
            dtype=dtype,
            time_major=meta["time_major"],
            impl=impl,
        )
        outputs, state = {"outputs/fw": out_fw, "outputs/bw": out_bw}, flatten(states)
    else:
        out, st = dynamic_rnn(
            cells["rnn"],
            x,
            sequence_length=seq,
            initial_state=init["rnn"],
            dtype=dtype,
            time_major=meta["time_major"],
            impl=impl,
        )
        outputs, state = {"outputs": out}, flatten(st)
    assert len(state) == sum(1 for k in arrays if k.startswith("state/"))
    loss = torch.zeros((), dtype=dtype)
    for key, o in outputs.items():
        loss = loss + (o * torch.from_numpy(arrays[key.replace("outputs", "w_out")])).sum()
    for i, s in enumerate(state):
        loss = loss + (s * torch.from_numpy(arrays[f"w_state/{i}"])).sum()
    wrt = [x, *init_leaves, *variables.values()]
    grads = torch.autograd.grad(loss, wrt)
    got = {key: (o, arrays[key]) for key, o in outputs.items()}
    got.update({f"state/{i}": (s, arrays[f"state/{i}"]) for i, s in enumerate(state)})
    got["grad/inputs"] = (grads[0], arrays["grad/inputs"])
    for i, g in enumerate(grads[1 : 1 + len(init_leaves)]):
        got[f"grad/initial_state/{i}"] = (g, arrays[f"grad/initial_state/{i}"])
    for name, g in zip(variables, grads[1 + len(init_leaves) :], strict=True):
        got[f"grad/var/{name}"] = (g, arrays[f"grad/var/{name}"])
    return got


def test_fixtures_are_present_and_match_the_manifest():
    manifest = json.loads((FIXTURES / "MANIFEST.json").read_text())
    listed = {c["file"]: c["sha256"] for c in manifest["cases"]}
    assert sorted(listed) == [p.name for p in CASES]
    for path in CASES:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[path.name], path.name


# LSTMBlockFusedCell runs its own loop, not dynamic_rnn: it has no impl="fused" case.
IMPL_CASES = [
    pytest.param(path, impl, id=f"{path.stem}-{impl}")
    for path in CASES
    for impl in ("reference", "fused")
    if impl == "reference" or not path.stem.startswith("lstm_fused")
]


@pytest.mark.parametrize(("path", "impl"), IMPL_CASES)
def test_matches_tensorflow(path: Path, impl: str):
    """impl="fused" matches TF where fusable() accepts every cell (LSTMBlockCell without
    peepholes or clipping, CudnnCompatibleLSTMCell, GRUBlockCellV2); elsewhere fusable() names
    a contrib cell and dynamic_rnn(impl="fused") refuses with that reason."""
    try:
        got = run_case(path, impl)
    except NotFusable as refused:
        reason, cell, x, time_major = refused.args
        assert "no fused kernel for" in reason
        with pytest.raises(ValueError, match=r"impl='fused' unavailable .*no fused kernel for"):
            dynamic_rnn(cell, x, time_major=time_major, impl="fused")
        return
    tol = TOLERANCE[next(iter(got.values()))[0].dtype]
    for key, (actual, expected) in got.items():
        torch.testing.assert_close(
            actual.detach(),
            torch.from_numpy(expected),
            atol=tol,
            rtol=tol,
            msg=lambda m, key=key: f"{path.stem} [{impl}] {key}: {m}",
        )


CLIP_CASES = sorted(FIXTURES.glob("*clip*.npz"))


@pytest.mark.parametrize("path", CLIP_CASES, ids=[p.stem for p in CLIP_CASES])
def test_clip_cases_really_clip(path: Path):
    """TF's clip acted: the same cells without the clip (which otherwise match TF, above)
    move the outputs, states or gradients away from TF's."""
    got = run_case(path, "reference", drop_clip=True)
    worst = max((a.detach() - torch.from_numpy(e)).abs().max().item() for a, e in got.values())
    assert worst > 1e-3, path.name


def test_eval_mode_dropout_wrapper_is_the_bare_cell():
    """DropoutWrapper around a contrib cell in eval() mode is the cell itself (TF: keep 1.0)."""
    meta, arrays = load_case(FIXTURES / "lstm_block_peep_clip__bm__seq__init__f64.npz")
    cell = build_cell(meta["cell"], meta["input_depth"], torch.float64)
    load_variables({"rnn": cell}, arrays)
    wrapped = DropoutWrapper(cell, input_keep_prob=0.5, output_keep_prob=0.5).eval()
    x = torch.from_numpy(arrays["inputs"])
    init = LSTMStateTuple(*(torch.from_numpy(arrays[f"initial_state/{i}"]) for i in range(2)))
    seq = torch.from_numpy(arrays["sequence_length"])
    out, _ = dynamic_rnn(wrapped, x, sequence_length=seq, initial_state=init)
    torch.testing.assert_close(out, torch.from_numpy(arrays["outputs"]), atol=1e-10, rtol=1e-10)


DEFAULTS = json.loads((FIXTURES / "defaults.json").read_text())


@pytest.mark.parametrize("case", DEFAULTS["cases"], ids=lambda c: c["spec"]["type"])
def test_default_initialisers_match_tensorflow(case: dict):
    """Constants equal TF's; random variables stay inside TF's Glorot-uniform limit and reach
    its edge (1-D variables included: fan_in = fan_out = n)."""
    spec = dict(case["spec"])
    depth = DEFAULTS["input_depth"]
    if spec["type"] == "LayerNormBasicLSTMCell":
        cell = LayerNormBasicLSTMCell(
            spec["num_units"],
            layer_norm=spec["layer_norm"],
            norm_gain=spec.get("norm_gain", 1.0),
            norm_shift=spec.get("norm_shift", 0.0),
            input_size=depth,
        )
    else:
        cell = build_cell(spec, depth, torch.float32)
    params = dict(cell.named_parameters())
    names = cell_tf_names(cell, "rnn")
    assert sorted(names.values()) == sorted(case["variables"])
    for key, tf_name in names.items():
        stats, p = case["variables"][tf_name], params[key].detach()
        assert list(p.shape) == stats["shape"], tf_name
        if stats["distinct_values"] is not None:
            assert torch.unique(p).tolist() == pytest.approx(stats["distinct_values"]), tf_name
            continue
        limit = stats["glorot_uniform_limit"]
        assert stats["max"] <= limit and stats["min"] >= -limit  # TF's own draw obeys it
        assert p.abs().max().item() <= limit, tf_name
        assert p.abs().max().item() > 0.8 * limit, tf_name
