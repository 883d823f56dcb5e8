"""Data-parallel training over several processes: ``torchrun`` + DistributedDataParallel.

Why the design is what it is:

- **The global batch is the configured batch.** Every rank walks the same seeded epoch order
  (:class:`~rnnflow.data.BatchIterator`), takes the same global batch of ``batch_size`` examples,
  augments it with the same generator, and keeps the strided shard ``rank::world_size`` of it:
  DistributedSampler's split (its ``indices[rank::world_size]``), taken batch by batch. DDP
  averages the ranks' gradients of their mean losses, which is the gradient of the mean loss over
  the global batch, so N processes perform the single-process run's optimizer steps (up to
  float summation order). ``batch_size`` must be divisible by the world size.
- **Progress is counted in global batches**, so a checkpoint written by any number of processes
  resumes on any other number: the data order, augmentation, weights and optimizer state continue
  exactly. Only dropout masks are per rank (each rank draws them for its own rows): with the same
  world size they resume exactly (every rank's RNG state is saved), with another one ranks >= 1
  start fresh streams.
- **Rank 0 alone writes** (checkpoints, metrics, plots, TensorBoard) and reads the checkpoint to
  resume from, then sends it to the others: the run folder need not be on a shared filesystem.
- **No rank waits forever.** Every collective has the process group's timeout, and a rank whose
  peer died gets an error from its next collective (gloo notices the closed connection); both
  end as :class:`DistributedError` with the rank and the cause.

A single process (no ``torchrun``) uses :data:`SINGLE_PROCESS`, whose collectives are no-ops.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "SINGLE_PROCESS",
    "DistributedContext",
    "DistributedError",
    "init_distributed",
    "launched_distributed",
]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 600.0
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A rank failed, timed out or lost contact with its peers (the message says which).

    ``reported_by_all``: every rank raised this same error (:meth:`DistributedContext.check_all`),
    so printing it once (rank 0) is enough.
    """

    def __init__(self, message: str, *, reported_by_all: bool = False) -> None:
        super().__init__(message)
        self.reported_by_all = reported_by_all


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is in a data-parallel run, and the few collectives training needs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "gloo", or "cpu:gloo,cuda:nccl" with GPUs; None: one process

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def device(self, name: str) -> torch.device:
        """The device this rank trains on, for a config's ``device`` (``auto|cpu|cuda``): GPU
        ``LOCAL_RANK`` when training on CUDA with several processes."""
        from rnnflow.training.engine import resolve_device

        device = resolve_device(name)
        if not self.parallel or device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK={self.local_rank} but this node has {torch.cuda.device_count()} "
                "GPU(s): start at most one process per GPU (--nproc_per_node), or train with "
                "--device cpu"
            )
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def shard(self, batch: Tensor) -> Tensor:
        """This rank's rows of a global batch: ``batch[rank::world_size]``."""
        return batch[self.rank :: self.world_size] if self.parallel else batch

    def all_sum(self, values: Tensor) -> Tensor:
        """``values`` summed over the ranks (a new tensor on ``values``' device)."""
        if not self.parallel:
            return values
        total = values.to("cpu", copy=True)  # control traffic goes through gloo on the CPU
        self._collective(dist.all_reduce, total, op=dist.ReduceOp.SUM)
        return total.to(values.device)

    def any_true(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (so that every rank takes the same branch)."""
        if not self.parallel:
            return flag
        return bool(self.all_sum(torch.tensor([int(flag)])).item())

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (picklable objects: configs, checkpoints in memory)."""
        if not self.parallel:
            return obj
        box = [obj if self.is_main else None]
        self._collective(dist.broadcast_object_list, box, src=0, device=torch.device("cpu"))
        return box[0]  # type: ignore[return-value]

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.parallel:
            return [obj]
        out: list[Any] = [None] * self.world_size
        self._collective(dist.all_gather_object, out, obj)
        return out

    def check_all(self, error: str | None) -> None:
        """Raise :class:`DistributedError` on every rank if any rank reports an ``error``.

        Used after steps that can fail on one rank only (reading data, a bad checkpoint), so
        that the others exit with the reason instead of waiting in the next collective.
        """
        if not self.parallel:
            if error is not None:
                raise DistributedError(error)
            return
        errors = [(r, e) for r, e in enumerate(self.gather(error)) if e is not None]
        if errors:
            message = "; ".join(f"rank {r}: {e}" for r, e in errors)
            raise DistributedError(message, reported_by_all=True)

    def close(self, *, wait_for_peers: bool = False) -> None:
        """Leave the process group. ``wait_for_peers`` (after a successful run) first meets the
        other ranks in a barrier, so no rank tears its connections down while a peer still
        uses them (gloo's threads can abort the process otherwise); after an error the peers
        may be gone, so it is skipped."""
        if not (self.parallel and dist.is_initialized()):
            return
        if wait_for_peers:
            import gc

            gc.collect()  # drop DDP's reducer (it holds the group) before the group goes
            try:
                dist.barrier()
            except RuntimeError:
                pass  # a peer left already: nothing more to wait for
        dist.destroy_process_group()

    def lost_peer(self, exc: BaseException) -> DistributedError | None:
        """The :class:`DistributedError` for ``exc`` if it is a failed collective (a peer died,
        hung past the timeout, or the network failed), else None: DDP's gradient averaging
        inside ``backward()`` raises gloo's and NCCL's errors as plain RuntimeErrors."""
        if not self.parallel or not isinstance(exc, RuntimeError):
            return None
        if isinstance(exc, DistributedError):
            return exc
        text = str(exc)
        if not (isinstance(exc, dist.DistError) or "gloo" in text or "NCCL" in text):
            return None
        first_line = text.strip().splitlines()[0] if text.strip() else ""
        return DistributedError(
            f"rank {self.rank} of {self.world_size} lost contact with the other ranks "
            f"({type(exc).__name__}: {first_line}); a rank died, was stopped or exceeded the "
            "timeout"
        )

    def _collective(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except RuntimeError as exc:  # DistError and gloo's errors are RuntimeErrors
            error = self.lost_peer(exc)
            if error is None:
                raise
            raise error from exc


SINGLE_PROCESS = DistributedContext()


def launched_distributed() -> bool:
    """Whether a launcher (``torchrun``, ...) started this process with WORLD_SIZE > 1."""
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1")


def _env_int(name: str, *, low: int, high: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None:
        raise DistributedError(
            f"environment variable {name} is not set: start data-parallel training with "
            "`torchrun --nproc_per_node N -m rnnflow train ...`"
        )
    try:
        value = int(text)
    except ValueError:
        raise DistributedError(
            f"environment variable {name} must be an integer, got {text!r}"
        ) from None
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise DistributedError(f"environment variable {name} must be {bound}, got {value}")
    return value


def init_distributed(*, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistributedContext:
    """Join the process group described by torchrun's environment variables.

    Backends: gloo for CPU tensors (training on the CPU, and the small control messages that
    every run exchanges) and, where CUDA is available, NCCL for CUDA tensors (DDP's gradient
    averaging on GPU ``LOCAL_RANK``): one group, ``"cpu:gloo,cuda:nccl"``. ``timeout_s`` bounds
    every collective, so a rank whose peers hang raises :class:`DistributedError` instead of
    waiting forever. Without WORLD_SIZE > 1 in the environment, returns :data:`SINGLE_PROCESS`.
    """
    if not launched_distributed():
        return SINGLE_PROCESS
    if not (isinstance(timeout_s, int | float) and timeout_s > 0):
        raise ValueError(f"init_distributed: timeout_s must be > 0 seconds, got {timeout_s!r}")
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE is set but {', '.join(missing)} not: start data-parallel training "
            "with `torchrun --nproc_per_node N -m rnnflow train ...`"
        )
    world_size = _env_int("WORLD_SIZE", low=1)
    if world_size == 1:
        return SINGLE_PROCESS
    rank = _env_int("RANK", low=0, high=world_size - 1)
    local_rank = _env_int("LOCAL_RANK", low=0)
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=float(timeout_s)))
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"rank {rank}: could not join the process group ({backend}, "
            f"MASTER_ADDR={os.environ['MASTER_ADDR']}, MASTER_PORT={os.environ['MASTER_PORT']}): "
            f"{exc}"
        ) from exc
    return DistributedContext(rank, world_size, local_rank, backend)
