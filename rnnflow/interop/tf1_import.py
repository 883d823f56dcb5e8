"""Turn a TF1 checkpoint into rnnflow modules: single cells, or the tutorial's whole classifier.

Two entry points:

* :func:`load_tf1_cell` copies a TF1 cell's variables into an rnnflow cell (any of the TF1
  cells, stacked or wrapped), finding the variable scope itself.
* :func:`import_tutorial` rebuilds the "MNIST row by row" tutorial's model (and TF's Adam
  state, when the checkpoint has it) as a :class:`~rnnflow.models.SequenceClassifier` with a
  :class:`~rnnflow.training.TrainConfig`, ready for ``rnnflow.training.save_checkpoint``
  (``rnnflow.tasks.image.import_tutorial`` calls it with the image task's model and optimizer:
  ``interop`` imports nothing of ``training``).

TF1's AdamOptimizer vs ``torch.optim.Adam``: the slots ``X/Adam`` and ``X/Adam_1`` are
PyTorch's ``exp_avg`` and ``exp_avg_sq`` unchanged, and TF's ``beta1_power`` holds
``beta1 ** (t + 1)`` after ``t`` updates, so ``t`` (PyTorch's ``step``) is recovered from it and
checked against ``beta2_power``. The updates differ only in where epsilon enters:

    TF1:     theta -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    PyTorch: theta -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
           = TF1's update with eps replaced by eps * sqrt(1 - b2^t)

so PyTorch's epsilon is effectively smaller (by 2x at t ~ 300, by ~1% after 5000 steps); this
matters only for parameters whose sqrt(v) is within a few orders of magnitude of eps (1e-8).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from rnnflow.cells import MultiRNNCell
from rnnflow.interop.tf1_checkpoint import TF1Checkpoint
from rnnflow.interop.tf1_names import (
    PROJECTION_ROLES,
    TF1NameError,
    cell_tf_names,
    find_scope,
    match_projections,
    optimizer_variable,
    parse_rnn_variables,
)

__all__ = ["ImportedModel", "adam_step_from_powers", "import_tutorial", "load_tf1_cell"]


def _open(checkpoint: TF1Checkpoint | str | os.PathLike[str]) -> TF1Checkpoint:
    return checkpoint if isinstance(checkpoint, TF1Checkpoint) else TF1Checkpoint(checkpoint)


def _copy_into(
    owner: str, module: nn.Module, ckpt: TF1Checkpoint, mapping: Mapping[str, str]
) -> list[str]:
    """Load ``mapping`` (state_dict key -> TF name) into ``module`` strictly; returns notes."""
    tensors, notes = _checked_tensors(owner, module.state_dict(), ckpt, mapping)
    module.load_state_dict(tensors, strict=True)
    return notes


def _checked_tensors(
    owner: str, own: Mapping[str, Tensor], ckpt: TF1Checkpoint, mapping: Mapping[str, str]
) -> tuple[dict[str, Tensor], list[str]]:
    """The checkpoint's tensors for ``own`` (state_dict key -> the parameter it fills), each
    checked for shape, dtype and finite values before anything is loaded; and notes."""
    notes: list[str] = []
    missing = sorted(set(own) - set(mapping))
    if missing:
        raise TF1NameError(f"{owner}: no TF1 variable for rnnflow parameters {missing}")
    tensors: dict[str, Tensor] = {}
    for key, tf_name in mapping.items():
        value = ckpt.read(tf_name)
        target = own[key]
        if tuple(value.shape) != tuple(target.shape):
            raise TF1NameError(
                f"{owner}: {tf_name!r} has shape {list(value.shape)}, rnnflow parameter "
                f"{key!r} expects {list(target.shape)}"
            )
        tensors[key] = _as_float(owner, tf_name, value, target.dtype, notes)
    return tensors, notes


def _as_float(
    owner: str,
    tf_name: str,
    value: Tensor,
    dtype: torch.dtype,
    notes: list[str],
    *,
    non_negative: bool = False,
) -> Tensor:
    """``value`` (a TF1 variable or Adam slot) as ``dtype``, checked finite (and, for a second
    moment, ``non_negative``); a conversion adds a note to ``notes``, an integer or bool
    tensor is refused (its values are not weights)."""
    if value.dtype != dtype:
        if not value.dtype.is_floating_point:
            raise TF1NameError(
                f"{owner}: {tf_name!r} has dtype {value.dtype}, expected a float tensor"
            )
        notes.append(f"{tf_name}: converted {value.dtype} -> {dtype}")
    _check_finite(owner, tf_name, value, non_negative=non_negative)
    return value.to(dtype)


def _read_scalar(owner: str, ckpt: TF1Checkpoint, tf_name: str) -> float:
    """The float scalar ``tf_name`` (TF's ``beta1_power``/``beta2_power``: shape [], float),
    or :class:`TF1NameError` naming it, the expected and the actual shape or dtype."""
    value = ckpt.read(tf_name)
    if value.dim() != 0:
        raise TF1NameError(
            f"{owner}: {tf_name!r} has shape {list(value.shape)}, expected a scalar [] "
            "(TF's AdamOptimizer stores it as one float)"
        )
    if not value.dtype.is_floating_point:
        raise TF1NameError(f"{owner}: {tf_name!r} has dtype {value.dtype}, expected a float scalar")
    _check_finite(owner, tf_name, value)
    return float(value)


def _check_finite(owner: str, tf_name: str, value: Tensor, *, non_negative: bool = False) -> None:
    """Refuse NaN/inf (and, for a second moment, negative) values: they would train to NaN."""
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise TF1NameError(f"{owner}: {tf_name!r} holds NaN or infinite values")
    if non_negative and bool((value < 0).any()):
        raise TF1NameError(
            f"{owner}: {tf_name!r} holds negative values (min {float(value.min()):g}); Adam's "
            "second moment (Adam_1) is a running mean of squares, never negative"
        )


def load_tf1_cell(
    cell: nn.Module,
    checkpoint: TF1Checkpoint | str | os.PathLike[str],
    *,
    scope: str | None = None,
    direction: str = "",
) -> str:
    """Copy a TF1 cell's variables into the rnnflow ``cell`` (built, or built from the kernel).

    ``scope``: the variable scope the TF1 cell ran in (``"rnn"``, ``"encoder/rnn"``,
    ``"bidirectional_rnn/fw"``); None finds the one scope whose names fit ``cell``,
    restricted to scopes ending in ``direction`` (``"fw"``/``"bw"``) when given.
    Returns the scope used.

    Raises :class:`TF1NameError` when no scope or several fit, when the cell's scope holds model
    variables the cell has no parameter for (TF's cell had peepholes, a projection or more
    layers: loading the rest would compute other numbers), or when a shape does not fit.

        cell = MultiRNNCell([GRUCell(64), GRUCell(64)])
        load_tf1_cell(cell, "run/model.ckpt")      # rnn/multi_rnn_cell/cell_k/gru_cell/...
    """
    ckpt = _open(checkpoint)
    if scope is None:
        scope = find_scope(cell, ckpt.entries, suffix=direction)
    mapping = cell_tf_names(cell, scope)
    _refuse_unclaimed(cell, ckpt.entries, scope)
    if not getattr(cell, "built", True):
        # Unbuilt cells learn their input depth from the kernel as load_state_dict runs.
        _copy_unbuilt(cell, ckpt, mapping)
    else:
        _copy_into("load_tf1_cell", cell, ckpt, mapping)
    return scope


def _refuse_unclaimed(cell: nn.Module, names: Iterable[str], scope: str) -> None:
    """Refuse model variables inside the cell's own scope that no rnnflow parameter takes.

    They mean the TF1 cell was built differently (peepholes' ``w_*_diag``, a projection's
    ``projection/kernel``, more ``cell_k`` layers): loading the rest would run without them and
    give wrong outputs, silently. Optimizer slots (``kernel/Adam``) are not model variables.
    """
    own_scopes = {name.split("/")[0] for name in cell_tf_names(cell, "").values() if "/" in name}
    if len(own_scopes) != 1:  # variables at the scope's root: no scope of the cell's own
        return
    prefix = "/".join(filter(None, [scope, own_scopes.pop()])) + "/"
    claimed = set(cell_tf_names(cell, scope).values())
    unclaimed = sorted(
        name
        for name in names
        if name.startswith(prefix) and name not in claimed and not optimizer_variable(name)
    )
    if unclaimed:
        raise TF1NameError(
            f"load_tf1_cell: the checkpoint's scope {prefix[:-1]!r} holds variables "
            f"{type(cell).__name__} has no parameter for: {unclaimed}; build the cell as TF1 "
            "did (w_*_diag: use_peepholes=True / use_peephole=True; projection/kernel: "
            "num_proj; cell_k: as many layers)"
        )


def _copy_unbuilt(cell: nn.Module, ckpt: TF1Checkpoint, mapping: Mapping[str, str]) -> None:
    missing = [name for name in mapping.values() if name not in ckpt]
    if missing:
        raise TF1NameError(f"load_tf1_cell: the checkpoint lacks {missing}")
    # A copy of the cell learns its input depth from the kernel (the lazy cells build in
    # load_state_dict); its parameters' shapes and dtypes are then checked as a built cell's,
    # before the cell itself is touched.
    probe = copy.deepcopy(cell)
    placeholders = {}
    for key, name in mapping.items():
        value = ckpt.read(name)
        dtype = value.dtype if value.dtype.is_floating_point else torch.get_default_dtype()
        placeholders[key] = torch.zeros(value.shape, dtype=dtype)
    try:
        probe.load_state_dict(placeholders, strict=True)
    except RuntimeError as err:  # a shape mismatch: reported below from the built probe
        if not getattr(probe, "built", True):
            kernels = {n: list(ckpt.shapes()[n]) for n in mapping.values() if "kernel" in n}
            raise TF1NameError(
                f"load_tf1_cell: {type(cell).__name__} cannot be built from the checkpoint's "
                f"kernels {kernels} (check num_units / num_proj)"
            ) from err
    tensors, _ = _checked_tensors("load_tf1_cell", probe.state_dict(), ckpt, mapping)
    cell.load_state_dict(tensors, strict=True)


# ----------------------------------------------------------------------------- Adam
def adam_step_from_powers(
    beta1_power: float, beta2_power: float, *, beta1: float = 0.9, beta2: float = 0.999
) -> int:
    """The number of Adam updates ``t`` behind TF1's ``beta1_power`` = beta1^(t+1) and
    ``beta2_power`` = beta2^(t+1), each checked against the other.

    ``beta1_power`` gives ``t`` exactly while it is a normal float32 (t < ~800 for 0.9);
    after it underflows, ``beta2_power`` gives it to within float32 rounding (±t * 1e-4).
    """
    owner = "adam_step_from_powers"
    for name, power, beta in (("beta1", beta1_power, beta1), ("beta2", beta2_power, beta2)):
        if not 0.0 < beta < 1.0:
            raise ValueError(f"{owner}: {name} must be in (0, 1), got {beta}")
        if not 0.0 <= power <= beta * (1 + 1e-6):
            raise ValueError(
                f"{owner}: {name}_power={power} cannot be {name}^(t+1) for {name}={beta}"
            )
    estimates = []
    for power, beta in ((beta1_power, beta1), (beta2_power, beta2)):
        if power > 1e-30:  # well inside float32's normal range: log is reliable
            estimates.append(math.log(power) / math.log(beta) - 1.0)
        else:
            estimates.append(None)
    t1, t2 = estimates
    if t1 is None and t2 is None:
        raise ValueError(f"{owner}: beta1_power and beta2_power both underflowed to ~0")
    if t1 is not None:
        step = round(t1)
        if abs(t1 - step) > 1e-2 + 1e-5 * step:
            raise ValueError(
                f"{owner}: beta1_power={beta1_power} is not beta1^(t+1) for any whole t with "
                f"beta1={beta1} (t = {t1:.4f}); was the optimizer built with another beta1?"
            )
    else:
        step = round(t2)  # type: ignore[arg-type]
    if t2 is not None and abs(t2 - step) > 0.5 + 2e-4 * step:
        raise ValueError(
            f"{owner}: beta2_power={beta2_power} means t = {t2:.2f}, beta1_power={beta1_power} "
            f"means t = {step}: inconsistent for beta1={beta1}, beta2={beta2}"
        )
    return max(step, 0)


# ----------------------------------------------------------------------------- the tutorial
@dataclass
class ImportedModel:
    """The tutorial's model rebuilt from a TF1 checkpoint."""

    model: nn.Module  # SequenceClassifier, eval mode, float32
    config: Any  # rnnflow.training.TrainConfig describing it
    mapping: dict[str, str]  # rnnflow parameter -> TF1 variable
    optimizer_state: dict[str, Any] | None  # torch.optim.Adam state_dict, or None
    step: int  # Adam updates TF had done (0 without optimizer state)
    skipped: list[str] = field(default_factory=list)  # TF variables not imported
    notes: list[str] = field(default_factory=list)


def _model_cell_names(model: nn.Module, layout: Any) -> dict[str, str]:
    """rnnflow parameter -> TF name for the recurrent part of a SequenceClassifier."""
    pairs = [("cell_fw", f"{layout.scope}/fw"), ("cell_bw", f"{layout.scope}/bw")]
    if not layout.bidirectional:
        pairs = [("cell", layout.scope)]
    names: dict[str, str] = {}
    for attr, scope in pairs:
        cell = getattr(model, attr)
        if layout.multi and not isinstance(cell, MultiRNNCell):  # a 1-layer MultiRNNCell in TF
            sub = cell_tf_names(MultiRNNCell([cell]), scope)
            names.update({f"{attr}.{k[len('cell_0.') :]}": v for k, v in sub.items()})
        else:
            names.update({f"{attr}.{k}": v for k, v in cell_tf_names(cell, scope).items()})
    return names


def import_tutorial(
    checkpoint: TF1Checkpoint | str | os.PathLike[str],
    *,
    base_config: Any,
    build_model: Callable[..., nn.Module],
    build_optimizer: Callable[[Any, nn.Module], torch.optim.Optimizer],
    overrides: Mapping[str, str] | None = None,
    ignore: Iterable[str] = (),
    beta1: float = 0.9,
    beta2: float = 0.999,
    with_optimizer: bool = True,
) -> ImportedModel:
    """Rebuild the TF1 tutorial's classifier (any TF1 cell, stacked or bidirectional) from
    ``checkpoint`` as an rnnflow ``SequenceClassifier``, with TF's Adam state if present.

    The cells' variables are found by their TF1 names (any scope), which also give the cell
    type, units, layers and direction; the four unnamed ``Variable*`` of the projections are
    matched by shape (:func:`~rnnflow.interop.tf1_names.match_projections`).

    Args:
        overrides: TF1 variable -> rnnflow parameter (``{"Variable_1": "weights_out"}``),
            applied before the automatic matching (the CLI's ``--map NAME=PARAM``).
        ignore: TF1 variables to leave out (a ``global_step``-like extra, another head).
        base_config: the TrainConfig to start from (``rnnflow.tasks.image.import_tutorial``
            passes the ``tutorial`` preset); the model fields (cell, units, layers, ...) are
            replaced by what the checkpoint holds.
        build_model, build_optimizer: the image task's (``rnnflow.tasks.image``):
            ``build_model(config, num_classes=C)`` and ``build_optimizer(config, model)``;
            passed in because ``interop`` sits below the training layers.
        beta1, beta2: the TF AdamOptimizer's betas (not stored in TF1 checkpoints).
        with_optimizer: import the Adam slots (when all parameters have them).
    """
    owner = "import_tutorial"
    ckpt = _open(checkpoint)
    overrides = dict(overrides or {})
    ignore = set(ignore)
    shapes = ckpt.shapes()
    for name in [*overrides, *ignore]:
        if name not in shapes:
            raise TF1NameError(
                f"{owner}: no variable {name!r} in the checkpoint (--map/--ignore); it has "
                f"{sorted(n for n in shapes if not optimizer_variable(n))}"
            )
    for name, param in overrides.items():
        if param not in PROJECTION_ROLES and not param.startswith(
            ("cell.", "cell_fw.", "cell_bw.")
        ):
            raise TF1NameError(
                f"{owner}: --map {name}={param}: unknown rnnflow parameter {param!r}; expected "
                f"one of {list(PROJECTION_ROLES)} or a cell parameter (cell.kernel, "
                "cell.cell_0.bias, cell_fw.gates.kernel, ...)"
            )
    notes: list[str] = []
    skipped = sorted(ignore)
    model_vars = {
        n: s
        for n, s in shapes.items()
        if n not in ignore and (n in overrides or not optimizer_variable(n))
    }
    free = {n: s for n, s in model_vars.items() if n not in overrides}
    layout = parse_rnn_variables(
        {n: s for n, s in model_vars.items() if overrides.get(n) not in PROJECTION_ROLES}
    )
    hidden = layout.num_units * (2 if layout.bidirectional else 1)
    roles = [r for r in PROJECTION_ROLES if r not in overrides.values()]
    known = {param: tuple(shapes[name]) for name, param in overrides.items()}
    rest = {n: s for n, s in free.items() if n not in layout.variables}
    projections, more = match_projections(
        rest,
        roles=roles,
        projection_size=layout.input_size,
        features=hidden,
        known={k: v for k, v in known.items() if k in PROJECTION_ROLES},
    )
    notes += more
    by_param = {**{p: n for n, p in overrides.items()}, **projections}
    w_in, w_out = shapes[by_param["weights_in"]], shapes[by_param["weights_out"]]
    if w_in[0] != 28:
        raise TF1NameError(
            f"{owner}: weights_in ({by_param['weights_in']}) has shape {list(w_in)}; the "
            "tutorial's model reads 28 pixels per row, so it must be [28, P]"
        )
    # Everything sized by the index is checked against the data files before a model exists.
    ckpt.check_data([*model_vars, *(n for n in shapes if with_optimizer and optimizer_variable(n))])
    config = replace(
        base_config,
        cell=layout.kind,
        num_units=layout.num_units,
        num_layers=layout.num_layers,
        bidirectional=layout.bidirectional,
        projection_size=None if layout.input_size == layout.num_units else layout.input_size,
        optimizer="adam",
        weight_decay=0.0,
    )
    model = build_model(config, num_classes=w_out[1])
    mapping = {**_model_cell_names(model, layout), **projections}
    for tf_name, param in overrides.items():  # --map wins over the automatic names
        mapping = {p: n for p, n in mapping.items() if n != tf_name}
        mapping[param] = tf_name
    unknown_params = sorted(set(mapping) - set(model.state_dict()))
    if unknown_params:
        raise TF1NameError(
            f"{owner}: --map names unknown rnnflow parameters {unknown_params}; the model has "
            f"{sorted(model.state_dict())}"
        )
    used = list(mapping.values())
    duplicates = sorted({n for n in used if used.count(n) > 1})
    if duplicates:
        raise TF1NameError(f"{owner}: TF1 variables mapped twice: {duplicates}")
    unused = sorted(set(model_vars) - set(used))
    if unused:
        raise TF1NameError(
            f"{owner}: TF1 variables left unmapped: "
            + ", ".join(f"{n} {list(shapes[n])}" for n in unused)
            + "; map them with --map NAME=PARAM or leave them out with --ignore NAME"
        )
    notes += _copy_into(owner, model, ckpt, mapping)
    model.eval()

    optimizer_state, step = None, 0
    if with_optimizer:
        optimizer_state, step, more, extra = _adam_state(
            ckpt, model, mapping, config, build_optimizer, beta1=beta1, beta2=beta2
        )
        notes += more
        skipped += extra
    else:
        skipped += sorted(n for n in shapes if optimizer_variable(n) and n not in overrides)
    return ImportedModel(model, config, mapping, optimizer_state, step, skipped, notes)


def _adam_state(
    ckpt: TF1Checkpoint,
    model: nn.Module,
    mapping: Mapping[str, str],
    config: Any,
    build_optimizer: Any,
    *,
    beta1: float,
    beta2: float,
) -> tuple[dict[str, Any] | None, int, list[str], list[str]]:
    """(torch Adam state_dict or None, step, notes, TF optimizer variables not imported)."""
    owner = "import_tutorial"
    optimizer_names = sorted(n for n in ckpt.entries if optimizer_variable(n))
    names = dict(model.named_parameters())
    slots = {p: (f"{mapping[p]}/Adam", f"{mapping[p]}/Adam_1") for p in names}
    present = [p for p, (m, v) in slots.items() if m in ckpt and v in ckpt]
    if not present:
        note = "no Adam slots in the checkpoint: continued training starts a fresh Adam"
        return None, 0, [note], optimizer_names
    if len(present) != len(names) or "beta1_power" not in ckpt or "beta2_power" not in ckpt:
        lacking = sorted(set(names) - set(present))
        raise TF1NameError(
            f"{owner}: incomplete Adam state (no slots for {lacking} or no "
            "beta1_power/beta2_power); import without it (--no-optimizer)"
        )
    b1p = _read_scalar(owner, ckpt, "beta1_power")
    b2p = _read_scalar(owner, ckpt, "beta2_power")
    step = adam_step_from_powers(b1p, b2p, beta1=beta1, beta2=beta2)
    optimizer = build_optimizer(config, model)
    for group in optimizer.param_groups:
        group["betas"] = (beta1, beta2)
    state_dict = optimizer.state_dict()
    order = {id(p): k for k, p in enumerate(model.parameters())}
    state: dict[int, dict[str, Any]] = {}
    notes: list[str] = []
    for pname, param in names.items():
        m_name, v_name = slots[pname]
        m, v = ckpt.read(m_name), ckpt.read(v_name)
        for slot, value in ((m_name, m), (v_name, v)):
            if tuple(value.shape) != tuple(param.shape):
                raise TF1NameError(
                    f"{owner}: slot {slot!r} has shape {list(value.shape)}, "
                    f"parameter {pname!r} has {list(param.shape)}"
                )
        state[order[id(param)]] = {
            "step": torch.tensor(float(step)),
            "exp_avg": _as_float(owner, m_name, m, param.dtype, notes).clone(),
            "exp_avg_sq": _as_float(
                owner, v_name, v, param.dtype, notes, non_negative=True
            ).clone(),
        }
    state_dict["state"] = state
    optimizer.load_state_dict(state_dict)  # validates the layout against the model
    used = {"beta1_power", "beta2_power", *(s for pair in slots.values() for s in pair)}
    notes.append(
        f"Adam state imported: step {step} (beta1_power={b1p:.6g}, beta2_power={b2p:.6g}, "
        f"betas {beta1}, {beta2}); PyTorch's Adam applies epsilon after the bias correction "
        "of v, so its epsilon acts as eps * sqrt(1 - beta2^t) in TF's formula"
    )
    return optimizer.state_dict(), step, notes, [n for n in optimizer_names if n not in used]
