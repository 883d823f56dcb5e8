"""CLI glue of the sequence-classifier task (``rnnflow train --task sequence``).

    rnnflow train --task sequence --preset japanese-vowels --out runs/jv     # aeon's built-in set
    rnnflow train --task sequence --dataset npz --train-file both.npz --out runs/mine
    rnnflow train --task sequence --dataset npz --train-file a.npz --test-file b.npz ...
    rnnflow train --task sequence --dataset ts --train-file A_TRAIN.ts --test-file A_TEST.ts ...
    rnnflow evaluate runs/jv [--split train] [--json]
    rnnflow predict runs/jv series.csv other.npz [--top K] [--json]
    rnnflow export runs/jv --format onnx --out jv.onnx

One flag per ``SequenceConfig`` field (but the fields recorded from the data). After a finished
run the kept checkpoint (the best validation accuracy with ``--val-size N``, else the last) is
evaluated on the test split (``metrics.jsonl`` "test" record, ``summary.json``,
``confusion.png``). One ``.npz`` alone must hold both splits (``x_train``, ``labels_train``,
``x_test``, ``labels_test``); ``--train-file``/``--test-file`` are recorded as absolute paths.
``predict`` reads raw series (``.csv``: one row per step, one comma-separated column per channel,
a first row without any number is a header; ``.npz``: ``x`` [T, D], or padded [N, T, D] with
``lengths``) and standardises them with the run's statistics. ``export --format onnx`` writes a
graph with inputs ``series`` [batch, max_steps, D] (raw) and ``sequence_length`` [batch]
(``rnnflow.interop.sequence_onnx``), checked against PyTorch with onnxruntime on the run's test
split before it is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rnnflow._words import count
from rnnflow.cli._config_args import add_config_arguments, config_overrides, flag_name

# Flags that may change on --resume: where the files are (their sha256 is checked) and threads.
RESUMABLE = {"train_file", "test_file", "threads", "device"}
# Image-classifier flags of evaluate/predict/export: refused on a sequence run, never ignored.
_IMAGE_FLAGS = ("dataset", "data_dir", "tta_flip", "save_input", "max_pixels")
# `rnnflow export` tolerance for sequence runs: |onnxruntime - pytorch| <= ATOL + RTOL * |logit|
EXPORT_ATOL, EXPORT_RTOL = 1e-4, 1e-4


def _fail(command: str, message: str, status: int = 1) -> int:
    from rnnflow.cli import report

    report(command, message)
    return status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rnnflow.tasks.sequence_config import DATA_RECORD_FIELDS, SequenceConfig

    add_config_arguments(
        parser,
        SequenceConfig,
        title="sequence config (--task sequence)",
        description="any SequenceConfig field; when not given, the preset's value (the defaults "
        "shown are SequenceConfig's; the list below says what each preset changes)",
        skip=DATA_RECORD_FIELDS,
    )
    warmup = next(a for a in parser._actions if a.dest == "cfg_warmup_examples")
    warmup.help = (
        f"linear warm-up of the learning rate over this many examples (default: "
        f"{SequenceConfig.warmup_examples}, the japanese-vowels preset's ten epochs of its 270 "
        "series; 0, no warm-up, for a run that names no --preset and trains on other data, "
        "--dataset npz, ts or pickup-gesture-wiimote-z)"
    )


def _default_warmup(args: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
    """The preset's warm-up is ten epochs of ITS data set: a run naming no ``--preset`` on other
    data (a first small run of one's own series) gets none unless ``--warmup-examples`` is given,
    so that ``--epochs 1`` is not refused for a warm-up longer than the run."""
    from rnnflow.tasks.sequence_config import SequenceConfig

    if getattr(args, "resume", None) is None and getattr(args, "preset", None) is None:
        if given.get("dataset", SequenceConfig.dataset) != SequenceConfig.dataset:
            return {"warmup_examples": 0, **given}
    return given


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given as flags (and the warm-up of a run on other data than the
    preset's: :func:`_default_warmup`); ``--train-file``/``--test-file`` made absolute (against
    the current folder), so that evaluate, predict, export and ``--resume`` find the files from
    any folder."""
    from pathlib import Path

    values = _default_warmup(args, config_overrides(args))
    for key in ("train_file", "test_file"):
        if values.get(key):
            values[key] = str(Path(values[key]).expanduser().absolute())
    return values


def _image_flags(command: str, args: argparse.Namespace) -> int | None:
    """Exit status 2 after naming the image-classifier flags given, or None when none is."""
    given = [f for f in _IMAGE_FLAGS if getattr(args, f, None) not in (None, False)]
    if not given:
        return None
    flags = ", ".join(flag_name(f) for f in given)
    return _fail(
        command,
        f"{flags} applies to image classifier runs; {args.model} is a sequence run (it reads "
        + (
            "the series files you give)"
            if command == "predict"
            else "the files it was trained with)"
        ),
        2,
    )


def describe_start(task: Any, args: argparse.Namespace) -> str:
    train, val, test = task.train, task.val, task.test
    lengths = train.lengths
    held = f" (+{len(val)} validation)" if val is not None else ""
    return (
        f"{task.config.dataset}: {len(train)} training series{held}, {len(test)} test; "
        f"{count(train.num_channels, 'channel')}, lengths "
        f"{int(lengths.min())}-{int(lengths.max())}, "
        f"{count(train.num_classes, 'class')}"
    )


def run_files(task: Any) -> dict[str, str]:
    return {}


def report(task: Any, plan: Any, progress: Any, run: Any) -> int:
    """Evaluate the kept checkpoint on the test split; print and record it."""
    from rnnflow.cli.train import write_summary
    from rnnflow.tasks.sequence import evaluate, load_trained_model
    from rnnflow.training.engine import BEST_NAME
    from rnnflow.training.plots import plot_confusion

    config, run_dir = task.config, plan.run_dir
    best, checkpoint = load_trained_model(run_dir / BEST_NAME, device=config.device)
    result = evaluate(best, task.test, batch_size=config.eval_batch_size)
    run.metrics.log(
        {
            "kind": "test",
            "step": progress.step,
            "examples": progress.examples,
            "checkpoint_step": checkpoint.progress["step"],
            "loss": result.loss,
            "accuracy": result.accuracy,
            "train_seconds": progress.train_seconds,
            "process_cpu_seconds": run.cpu_seconds,
        }
    )
    plot_confusion(result.confusion.tolist(), list(config.class_names), run_dir / "confusion.png")
    write_summary(
        run_dir,
        {
            **run.summary(progress, checkpoint.progress["step"]),
            "dataset": config.dataset,
            "test_accuracy": result.accuracy,
            "test_series": len(task.test),
        },
    )
    picked = (
        f"best validation accuracy {progress.best_score:.4f}"
        if config.val_size
        else "no validation set (--val-size 0): the last weights"
    )
    print(
        f"test accuracy {result.accuracy:.4f} ({config.dataset}, {len(task.test)} series; "
        f"checkpoint of step {checkpoint.progress['step']}, {picked})"
    )
    print(
        f"trained {count(progress.step, 'step')} in {progress.train_seconds:.0f} s "
        f"({run.cpu_seconds:.0f} s process CPU); run folder: {run_dir}"
    )
    sys.stdout.flush()
    return 0


def _load(command: str, path: str) -> Any:
    """(model, checkpoint) or an exit status after printing why not."""
    from rnnflow.tasks.sequence import load_trained_model
    from rnnflow.training import CheckpointError

    try:
        return load_trained_model(path)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        return _fail(command, str(exc))


def _split(config: Any, split: str) -> Any:
    """The run's standardised ``split`` ('train': the training part, after any hold-out)."""
    from rnnflow.tasks.sequence import read_splits

    recorded, train, _, test = read_splits(config)
    return train if split == "train" else test


def evaluate(args: argparse.Namespace) -> int:
    """``rnnflow evaluate`` of a sequence run: loss, accuracy and per-class accuracy on the run's
    own test (or training) split, read and standardised as in training."""
    from rnnflow.data.sequences import SequenceDataError
    from rnnflow.tasks.sequence import evaluate as evaluate_model

    refused = _image_flags("evaluate", args)
    if refused is not None:
        return refused
    loaded = _load("evaluate", args.model)
    if isinstance(loaded, int):
        return loaded
    model, checkpoint = loaded
    config = checkpoint.config
    try:
        data = _split(config, args.split)
    except (SequenceDataError, ValueError, OSError) as exc:
        return _fail("evaluate", str(exc))
    result = evaluate_model(model, data, batch_size=args.batch_size)
    totals = result.confusion.sum(dim=1).double()
    per_class = (result.confusion.diagonal().double() / totals).tolist()
    payload = {
        "checkpoint": str(checkpoint.path),
        "step": checkpoint.progress.get("step"),
        "task": "sequence",
        "dataset": config.dataset,
        "split": args.split,
        "series": len(data),
        "loss": result.loss,
        "accuracy": result.accuracy,
        "per_class_accuracy": dict(zip(config.class_names, per_class)),
    }
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    print(f"checkpoint: {checkpoint.path} (step {payload['step']}), sequence classifier")
    print(
        f"{config.dataset} {args.split} split: {len(data)} series  loss {result.loss:.4f}  "
        f"accuracy {result.accuracy:.4f}"
    )
    return 0


def predict(args: argparse.Namespace) -> int:
    """``rnnflow predict RUN FILE...`` for a sequence run: each series' class and top
    probabilities; files that cannot be used are reported and give exit status 1."""
    from rnnflow.data.sequence_files import read_series_file
    from rnnflow.data.sequences import SequenceDataError
    from rnnflow.tasks.predictions import top_classes
    from rnnflow.tasks.sequence import normaliser, predict_proba

    refused = _image_flags("predict", args)
    if refused is not None:
        return refused
    loaded = _load("predict", args.model)
    if isinstance(loaded, int):
        return loaded
    model, checkpoint = loaded
    config = checkpoint.config
    names, stats = config.class_names, normaliser(config)
    top = max(1, min(args.top, len(names)))
    results, errors = [], []
    for path in args.images:
        try:
            series = read_series_file(path, num_channels=config.num_channels)
        except (SequenceDataError, OSError) as exc:
            errors.append({"file": path, "error": str(exc)})
            continue
        probs = predict_proba(model, stats.apply(series))  # [N, C]
        for index, (s, p) in enumerate(zip(series, probs)):
            results.append(
                {"file": path, "index": index, "length": len(s), **top_classes(p, names, top)}
            )
    if args.json:
        payload = {"checkpoint": str(checkpoint.path), "predictions": results, "errors": errors}
        print(json.dumps(payload, indent=2))
    else:
        several = {r["file"] for r in results if r["index"] > 0}
        for r in results:
            others = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"][1:])
            where = f"{r['file']}[{r['index']}]" if r["file"] in several else r["file"]
            line = f"{where} ({count(r['length'], 'step')}): {r['class']} ({r['probability']:.3f})"
            print(line + (f"  [then: {others}]" if others else ""))
    for e in errors:
        print(f"rnnflow predict: {e['error']}", file=sys.stderr)
    return 1 if errors else 0


def export(args: argparse.Namespace) -> int:
    """``rnnflow export RUN --format onnx --out PATH`` for a sequence run (see the module
    docstring); TorchScript is refused. Nothing is written unless onnxruntime's logits on the
    run's test split agree with PyTorch's within ``--atol``/``--rtol`` (default 1e-4 each)."""
    from dataclasses import asdict

    import torch

    from rnnflow.cli.export import check_and_write
    from rnnflow.data.sequences import SequenceDataError, pad_series
    from rnnflow.interop._traceable import pytorch_logits

    if args.format != "onnx":
        return _fail(
            "export",
            f"--format {args.format}: a sequence run exports to ONNX only (--format onnx)",
            2,
        )
    refused = _image_flags("export", args)
    if refused is not None:
        return refused
    try:
        from rnnflow.interop.sequence_onnx import onnx_sequence_logits, sequence_to_onnx
    except ImportError as exc:
        return _fail("export", str(exc))
    loaded = _load("export", args.model)
    if isinstance(loaded, int):
        return loaded
    model, checkpoint = loaded
    config = checkpoint.config
    try:
        from rnnflow.tasks.sequence import read_splits

        _, train, _, test = read_splits(config)
    except (SequenceDataError, ValueError, OSError) as exc:
        return _fail("export", f"{exc}\n(the exported model is checked on the run's test split)")
    max_steps = int(max(train.lengths.max(), test.lengths.max()))
    check = test.series[: args.check_examples]
    stats = (config.norm_mean, config.norm_std)
    metadata = {
        "rnnflow.task": "sequence",
        "rnnflow.config": json.dumps(asdict(config)),
        "rnnflow.class_names": json.dumps(list(config.class_names)),
        "rnnflow.step": str(checkpoint.progress.get("step")),
        "rnnflow.input": f"series float32 [batch, {max_steps}, {config.num_channels}] raw values "
        f"padded past each length; sequence_length int64 [batch] in [1, {max_steps}]",
        "rnnflow.output": f"logits float32 [batch, {model.num_classes}]",
    }
    try:
        data = sequence_to_onnx(
            model, mean=stats[0], std=stats[1], max_steps=max_steps, metadata=metadata
        )
    except ImportError as exc:
        return _fail("export", str(exc))
    # raw series: undo the standardisation the task applied when it read them
    mean, std = torch.tensor(stats[0]), torch.tensor(stats[1])
    padded, lengths = pad_series(check)  # [N, T, D] standardised, zero padding
    standard = torch.zeros(len(check), max_steps, config.num_channels)
    standard[:, : padded.shape[1]] = torch.from_numpy(padded)
    raw = standard * std + mean  # [N, max_steps, D]
    lengths_t = torch.from_numpy(lengths)
    exported = onnx_sequence_logits(data, raw, lengths_t, batch_size=args.batch_size)
    expected = pytorch_logits(model, standard, lengths_t, batch_size=args.batch_size)
    return check_and_write(
        args,
        data,
        checkpoint=checkpoint,
        expected=expected,
        exported=exported,
        tolerance=(EXPORT_ATOL, EXPORT_RTOL),
        signature=f"series float32 [batch, {max_steps}, {config.num_channels}] + "
        f"sequence_length int64 [batch] -> logits float32 [batch, {model.num_classes}]",
        checked=f"{config.dataset} test series",
        unit="series",
    )


def refusal(command: str, path: Any) -> str:
    return f"{path} is a sequence classifier run: `rnnflow {command}` does not apply to it"
