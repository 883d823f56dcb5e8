"""TF1 variable names <-> rnnflow parameters: cells under every scope TF1 uses, the tutorial's
unnamed variables, optimizer slots and Adam's step count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interop._tf1_bundle import FIXTURES, load_expected

from rnnflow import _nest
from rnnflow.cells import (
    BasicLSTMCell,
    BasicRNNCell,
    DropoutWrapper,
    GRUCell,
    LSTMCell,
    MultiRNNCell,
)
from rnnflow.interop.tf1_checkpoint import TF1Checkpoint
from rnnflow.interop.tf1_import import adam_step_from_powers, load_tf1_cell
from rnnflow.interop.tf1_names import (
    TF1NameError,
    cell_tf_names,
    find_scope,
    match_projections,
    optimizer_variable,
    parse_rnn_variables,
)
from rnnflow.recurrence import bidirectional_dynamic_rnn, dynamic_rnn


# ----------------------------------------------------------------------------- cell names
def test_cell_names_for_each_cell_type() -> None:
    assert cell_tf_names(BasicRNNCell(4, input_size=3), "rnn") == {
        "kernel": "rnn/basic_rnn_cell/kernel",
        "bias": "rnn/basic_rnn_cell/bias",
    }
    assert cell_tf_names(BasicLSTMCell(4, input_size=3), "encoder/rnn")["kernel"] == (
        "encoder/rnn/basic_lstm_cell/kernel"
    )
    assert cell_tf_names(GRUCell(4, input_size=3), "bidirectional_rnn/fw") == {
        "gates.kernel": "bidirectional_rnn/fw/gru_cell/gates/kernel",
        "gates.bias": "bidirectional_rnn/fw/gru_cell/gates/bias",
        "candidate.kernel": "bidirectional_rnn/fw/gru_cell/candidate/kernel",
        "candidate.bias": "bidirectional_rnn/fw/gru_cell/candidate/bias",
    }
    stack = MultiRNNCell([DropoutWrapper(GRUCell(4, input_size=3)), BasicRNNCell(2, name="top")])
    names = cell_tf_names(stack, "")
    assert names == {
        "cell_0.cell.gates.kernel": "multi_rnn_cell/cell_0/gru_cell/gates/kernel",
        "cell_0.cell.gates.bias": "multi_rnn_cell/cell_0/gru_cell/gates/bias",
        "cell_0.cell.candidate.kernel": "multi_rnn_cell/cell_0/gru_cell/candidate/kernel",
        "cell_0.cell.candidate.bias": "multi_rnn_cell/cell_0/gru_cell/candidate/bias",
        "cell_1.kernel": "multi_rnn_cell/cell_1/top/kernel",
        "cell_1.bias": "multi_rnn_cell/cell_1/top/bias",
    }
    stack.cell_1.build(4, dtype=torch.float32, device=None)
    assert set(names) == set(stack.state_dict())  # every parameter named, nothing else


def test_lstm_cell_names_follow_its_options() -> None:
    cell = LSTMCell(4, use_peepholes=True, num_proj=2, input_size=3)
    scope = "stack_bidirectional_rnn/cell_1/bidirectional_rnn/fw"
    names = cell_tf_names(cell, scope)
    assert names == {
        p.replace("/", "."): f"{scope}/lstm_cell/{p}"
        for p in ("kernel", "bias", "w_f_diag", "w_i_diag", "w_o_diag", "projection/kernel")
    }
    assert set(names) == set(cell.state_dict())
    assert set(cell_tf_names(LSTMCell(4, name="enc"), "rnn").values()) == {
        "rnn/enc/kernel",
        "rnn/enc/bias",
    }


def test_stacked_bidirectional_names_are_tfs() -> None:
    """The variables real TF made in stack_bidirectional_dynamic_rnn (a TF-vector fixture)
    are exactly the names cell_tf_names gives under stack_bidirectional_rnn/cell_<k>/..."""
    path = FIXTURES.parent / "tf1" / "stack_bidi__bm__seq__init__f64.npz"
    with np.load(path) as z:
        tf_names = {k[len("var/") :] for k in z.files if k.startswith("var/")}
    cells = {
        "cell_0/bidirectional_rnn/fw": LSTMCell(4, use_peepholes=True, input_size=3),
        "cell_0/bidirectional_rnn/bw": LSTMCell(4, input_size=3),
        "cell_1/bidirectional_rnn/fw": LSTMCell(3, num_proj=2, input_size=8),
        "cell_1/bidirectional_rnn/bw": GRUCell(3, input_size=8),
    }
    ours = set()
    for scope, cell in cells.items():
        ours |= set(cell_tf_names(cell, f"stack_bidirectional_rnn/{scope}").values())
    assert ours == tf_names


def test_cell_names_reject_unknown_cells() -> None:
    with pytest.raises(TF1NameError, match=r"no TF1 naming known for Linear; expected"):
        cell_tf_names(torch.nn.Linear(2, 2), "rnn")


def test_find_scope_errors() -> None:
    names = ["a/rnn/gru_cell/gates/kernel", "a/rnn/gru_cell/gates/bias"]
    with pytest.raises(TF1NameError, match=r"no variables <scope>/gru_cell/gates/kernel, .*scope"):
        find_scope(GRUCell(3), names)
    both = [f"{s}/basic_rnn_cell/{p}" for s in ("x", "y") for p in ("kernel", "bias")]
    with pytest.raises(TF1NameError, match=r"several scopes fit: \['x', 'y'\]"):
        find_scope(BasicRNNCell(3), both)
    assert find_scope(BasicRNNCell(3), [*both, "basic_rnn_cell/kernel"], suffix="y") == "y"


# ----------------------------------------------------------------------------- TF's own names
def _rnnflow_cell(spec: dict):
    kind = spec["type"]
    if kind == "BasicRNNCell":
        return BasicRNNCell(spec["num_units"], name=spec.get("name"))
    if kind == "BasicLSTMCell":
        return BasicLSTMCell(spec["num_units"], forget_bias=spec["forget_bias"])
    if kind == "GRUCell":
        return GRUCell(spec["num_units"])
    if kind == "LSTMCell":
        options = ("use_peepholes", "cell_clip", "num_proj", "proj_clip")
        return LSTMCell(spec["num_units"], **{k: spec[k] for k in options if k in spec})
    if kind == "DropoutWrapper":
        return DropoutWrapper(_rnnflow_cell(spec["cell"]), output_keep_prob=1.0)
    return MultiRNNCell([_rnnflow_cell(c) for c in spec["cells"]])


NAME_CASES = ["scoped_gru", "multi_mixed_scope", "bidi_lstm", "bidi_gru_scoped", "dropout_named"]
NAME_CASES += ["lstm_cell_peep_proj", "bidi_lstm_cell", "multi_lstm_cell", "ctc_lstm_cell"]


@pytest.mark.parametrize("case", NAME_CASES)
def test_tf_scoped_cells_load_and_reproduce_tf(case: str) -> None:
    """Real TF checkpoints of cells under user scopes, scope=, bidirectional fw/bw,
    MultiRNNCell of mixed cells, DropoutWrapper and a named cell: rnnflow cells load them
    (scope found automatically) and compute TF's outputs and final states."""
    import json

    spec = json.loads((FIXTURES / "MANIFEST.json").read_text())["names"][case]
    expected = load_expected(f"names/{case}")
    prefix = FIXTURES / "names" / case / "model.ckpt"
    ckpt = TF1Checkpoint(prefix)
    x = torch.from_numpy(expected["inputs"])  # [B, T, D]
    if spec["kind"] == "uni":
        cell = _rnnflow_cell(spec["cell"])
        scope = load_tf1_cell(cell, ckpt)
        want = "/".join(filter(None, [spec.get("outer"), spec.get("scope") or "rnn"]))
        assert scope == want
        outputs, state = dynamic_rnn(cell, x)
        got = {"outputs": outputs}
        leaves = _nest.flatten(state)
    else:
        cell_fw, cell_bw = _rnnflow_cell(spec["cell_fw"]), _rnnflow_cell(spec["cell_bw"])
        scope_fw = load_tf1_cell(cell_fw, ckpt, direction="fw")
        load_tf1_cell(cell_bw, ckpt, direction="bw")
        assert scope_fw.endswith("bidirectional_rnn/fw")
        (out_fw, out_bw), (st_fw, st_bw) = bidirectional_dynamic_rnn(cell_fw, cell_bw, x)
        got = {"outputs/fw": out_fw, "outputs/bw": out_bw}
        leaves = _nest.flatten(st_fw) + _nest.flatten(st_bw)
    got.update({f"state/{k}": leaf for k, leaf in enumerate(leaves)})
    if "output_layer" in spec:  # the CTC tutorial's logits = outputs @ Variable + Variable_1
        got["logits"] = outputs @ ckpt.read("Variable") + ckpt.read("Variable_1")
    assert set(got) == set(expected) - {"inputs"}
    for key, value in got.items():
        # The 64-input CTC case is float32 rounding at a larger scale: there TF's own float32 c
        # is 1.2e-6 from the float64 function (rnnflow float64 vs TF), and rnnflow's fused
        # float32 kernel 1.6e-6 from TF's; its logits sum 64 float32 products.
        atol = 5e-6 if spec.get("depth", 5) == 64 else 1e-6
        torch.testing.assert_close(
            value, torch.from_numpy(expected[key]), atol=atol, rtol=1e-6, msg=key
        )


def _names_fixture(case: str) -> TF1Checkpoint:
    return TF1Checkpoint(FIXTURES / "names" / case / "model.ckpt")


@pytest.mark.parametrize(
    ("case", "make_cell", "unclaimed"),
    [
        # peepholes left out: w_*_diag would be dropped (outputs 0.44 off TF's)
        ("lstm_cell_peep_proj", lambda: LSTMCell(5, num_proj=3), "w_f_diag"),
        # the projection left out, the cell unbuilt: it would build for input depth 3
        ("lstm_cell_peep_proj", lambda: LSTMCell(5, use_peepholes=True), "projection/kernel"),
        # one layer of a two-layer MultiRNNCell
        ("multi_lstm_cell", lambda: MultiRNNCell([LSTMCell(4, num_proj=3)]), "cell_1/"),
        # the second layer without its peepholes
        (
            "multi_lstm_cell",
            lambda: MultiRNNCell([LSTMCell(4, num_proj=3), LSTMCell(3)]),
            "cell_1/lstm_cell/w_i_diag",
        ),
    ],
)
def test_load_refuses_variables_the_cell_has_no_parameter_for(case, make_cell, unclaimed) -> None:
    """A cell built differently from TF's (peepholes, projection, layers) would load the rest and
    compute other numbers, silently: the variables left in its scope are named instead."""
    with pytest.raises(TF1NameError, match=rf"has no parameter for: \[[^]]*{unclaimed}"):
        load_tf1_cell(make_cell(), _names_fixture(case))


def test_load_ignores_optimizer_slots_in_the_cells_scope() -> None:
    """kernel/Adam and kernel/Adam_1 sit in the cell's scope but are optimizer state."""
    ckpt = TF1Checkpoint(FIXTURES / "basic_lstm" / "model.ckpt")
    assert "rnn/basic_lstm_cell/kernel/Adam" in ckpt.entries
    cell = BasicLSTMCell(64)
    assert load_tf1_cell(cell, ckpt) == "rnn"
    torch.testing.assert_close(cell.kernel, ckpt.read("rnn/basic_lstm_cell/kernel"))


def test_load_names_the_sizes_an_unbuilt_cell_does_not_fit() -> None:
    with pytest.raises(
        TF1NameError,
        match=r"^load_tf1_cell: 'encoder/rnn/lstm_cell/kernel' has shape \[8, 20\], rnnflow "
        r"parameter 'kernel' expects \[8, 28\]$",
    ):
        load_tf1_cell(
            LSTMCell(7, use_peepholes=True, num_proj=3), _names_fixture("lstm_cell_peep_proj")
        )
    with pytest.raises(
        TF1NameError,
        match=r"^load_tf1_cell: 'encoder/rnn/lstm_cell/projection/kernel' has shape \[5, 3\], "
        r"rnnflow parameter 'projection\.kernel' expects \[5, 4\]$",
    ):
        load_tf1_cell(
            LSTMCell(5, use_peepholes=True, num_proj=4), _names_fixture("lstm_cell_peep_proj")
        )


# ----------------------------------------------------------------------------- layouts
@pytest.mark.parametrize(
    ("model", "kind", "units", "layers", "input_size"),
    [
        ("basic_rnn", "rnn", 128, 1, 128),
        ("basic_lstm", "lstm", 64, 1, 64),
        ("gru", "gru", 64, 1, 64),
        ("multi_lstm", "lstm", 32, 2, 32),
        ("lstm_cell", "lstm_cell", 64, 1, 64),
    ],
)
def test_layout_of_the_tutorial_models(model, kind, units, layers, input_size) -> None:
    shapes = TF1Checkpoint(FIXTURES / model / "model.ckpt").shapes()
    layout = parse_rnn_variables({n: s for n, s in shapes.items() if not optimizer_variable(n)})
    assert (layout.scope, layout.kind, layout.num_units) == ("rnn", kind, units)
    assert (layout.num_layers, layout.input_size, layout.bidirectional) == (
        layers,
        input_size,
        False,
    )
    assert layout.multi == (model == "multi_lstm")
    assert all(v.startswith("rnn/") for v in layout.variables)


def test_layout_bidirectional_and_errors() -> None:
    shapes = TF1Checkpoint(FIXTURES / "names" / "bidi_gru_scoped" / "model.ckpt").shapes()
    layout = parse_rnn_variables(shapes)
    assert layout.scope == "model/encoder/bidirectional_rnn" and layout.bidirectional
    assert (layout.kind, layout.num_units, layout.input_size) == ("gru", 3, 5)
    mixed = TF1Checkpoint(FIXTURES / "names" / "multi_mixed_scope" / "model.ckpt").shapes()
    with pytest.raises(TF1NameError, match=r"the layers mix cell types \['gru', 'lstm', 'rnn'\]"):
        parse_rnn_variables(mixed)
    peepholes = TF1Checkpoint(FIXTURES / "names" / "lstm_cell_peep_proj" / "model.ckpt").shapes()
    with pytest.raises(
        TF1NameError,
        match=r"'encoder/rnn/lstm_cell/projection/kernel' belongs to a tf.nn.rnn_cell.LSTMCell "
        r"with peepholes or a projection; the tutorial's model has a plain LSTMCell",
    ):
        parse_rnn_variables(peepholes)
    with pytest.raises(TF1NameError, match=r"no RNN cell variables"):
        parse_rnn_variables({"Variable": (28, 128)})


# ----------------------------------------------------------------------------- the tutorial
TUTORIAL = {
    "Variable": (28, 128),
    "Variable_1": (128, 10),
    "Variable_2": (128,),
    "Variable_3": (10,),
}


def test_projections_by_shape() -> None:
    mapping, notes = match_projections(TUTORIAL, projection_size=128, features=128)
    assert mapping == {
        "weights_in": "Variable",
        "weights_out": "Variable_1",
        "biases_in": "Variable_2",
        "biases_out": "Variable_3",
    }
    assert notes == []
    # shapes decide, not names: the same variables created in another order
    shuffled = {
        "Variable": (10,),
        "Variable_1": (28, 128),
        "Variable_2": (128,),
        "Variable_3": (128, 10),
    }
    mapping, _ = match_projections(shuffled, projection_size=128, features=128)
    assert mapping["weights_in"] == "Variable_1" and mapping["biases_out"] == "Variable"


def test_projection_ties_follow_creation_order() -> None:
    # 10 hidden units and 10 classes: both biases are [10], both weights could be [10, 10]
    tied = {"Variable": (28, 10), "Variable_1": (10, 10), "Variable_2": (10,), "Variable_3": (10,)}
    mapping, notes = match_projections(tied, projection_size=10, features=10)
    assert mapping["biases_in"] == "Variable_2" and mapping["biases_out"] == "Variable_3"
    assert len(notes) == 1 and notes[0].startswith("2 assignments fit the shapes; chose")
    # creation order is by the numeric suffix, not by string order (Variable_10 > Variable_9)
    late = {
        "Variable_9": (28, 10),
        "Variable_10": (10, 10),
        "Variable_11": (10,),
        "Variable_12": (10,),
    }
    mapping, _ = match_projections(late, projection_size=10, features=10)
    assert mapping["weights_in"] == "Variable_9" and mapping["biases_in"] == "Variable_11"


def test_projection_errors() -> None:
    with pytest.raises(TF1NameError, match=r"expected 4 variables .* found 5: .*Variable_4 \[7\]"):
        match_projections({**TUTORIAL, "Variable_4": (7,)}, projection_size=128, features=128)
    with pytest.raises(TF1NameError, match=r"no assignment of .* fits the shapes"):
        match_projections(TUTORIAL, projection_size=64, features=128)
    # with one role given by --map, the rest is matched around it
    mapping, _ = match_projections(
        {k: v for k, v in TUTORIAL.items() if k != "Variable_3"},
        roles=["weights_in", "weights_out", "biases_in"],
        projection_size=128,
        features=128,
        known={"biases_out": (10,)},
    )
    assert mapping == {
        "weights_in": "Variable",
        "weights_out": "Variable_1",
        "biases_in": "Variable_2",
    }


def test_optimizer_variables() -> None:
    for name in [
        "beta1_power",
        "beta2_power",
        "global_step",
        "Variable/Adam",
        "Variable_3/Adam_1",
        "rnn/gru_cell/gates/kernel/Adam_1",
        "w/Momentum",
        "w/RMSProp_1",
        "beta1_power_1",
    ]:
        assert optimizer_variable(name), name
    for name in ["Variable", "rnn/basic_lstm_cell/kernel", "Adam/kernel", "my_Adam"]:
        assert not optimizer_variable(name), name


# ----------------------------------------------------------------------------- Adam's step
@pytest.mark.parametrize("t", [0, 1, 2, 299, 300, 700])
def test_adam_step_from_float32_powers(t: int) -> None:
    b1p = float(np.float32(0.9) ** np.float32(t + 1))
    b2p = float(np.float32(0.999) ** np.float32(t + 1))
    # TF multiplies in float32 step by step: reproduce its rounding too
    p1, p2 = np.float32(0.9), np.float32(0.999)
    for _ in range(t):
        p1, p2 = np.float32(p1 * np.float32(0.9)), np.float32(p2 * np.float32(0.999))
    assert adam_step_from_powers(b1p, b2p) == t
    assert adam_step_from_powers(float(p1), float(p2)) == t


def test_adam_step_after_beta1_power_underflows() -> None:
    t = 5000  # 0.9 ** 5001 underflows float32; beta2_power still tells the step
    assert adam_step_from_powers(0.0, float(np.float32(0.999 ** (t + 1)))) == t


def test_adam_step_errors() -> None:
    with pytest.raises(ValueError, match=r"beta1_power=0.5 is not beta1\^\(t\+1\) for any whole"):
        adam_step_from_powers(0.5, 0.999)
    with pytest.raises(ValueError, match=r"beta2_power=0.5 means t = .*inconsistent"):
        adam_step_from_powers(0.9**5, 0.5)
    with pytest.raises(ValueError, match=r"beta1_power=1.5 cannot be beta1\^\(t\+1\)"):
        adam_step_from_powers(1.5, 0.999)
    # the tutorial's checkpoint with the wrong betas is caught
    with pytest.raises(ValueError, match=r"another beta1"):
        adam_step_from_powers(0.9**301, 0.999**301, beta1=0.95)


@pytest.mark.parametrize("input_size", [None, 96])
def test_a_cell_of_other_units_is_refused_naming_the_variable_and_both_shapes(input_size) -> None:
    """TF's GRU has 64 units (gates/kernel [128, 128]); GRUCell(32) built from it or with its
    input depth: one line naming the variable and both shapes, the same words for both, not
    PyTorch's multi-line size-mismatch dump (before, for the unbuilt cell). The cell is left
    unbuilt when the load fails."""
    cell = GRUCell(32, input_size=input_size)
    with pytest.raises(
        TF1NameError,
        match=r"^load_tf1_cell: 'rnn/gru_cell/gates/kernel' has shape \[128, 128\], rnnflow "
        r"parameter 'gates\.kernel' expects \[128, 64\]$",
    ):
        load_tf1_cell(cell, TF1Checkpoint(FIXTURES / "gru" / "model.ckpt"))
    assert cell.built == (input_size is not None)


def test_an_unbuilt_cell_gets_a_built_cell_s_checks(tmp_path, bundle_writer) -> None:
    """Dtype and finite-value checks hold for a cell built from the kernel as for a built one
    (before: an int kernel failed inside torch, a NaN one loaded)."""
    source = TF1Checkpoint(FIXTURES / "gru" / "model.ckpt")
    tensors = {n: source.read(n).numpy() for n in source}
    name = "rnn/gru_cell/candidate/bias"
    for value, message in [
        (np.full(64, np.nan, np.float32), rf"'{name}' holds NaN or infinite values"),
        (np.ones(64, np.int32), rf"'{name}' has dtype torch\.int32, expected a float tensor"),
    ]:
        prefix = bundle_writer(tmp_path / str(value.dtype) / "model.ckpt", {**tensors, name: value})
        cell = GRUCell(64)
        with pytest.raises(TF1NameError, match=rf"^load_tf1_cell: {message}$"):
            load_tf1_cell(cell, prefix)
        assert not cell.built
    with pytest.raises(
        TF1NameError, match=r"GRUCell cannot be built from the checkpoint's kernels"
    ):
        load_tf1_cell(GRUCell(200), source)  # 200 units: the kernel has no input rows left
    cell = GRUCell(64)
    load_tf1_cell(cell, source)
    torch.testing.assert_close(cell.gates.kernel, source.read("rnn/gru_cell/gates/kernel"))


GRU_SHAPES = {"gates/kernel": (10, 10), "gates/bias": (10,), "candidate/kernel": (10, 5),
              "candidate/bias": (5,)}  # fmt: skip


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (
            {"rnn/basic_rnn_cell/kernel": (10, 5)},
            r"the rnn cell 'rnn/basic_rnn_cell' lacks \['rnn/basic_rnn_cell/bias'\] \(has "
            r"\['rnn/basic_rnn_cell/kernel'\]\)$",
        ),
        (
            {**{f"enc/{d}/multi_rnn_cell/cell_0/gru_cell/{p}": s for d in ("fw", "bw")
                for p, s in GRU_SHAPES.items()},
             "enc/bw/multi_rnn_cell/cell_0/gru_cell/candidate/bias": None},
            r"the gru cell 'enc/bw/multi_rnn_cell/cell_0/gru_cell' lacks "
            r"\['enc/bw/multi_rnn_cell/cell_0/gru_cell/candidate/bias'\]",
        ),
        (   # a stray GRU variable beside an LSTM: two kinds in one scope, said as such
            {"rnn/basic_lstm_cell/kernel": (10, 20), "rnn/basic_lstm_cell/bias": (20,),
             "rnn/gru_cell/gates/kernel": (10, 10)},
            r"several cell kinds under 'rnn': \['basic_lstm_cell', 'gru_cell'\]; one TF1 cell "
            r"runs in one scope: leave the other's variables out \(--ignore NAME\)$",
        ),
    ],
)  # fmt: skip
def test_layout_errors_name_tf_s_scopes_not_internal_tuples(shapes, message) -> None:
    shapes = {name: shape for name, shape in shapes.items() if shape is not None}
    with pytest.raises(TF1NameError, match=rf"^parse_rnn_variables: {message}"):
        parse_rnn_variables(shapes)
