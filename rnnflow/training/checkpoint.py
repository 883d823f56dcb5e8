"""Checkpoints: one safetensors file per snapshot, versioned, written atomically, loaded strictly.

Layout of ``checkpoint.safetensors`` (format ``rnnflow.checkpoint``, version 2)::

    tensors   model.<name>                 the model's state_dict (the unwrapped module)
              optimizer.<param>.<key>      per-parameter optimizer tensors (Adam: exp_avg, ...)
              rng.<name>                   RNG states as uint8 tensors (torch, CUDA, augment)
              ema.<name>                   the weight average's state_dict (only with ema_decay > 0)
    metadata  format, format_version       "rnnflow.checkpoint", "2"
              config                       asdict(TrainConfig) as JSON
              progress                     step, epoch, examples, best validation, ... as JSON
              optimizer                    param_groups and non-tensor state as JSON (if saved)

Loading never executes code from the file (safetensors holds only tensors and strings), and a
truncated, foreign or newer file raises :class:`CheckpointError` naming the file and the problem.
Writes go to a temporary file in the same folder, are fsync'ed, then ``os.replace``'d over the
target: a crash mid-save leaves the previous checkpoint intact.

Version history: 1 had no ``ema.`` tensors; version 1 files still load (with an empty ``ema``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from rnnflow.training.config import TrainConfig, config_from_dict

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "atomic_write_bytes",
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
    config: TrainConfig
    model: dict[str, Tensor]
    progress: dict[str, Any]
    optimizer: dict[str, Any] | None = None  # a torch optimizer state_dict, ready to load
    rng: dict[str, Tensor] = field(default_factory=dict)
    ema: dict[str, Tensor] = field(default_factory=dict)  # the weight average (empty: none)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    Temporary file in the same folder -> write -> fsync -> ``os.replace`` -> fsync the folder.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)


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


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    config: TrainConfig,
    progress: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, Tensor] | None = None,
    ema: nn.Module | None = None,
) -> None:
    """Write model (+ optimizer, RNG states, weight average), config and progress atomically."""
    tensors: dict[str, Tensor] = {
        f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()
    }
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
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


def _read_metadata(path: Path, data: bytes) -> dict[str, str]:
    """The safetensors header's ``__metadata__`` (the header is JSON: no code runs)."""
    if len(data) < 8:
        raise CheckpointError(
            f"{path}: not an rnnflow checkpoint: {len(data)} bytes is too short for a "
            "safetensors file (truncated?)"
        )
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise CheckpointError(
            f"{path}: truncated or not a safetensors file: the header declares {header_len} "
            f"bytes, the file has {len(data) - 8} after the length field"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not an rnnflow checkpoint: the safetensors header is not JSON ({exc})"
        ) from exc
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


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
        raise FileNotFoundError(f"{reader}: {path}: no such file")
    data = path.read_bytes()
    meta = _read_metadata(path, data)
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
    optimizer = None
    if opt_meta is not None:
        try:
            optimizer = _unflatten_optimizer(grouped.get("optimizer", {}), opt_meta)
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: corrupt optimizer state: {exc}") from exc
    return meta, grouped, optimizer


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; never unpickles anything.

    Raises ``FileNotFoundError`` if missing and :class:`CheckpointError` for a truncated or
    corrupt file, a safetensors file that is not an rnnflow checkpoint, or a newer format.
    """
    path = Path(path)
    meta, groups, optimizer = read_checkpoint_file(
        path, reader="load_checkpoint", groups=("model", "optimizer", "rng", "ema")
    )
    try:
        config = config_from_dict(json.loads(meta["config"]), source=f"{path}: config")
        progress = json.loads(meta["progress"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata: {exc}") from exc
    return Checkpoint(
        path=path,
        config=config,
        model=groups["model"],
        progress=progress,
        optimizer=optimizer,
        rng=groups["rng"],
        ema=groups["ema"],
    )


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
