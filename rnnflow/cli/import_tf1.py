"""`rnnflow import-tf1 PREFIX --list | --preset tutorial --out RUN_DIR`: TF1 checkpoints in.

Reads a TensorFlow-1 V2 checkpoint (``PREFIX.index`` + ``PREFIX.data-*``; PREFIX may also be the
``.index`` file or the folder holding a ``checkpoint`` file) without TensorFlow.

* ``--list`` prints every variable with dtype and shape (``--check`` also reads each one and
  verifies its crc32c).
* ``--preset tutorial --out RUN_DIR`` rebuilds the "MNIST row by row" tutorial's model and
  writes a run folder that ``rnnflow evaluate``/``predict`` use, and that
  ``rnnflow train --resume RUN_DIR`` continues with TF's Adam state: ``config.json``,
  ``checkpoint.safetensors`` (weights, Adam state, step), ``best.safetensors`` (weights) and
  ``import.json`` (source, name mapping, dataset, notes). ``--map NAME=PARAM`` assigns a TF
  variable to an rnnflow parameter by hand; ``--ignore NAME`` leaves a variable out. A TF1
  checkpoint does not record its training data: ``--dataset`` names it (default: the preset's,
  ``mnist``; the summary says when it was assumed).

Exit status: 0 on success, 1 for an unreadable checkpoint, 2 for a usage or mapping problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rnnflow._words import count
from rnnflow.cli._config_args import config_overrides, flag_name

# Model fields come from the checkpoint; giving them on the command line is an error.
_FROM_CHECKPOINT = ("cell", "num_units", "num_layers", "bidirectional", "projection_size")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "import-tf1",
        help="list or import a TensorFlow-1 checkpoint (no TensorFlow needed)",
        description=(
            "Read a TF1 V2 checkpoint (PREFIX.index + PREFIX.data-*) without TensorFlow: list "
            "its variables, or turn the tutorial's model into an rnnflow run folder."
        ),
    )
    parser.add_argument("prefix", metavar="PREFIX", help="checkpoint prefix, .index file or folder")
    parser.add_argument("--list", action="store_true", help="list variables, dtypes and shapes")
    parser.add_argument(
        "--check", action="store_true", help="with --list: read every tensor, verify its crc32c"
    )
    parser.add_argument(
        "--preset",
        choices=("tutorial",),
        help="the TF program the checkpoint comes from (tutorial: the MNIST row-by-row model)",
    )
    parser.add_argument("--out", metavar="RUN_DIR", help="run folder to create")
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="NAME=PARAM",
        help="TF1 variable NAME is rnnflow parameter PARAM (e.g. Variable_1=weights_out); "
        "repeatable",
    )
    parser.add_argument(
        "--ignore", action="append", default=[], metavar="NAME", help="leave a TF1 variable out"
    )
    parser.add_argument("--no-optimizer", action="store_true", help="do not import the Adam slots")
    parser.add_argument(
        "--beta1", type=float, default=0.9, help="TF AdamOptimizer's beta1 (default: 0.9)"
    )
    parser.add_argument(
        "--beta2", type=float, default=0.999, help="TF AdamOptimizer's beta2 (default: 0.999)"
    )
    from rnnflow.cli._image import add_image_config_arguments

    add_image_config_arguments(parser, other_presets=False)  # tutorial is its one preset
    parser.set_defaults(func=run)
    return parser


def _fail(message: str, status: int = 2) -> int:
    print(f"rnnflow import-tf1: {message}", file=sys.stderr)
    return status


def _list(ckpt, *, check: bool) -> int:
    from rnnflow.interop.tf1_checkpoint import TF1CheckpointError
    from rnnflow.interop.tf1_names import optimizer_variable

    width = max((len(n) for n in ckpt.entries), default=4)
    print(
        f"{ckpt.prefix}: {count(len(ckpt.entries), 'variable')}, {count(ckpt.num_shards, 'shard')}"
    )
    for name, entry in ckpt.entries.items():
        kind = "optimizer" if optimizer_variable(name) else "model"
        shape = "x".join(str(d) for d in entry.shape) or "scalar"
        print(f"  {name:<{width}}  {entry.dtype:<9} {shape:<12} {kind}")
    if check:
        readable = [name for name, entry in ckpt.entries.items() if entry.readable]
        try:
            for name in readable:
                ckpt.read(name)
        except TF1CheckpointError as exc:
            print(f"rnnflow import-tf1: {exc}", file=sys.stderr)
            return 1
        skipped = len(ckpt.entries) - len(readable)
        if skipped:
            print(
                f"{count(len(readable), 'tensor')} read, crc32c verified; {skipped} skipped "
                f"(string, "
                "sliced or other dtypes this reader does not decode)"
            )
        else:
            print("all tensors read; crc32c verified")
    return 0


def run(args: argparse.Namespace) -> int:
    from rnnflow.interop.tf1_checkpoint import TF1Checkpoint, TF1CheckpointError

    if args.check and not args.list:
        return _fail("--check verifies the tensors --list reads: give --list --check")
    if not args.list:
        if args.preset is None or args.out is None:
            return _fail("give --list, or --preset tutorial --out RUN_DIR")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            return _fail(f"--out {out} exists and is not a folder: choose another path")
        if getattr(args, "cfg_dataset", None) == "idx":
            return _fail(
                "--dataset idx: an imported run needs a catalogued dataset (a TF1 checkpoint "
                "records no IDX folder's class names or image size); import with --dataset "
                "mnist or fashion-mnist"
            )
    try:
        ckpt = TF1Checkpoint(args.prefix)
    except TF1CheckpointError as exc:
        return _fail(str(exc), 1)
    if args.list:
        return _list(ckpt, check=args.check)
    return _import(ckpt, args)


def _import(ckpt, args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from rnnflow._atomic import atomic_write_bytes
    from rnnflow.interop.tf1_checkpoint import TF1CheckpointError
    from rnnflow.interop.tf1_names import TF1NameError
    from rnnflow.tasks.image import build_model, import_tutorial
    from rnnflow.training import PRESETS, build_optimizer, save_checkpoint
    from rnnflow.training.engine import BEST_NAME, CHECKPOINT_NAME, Progress

    overrides = config_overrides(args)
    fixed = [k for k in _FROM_CHECKPOINT if k in overrides]
    if fixed:
        flags = ", ".join(flag_name(k) for k in fixed)
        return _fail(f"{flags}: the model's shape comes from the checkpoint")
    if "dataset" in overrides:
        from rnnflow.data.datasets import canonical_name

        overrides["dataset"] = canonical_name(overrides["dataset"])
    try:
        base = replace(PRESETS[args.preset], **overrides)
    except (TypeError, ValueError) as exc:
        return _fail(str(exc))
    maps: dict[str, str] = {}
    for item in args.map:
        name, sep, param = item.partition("=")
        if not sep or not name or not param:
            return _fail(f"--map expects NAME=PARAM, got {item!r}")
        maps[name] = param
    run_dir = Path(args.out)
    if (run_dir / CHECKPOINT_NAME).exists() or (run_dir / "config.json").exists():
        return _fail(f"{run_dir} already holds a run; choose another --out")

    try:
        imported = import_tutorial(
            ckpt,
            overrides=maps,
            ignore=args.ignore,
            base_config=base,
            beta1=args.beta1,
            beta2=args.beta2,
            with_optimizer=not args.no_optimizer,
        )
    except (TF1NameError, ValueError) as exc:  # TF1NameError is a ValueError
        status = 1 if isinstance(exc, TF1CheckpointError) else 2
        return _fail(str(exc), status)
    config = imported.config
    num_classes = imported.model.biases_out.shape[0]
    if num_classes != 10:
        return _fail(
            f"the checkpoint's model has {count(num_classes, 'class')}; MNIST and "
            f"Fashion-MNIST have 10"
        )

    # The run folder: what `rnnflow train` would have written, at TF's step.
    model = build_model(config)
    model.load_state_dict(imported.model.state_dict(), strict=True)
    optimizer = None
    if imported.optimizer_state is not None:
        optimizer = build_optimizer(config, model)
        optimizer.load_state_dict(imported.optimizer_state)
    step = imported.step
    progress = asdict(Progress(step=step, examples=step * config.batch_size, best_step=step))
    import torch

    rng = {
        "torch": torch.Generator().manual_seed(config.seed).get_state(),
        "augment": torch.Generator().manual_seed(config.seed + 1).get_state(),
    }
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"cannot create the run folder {run_dir}: {exc.strerror}")
    atomic_write_bytes(run_dir / "config.json", (config.to_json() + "\n").encode())
    save_checkpoint(
        run_dir / CHECKPOINT_NAME,
        model=model,
        config=config,
        progress=progress,
        optimizer=optimizer,
        rng=rng,
    )
    save_checkpoint(run_dir / BEST_NAME, model=model, config=config, progress=progress)
    assumed = "dataset" not in overrides  # a TF1 checkpoint does not record its data
    record = {
        "source": str(ckpt.prefix.resolve()),
        "preset": args.preset,
        "dataset": config.dataset,
        "dataset_assumed": assumed,
        "step": step,
        "optimizer_imported": optimizer is not None,
        "mapping": imported.mapping,
        "skipped": imported.skipped,
        "notes": imported.notes,
    }
    atomic_write_bytes(run_dir / "import.json", (json.dumps(record, indent=2) + "\n").encode())

    print(f"imported {ckpt.prefix} -> {run_dir}")
    print(
        f"  model: {config.cell} x{config.num_layers}, {config.num_units} units"
        + (", bidirectional" if config.bidirectional else "")
        + f", projection {config.projection_size or config.num_units}, "
        f"{count(num_classes, 'class')}"
    )
    width = max(len(p) for p in imported.mapping)
    for param, name in imported.mapping.items():
        print(f"  {param:<{width}}  <- {name}")
    if optimizer is not None:
        print(f"  Adam state: step {step} (slots Adam -> exp_avg, Adam_1 -> exp_avg_sq)")
    for note in imported.notes:
        print(f"  note: {note}")
    if imported.skipped:
        print(f"  not imported: {', '.join(imported.skipped)}")
    from rnnflow.cli import command  # as the user ran it: .venv/bin/rnnflow, python -m rnnflow

    if assumed:
        print(
            f"  dataset: {config.dataset} ASSUMED (the {args.preset} preset's default; a TF1 "
            "checkpoint does not say what it was trained on). For a Fashion-MNIST model, import "
            "again with --dataset fashion-mnist, or evaluate this run with "
            f"`{command('evaluate', run_dir, '--dataset', 'fashion-mnist')}`"
        )
    print(f"evaluate with: {command('evaluate', run_dir)}  (dataset: {config.dataset})")
    return 0
