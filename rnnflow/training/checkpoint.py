"""Checkpoints: one safetensors file per snapshot, versioned, written atomically, loaded strictly.

Layout of ``checkpoint.safetensors`` (format ``rnnflow.checkpoint``, version 2)::

    tensors   model.<name>                 the model's state_dict (the unwrapped module)
              optimizer.<param>.<key>      per-parameter optimizer tensors (Adam: exp_avg, ...)
              rng.<name>                   RNG states as uint8 tensors (torch, CUDA, augment)
              ema.<name>                   the weight average's state_dict (only with ema_decay > 0)
    metadata  format, format_version       "rnnflow.checkpoint", "2"
              task                         the task that wrote it ("classifier", "charlm", ...;
                                           absent in image-classifier files of older versions)
              config                       asdict(the task's config) as JSON
              progress                     step, epoch, examples, best score, ... as JSON
              optimizer                    param_groups and non-tensor state as JSON (if saved)
              (other keys)                 the task's own metadata (a char LM's "vocab", ...)

Loading never executes code from the file (safetensors holds only tensors and strings), and a
truncated, foreign or newer file raises :class:`CheckpointError` naming the file and the problem.
Writes go to a temporary file in the same folder, are fsync'ed, then ``os.replace``'d over the
target: a crash mid-save leaves the previous checkpoint intact.

Version history: 1 had no ``ema.`` tensors; version 1 files still load (with an empty ``ema``).
Progress of files written before the one ``fit`` engine (``best_val_accuracy``, a char LM's
``best_val_loss`` and ``tokens``) is read as ``best_score`` (accuracy; minus the loss).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from rnnflow._atomic import atomic_write_bytes  # re-exported: its home is rnnflow._atomic
from rnnflow._paths import path_problem
from rnnflow.training.config import config_from_dict as classifier_config_from_dict

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "atomic_write_bytes",
    "check_progress",
    "check_progress_bounds",
    "check_run_config",
    "check_weights_fit",
    "load_checkpoint",
    "load_model_state",
    "read_checkpoint_file",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

FORMAT = "rnnflow.checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = ("1", "2")


class CheckpointError(ValueError):
    """A file is not a usable rnnflow checkpoint (the message names the file and why)."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file, as plain data."""

    path: Path
    config: Any  # the task's config (a FitConfig subclass)
    model: dict[str, Tensor]
    progress: dict[str, Any]
    optimizer: dict[str, Any] | None = None  # a torch optimizer state_dict, ready to load
    rng: dict[str, Tensor] = field(default_factory=dict)
    ema: dict[str, Tensor] = field(default_factory=dict)  # the weight average (empty: none)
    task: str = "classifier"  # the task that wrote it (metadata "task")
    metadata: dict[str, str] = field(default_factory=dict)  # the task's own metadata


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().clone().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: Any) -> dict[str, Any]:
    """The torch optimizer state_dict saved by :func:`_flatten_optimizer`, checked for layout:
    raises ``ValueError`` naming what is malformed (every number finite, every index known)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("param_groups"), list):
        raise ValueError("the optimizer metadata needs a 'param_groups' list")
    groups, indices = [], []
    for group in meta["param_groups"]:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise ValueError(
                f"a param group must be an object with a 'params' list: {group!r:.200}"
            )
        for key, value in group.items():
            numbers = value if key in ("params", "betas") and isinstance(value, list) else [value]
            for x in numbers:
                if isinstance(x, float) and not math.isfinite(x):
                    raise ValueError(f"param group entry {key!r} is {value!r}, expected finite")
        if not all(type(i) is int and i >= 0 for i in group["params"]):
            raise ValueError(f"param group 'params' must be indices >= 0, got {group['params']}")
        indices += group["params"]
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    if len(set(indices)) != len(indices):
        raise ValueError(f"a parameter index appears in two param groups: {sorted(indices)}")
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    scalars = meta.get("scalars", {})
    if not isinstance(scalars, dict) or not all(isinstance(v, dict) for v in scalars.values()):
        raise ValueError("the optimizer's 'scalars' must map parameter indices to objects")
    for index, values in scalars.items():
        state.setdefault(int(index), {}).update(values)
    unknown = sorted(set(state) - set(indices))
    if unknown:
        raise ValueError(f"state for parameter indices {unknown}, which no param group holds")
    return {"state": state, "param_groups": groups}


CORE_METADATA = ("format", "format_version", "task", "config", "progress", "optimizer")


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    config: Any,
    progress: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, Tensor] | None = None,
    ema: nn.Module | None = None,
    task: str = "classifier",
    metadata: dict[str, str] | None = None,
) -> None:
    """Write model (+ optimizer, RNG states, weight average), config, progress, the task's
    name and its ``metadata`` (string values; keys other than :data:`CORE_METADATA`)
    atomically."""
    tensors: dict[str, Tensor] = {
        f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()
    }
    extra = dict(metadata or {})
    clash = sorted(set(extra) & set(CORE_METADATA))
    if clash:
        raise ValueError(f"save_checkpoint: metadata keys {clash} are reserved")
    metadata = {
        **extra,
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "task": task,
        "config": json.dumps(asdict(config)),
        "progress": json.dumps(progress),
    }
    if optimizer is not None:
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
        metadata["optimizer"] = json.dumps(opt_meta)
    for name, value in (rng or {}).items():
        tensors[f"rng.{name}"] = value.detach().cpu().clone().contiguous()
    if ema is not None:
        for name, value in ema.state_dict().items():
            tensors[f"ema.{name}"] = value.detach().cpu().clone().contiguous()
    atomic_write_bytes(path, st_save(tensors, metadata=metadata))
    logger.debug("saved checkpoint %s (step %s)", path, progress.get("step"))


MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header

# safetensors dtype -> bytes per element
_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def _read_header(path: Path, f: BinaryIO, size: int) -> dict[str, Any]:
    """The safetensors JSON header of the open file ``f`` (``size`` bytes), checked against the
    file's size before any tensor byte is read: a header that describes more (or fewer) bytes
    than the file holds, or any malformed entry, raises :class:`CheckpointError`."""
    if size < 8:
        raise CheckpointError(
            f"{path}: not an rnnflow checkpoint: {size} bytes is too short for a "
            "safetensors file (truncated?)"
        )
    header_len = int.from_bytes(f.read(8), "little")
    if header_len > size - 8:
        raise CheckpointError(
            f"{path}: truncated or not a safetensors file: the header declares {header_len} "
            f"bytes, the file has {size - 8} after the length field"
        )
    if header_len > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{path}: not an rnnflow checkpoint: a {header_len}-byte header is over the "
            f"{MAX_HEADER_BYTES}-byte limit of safetensors"
        )
    try:
        header = json.loads(f.read(header_len))
    except RecursionError as exc:
        raise CheckpointError(
            f"{path}: not an rnnflow checkpoint: the safetensors header is nested too deeply"
        ) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not an rnnflow checkpoint: the safetensors header is not JSON ({exc})"
        ) from exc
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path}: not an rnnflow checkpoint: the safetensors header is a JSON "
            f"{type(header).__name__}, expected an object"
        )
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(
            f"{path}: not an rnnflow checkpoint: '__metadata__' must map names to strings"
        )
    data_bytes = size - 8 - header_len
    end = 0
    for name, info in header.items():
        if name != "__metadata__":
            end = max(end, _tensor_extent(path, name, info))
    if end != data_bytes:
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint: the header describes {end} bytes of "
            f"tensor data, the file holds {data_bytes}"
        )
    return header


def _tensor_extent(path: Path, name: str, info: Any) -> int:
    """The end offset of one header entry, after checking its dtype, shape and byte count."""
    ok = (
        isinstance(info, dict)
        and isinstance(info.get("dtype"), str)
        and info["dtype"] in _ITEMSIZE
        and isinstance(info.get("shape"), list)
        and all(type(d) is int and d >= 0 for d in info["shape"])
        and isinstance(info.get("data_offsets"), list)
        and len(info["data_offsets"]) == 2
        and all(type(o) is int and o >= 0 for o in info["data_offsets"])
    )
    if not ok:
        raise CheckpointError(
            f"{path}: corrupt checkpoint: tensor {name!r} needs a known dtype, a shape of "
            f"non-negative ints and two data_offsets, got {str(info)[:200]}"
        )
    begin, end = info["data_offsets"]
    nbytes = math.prod(info["shape"]) * _ITEMSIZE[info["dtype"]]
    if end - begin != nbytes:
        raise CheckpointError(
            f"{path}: corrupt checkpoint: tensor {name!r} is {info['dtype']}{info['shape']} "
            f"({nbytes} bytes) but its data_offsets span {end - begin} bytes"
        )
    return end


def _check_dtypes(path: Path, header: dict[str, Any]) -> None:
    """Weights and optimizer state are floating point; RNG states are 1-D uint8."""
    for name, info in header.items():
        group = name.partition(".")[0]
        if group in ("model", "ema", "optimizer") and info["dtype"] not in _FLOAT_DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} is stored as {info['dtype']}, expected a floating-point "
                f"dtype ({', '.join(_FLOAT_DTYPES)})"
            )
        if group == "rng" and (info["dtype"] != "U8" or len(info["shape"]) != 1):
            raise CheckpointError(
                f"{path}: RNG state {name!r} is {info['dtype']}{info['shape']}, expected a "
                "1-D U8 tensor"
            )


def _check_values(path: Path, grouped: dict[str, dict[str, Tensor]]) -> None:
    """Finite weights and optimizer state, a non-negative second moment, usable RNG states."""
    for group in ("model", "ema", "optimizer"):
        for name, value in grouped.get(group, {}).items():
            label = name if group == "optimizer" else f"{group}.{name}"
            if not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"{path}: tensor {label!r} holds NaN or infinite values")
            if name.endswith("exp_avg_sq") and bool((value < 0).any()):
                raise CheckpointError(
                    f"{path}: tensor {label!r} (Adam's second moment) holds negative values"
                )
            if name.endswith(".step") and (value.numel() != 1 or float(value) < 0):
                raise CheckpointError(
                    f"{path}: tensor {label!r} must be one non-negative step count, got "
                    f"shape {list(value.shape)}"
                )
    for name, value in grouped.get("rng", {}).items():
        if name.rsplit(".", 1)[-1] in ("torch", "augment"):  # CPU generators: try the state
            try:
                torch.Generator().set_state(value)
            except RuntimeError as exc:
                raise CheckpointError(
                    f"{path}: RNG state 'rng.{name}' is not a torch CPU generator state ({exc})"
                ) from None


def read_checkpoint_file(
    path: str | os.PathLike[str], *, reader: str, groups: tuple[str, ...]
) -> tuple[dict[str, str], dict[str, dict[str, Tensor]], dict[str, Any] | None]:
    """What every rnnflow checkpoint reader does: ``(metadata, tensors by group, optimizer)``.

    Checks the format and version, decodes the tensors (never unpickling anything), sorts them by
    their ``group.`` prefix into ``groups`` (optimizer tensors keep their full names; a prefix
    outside ``groups`` is an error) and rebuilds the optimizer state_dict if one was saved.
    ``reader`` names the calling function in the missing-file error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{reader}: {path}: {path_problem(path)}")
    with open(path, "rb") as f:
        header = _read_header(path, f, os.fstat(f.fileno()).st_size)
        meta: dict[str, str] = header.get("__metadata__", {})
        if meta.get("format") == FORMAT and meta.get("format_version") in READABLE_VERSIONS:
            f.seek(0)
            data = f.read()
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an rnnflow checkpoint: metadata 'format' is "
            f"{meta.get('format')!r}, expected {FORMAT!r}"
        )
    version = meta.get("format_version", "?")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version} is not supported (this rnnflow reads "
            f"versions {', '.join(READABLE_VERSIONS)}); upgrade rnnflow"
        )
    _check_dtypes(path, header)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint data ({exc})") from exc
    try:
        opt_meta = json.loads(meta["optimizer"]) if "optimizer" in meta else None
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata: {exc}") from exc
    grouped: dict[str, dict[str, Tensor]] = {group: {} for group in groups}
    for name, value in tensors.items():
        group, _, rest = name.partition(".")
        if group not in grouped or not rest:
            raise CheckpointError(f"{path}: unexpected tensor {name!r} in an rnnflow checkpoint")
        grouped[group][name if group == "optimizer" else rest] = value
    _check_values(path, grouped)
    optimizer = None
    if opt_meta is not None:
        try:
            optimizer = _unflatten_optimizer(grouped.get("optimizer", {}), opt_meta)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: corrupt optimizer state: {exc}") from exc
    return meta, grouped, optimizer


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    config_from_dict: Callable[..., Any] = classifier_config_from_dict,
    task: str = "classifier",
) -> Checkpoint:
    """Read a checkpoint of ``task`` written by :func:`save_checkpoint`; never unpickles
    anything. ``config_from_dict(data, source=...)`` parses that task's config
    (``rnnflow.tasks.load_checkpoint`` picks both from the file's own record).

    Raises ``FileNotFoundError`` if missing and :class:`CheckpointError` for a truncated or
    corrupt file, a safetensors file that is not an rnnflow checkpoint, a newer format, or a
    checkpoint of another task (a file without a task is an image classifier's).
    """
    path = Path(path)
    meta, groups, optimizer = read_checkpoint_file(
        path, reader="load_checkpoint", groups=("model", "optimizer", "rng", "ema")
    )
    recorded = meta.get("task", "classifier")
    if recorded != task:
        raise CheckpointError(f"{path}: a checkpoint of task {recorded!r}, not {task!r}")
    try:
        config = config_from_dict(json.loads(meta["config"]), source=f"{path}: config")
        progress = json.loads(meta["progress"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata: {exc}") from exc
    from rnnflow.training.engine import Progress  # engine.py imports this module

    progress = check_progress(path, _upgrade_progress(path, progress), Progress)
    # a config that fixes its step count (the classifier's) bounds "step"; fit checks the
    # others against the task's data
    total = getattr(config, "steps", None)
    check_progress_bounds(path, progress, batch_size=config.batch_size, total_steps=total)
    return Checkpoint(
        path=path,
        config=config,
        model=groups["model"],
        progress=progress,
        optimizer=optimizer,
        rng=groups["rng"],
        ema=groups["ema"],
        task=recorded,
        metadata={k: v for k, v in meta.items() if k not in CORE_METADATA},
    )


def _upgrade_progress(path: Path, progress: Any) -> Any:
    """Progress of the two loops before ``fit`` in today's fields: ``best_val_accuracy`` (-1:
    none) and a char LM's ``best_val_loss`` (None: none) become ``best_score`` (the accuracy;
    minus the loss), a char LM's ``tokens`` count goes. ``best_score`` must be None or a finite
    number and ``window_sums`` None or an object of finite numbers (:class:`CheckpointError`
    otherwise)."""
    if not isinstance(progress, dict):
        return progress  # check_progress says what is wrong
    progress = dict(progress)
    progress.pop("tokens", None)
    for old, sign in (("best_val_accuracy", 1.0), ("best_val_loss", -1.0)):
        if old not in progress:
            continue
        value = progress.pop(old)
        if value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
            raise CheckpointError(
                f"{path}: corrupt progress metadata: {old!r} is {value!r}, expected a finite number"
            )
        none = value is None or (old == "best_val_accuracy" and value < 0)
        progress.setdefault("best_score", None if none else sign * float(value))
    score = progress.get("best_score")
    if score is not None and (type(score) not in (int, float) or not math.isfinite(score)):
        raise CheckpointError(
            f"{path}: corrupt progress metadata: 'best_score' is {score!r}, expected null or a "
            "finite number"
        )
    sums = progress.get("window_sums")
    if sums is not None and not (
        isinstance(sums, dict)
        and all(
            isinstance(k, str) and type(v) in (int, float) and math.isfinite(v)
            for k, v in sums.items()
        )
    ):
        raise CheckpointError(
            f"{path}: corrupt progress metadata: 'window_sums' is {str(sums)[:200]}, expected "
            "null or an object of finite numbers"
        )
    return progress


REQUIRED_PROGRESS = ("step",)  # every other field has a default


def check_progress(path: Path, progress: Any, fields_of: type) -> dict[str, Any]:
    """``progress`` with every field of the dataclass ``fields_of`` (defaults filled in), after
    refusing what ``fields_of(**progress)`` cannot hold: unknown keys, no ``step``, a value of the
    wrong type, a count below its start value (each field's default), a non-finite float.
    Raises :class:`CheckpointError` naming ``path``.
    """
    if not isinstance(progress, dict):
        raise CheckpointError(
            f"{path}: corrupt progress metadata: expected a JSON object, got "
            f"{type(progress).__name__}"
        )
    defaults = {f.name: f.default for f in fields(fields_of)}
    missing = [k for k in REQUIRED_PROGRESS if k not in progress]
    if missing:
        raise CheckpointError(f"{path}: corrupt progress metadata: no {missing[0]!r}")
    unknown = sorted(set(progress) - set(defaults))
    if unknown:
        raise CheckpointError(
            f"{path}: corrupt progress metadata: unknown keys {unknown} (expected keys among "
            f"{sorted(defaults)})"
        )
    for key, value in progress.items():
        start = defaults[key]
        if isinstance(start, bool):
            ok = isinstance(value, bool)
        elif isinstance(start, int):
            ok = type(value) is int and value >= start
        elif isinstance(start, float):
            ok = type(value) in (int, float) and math.isfinite(value) and value >= start
        else:
            continue
        if not ok:
            raise CheckpointError(
                f"{path}: corrupt progress metadata: {key!r} is {value!r}, expected a "
                f"{type(start).__name__}" + ("" if isinstance(start, bool) else f" >= {start}")
            )
    return {**defaults, **progress}


def check_progress_bounds(
    path: Path,
    progress: dict[str, Any],
    *,
    batch_size: int,
    total_steps: int | None = None,
) -> None:
    """Refuse progress counters (already typed by :func:`check_progress`) that the run's config
    cannot have produced: ``step`` > ``total_steps`` (when known), ``examples`` > ``step x
    batch_size`` (every step sees at most one batch), ``epoch``, ``batch_in_epoch`` or
    ``best_step`` > ``step``. Raises
    :class:`CheckpointError` naming ``path``, the field, its value and the bound.
    """
    step = progress["step"]
    if total_steps is not None and step > total_steps:
        raise CheckpointError(
            f"{path}: corrupt progress metadata: 'step' is {step}, but its config's run has only "
            f"{total_steps} steps"
        )
    bounds = {
        "examples": (step * batch_size, f"step x batch_size = {step} x {batch_size}"),
        "window_examples": (progress.get("examples", 0), "examples"),
        "epoch": (step, "step"),
        "batch_in_epoch": (step, "step"),
        "best_step": (step, "step"),
    }
    for key, (high, what) in bounds.items():
        if key in progress and progress[key] > high:
            raise CheckpointError(
                f"{path}: corrupt progress metadata: {key!r} is {progress[key]}, more than "
                f"{what} ({high})"
            )


def check_weights_fit(checkpoint: Any, build: Callable[[], nn.Module]) -> None:
    """Refuse a checkpoint whose config does not describe its stored tensors, before any model
    is allocated: ``build()`` (the model the config describes) runs on the ``meta`` device, and
    every stored weight (``model``, ``ema``) and optimizer tensor must have the name, shape and
    dtype of its parameter; the param groups must list each parameter once.

    ``checkpoint`` has ``path``, ``config``, ``model`` and optionally ``optimizer`` and ``ema``
    (a :class:`Checkpoint` or a task's own). A config asking for more layers than the file has
    tensors is refused before building (``num_layers=10**6`` in a 6 KB file costs nothing);
    raises :class:`CheckpointError` naming the file, the config value and what is stored.
    """
    path, config, stored = checkpoint.path, checkpoint.config, checkpoint.model
    layers = getattr(config, "num_layers", None)
    if isinstance(layers, int) and layers > len(stored):
        raise CheckpointError(
            f"{path}: its config says num_layers={layers}, but the file holds only "
            f"{len(stored)} weight tensors (at least one per layer)"
        )
    try:
        with torch.device("meta"):  # shapes and dtypes only: nothing is allocated
            model = build()
    except (RuntimeError, ValueError, OverflowError) as exc:
        raise CheckpointError(
            f"{path}: its config describes no model this file can hold ({exc})"
        ) from None
    expected = model.state_dict()
    described = _describe(config)

    def compare(group: str, tensors: dict[str, Tensor]) -> None:
        missing, unexpected = (
            sorted(set(expected) - set(tensors)),
            sorted(set(tensors) - set(expected)),
        )
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: the {group} weights do not fit the model its config describes "
                f"({described}): missing {missing[:8]}, unexpected {unexpected[:8]}"
            )
        for name, want in expected.items():
            got = tensors[name]
            if got.shape != want.shape or got.dtype != want.dtype:
                raise CheckpointError(
                    f"{path}: {group}.{name} is stored as {got.dtype} {list(got.shape)}, the "
                    f"model its config describes ({described}) needs {want.dtype} "
                    f"{list(want.shape)}"
                )

    compare("model", stored)
    if getattr(checkpoint, "ema", None):
        compare("ema", checkpoint.ema)
    optimizer = getattr(checkpoint, "optimizer", None)
    if optimizer is None:
        return
    params = list(model.named_parameters())
    listed = sorted(i for group in optimizer["param_groups"] for i in group["params"])
    if listed != list(range(len(params))):
        raise CheckpointError(
            f"{path}: the optimizer's param groups list parameters {listed[:16]}, the model "
            f"has {len(params)} (indices 0..{len(params) - 1})"
        )
    for index, per_param in optimizer["state"].items():
        name, param = params[index]
        for key, value in per_param.items():
            if (
                isinstance(value, Tensor)
                and value.dim() > 0
                and (value.shape != param.shape or value.dtype != param.dtype)
            ):
                raise CheckpointError(
                    f"{path}: optimizer state {key!r} of parameter {name!r} is stored as "
                    f"{value.dtype} {list(value.shape)}, the parameter is {param.dtype} "
                    f"{list(param.shape)}"
                )


def _describe(config: Any) -> str:
    keys = ("cell", "num_units", "num_layers", "bidirectional", "projection_size")
    return ", ".join(f"{k}={getattr(config, k)!r}" for k in keys if hasattr(config, k))


class HasWeights(Protocol):
    """A loaded checkpoint of any task: where it came from and its model's state_dict."""

    path: Path
    model: dict[str, Tensor]


def load_model_state(model: nn.Module, checkpoint: HasWeights) -> None:
    """``model.load_state_dict(strict=True)`` with an error that names the checkpoint."""
    try:
        model.load_state_dict(checkpoint.model, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{checkpoint.path}: the weights do not fit the model its config describes: {exc}"
        ) from exc


# Fields a run folder's config.json may legitimately hold differently from a checkpoint of the
# same run: where the data is and how fast it runs (every task's --resume may change them, and
# config.json keeps the values the run started with) and the data's recorded checksums (which a
# resume from another copy of the same files records again).
RUN_PLACE_FIELDS = frozenset(
    {"data_dir", "train_file", "test_file", "fortunes_dir", "threads", "device", "data_sha256"}
)


def check_run_config(run_dir: str | os.PathLike[str], checkpoint: Any) -> None:
    """Refuse a run folder whose ``config.json`` is not the run of ``checkpoint`` (a checkpoint
    file of that folder, loaded), before it is evaluated, exported or resumed.

    ``config.json`` (written when the run started) and the checkpoint's own config must agree on
    every field but :data:`RUN_PLACE_FIELDS` (its ``"task"`` key is not compared: the
    checkpoint's own record says the task); a folder without ``config.json`` passes. Raises
    :class:`CheckpointError` naming both files and each differing field with its two values
    (``.safetensors`` files copied in from another run), or naming ``config.json`` when it is
    not a JSON object (damaged or edited).
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return
    try:
        folder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable config.json ({exc})") from exc
    if not isinstance(folder, dict):
        raise CheckpointError(
            f"{path}: not a readable config.json (expected a JSON object, got "
            f"{type(folder).__name__})"
        )
    own = json.loads(checkpoint.config.to_json())

    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 40 else text[:36] + "...]"

    differ = [
        f"{key}: {short(folder.get(key))} vs {short(own.get(key))}"
        for key in sorted((set(own) | set(folder)) - {"task"})  # the checkpoint records the task
        if key not in RUN_PLACE_FIELDS and folder.get(key) != own.get(key)
    ]
    if differ:
        shown = "; ".join(differ[:6]) + (f"; and {len(differ) - 6} more" if len(differ) > 6 else "")
        raise CheckpointError(
            f"{path} and {checkpoint.path} are not of the same run (config.json vs checkpoint: "
            f"{shown}): the folder mixes files of two runs; use a folder as train wrote it"
        )
