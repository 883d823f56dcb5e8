"""`rnnflow train --preset P --out RUN_DIR [--FIELD VALUE ...]`, `rnnflow train --resume RUN_DIR`.

Trains the row-by-row classifier (config: a preset from ``rnnflow.training.config.PRESETS`` plus
any field overridden by a flag), with a progress bar, periodic validation and checkpoints, then
evaluates the best-validation checkpoint on the test set. RUN_DIR receives ``config.json``,
``run.json`` (run-level options: ``--tensorboard``), ``metrics.jsonl``,
``checkpoint.safetensors`` (exact resume), ``best.safetensors``, ``curves.png``,
``confusion.png``, ``summary.json`` and, with ``--tensorboard``, ``tensorboard/`` event files.
One process at a time writes a run folder (see ``rnnflow.cli._run_folder``); a non-finite loss
or weight stops training with exit status 1, keeping the last good checkpoint.

Ctrl-C finishes the current step, saves a checkpoint and exits with status 130 (a second Ctrl-C
aborts at once); ``rnnflow train --resume RUN_DIR`` then continues exactly where it stopped, as
it does after a kill (from the last periodic checkpoint).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import sys
import time
from typing import Any

from rnnflow.cli._config_args import add_config_arguments, config_overrides
from rnnflow.cli._run_folder import (
    CONFIG_NAME,
    RunRefused,
    continue_command,
    plan_run,
    start_run_files,
)

# Flags that may change on --resume: where the data is and how many threads; not the experiment.
_RESUMABLE_OVERRIDES = {"data_dir", "threads"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from rnnflow.cli._config_args import preset_epilog
    from rnnflow.training.config import PRESETS

    parser = subparsers.add_parser(
        "train",
        help="train the row-by-row image classifier",
        description=(
            "Train a recurrent classifier that reads each 28x28 image row by row (28 steps of "
            "28 pixels). Every TrainConfig field has a flag; unset ones take the preset's value."
        ),
        epilog=preset_epilog("classifier presets (--task classifier)", PRESETS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="base config; its values replace the defaults shown below (listed at the end); "
        "classifier: tutorial (default), best",
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
        type=int,
        metavar="N",
        help="stop (checkpointed, resumable) after N optimizer steps, as Ctrl-C would",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--task",
        choices=("classifier", "charlm"),
        default=None,
        help="classifier: the row-by-row image classifier (default); "
        "charlm: a character-level language model (docs/TEXT.md); with --resume, the run's "
        "own checkpoint says which",
    )
    from rnnflow.cli import _charlm

    _charlm.add_arguments(parser)  # only the charlm flags this parser lacks; extends --preset
    parser.set_defaults(func=run)
    return parser


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


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process: on a shared machine, wall time overstates the
    cost; CPU seconds / cores is what a dedicated machine would take."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _StopFlag:
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

    def __enter__(self) -> _StopFlag:
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


def run(args: argparse.Namespace) -> int:
    from rnnflow.cli import _charlm
    from rnnflow.cli._run_folder import recorded_task

    task = args.task
    if args.resume:
        recorded = recorded_task(args.resume)  # the checkpoint's own record decides
        if task is not None and recorded is not None and task != recorded:
            return _fail(f"--task {task}, but {args.resume} holds a {recorded} run")
        task = task or recorded
    task = task or "classifier"
    if task == "classifier" and getattr(args, "cfg_dataset", None) == "idx":
        if getattr(args, "cfg_data_dir", None) is None:
            return _fail(
                "argument --data-dir: required with --dataset idx (the folder of the "
                "four IDX files)"
            )
    problem = _preset_problem(args.preset, task)
    if problem:
        return _fail(problem)
    if task == "charlm":
        from rnnflow.training.distributed import launched_distributed

        if launched_distributed():  # N copies would each write the same run folder
            return _fail(
                "torchrun data-parallel training is implemented for the image classifier only, "
                "not --task charlm: run the character model as one process"
            )
        return _charlm.run(args)
    return _run_classifier(args)


def _preset_problem(preset: str | None, task: str) -> str | None:
    """Why ``--preset`` does not fit ``--task`` (each task has its own presets), else None."""
    from rnnflow.text.config import PRESETS as CHARLM_PRESETS
    from rnnflow.training.config import PRESETS

    if preset is None:
        return None
    own, other = (PRESETS, CHARLM_PRESETS) if task == "classifier" else (CHARLM_PRESETS, PRESETS)
    if preset in own:
        return None
    hint = ""
    if preset in other:
        hint = f" (--preset {preset} is a preset of --task " + (
            "charlm: add --task charlm)" if task == "classifier" else "classifier)"
        )
    return (
        f"argument --preset: {preset!r} is not a preset of --task {task}; choose from "
        f"{', '.join(sorted(own))}{hint}"
    )


def _charlm_only_flags(args: argparse.Namespace) -> list[str]:
    """Flags given on the command line that only ``--task charlm`` understands."""
    from dataclasses import fields

    from rnnflow.training.config import TrainConfig

    known = {f.name for f in fields(TrainConfig)}
    given = [name for name in config_overrides(args) if name not in known]
    if getattr(args, "cfg_text", None) or getattr(args, "text", None):
        given.append("text")
    return sorted({"--" + name.replace("_", "-") for name in given})


def _plan_run(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(RunPlan, RunLock)``, or :class:`RunRefused`. Under torchrun only rank 0 plans (it
    alone reads, locks and writes the run folder)."""
    from rnnflow.data.datasets import canonical_name
    from rnnflow.training import load_checkpoint
    from rnnflow.training.config import PRESETS, config_from_dict

    overrides = config_overrides(args)
    if overrides.get("dataset", "idx") != "idx":
        overrides["dataset"] = canonical_name(overrides["dataset"])
    return plan_run(
        args,
        overrides,
        preset=PRESETS[args.preset or "tutorial"],
        load_checkpoint=load_checkpoint,
        config_from_dict=config_from_dict,
        resumable=_RESUMABLE_OVERRIDES,
    )


def _run_classifier(args: argparse.Namespace) -> int:
    charlm_flags = _charlm_only_flags(args)
    if charlm_flags:
        print(
            f"rnnflow train: {', '.join(charlm_flags)} only apply to --task charlm "
            "(the character-level model); add --task charlm or drop them",
            file=sys.stderr,
        )
        return 2
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
        return _train_classifier(args, ctx)
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


def _train_classifier(args: argparse.Namespace, ctx: Any) -> int:
    plan: Any = None
    lock = None
    if ctx.is_main:
        try:
            plan, lock = _plan_run(args)
        except RunRefused as exc:
            plan = exc
    plan = ctx.broadcast(plan)  # rank 0's config and checkpoint, or its refusal
    if isinstance(plan, RunRefused):
        return _fail(str(plan), plan.status) if ctx.is_main else plan.status
    try:
        return _train_planned(args, ctx, plan)
    finally:
        if lock is not None:  # a folder this session created and never used goes too
            lock.release(remove_created=True)


def _train_planned(args: argparse.Namespace, ctx: Any, plan: Any) -> int:
    import torch

    from rnnflow.cli._progress import ProgressBar
    from rnnflow.data import CLASS_NAMES, load_split, train_val_split
    from rnnflow.data.datasets import DatasetChecksumError, DatasetNotFoundError
    from rnnflow.training import (
        CheckpointError,
        MetricsLogger,
        evaluate,
        fit,
        load_trained_model,
        read_metrics,
    )
    from rnnflow.training.logging import write_run_file
    from rnnflow.training.loop import BEST_NAME
    from rnnflow.training.plots import plot_confusion, plot_curves

    config, resume, run_dir = plan.config, plan.resume, plan.run_dir

    if config.threads:
        torch.set_num_threads(config.threads)
    say = (lambda *a: None) if args.quiet or not ctx.is_main else print_stderr
    error = None
    try:
        if config.dataset == "idx":
            config, (x, y), (test_x, test_y) = _load_idx(config)
            plan.config = config
        else:
            x, y = load_split(config.dataset, "train", config.data_dir)
            test_x, test_y = load_split(config.dataset, "test", config.data_dir)
        if config.val_size:
            train_data, val_data = train_val_split(x, y, val_size=config.val_size, seed=config.seed)
        else:
            train_data, val_data = (x, y), (x[:0], y[:0])
    except (DatasetNotFoundError, DatasetChecksumError, ValueError, OSError) as exc:
        error = str(exc)
    if error is None and ctx.is_main:
        try:  # run.json, then config.json: from here the folder holds a resumable run
            start_run_files(plan, {CONFIG_NAME: config.to_json() + "\n"})
        except OSError as exc:
            error = str(exc)
    if not ctx.parallel and error is not None:
        return _fail(error, 1)
    ctx.check_all(error)
    class_names = config.class_names or CLASS_NAMES[config.dataset]

    processes = f" on {ctx.world_size} processes ({ctx.backend})" if ctx.parallel else ""
    if not plan.existing:
        say(
            f"run {run_dir}: preset {args.preset or 'tutorial'}, {config.dataset}, "
            f"{config.steps} steps{processes}"
        )
    elif resume is None:
        say(f"run {run_dir}: killed before its first checkpoint; starting again from step 0")
    else:
        say(
            f"run {run_dir}: resuming at step {resume.progress['step']} of {config.steps} "
            f"({resume.progress['examples']} examples seen){processes}"
        )
    bar = ProgressBar(
        config.steps,
        sys.stderr,
        enabled=not args.quiet and ctx.is_main,
        start_step=resume.progress["step"] if resume is not None else 0,
    )

    on_step = bar.step_callback(config.batch_size)
    start = time.perf_counter()
    try:
        with (
            (
                MetricsLogger(
                    run_dir,
                    tensorboard=plan.options["tensorboard"],
                    keep_until_step=plan.start_step,
                )
                if ctx.is_main
                else contextlib.nullcontext()
            ) as metrics,
            _StopFlag(distributed=ctx.parallel, announce=ctx.is_main) as stop,
        ):
            model, progress = fit(
                config,
                run_dir,
                train_data=train_data,
                val_data=val_data,
                num_classes=len(class_names),
                resume=resume,
                metrics=metrics,
                on_step=on_step if ctx.is_main else None,
                should_stop=stop,
                stop_at_step=args.stop_at_step,
                distributed=ctx,
            )
            bar.close()
            ctx.close(wait_for_peers=True)
            if not ctx.is_main:  # rank 0 alone plots and evaluates on the test set
                return 130 if stop.requested and not progress.finished else 0
            plot_curves(read_metrics(metrics.path), run_dir / "curves.png")
            if not progress.finished:
                print(
                    f"rnnflow train: stopped at step {progress.step}/{config.steps}; checkpoint "
                    f"saved. Continue with: {continue_command(plan)}",
                    file=sys.stderr,
                )
                return 130 if stop.requested else 0
            best, checkpoint = load_trained_model(run_dir / BEST_NAME, device=config.device)
            result = evaluate(
                best,
                test_x,
                test_y,
                batch_size=config.eval_batch_size,
                tta_flip=config.tta_flip,
                num_classes=len(class_names),
            )
            record = {
                "kind": "test",
                "step": progress.step,
                "examples": progress.examples,
                "checkpoint_step": checkpoint.progress["step"],
                "loss": result.loss,
                "accuracy": result.accuracy,
                "per_class_accuracy": result.per_class_accuracy.tolist(),
                "train_seconds": progress.train_seconds,
                "process_cpu_seconds": _cpu_seconds(),
                "examples_per_s": progress.examples / max(progress.train_seconds, 1e-9),
            }
            metrics.log(record)
        plot_curves(read_metrics(run_dir / "metrics.jsonl"), run_dir / "curves.png")
        plot_confusion(result.confusion.tolist(), class_names, run_dir / "confusion.png")
    except KeyboardInterrupt:
        bar.close()
        return _fail("aborted by a second Ctrl-C (the last periodic checkpoint is kept)", 130)
    except (CheckpointError, OSError, ValueError) as exc:
        return _fail(str(exc), 1)
    summary = {
        "run_dir": str(run_dir),
        "test_accuracy": result.accuracy,
        "best_step": checkpoint.progress["step"],
        "steps": progress.step,
        "processes": ctx.world_size,
        "train_seconds": round(progress.train_seconds, 1),
        "wall_seconds_this_session": round(time.perf_counter() - start, 1),
        "process_cpu_seconds_this_session": round(_cpu_seconds(), 1),
        "examples_per_s": round(record["examples_per_s"], 1),
    }
    try:
        write_run_file(run_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    except OSError as exc:
        return _fail(str(exc), 1)
    picked = (
        f"best validation accuracy {progress.best_val_accuracy:.4f}"
        if config.val_size
        else "no validation set (--val-size 0): the last weights"
    )
    print(
        f"test accuracy {result.accuracy:.4f} ({config.dataset}, {len(test_y)} images; "
        f"checkpoint of step {checkpoint.progress['step']}, {picked})"
    )
    print(
        f"trained {progress.examples} examples in {progress.train_seconds:.0f} s "
        f"({record['examples_per_s']:.0f} examples/s); run folder: {run_dir}"
    )
    return 0


def _load_idx(config: Any) -> tuple[Any, Any, Any]:
    """``(config with the data recorded, (train x, y), (test x, y))`` of a ``--dataset idx`` run;
    a resumed run must see the files it recorded (``ValueError`` otherwise)."""
    from dataclasses import replace

    from rnnflow.data.idx_folder import load_idx_folder_split

    train = load_idx_folder_split(config.data_dir, "train")
    test = load_idx_folder_split(config.data_dir, "test")
    height, width = train.images.shape[1:]
    if test.images.shape[1:] != train.images.shape[1:]:
        raise ValueError(
            f"--dataset idx: test images are {list(test.images.shape[1:])}, training images "
            f"{[height, width]} (in {config.data_dir})"
        )
    sha256 = tuple(f"{n}={h}" for n, h in {**train.sha256, **test.sha256}.items())
    if config.data_sha256 and config.data_sha256 != sha256:
        raise ValueError(
            f"--dataset idx: the files in {config.data_dir} differ from those this run recorded "
            f"(config.json data_sha256): recorded {list(config.data_sha256)}, found {list(sha256)}"
        )
    recorded = replace(
        config,
        image_height=height,
        image_width=width,
        class_names=train.class_names,
        data_sha256=sha256,
    )
    return recorded, (train.images, train.labels), (test.images, test.labels)


def print_stderr(*parts: Any) -> None:
    print(*parts, file=sys.stderr)
