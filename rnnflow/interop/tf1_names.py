"""TensorFlow-1 variable names <-> rnnflow parameter names, for cells and the tutorial's model.

rnnflow cells keep TF1's variable layouts, so importing is a renaming. TF1 names a cell's
variables ``<scope>/<cell scope>/<param>``:

    TF1 variable                                                 rnnflow parameter (in the cell)
    <scope>/basic_rnn_cell/{kernel,bias}                         kernel, bias
    <scope>/basic_lstm_cell/{kernel,bias}                        kernel, bias
    <scope>/gru_cell/{gates,candidate}/{kernel,bias}             gates.kernel, candidate.bias, ...
    <scope>/lstm_cell/{kernel,bias}                              kernel, bias   (LSTMCell)
    <scope>/lstm_cell/{w_f_diag,w_i_diag,w_o_diag}               w_f_diag, ...  (use_peepholes)
    <scope>/lstm_cell/projection/kernel                          projection.kernel (num_proj)
    <scope>/multi_rnn_cell/cell_<k>/<cell scope>/...             cell_<k>.<...>
    Dropout/Residual/DeviceWrapper(cell)                         cell.<...> (no TF scope of its own)
    a cell made with name="foo"                                  "foo" replaces the cell scope
    tf.contrib cells (LSTMBlockCell, LayerNormBasicLSTMCell, ...)  see CONTRIB_CELL_SCOPES and
                                                                 contrib_tf_params below

where ``<scope>`` is ``rnn`` for ``dynamic_rnn`` (``scope=`` replaces it),
``bidirectional_rnn/fw`` and ``.../bw`` for ``bidirectional_dynamic_rnn`` and
``static_bidirectional_rnn``, ``stack_bidirectional_rnn/cell_<k>/bidirectional_rnn/fw`` for layer k
of ``stack_bidirectional_dynamic_rnn``, each preceded by any enclosing ``tf.variable_scope``
("encoder/rnn/...").

The tutorial's own weights are unnamed ``tf.Variable``s: ``Variable`` .. ``Variable_3`` in its
dict order (``weights['in']``, ``weights['out']``, ``biases['in']``, ``biases['out']``).
:func:`match_projections` assigns them to ``weights_in``, ``weights_out``, ``biases_in`` and
``biases_out`` by shape, using the creation order only to break ties.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from torch import nn

from rnnflow.cells import BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, MultiRNNCell
from rnnflow.cells._wrapper import CellWrapper
from rnnflow.cells.cudnn_compatible import CudnnCompatibleGRUCell, CudnnCompatibleLSTMCell
from rnnflow.cells.gru_block import GRUBlockCell, GRUBlockCellV2
from rnnflow.cells.layer_norm_lstm import LayerNormBasicLSTMCell
from rnnflow.cells.lstm_block import LSTMBlockCell, LSTMBlockFusedCell

__all__ = [
    "TF1NameError",
    "CellLayout",
    "cell_tf_names",
    "find_scope",
    "parse_rnn_variables",
    "match_projections",
    "optimizer_variable",
    "PROJECTION_ROLES",
    "CONTRIB_CELL_SCOPES",
    "contrib_tf_params",
    "CudnnLayout",
    "parse_cudnn_variables",
]

# Default TF1 scopes of the cells (``_scope`` names chosen by Keras' legacy RNN cells).
CELL_SCOPES: dict[type, str] = {
    BasicRNNCell: "basic_rnn_cell",
    BasicLSTMCell: "basic_lstm_cell",
    GRUCell: "gru_cell",
    LSTMCell: "lstm_cell",
}
_KIND_OF_SCOPE = {
    "basic_rnn_cell": "rnn",
    "basic_lstm_cell": "lstm",
    "gru_cell": "gru",
    "lstm_cell": "lstm_cell",
}
_PARAMS_OF_KIND = {
    "rnn": ("kernel", "bias"),
    "lstm": ("kernel", "bias"),
    "lstm_cell": ("kernel", "bias"),  # + peepholes and projection/kernel when the cell has them
    "gru": ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"),
}
# The tutorial's projection variables in creation order (its dicts: weights in/out, biases in/out)
PROJECTION_ROLES: tuple[str, ...] = ("weights_in", "weights_out", "biases_in", "biases_out")
# Slot names TF1 optimizers add under each variable ("Variable/Adam", "rnn/.../kernel/Adam_1")
_SLOT_RE = re.compile(
    r"/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|Adagrad|Adadelta|Adadelta_1|Ftrl|Ftrl_1"
    r"|AdagradDA|AdagradDA_1|ProximalAdagrad|ExponentialMovingAverage)$"
)
_OPTIMIZER_GLOBALS = re.compile(r"^(beta1_power|beta2_power|global_step)(_\d+)?$")


class TF1NameError(ValueError):
    """TF1 variables that cannot be matched to rnnflow parameters (or the other way round)."""


# ----------------------------------------------------------------------------- cells
def cell_tf_names(cell: nn.Module, scope: str) -> dict[str, str]:
    """TF1 variable name of each parameter of ``cell``, keyed like ``cell.state_dict()``.

    ``scope`` is the variable scope the cell runs in: ``"rnn"`` for ``dynamic_rnn``,
    ``"bidirectional_rnn/fw"`` for a forward cell, ``"encoder/rnn"`` under a user scope, or
    ``""`` for names relative to the scope.

        cell_tf_names(MultiRNNCell([GRUCell(4), BasicRNNCell(3)]), "rnn")
        # {"cell_0.gates.kernel": "rnn/multi_rnn_cell/cell_0/gru_cell/gates/kernel", ...}
    """
    prefix = f"{scope}/" if scope else ""
    if isinstance(cell, CellWrapper):  # DropoutWrapper, ResidualWrapper, DeviceWrapper
        return {f"cell.{k}": v for k, v in cell_tf_names(cell.cell, scope).items()}
    if isinstance(cell, MultiRNNCell):
        names: dict[str, str] = {}
        for k, sub in enumerate(cell.cells):
            sub_names = cell_tf_names(sub, f"{prefix}multi_rnn_cell/cell_{k}")
            names.update({f"cell_{k}.{p}": v for p, v in sub_names.items()})
        return names
    contrib = contrib_tf_params(cell)
    if contrib is not None:
        own = getattr(cell, "name", None) or contrib[0]
        return {_contrib_key(cell, p): f"{prefix}{own}/{p}" for p in contrib[1]}
    for cls, default_scope in CELL_SCOPES.items():
        if isinstance(cell, cls):
            own = getattr(cell, "name", None) or default_scope
            params = _PARAMS_OF_KIND[_KIND_OF_SCOPE[default_scope]] + _lstm_cell_extras(cell)
            return {p.replace("/", "."): f"{prefix}{own}/{p}" for p in params}
    raise TF1NameError(
        f"cell_tf_names: no TF1 naming known for {type(cell).__name__}; expected BasicRNNCell, "
        "BasicLSTMCell, LSTMCell, GRUCell, MultiRNNCell, DropoutWrapper or a tf.contrib cell "
        f"({', '.join(c.__name__ for c in CONTRIB_CELL_SCOPES)})"
    )


def _lstm_cell_extras(cell: nn.Module) -> tuple[str, ...]:
    """An LSTMCell's optional variables, in TF's creation order (none for other cells)."""
    if not isinstance(cell, LSTMCell):
        return ()
    peepholes = ("w_f_diag", "w_i_diag", "w_o_diag") if cell.use_peepholes else ()
    return peepholes + (("projection/kernel",) if cell.num_proj is not None else ())


def find_scope(cell: nn.Module, names: Iterable[str], *, suffix: str = "") -> str:
    """The variable scope under which every parameter of ``cell`` is among ``names``.

    ``suffix`` restricts the search to scopes ending with it (``"fw"``, ``"bw"``). Raises
    :class:`TF1NameError` when no scope or more than one fits.
    """
    relative = cell_tf_names(cell, "")
    available = set(names)
    first = next(iter(relative.values()))
    candidates = []
    for name in sorted(available):
        if name == first:
            scope = ""
        elif name.endswith("/" + first):
            scope = name[: -len(first) - 1]
        else:
            continue
        if suffix and not (scope == suffix or scope.endswith("/" + suffix)):
            continue
        if all(cell_tf_names(cell, scope)[p] in available for p in relative):
            candidates.append(scope)
    if len(candidates) == 1:
        return candidates[0]
    owner = f"find_scope({type(cell).__name__})"
    wanted = ", ".join(f"<scope>/{v}" for v in relative.values())
    if not candidates:
        raise TF1NameError(
            f"{owner}: the checkpoint has no variables {wanted}"
            + (f" with a scope ending in {suffix!r}" if suffix else "")
            + "; check the cell type and units, or pass load_tf1_cell's scope"
        )
    raise TF1NameError(f"{owner}: several scopes fit: {candidates}; pass the scope explicitly")


@dataclass(frozen=True)
class CellLayout:
    """The recurrent part of a model as its TF1 variable names reveal it."""

    scope: str  # "rnn", "encoder/rnn", "bidirectional_rnn" (the part before fw/bw)
    kind: str  # "rnn" | "lstm" | "gru" | "lstm_cell" (tf.nn.rnn_cell.LSTMCell, plain)
    num_units: int
    num_layers: int
    bidirectional: bool
    input_size: int  # depth of the first layer's inputs
    multi: bool  # a MultiRNNCell (also for one layer)
    variables: tuple[str, ...]  # every TF name that belongs to the cells


_CELL_VAR_RE = re.compile(
    r"^(?:(?P<scope>.*?)/)??(?:(?P<dir>fw|bw)/)?(?:multi_rnn_cell/cell_(?P<layer>\d+)/)?"
    r"(?P<cell>basic_rnn_cell|basic_lstm_cell|gru_cell|lstm_cell)/"
    r"(?P<param>kernel|bias|gates/kernel|gates/bias|candidate/kernel|candidate/bias"
    r"|w_f_diag|w_i_diag|w_o_diag|projection/kernel)$"
)


def parse_rnn_variables(shapes: Mapping[str, tuple[int, ...]]) -> CellLayout:
    """Find the cells' variables among ``shapes`` (model variables only, no optimizer slots)
    and infer cell type, units, layers and direction from their names and shapes."""
    owner = "parse_rnn_variables"
    found: dict[tuple[str, str | None, int | None], dict[str, str]] = {}
    cells: dict[tuple[str, str | None, int | None], set[str]] = {}  # TF cell scopes found
    kinds: dict[tuple[str | None, int | None], str] = {}
    for name in sorted(shapes):
        m = _CELL_VAR_RE.match(name)
        if not m:
            continue
        if m["cell"] == "lstm_cell" and m["param"] not in ("kernel", "bias"):
            raise TF1NameError(
                f"{owner}: {name!r} belongs to a tf.nn.rnn_cell.LSTMCell with peepholes or a "
                "projection; the tutorial's model has a plain LSTMCell: load this cell with "
                "rnnflow.interop.tf1_import.load_tf1_cell(LSTMCell(units, use_peepholes=..., "
                "num_proj=...), checkpoint)"
            )
        scope = m["scope"] or ""
        layer = int(m["layer"]) if m["layer"] is not None else None
        found.setdefault((scope, m["dir"], layer), {})[m["param"]] = name
        cells.setdefault((scope, m["dir"], layer), set()).add(m["cell"])
        kinds[(m["dir"], layer)] = _KIND_OF_SCOPE[m["cell"]]
    if not found:
        raise TF1NameError(
            f"{owner}: no RNN cell variables (…/basic_rnn_cell/kernel, …/basic_lstm_cell/kernel, "
            "…/gru_cell/gates/kernel) in the checkpoint; is it a model built from TF1 cells?"
            + _contrib_hint(shapes)
        )
    for key, names in cells.items():
        if len(names) > 1:
            where = _cell_path(*key, "") or "the checkpoint's root"
            raise TF1NameError(
                f"{owner}: several cell kinds under {where!r}: {sorted(names)}; one TF1 cell "
                "runs in one scope: leave the other's variables out (--ignore NAME)"
            )
    scopes = sorted({s for s, _, _ in found})
    if len(scopes) > 1:
        raise TF1NameError(f"{owner}: cell variables under several scopes {scopes}; expected one")
    directions = sorted({d or "" for _, d, _ in found})
    if directions not in ([""], ["bw", "fw"]):
        raise TF1NameError(f"{owner}: expected one direction or both fw and bw, got {directions}")
    layers = sorted({layer for _, _, layer in found}, key=lambda x: -1 if x is None else x)
    multi = layers != [None]
    if multi and (None in layers or layers != list(range(len(layers)))):
        raise TF1NameError(f"{owner}: MultiRNNCell layers {layers} are not 0..n-1")
    kind_set = sorted(set(kinds.values()))
    if len(kind_set) != 1:
        raise TF1NameError(
            f"{owner}: the layers mix cell types {kind_set}; the tutorial's model has one cell "
            "type (map cells one by one with cell_tf_names for other models)"
        )
    kind = kind_set[0]
    for key, params in found.items():
        missing = [p for p in _PARAMS_OF_KIND[kind] if p not in params]
        if missing:
            path = _cell_path(*key, next(iter(cells[key])))
            raise TF1NameError(
                f"{owner}: the {kind} cell {path!r} lacks {[f'{path}/{p}' for p in missing]} "
                f"(has {sorted(params.values())})"
            )
    first = found[(scopes[0], "fw" if directions != [""] else None, 0 if multi else None)]
    if kind == "gru":
        units = shapes[first["candidate/bias"]][0]
        kernel = shapes[first["candidate/kernel"]]
    else:
        units = shapes[first["bias"]][0] // (1 if kind == "rnn" else 4)
        kernel = shapes[first["kernel"]]
    if len(kernel) != 2 or kernel[0] <= units:
        raise TF1NameError(
            f"{owner}: kernel of shape {list(kernel)} does not fit a {kind} cell of {units} units"
        )
    return CellLayout(
        scope=scopes[0],
        kind=kind,
        num_units=units,
        num_layers=len(layers),
        bidirectional=directions != [""],
        input_size=kernel[0] - units,
        multi=multi,
        variables=tuple(sorted(v for params in found.values() for v in params.values())),
    )


def _cell_path(scope: str, direction: str | None, layer: int | None, cell: str) -> str:
    """The TF variable scope of one cell: ``rnn/fw/multi_rnn_cell/cell_1/gru_cell``."""
    multi = None if layer is None else f"multi_rnn_cell/cell_{layer}"
    return "/".join(p for p in (scope, direction, multi, cell) if p)


# ----------------------------------------------------------------------------- the tutorial
def _creation_index(name: str) -> tuple[int, str]:
    """``Variable`` -> 0, ``Variable_7`` -> 7 (TF's unique-name suffix); others after them."""
    m = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
    assert m is not None
    return (int(m[2]) if m[2] else 0, name)


def match_projections(
    candidates: Mapping[str, tuple[int, ...]],
    *,
    roles: Iterable[str] = PROJECTION_ROLES,
    projection_size: int,
    features: int,
    known: Mapping[str, tuple[int, ...]] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Assign the tutorial's unnamed variables to the projection parameters by shape.

    ``candidates``: TF name -> shape of the variables left after the cells' and optimizer's;
    ``roles``: the projection parameters still to fill (``--map`` may have filled some);
    ``projection_size``: P, the cell's input depth; ``features``: F, the cell's output width
    (2H if bidirectional); ``known``: shapes of the roles already mapped.
    Shapes: ``weights_in`` [D, P], ``biases_in`` [P], ``weights_out`` [F, C], ``biases_out`` [C].

    Returns (role -> TF name, notes). Where several assignments fit the shapes, the one that
    follows the tutorial's creation order (``Variable``, ``Variable_1``, ... for weights in/out,
    biases in/out) is chosen and a note says so; if none does, :class:`TF1NameError`.
    """
    roles = [r for r in PROJECTION_ROLES if r in set(roles)]
    known = dict(known or {})
    names = sorted(candidates, key=_creation_index)
    listing = ", ".join(f"{n} {list(candidates[n])}" for n in names) or "none"
    if len(names) != len(roles):
        raise TF1NameError(
            f"match_projections: expected {len(roles)} variables for {roles}, found "
            f"{len(names)}: {listing}; use --map NAME=PARAM to assign them, --ignore NAME to "
            "skip extra ones"
        )

    def fits(assign: dict[str, tuple[int, ...]]) -> bool:
        shape = {**known, **assign}
        w_in, b_in = shape.get("weights_in"), shape.get("biases_in")
        w_out, b_out = shape.get("weights_out"), shape.get("biases_out")
        if w_in is not None and (len(w_in) != 2 or w_in[1] != projection_size):
            return False
        if b_in is not None and tuple(b_in) != (projection_size,):
            return False
        if w_out is not None and (len(w_out) != 2 or w_out[0] != features):
            return False
        if b_out is not None and (len(b_out) != 1 or (w_out is not None and b_out[0] != w_out[1])):
            return False
        return True

    valid = []
    for perm in itertools.permutations(names):
        if fits({role: candidates[name] for role, name in zip(roles, perm)}):
            valid.append(dict(zip(roles, perm)))
    in_order = dict(zip(roles, names))
    if len(valid) == 1:
        return valid[0], []
    if not valid:
        given = ", ".join(f"{r} {list(s)}" for r, s in known.items())
        raise TF1NameError(
            f"match_projections: no assignment of {listing} to {roles}"
            + (f" (with {given} given)" if given else "")
            + " fits the shapes "
            f"weights_in [D, {projection_size}], biases_in [{projection_size}], "
            f"weights_out [{features}, C], biases_out [C]; use --map NAME=PARAM"
        )
    if in_order in valid:
        chosen = ", ".join(f"{n}={r}" for r, n in in_order.items())
        return in_order, [
            f"{len(valid)} assignments fit the shapes; chose the tutorial's creation order "
            f"({chosen}); override with --map NAME=PARAM"
        ]
    raise TF1NameError(
        f"match_projections: {len(valid)} assignments of {listing} fit the shapes and none "
        f"follows the tutorial's creation order; use --map NAME=PARAM to choose"
    )


def optimizer_variable(name: str) -> bool:
    """Whether ``name`` is optimizer state (a slot like ``X/Adam_1``, ``beta1_power``,
    ``global_step``) rather than a model variable."""
    return bool(_SLOT_RE.search(name) or _OPTIMIZER_GLOBALS.match(name))


# ----------------------------------------------------------------------------- tf.contrib cells
# Default TF1 scopes of the tf.contrib cells, most derived class first (isinstance order).
CONTRIB_CELL_SCOPES: dict[type, str] = {
    GRUBlockCell: "gru_cell",
    CudnnCompatibleLSTMCell: "cudnn_compatible_lstm_cell",
    CudnnCompatibleGRUCell: "cudnn_compatible_gru_cell",
    LSTMBlockFusedCell: "lstm_fused_cell",
    LSTMBlockCell: "lstm_cell",
    GRUBlockCellV2: "gru_cell",
    LayerNormBasicLSTMCell: "layer_norm_basic_lstm_cell",
}
_LAYER_NORM_SCOPES = ("input", "transform", "forget", "output", "state")
# GRUBlockCell (V1, r1.15 gru_ops.py lines 174-191): its own names for GRUCell's parameters.
_GRU_BLOCK_V1 = {
    "w_ru": "gates.kernel",
    "b_ru": "gates.bias",
    "w_c": "candidate.kernel",
    "b_c": "candidate.bias",
}
_CUDNN_GRU_PARAMS = (
    "gates/kernel",
    "gates/bias",
    "candidate/input_projection/kernel",
    "candidate/input_projection/bias",
    "candidate/hidden_projection/kernel",
    "candidate/hidden_projection/bias",
)


_CONTRIB_SCOPE_RE = re.compile(
    r"(?:^|/)(cudnn_compatible_lstm_cell|cudnn_compatible_gru_cell|lstm_fused_cell"
    r"|layer_norm_basic_lstm_cell)/"
)


def _contrib_hint(names: Iterable[str]) -> str:
    """A sentence for errors about checkpoints whose cells are tf.contrib ones ("" if none)."""
    scopes = sorted({m[1] for n in names if (m := _CONTRIB_SCOPE_RE.search(n))})
    if not scopes:
        return ""
    return (
        f" It holds tf.contrib cell variables ({', '.join(scopes)}): build the cells and load "
        "them with load_tf1_cell (CudnnLSTM/CudnnGRU: parse_cudnn_variables), see "
        "docs/MIGRATION.md"
    )


def _contrib_key(cell: nn.Module, tf_param: str) -> str:
    """The state_dict key of a contrib cell's TF variable (relative to the cell scope)."""
    if isinstance(cell, GRUBlockCell):
        return _GRU_BLOCK_V1[tf_param]
    return tf_param.replace("/", ".")


def contrib_tf_params(cell: nn.Module) -> tuple[str, tuple[str, ...]] | None:
    """(default TF scope, TF variable names relative to it) of a tf.contrib cell, else None.

    The names depend on the configuration, not on whether the cell is built: an LSTMBlockCell
    has ``w_i_diag``/``w_f_diag``/``w_o_diag`` only with ``use_peephole``; a
    LayerNormBasicLSTMCell has ``<gate>/gamma``, ``<gate>/beta`` with ``layer_norm`` and
    ``bias`` without.
    """
    for cls, scope in CONTRIB_CELL_SCOPES.items():
        if not isinstance(cell, cls):
            continue
        if isinstance(cell, CudnnCompatibleGRUCell):
            return scope, _CUDNN_GRU_PARAMS
        if isinstance(cell, GRUBlockCell):
            return scope, tuple(_GRU_BLOCK_V1)
        if isinstance(cell, GRUBlockCellV2):
            return scope, _PARAMS_OF_KIND["gru"]
        if isinstance(cell, LayerNormBasicLSTMCell):
            if not cell.layer_norm:
                return scope, ("kernel", "bias")
            norms = tuple(f"{s}/{p}" for s in _LAYER_NORM_SCOPES for p in ("gamma", "beta"))
            return scope, ("kernel", *norms)
        peepholes = ("w_i_diag", "w_f_diag", "w_o_diag") if cell.use_peephole else ()
        return scope, ("kernel", "bias", *peepholes)
    return None


@dataclass(frozen=True)
class CudnnLayout:
    """A ``tf.contrib.cudnn_rnn.CudnnLSTM``/``CudnnGRU`` checkpoint as its canonical names show it.

    ``CudnnOpaqueParamsSaveable`` (r1.15 ``contrib/cudnn_rnn/python/ops/cudnn_rnn_ops.py``
    lines 724-960) saves the opaque parameter buffer as the variables of the equivalent
    CudnnCompatible cells, under the scope the layer was built in (``prefix``):

        unidirectional  <prefix>rnn/multi_rnn_cell/cell_<k>/cudnn_compatible_lstm_cell/{kernel,bias}
        bidirectional   <prefix>stack_bidirectional_rnn/cell_<k>/bidirectional_rnn/{fw,bw}/
                        cudnn_compatible_gru_cell/{gates/kernel, candidate/input_projection/...}

    already in the cells' layouts (cuDNN's W/R matrices transposed and stacked, LSTM gates
    reordered from cuDNN's i, f, c, o to TF's i, c, f, o, the two bias sets summed except the
    GRU candidate's), so importing is renaming. The opaque buffer itself
    (``<layer>/opaque_kernel``) is device-specific and not read.
    """

    prefix: str  # "" or "encoder/": the variable scope the CudnnLSTM/CudnnGRU layer was built in
    kind: str  # "lstm" | "gru"
    num_layers: int
    num_units: int
    input_size: int
    bidirectional: bool
    variables: tuple[str, ...]

    def layer_scope(self, layer: int, direction: str = "") -> str:
        """The TF scope of one layer's cell (``direction`` "fw"/"bw" when bidirectional)."""
        if self.bidirectional:
            return (
                f"{self.prefix}stack_bidirectional_rnn/cell_{layer}/bidirectional_rnn/{direction}"
            )
        return f"{self.prefix}rnn/multi_rnn_cell/cell_{layer}"

    def make_cell(self, layer: int, **kwargs) -> nn.Module:
        """A built CudnnCompatible cell for ``layer`` (``kwargs``: dtype, device)."""
        width = self.num_units * (2 if self.bidirectional else 1)
        input_size = self.input_size if layer == 0 else width
        cls = CudnnCompatibleLSTMCell if self.kind == "lstm" else CudnnCompatibleGRUCell
        return cls(self.num_units, input_size=input_size, **kwargs)


_CUDNN_VAR_RE = re.compile(
    r"^(?P<prefix>(?:.*/)?)(?:rnn/multi_rnn_cell/cell_(?P<layer>\d+)"
    r"|stack_bidirectional_rnn/cell_(?P<blayer>\d+)/bidirectional_rnn/(?P<dir>fw|bw))"
    r"/cudnn_compatible_(?P<kind>lstm|gru)_cell/(?P<param>.+)$"
)


def parse_cudnn_variables(shapes: Mapping[str, tuple[int, ...]]) -> CudnnLayout:
    """Find the canonical variables a CudnnLSTM/CudnnGRU saveable wrote among ``shapes``
    (TF name -> shape) and infer cell kind, layers, direction, units and input depth.

    Raises :class:`TF1NameError` when there are none, when they mix kinds, scopes or
    directions, when a layer or parameter is missing, or when shapes disagree.
    """
    owner = "parse_cudnn_variables"
    found: set[tuple[str, str, int, str]] = set()  # (prefix, kind, layer, direction)
    for name in sorted(shapes):
        m = _CUDNN_VAR_RE.match(name)
        if m and not optimizer_variable(name):
            layer = int(m["layer"] if m["layer"] is not None else m["blayer"])
            found.add((m["prefix"], m["kind"], layer, m["dir"] or ""))
    if not found:
        raise TF1NameError(
            f"{owner}: no CudnnLSTM/CudnnGRU canonical variables (…/rnn/multi_rnn_cell/cell_0/"
            "cudnn_compatible_lstm_cell/kernel, …/stack_bidirectional_rnn/cell_0/"
            "bidirectional_rnn/fw/cudnn_compatible_gru_cell/gates/kernel) in the checkpoint"
        )
    prefixes = sorted({k[0] for k in found})
    kinds = sorted({k[1] for k in found})
    if len(prefixes) > 1 or len(kinds) > 1:
        raise TF1NameError(
            f"{owner}: canonical variables of several cuDNN layers (scopes {prefixes}, kinds "
            f"{kinds}); load each with load_tf1_cell and an explicit scope"
        )
    prefix, kind = prefixes[0], kinds[0]
    directions = sorted({k[3] for k in found})
    if directions not in ([""], ["bw", "fw"]):
        raise TF1NameError(f"{owner}: expected no direction or both fw and bw, got {directions}")
    layers = sorted({k[2] for k in found})
    if layers != list(range(len(layers))):
        raise TF1NameError(f"{owner}: layers {layers} are not 0..n-1")
    params = _CUDNN_GRU_PARAMS if kind == "gru" else ("kernel", "bias")
    cell_scope = f"cudnn_compatible_{kind}_cell"
    layout = CudnnLayout(prefix, kind, len(layers), 0, 0, directions != [""], ())
    names = []
    for layer in layers:
        for direction in directions:
            scope = f"{layout.layer_scope(layer, direction)}/{cell_scope}"
            missing = [p for p in params if f"{scope}/{p}" not in shapes]
            if missing:
                raise TF1NameError(f"{owner}: {scope} lacks {missing}")
            names.extend(f"{scope}/{p}" for p in params)
    first = f"{layout.layer_scope(0, directions[-1])}/{cell_scope}"
    if kind == "lstm":
        kernel, units = shapes[f"{first}/kernel"], shapes[f"{first}/bias"][0] // 4
    else:
        kernel, units = shapes[f"{first}/gates/kernel"], shapes[f"{first}/gates/bias"][0] // 2
    if len(kernel) != 2 or kernel[0] <= units:
        raise TF1NameError(
            f"{owner}: kernel of shape {list(kernel)} does not fit a {kind} cell of {units} units"
        )
    return replace(
        layout, num_units=units, input_size=kernel[0] - units, variables=tuple(sorted(names))
    )
