"""Where a `rnnflow train` run lives: a new run folder (``--out``) or one to resume (``--resume``).

Shared by the image classifier and the character model, whose configs and checkpoints differ but
whose rules do not:

- **One writer per folder.** A session holds an exclusive ``fcntl`` lock on
  ``RUN_DIR/.rnnflow.lock`` (holding the writer's pid) from before it writes anything until it
  ends; a second ``--out`` or ``--resume`` of the same folder is refused, naming that pid. The
  kernel drops the lock when its process dies, even by ``kill -9``, so a stale lock file never
  blocks a later session. Under ``torchrun`` rank 0 takes it (it alone writes).
- **A folder holding a run is never overwritten**; ``--out`` naming a file, or a folder that
  cannot be written, is refused before any data is loaded.
- **Every run can be resumed.** ``config.json`` (written once the data has loaded) marks a run;
  a run killed before its first checkpoint resumes from step 0 with that config. A resumed run
  keeps its saved config, except for the flags that say where and how fast it runs, and its
  run-level options (``run.json``: ``--tensorboard``).
- **Nothing is left behind**: temporary files of a write interrupted by a kill
  (``.NAME.*.tmp``) are removed when the next session takes the lock, and a session that fails
  before writing ``config.json`` removes the folder it created. A new run whose model or batch
  does not fit in memory (it could never be resumed either: sizes cannot change on
  ``--resume``) removes what it wrote before its first checkpoint (:func:`discard_new_run`).
- **The checkpoint's own record says the task** (``rnnflow.tasks.run_task``), not
  ``config.json``.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rnnflow._paths import path_problem
from rnnflow.cli._config_args import flag_name

LOCK_NAME = ".rnnflow.lock"
CONFIG_NAME = "config.json"
OPTIONS_NAME = "run.json"
CHECKPOINT_NAME = "checkpoint.safetensors"  # both tasks' name for the resumable checkpoint
RUN_OPTIONS = ("tensorboard",)  # run-level flags a resumed run keeps (stored in run.json)


class RunRefused(Exception):
    """A reason not to start the run, and the exit status to return."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


class RunLock:
    """An exclusive lock on a run folder (``fcntl.flock`` on ``RUN_DIR/.rnnflow.lock``).

    :meth:`acquire` raises :class:`RunRefused` naming the holder's pid when another process holds
    it, and when the folder cannot be created or written (a file of that name, a read-only file
    system). :meth:`release` removes the lock file while still holding it and, with
    ``remove_created=True``, also the folder if this lock created it and it is otherwise empty.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, create: bool) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.create = create
        self.created = False
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunRefused(f"{self.run_dir} exists and is not a folder: choose another path")
        if self.create and not self.run_dir.exists():
            try:
                self.run_dir.mkdir(parents=True)
            except FileExistsError:
                pass  # another process created it just now: the lock decides
            except OSError as exc:
                raise RunRefused(
                    f"cannot create the run folder {self.run_dir}: {exc.strerror}"
                ) from exc
            else:
                self.created = True
        while True:  # a lock file unlinked by its releasing holder is replaced: retry on it
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                self._remove_created()
                raise RunRefused(
                    f"cannot write in the run folder {self.run_dir}: {exc.strerror}"
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    raise RunRefused(f"cannot lock {self.path}: {exc.strerror}") from exc
                raise RunRefused(
                    f"{self.run_dir} is in use by another rnnflow process (pid {holder}): one "
                    "process at a time writes a run folder; wait for it to end or stop it",
                    status=1,
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self, *, remove_created: bool = False) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None
        if remove_created:
            self._remove_created()

    def _remove_created(self) -> None:
        if self.created:
            try:
                self.run_dir.rmdir()  # only if empty: never removes anything of a run
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete ``.NAME.*.tmp`` files (atomic writes cut short by a kill); call with the lock held."""
    removed = []
    for path in run_dir.glob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@dataclass
class RunPlan:
    """What a session does: the config, the checkpoint to resume from (None: from step 0), the
    run folder, the run-level options and whether the folder already holds this run (a resume,
    or a restart from step 0 of a run killed before its first checkpoint)."""

    config: Any
    resume: Any
    run_dir: Path
    options: dict[str, Any] = field(default_factory=dict)
    existing: bool = False
    written: list[str] = field(default_factory=list)  # files start_run_files wrote (new run)
    discard: bool = False  # a new run that cannot start: remove what this session wrote

    @property
    def start_step(self) -> int:
        return int(self.resume.progress["step"]) if self.resume is not None else 0


def plan_run(
    args: argparse.Namespace,
    overrides: dict[str, Any],
    *,
    preset: Any,
    load_checkpoint: Callable[[Path], Any],
    config_from_dict: Callable[..., Any],
    resumable: set[str],
) -> tuple[RunPlan, RunLock]:
    """``(plan, lock)`` for ``--out``/``--resume``, or :class:`RunRefused` (nothing held then).

    ``preset`` is the config a new run starts from (``overrides`` replace its fields); a resumed
    run's config comes from its checkpoint (or, before its first checkpoint, from its
    ``config.json`` read with ``config_from_dict(data, source=...)``), where only the fields in
    ``resumable`` may change, and ``--preset`` is refused (the saved config holds the values).
    Takes the run folder's lock (creating the folder for ``--out``); the caller releases it,
    and writes ``config.json`` once its data has loaded.
    """
    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise RunRefused("give either --out (new run) or --resume (existing run), not both")
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise RunRefused(
                f"cannot resume: {run_dir}: {path_problem(run_dir, 'run folder', folder=True)}"
            )
        if getattr(args, "preset", None):  # the saved config already holds the preset's values
            raise RunRefused(
                f"--resume continues the saved config; --preset cannot be given with it "
                f"(got --preset {args.preset}): drop --preset, or start a new run with --out"
            )
        fixed = sorted(set(overrides) - resumable)
        if fixed:
            flags = ", ".join(flag_name(k) for k in fixed)
            allowed = ", ".join(flag_name(k) for k in sorted(resumable))
            raise RunRefused(
                f"--resume continues the saved config; {flags} cannot change (only {allowed} can)"
            )
        lock = RunLock(run_dir, create=False).acquire()
        try:
            return _plan_resume(args, overrides, run_dir, load_checkpoint, config_from_dict), lock
        except BaseException:
            lock.release()
            raise
    if not args.out:
        raise RunRefused("--out RUN_DIR is required (or --resume RUN_DIR)")
    run_dir = Path(args.out)
    try:
        config = replace(preset, **overrides)
    except (TypeError, ValueError) as exc:
        raise RunRefused(str(exc)) from exc
    lock = RunLock(run_dir, create=True).acquire()
    if (run_dir / CHECKPOINT_NAME).exists() or (run_dir / CONFIG_NAME).exists():
        lock.release()
        raise RunRefused(
            f"{run_dir} already holds a run: continue it with --resume {run_dir}, or choose "
            "another --out"
        )
    remove_stale_temporaries(run_dir)
    options = {name: bool(getattr(args, name, False)) for name in RUN_OPTIONS}
    return RunPlan(config, None, run_dir, options), lock


def _plan_resume(
    args: argparse.Namespace,
    overrides: dict[str, Any],
    run_dir: Path,
    load_checkpoint: Callable[[Path], Any],
    config_from_dict: Callable[..., Any],
) -> RunPlan:
    from rnnflow.training.checkpoint import CheckpointError, check_run_config

    remove_stale_temporaries(run_dir)
    resume = None
    if (run_dir / CHECKPOINT_NAME).exists():
        try:
            resume = load_checkpoint(run_dir / CHECKPOINT_NAME)
            check_run_config(run_dir, resume)
        except (FileNotFoundError, CheckpointError) as exc:
            raise RunRefused(f"cannot resume: {exc}") from exc
        saved = resume.config
    elif (run_dir / CONFIG_NAME).exists():  # killed before its first checkpoint: from step 0
        path = run_dir / CONFIG_NAME
        try:
            saved = config_from_dict(json.loads(path.read_text(encoding="utf-8")), source=path)
        except (OSError, ValueError, TypeError) as exc:
            raise RunRefused(f"cannot resume: {exc}") from exc
    else:
        raise RunRefused(
            f"cannot resume: {run_dir} holds no run ({CHECKPOINT_NAME} or {CONFIG_NAME}); "
            f"start one with --out {run_dir}"
        )
    try:
        config = replace(saved, **overrides)
    except (TypeError, ValueError) as exc:
        raise RunRefused(str(exc)) from exc
    options = read_run_options(run_dir)
    for name in RUN_OPTIONS:  # a flag given now turns the option on from here
        options[name] = options.get(name, False) or bool(getattr(args, name, False))
    plan = RunPlan(config, resume, run_dir, options, existing=True)
    stop = getattr(args, "stop_at_step", None)
    if stop is not None and stop <= plan.start_step:  # it counts from the run's start
        raise RunRefused(
            f"--stop-at-step {stop}: {run_dir} is already at step {plan.start_step}; the step "
            f"counts from the run's start (absolute), so give a step > {plan.start_step}"
        )
    return plan


def read_run_options(run_dir: Path) -> dict[str, Any]:
    """``run.json``'s options (``{}`` for runs from before it existed); a damaged file is an
    error naming it."""
    path = run_dir / OPTIONS_NAME
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunRefused(f"cannot resume: {path}: unreadable ({exc})") from exc
    if not isinstance(data, dict) or any(
        not isinstance(data.get(k, False), bool) for k in RUN_OPTIONS
    ):
        raise RunRefused(
            f"cannot resume: {path}: expected a JSON object of booleans for "
            f"{list(RUN_OPTIONS)}, got {data!r}"
        )
    return {k: data[k] for k in RUN_OPTIONS if k in data}


def start_run_files(plan: RunPlan, files: dict[str, str]) -> None:
    """Record a run: ``run.json`` (its options) and then ``files`` (``config.json`` last, the
    mark of a run), each written atomically. On a resume only the options are rewritten."""
    from rnnflow.training.logging import write_run_file

    text = json.dumps(plan.options, indent=2) + "\n"
    if not plan.existing:
        plan.written.append(OPTIONS_NAME)
    write_run_file(plan.run_dir / OPTIONS_NAME, text.encode())
    if plan.existing:
        return
    for name in sorted(files, key=lambda n: n == CONFIG_NAME):
        plan.written.append(name)
        write_run_file(plan.run_dir / name, files[name].encode())


def discard_new_run(plan: RunPlan, lock: RunLock) -> None:
    """Undo a new run that can never start (its model does not fit in memory): remove the
    files this session wrote (:func:`start_run_files`' and the logs') and release the lock,
    removing the folder too when this session created it and nothing else is in it. A folder
    that already held this run (``plan.existing``) or holds a checkpoint is left as it is."""
    import shutil

    from rnnflow.training.logging import METRICS_NAME

    if plan.existing or (plan.run_dir / CHECKPOINT_NAME).exists():
        lock.release(remove_created=True)
        return
    for name in [*plan.written, METRICS_NAME, "curves.png"]:
        (plan.run_dir / name).unlink(missing_ok=True)
    if plan.options.get("tensorboard"):
        shutil.rmtree(plan.run_dir / "tensorboard", ignore_errors=True)
    lock.release(remove_created=True)


def continue_command(plan: RunPlan, *, task: str | None = None) -> str:
    """The command that continues this run (its options are restored from ``run.json``), as the
    user can type it (:func:`rnnflow.cli.prog`)."""
    from rnnflow.cli import command

    return command("train", *(("--task", task) if task else ()), "--resume", plan.run_dir)
