"""`rnnflow train [--task TASK] --preset P --out RUN_DIR [--FIELD VALUE ...]`, `rnnflow train
--resume RUN_DIR`: train any registered task (``rnnflow.tasks``) with the one ``fit`` engine.

``--task`` picks the task (default: the image classifier; with ``--resume``, the run's own
checkpoint says which). The parser offers only that task's flags and presets (its glue module,
``rnnflow.cli._task``): a preset or flag of another task is refused by argparse, naming the task
it belongs to. ``rnnflow train --task TASK --help`` lists one task's flags.

RUN_DIR receives ``config.json``, ``run.json`` (run-level options: ``--tensorboard``),
``metrics.jsonl``, ``checkpoint.safetensors`` (exact resume), ``best.safetensors``,
``curves.png``, ``summary.json``, the task's own files (``confusion.png``, ``vocab.json``) and,
with ``--tensorboard``, ``tensorboard/`` event files. One process at a time writes a run folder
(see ``rnnflow.cli._run_folder``); a non-finite loss or weight stops training with exit status
1, keeping the last good checkpoint. Under ``torchrun`` every task trains data-parallel.

Ctrl-C finishes the current step, saves a checkpoint and exits with status 130 (a second Ctrl-C
aborts at once); ``rnnflow train --resume RUN_DIR`` then continues exactly where it stopped, as
it does after a kill (from the last periodic checkpoint). Outside the training loop (imports,
data loading, the final report) one Ctrl-C exits 130 at once with one line saying what the run
folder keeps: a finished run's report is redone with ``rnnflow evaluate RUN_DIR``. A model or
batch that does not fit in memory is one line naming the size flags and the bytes torch asked
for (exit 1); a new run then removes what it wrote. Progress goes to stderr: a tqdm bar on
a terminal, a plain line every 30 seconds otherwise, nothing with ``--quiet``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from rnnflow._words import count
from rnnflow.cli._config_args import field_flags, flag_name, positive_int
from rnnflow.cli._run_folder import (
    CONFIG_NAME,
    RunRefused,
    continue_command,
    discard_new_run,
    plan_run,
    start_run_files,
)

DEFAULT_TASK = "classifier"


def requested_task(argv: Sequence[str] | None) -> str:
    """The task a ``rnnflow train`` command line asks for, before parsing: its ``--task``
    (``--task X`` or ``--task=X``; an unknown name is returned as is, for argparse to refuse),
    else the task recorded in ``--resume RUN_DIR``'s checkpoint, else the image classifier."""
    from rnnflow.tasks import run_task

    words = list(argv or [])
    resume = None
    for i, word in enumerate(words):
        if word == "--task" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--task="):
            return word.partition("=")[2]
        if word == "--resume" and i + 1 < len(words):
            resume = words[i + 1]
        elif word.startswith("--resume="):
            resume = word.partition("=")[2]
    if resume is not None:
        return run_task(resume) or DEFAULT_TASK
    return DEFAULT_TASK


def add_parser(
    subparsers: argparse._SubParsersAction, argv: Sequence[str] | None = None
) -> argparse.ArgumentParser:
    """The ``train`` parser for the task ``argv`` asks for (:func:`requested_task`)."""
    from rnnflow.cli._config_args import preset_epilog
    from rnnflow.cli._task import glue
    from rnnflow.tasks import TASKS, UnknownTaskError, task_info, task_names

    wanted = requested_task(argv)
    try:
        info = task_info(wanted)
    except UnknownTaskError:
        info = task_info(DEFAULT_TASK)  # argparse refuses the --task value below
    presets = info.load_presets()
    tasks_help = "; ".join(
        f"{t.name}{' (' + ', '.join(t.aliases) + ')' if t.aliases else ''}: {t.summary}"
        for t in TASKS
    )
    parser = subparsers.add_parser(
        "train",
        help="train a model: the row-by-row image classifier, or --task TASK",
        description=(
            f"Train a model of --task {info.name}: {info.summary}. Every config field has a "
            "flag; unset ones take the preset's value. `rnnflow train --task TASK --help` shows "
            "another task's flags."
        ),
        epilog=preset_epilog(f"{info.name} presets (--task {info.name})", presets),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--task",
        choices=task_names(),
        default=info.name,
        help=f"what to train (default: {DEFAULT_TASK}; with --resume, the run's own): {tasks_help}",
    )
    parser.add_argument(
        "--preset",
        type=_preset_type(info, presets),
        default=None,
        metavar="{" + ",".join(sorted(presets)) + "}",
        help="base config; its values replace the defaults shown below (listed at the end); "
        f"default {info.default_preset}; not with --resume (the run keeps its saved config)",
    )
    parser.add_argument("--out", metavar="RUN_DIR", help="new run folder to create")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped"
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard events to RUN_DIR/tensorboard",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--dist-timeout",
        type=_positive_seconds,
        default=600.0,
        metavar="SECONDS",
        help="under torchrun: how long a process waits for the others in any collective "
        "before it gives up with an error (600)",
    )
    parser.add_argument(
        "--stop-at-step",
        type=positive_int,
        metavar="N",
        help="stop (checkpointed, resumable) once the run reaches optimizer step N, as Ctrl-C "
        "would; N is absolute (counted from the run's start, also with --resume), and must be "
        "above the step a resumed run is at",
    )
    glue(info.name).add_arguments(parser)
    parser.set_defaults(func=run, explain_unknown=_explain_unknown(info.name))
    return parser


def _preset_type(info: Any, presets: dict[str, Any]) -> Any:
    """argparse ``type`` of ``--preset``: a preset of this task, else an error listing them and
    naming the task whose preset it is."""

    def preset(text: str) -> str:
        if text in presets:
            return text
        from rnnflow.tasks import TASKS

        owners = [t.name for t in TASKS if t.name != info.name and text in t.load_presets()]
        hint = "".join(f"; {text!r} is a preset of --task {o}: add --task {o}" for o in owners[:1])
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a preset of --task {info.name} (choose from "
            f"{', '.join(sorted(presets))}){hint}"
        )

    preset.__name__ = "preset"
    return preset


def _explain_unknown(task: str) -> Any:
    """For ``rnnflow.cli.main``: a hint for unrecognized train flags that belong to another
    task ("--corpus is a flag of --task charlm")."""

    def explain(extras: list[str]) -> str:
        import dataclasses

        from rnnflow.tasks import TASKS

        flags = {w.partition("=")[0] for w in extras if w.startswith("--")}
        hints = []
        for info in TASKS:
            if info.name == task:
                continue
            config_cls = type(next(iter(info.load_presets().values())))
            names = {flag for f in dataclasses.fields(config_cls) for flag in field_flags(f.name)}
            theirs = sorted(flags & names)
            if theirs:
                what = "is a flag" if len(theirs) == 1 else "are flags"
                hints.append(
                    f"{', '.join(theirs)} {what} of --task {info.name} (add --task {info.name})"
                )
        if not hints:
            return f" (see {_command('train', '--task', task, '--help')} for this task's flags)"
        return f" ({'; '.join(hints)}; this is --task {task})"

    return explain


def _command(*words: object) -> str:
    from rnnflow.cli import command

    return command(*words)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


def _fail(message: str, status: int = 2) -> int:
    print(f"rnnflow train: {message}", file=sys.stderr)
    return status


def cpu_seconds() -> float:
    """CPU time (user + system) of this process: on a shared machine, wall time overstates the
    cost; CPU seconds / cores is what a dedicated machine would take."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class StopFlag:
    """SIGINT handler: the first Ctrl-C asks the loop to stop after its step; the second aborts.

    Under ``torchrun`` (``distributed=True``) SIGTERM also asks for a stop and repeated signals
    do not abort: a Ctrl-C reaches each worker twice (from the terminal, then forwarded by
    torchrun, which sends SIGKILL itself 30 s later if a worker has not exited).
    """

    def __init__(self, *, distributed: bool = False, announce: bool = True) -> None:
        self.requested = False
        self.distributed = distributed
        self.announce = announce  # under torchrun only rank 0 says it
        self._signals = (signal.SIGINT, signal.SIGTERM) if distributed else (signal.SIGINT,)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for signum in self._signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            if self.distributed:
                return
            raise KeyboardInterrupt
        self.requested = True
        if not self.announce:
            return
        again = "" if self.distributed else " (press again to abort without saving)"
        print(
            f"\nrnnflow train: {signal.Signals(signum).name}: saving a checkpoint after this "
            f"step{again}",
            file=sys.stderr,
        )

    def __call__(self) -> bool:
        return self.requested

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


class ProgressDisplay:
    """Training progress on ``stream`` with tqdm: a live bar on a terminal; elsewhere (a log
    file, CI, a test's captured stderr) tqdm's same one-line summary as a plain line at most
    every ``plain_every`` seconds and at the end. Shows the last "train" record's loss (and
    accuracy) and the last validation's accuracy or perplexity. An ``on_step`` for ``fit``."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        enabled: bool = True,
        start_step: int = 0,
        examples_per_step: int = 1,
        plain_every: float = 30.0,
    ) -> None:
        from tqdm import tqdm

        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.stream = stream
        self.total = total
        self.plain_every = plain_every
        self.start_step = start_step
        self.examples_per_step = examples_per_step
        self.postfix: dict[str, str] = {}
        self._start = time.perf_counter()
        self._last_plain = self._start
        self.bar = tqdm(
            total=total,
            initial=start_step,
            file=stream,
            disable=not self.tty,
            unit="step",
            dynamic_ncols=True,
            leave=True,
        )

    def __call__(self, progress: Any, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        kind = info.get("kind")
        if kind == "train":
            self.postfix["loss"] = f"{info['loss']:.3f}"
            if "accuracy" in info:
                self.postfix["acc"] = f"{info['accuracy']:.3f}"
        elif kind == "val":
            if "perplexity" in info:
                self.postfix["val_ppl"] = f"{info['perplexity']:.2f}"
            elif "accuracy" in info:
                self.postfix["val"] = f"{info['accuracy']:.4f}"
        if self.tty:
            if kind in ("train", "val"):
                self.bar.set_postfix(self.postfix, refresh=False)
            self.bar.update(progress.step - self.bar.n)
            return
        now = time.perf_counter()
        if now - self._last_plain >= self.plain_every or progress.step >= self.total:
            self._last_plain = now
            self._plain_line(progress.step, now)

    def _plain_line(self, step: int, now: float) -> None:
        from tqdm import tqdm

        elapsed = now - self._start
        rate = (step - self.start_step) / elapsed if elapsed > 0 else None
        postfix = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        line = tqdm.format_meter(
            step - self.start_step,
            self.total - self.start_step,
            elapsed,
            ncols=100,
            unit="step",
            rate=rate,
            postfix=postfix or None,
            initial=0,
        )
        self.stream.write(f"step {step}/{self.total}: {line}\n")
        self.stream.flush()

    def close(self) -> None:
        self.bar.close()


@dataclass
class FinishedRun:
    """What a glue's ``report`` gets besides the task: where, how long, with which logger."""

    run_dir: Any
    metrics: Any  # MetricsLogger, still open
    processes: int
    wall_seconds: float  # this session

    @property
    def cpu_seconds(self) -> float:
        return cpu_seconds()

    def summary(self, progress: Any, best_step: int) -> dict[str, Any]:
        """The fields every task's ``summary.json`` has: where, which checkpoint, how long
        (wall and, on a shared machine the fairer figure, this process's CPU seconds)."""
        return {
            "run_dir": str(self.run_dir),
            "best_step": best_step,
            "steps": progress.step,
            "processes": self.processes,
            "train_seconds": round(progress.train_seconds, 1),
            "wall_seconds_this_session": round(self.wall_seconds, 1),
            "process_cpu_seconds_this_session": round(self.cpu_seconds, 1),
        }


def run(args: argparse.Namespace) -> int:
    """``rnnflow train``; a Ctrl-C outside the training loop (the loop's own: :class:`StopFlag`)
    exits 130 with one line saying what the run folder keeps."""
    try:
        return _run(args)
    except KeyboardInterrupt:  # before the loop (imports, data); the lock is released by now
        from pathlib import Path
        from types import SimpleNamespace

        folder = args.resume or args.out
        if not folder:
            return _fail("interrupted (Ctrl-C) before training started; nothing was written", 130)
        return _fail(interrupted_message(SimpleNamespace(run_dir=Path(folder)), "starting"), 130)


def _run(args: argparse.Namespace) -> int:
    from rnnflow.cli._task import glue
    from rnnflow.tasks import run_task, task_info

    info = task_info(args.task)
    if args.resume:
        recorded = run_task(args.resume)  # the checkpoint's own record decides
        if recorded is not None and task_info(recorded).name != info.name:
            return _fail(f"--task {args.task}, but {args.resume} holds a {recorded} run")
    module = glue(info.name)
    from rnnflow.training.distributed import (
        SINGLE_PROCESS,
        DistributedError,
        init_distributed,
        launched_distributed,
    )

    ctx = SINGLE_PROCESS
    try:
        if launched_distributed():
            ctx = init_distributed(timeout_s=args.dist_timeout)
        return _train(args, info, module, ctx)
    except DistributedError as exc:
        # An error every rank agreed on is printed once, by rank 0; a lost peer by each rank.
        if ctx.is_main or not exc.reported_by_all:
            print(f"rnnflow train: {exc}", file=sys.stderr)
        if ctx.parallel and not exc.reported_by_all:
            # The process group is broken: tearing it down (or letting the interpreter do it at
            # exit) can hit gloo work still in flight and abort the process (std::terminate,
            # SIGABRT) after the message. Leave at once with the status; the last checkpoint
            # is complete on disk and the metrics file was closed while unwinding.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return 1
    finally:
        ctx.close()


def _plan(args: argparse.Namespace, info: Any, module: Any) -> tuple[Any, Any]:
    """``(RunPlan, RunLock)``, or :class:`RunRefused`. Under torchrun only rank 0 plans (it
    alone reads, locks and writes the run folder)."""
    from rnnflow.training.checkpoint import load_checkpoint

    try:
        overrides = module.overrides(args)
    except ValueError as exc:
        raise RunRefused(str(exc)) from exc
    return plan_run(
        args,
        overrides,
        preset=_preset(info, args),
        load_checkpoint=lambda path: load_checkpoint(
            path, config_from_dict=info.parse_config, task=info.name
        ),
        config_from_dict=info.parse_config,
        resumable=module.RESUMABLE,
    )


def _preset(info: Any, args: argparse.Namespace) -> Any:
    return info.load_presets()[args.preset or info.default_preset]


def _train(args: argparse.Namespace, info: Any, module: Any, ctx: Any) -> int:
    plan: Any = None
    lock = None
    if ctx.is_main:
        try:
            plan, lock = _plan(args, info, module)
        except RunRefused as exc:
            plan = exc
    plan = ctx.broadcast(plan)  # rank 0's config and checkpoint, or its refusal
    if isinstance(plan, RunRefused):
        return _fail(str(plan), plan.status) if ctx.is_main else plan.status
    try:
        return _train_planned(args, info, module, ctx, plan)
    finally:
        if lock is not None and plan.discard:  # a new run that can never start
            discard_new_run(plan, lock)
        elif lock is not None:  # a folder this session created and never used goes too
            lock.release(remove_created=True)


# torch's words for an allocation it cannot make (CPU allocator, CUDA, a size past int64)
_MEMORY_WORDS = ("can't allocate memory", "out of memory", "size calculation overflowed")
# the sizes a user sets, by config field (every task's names)
SIZE_FIELDS = (
    "num_units",
    "num_layers",
    "embed_size",
    "embedding_size",
    "batch_size",
    "eval_batch_size",
    "max_len",
    "max_chars",
)


def memory_error_message(exc: BaseException, config: Any, preset: Any) -> str | None:
    """One line for torch's failure to allocate (``RuntimeError``: "can't allocate memory",
    CUDA "out of memory", "Storage size calculation overflowed"), else None: the bytes asked
    (as torch said them) and the size flags likely to blame, i.e. those set above the task's
    default preset (all size flags when none is)."""
    import re

    text = str(exc)
    if not isinstance(exc, RuntimeError) or not any(w in text for w in _MEMORY_WORDS):
        return None
    found = re.search(r"allocate (\d+) bytes", text)
    if found:
        asked = f"{int(found.group(1)):,} bytes"
    else:
        found = re.search(r"allocate ([\d.]+ [KMGTP]i?B)", text)
        asked = found.group(1) if found else "more bytes than an int64 can count"
    names = [n for n in SIZE_FIELDS if isinstance(getattr(config, n, None), int)]
    larger = [n for n in names if getattr(config, n) > getattr(preset, n)]
    flags = ", ".join(f"{flag_name(n)} {getattr(config, n)}" for n in (larger or names))
    return (
        f"the model or a batch does not fit in memory: torch asked for {asked}; "
        f"lower the sizes ({flags})"
    )


def _train_planned(args: argparse.Namespace, info: Any, module: Any, ctx: Any, plan: Any) -> int:
    import torch

    from rnnflow.training import CheckpointError, MetricsLogger, fit, read_metrics
    from rnnflow.training.engine import check_warmup
    from rnnflow.training.plots import plot_curves

    config, resume, run_dir = plan.config, plan.resume, plan.run_dir
    if config.threads:
        torch.set_num_threads(config.threads)
    say = (lambda *a: None) if args.quiet or not ctx.is_main else _print_stderr
    error = None
    task = None
    try:
        task = info.import_module().make_task(config)
        plan.config = config = task.config  # with what the data recorded (idx checksums)
        total = task.total_steps()
        if resume is None:  # new runs only: a run that started keeps its schedule
            check_warmup(config, total)  # before the run folder is written
    except (OSError, ValueError) as exc:  # missing/corrupt data, bad files: named in exc
        error = str(exc)
    except RuntimeError as exc:
        error = memory_error_message(exc, config, _preset(info, args))
        if error is None:
            raise
    if error is None and ctx.is_main:
        try:  # run.json, the task's files, then config.json: from here the folder holds a run
            files = {**module.run_files(task), CONFIG_NAME: config.to_json() + "\n"}
            start_run_files(plan, files)
        except OSError as exc:
            error = str(exc)
    if not ctx.parallel and error is not None:
        return _fail(error, 1)
    ctx.check_all(error)

    processes = f" on {ctx.world_size} processes ({ctx.backend})" if ctx.parallel else ""
    if not plan.existing:
        say(
            f"run {run_dir}: {module.describe_start(task, args)}, {count(total, 'step')}{processes}"
        )
    elif resume is None:
        say(f"run {run_dir}: killed before its first checkpoint; starting again from step 0")
    else:
        say(
            f"run {run_dir}: resuming at step {resume.progress['step']} of {total} "
            f"({count(resume.progress['examples'], 'example')} seen){processes}"
        )
    display = ProgressDisplay(
        total,
        sys.stderr,
        enabled=not args.quiet and ctx.is_main,
        start_step=plan.start_step,
        examples_per_step=config.batch_size,
    )
    start = time.perf_counter()
    phase = "starting"  # then "training", "stopped" (a checkpoint saved) or "report" (finished)
    try:
        with (
            MetricsLogger(
                run_dir,
                tensorboard=plan.options["tensorboard"],
                keep_until_step=plan.start_step,
            )
            if ctx.is_main
            else contextlib.nullcontext()
        ) as metrics:
            # the StopFlag holds Ctrl-C only while fit runs: after it, one Ctrl-C interrupts
            with StopFlag(distributed=ctx.parallel, announce=ctx.is_main) as stop:
                phase = "training"
                _, progress = fit(
                    task,
                    run_dir,
                    resume=resume,
                    metrics=metrics,
                    on_step=display if ctx.is_main else None,
                    should_stop=stop,
                    stop_at_step=args.stop_at_step,
                    distributed=ctx,
                )
            phase = "report" if progress.finished else "stopped"
            display.close()
            ctx.close(wait_for_peers=True)
            if not ctx.is_main:  # rank 0 alone plots and evaluates
                return 130 if stop.requested and not progress.finished else 0
            plot_curves(read_metrics(metrics.path), run_dir / "curves.png")
            if not progress.finished:
                print(
                    f"rnnflow train: stopped at step {progress.step}/{total}; checkpoint "
                    f"saved. Continue with: {continue_command(plan)}",
                    file=sys.stderr,
                )
                return 130 if stop.requested else 0
            finished = FinishedRun(run_dir, metrics, ctx.world_size, time.perf_counter() - start)
            status = module.report(task, plan, progress, finished)
        plot_curves(read_metrics(run_dir / "metrics.jsonl"), run_dir / "curves.png")
        return status
    except KeyboardInterrupt:
        display.close()
        return _fail(interrupted_message(plan, phase), 130)
    except (CheckpointError, OSError, ValueError) as exc:
        display.close()
        return _fail(str(exc), 1)
    except RuntimeError as exc:
        message = memory_error_message(exc, config, _preset(info, args))
        if message is None:
            raise
        display.close()
        if (run_dir / "checkpoint.safetensors").exists():
            where = f"{run_dir} keeps its last checkpoint"
        elif plan.existing:
            where = f"{run_dir} is left as it was"
        else:  # a new run that could never start (its sizes cannot change on --resume)
            plan.discard = ctx.is_main
            where = f"this run's files were removed from {run_dir}"
        return _fail(f"{message}; {where}", 1)


def interrupted_message(plan: Any, phase: str) -> str:
    """The line for a Ctrl-C that ends ``rnnflow train`` (exit 130) in ``phase``: "training"
    (a second Ctrl-C in the loop), "starting" (imports, data loading: before the loop),
    "stopped" (after a checkpoint was saved) or "report" (the run finished; its test report was
    cut short); says what the run folder keeps and the command that goes on from there."""
    from rnnflow.cli import command

    run_dir = plan.run_dir
    if phase == "report":
        return (
            f"interrupted (Ctrl-C) while reporting a finished run: its checkpoints are kept in "
            f"{run_dir}; report it with: {command('evaluate', run_dir)}"
        )
    what = {
        "training": "aborted by a second Ctrl-C",
        "starting": "interrupted (Ctrl-C) before training started",
    }.get(phase, "interrupted (Ctrl-C)")
    if (run_dir / "checkpoint.safetensors").exists():
        kept = f"the last checkpoint in {run_dir} is kept; continue with: "
    elif (run_dir / CONFIG_NAME).exists():
        kept = f"{run_dir} holds the run's config (no checkpoint yet); start it again with: "
    else:
        return f"{what}; nothing of the run was kept"
    return f"{what}; {kept}{continue_command(plan)}"


def write_summary(run_dir: Any, summary: dict[str, Any]) -> None:
    """``summary.json`` of a finished run (atomic)."""
    import json

    from rnnflow.training.logging import write_run_file

    write_run_file(run_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())


def _print_stderr(*parts: Any) -> None:
    print(*parts, file=sys.stderr)
