"""CLI glue of the image classifier task (``rnnflow train``, ``--task classifier`` or ``image``).

    rnnflow train --preset tutorial --out runs/tutorial
    rnnflow train --preset best --dataset fashion-mnist --out runs/best
    rnnflow train --dataset idx --data-dir DIR --out runs/mine      # any IDX set

One flag per ``TrainConfig`` field (but the fields recorded from the data). After a finished
run the best-validation checkpoint is evaluated on the test split (``metrics.jsonl`` "test"
record, ``summary.json``, ``confusion.png``). ``rnnflow evaluate``/``predict``/``export`` handle
classifier runs in their own modules.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rnnflow._words import count
from rnnflow.cli._config_args import add_config_arguments, config_overrides, dataset_aliases

# Flags that may change on --resume: where the data is and how many threads; not the experiment.
RESUMABLE = {"data_dir", "threads"}


def add_image_config_arguments(
    parser: argparse.ArgumentParser, *, other_presets: bool = True
) -> None:
    """One ``--field-name`` per ``TrainConfig`` field chosen by the user (not the fields a
    ``--dataset idx`` run records from its files); ``other_presets``: the help ends with the
    list of what each other preset changes."""
    from rnnflow.training.config import DATA_RECORD_FIELDS, TrainConfig

    listed = "; the list at the end gives what each other preset changes" if other_presets else ""
    add_config_arguments(
        parser,
        TrainConfig,
        title="config overrides",
        description="any TrainConfig field; when not given, the preset's value (the defaults "
        f"shown are the tutorial preset's{listed})",
        skip=DATA_RECORD_FIELDS,
        aliases={"dataset": dataset_aliases()},
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_image_config_arguments(parser)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given as flags (dataset names made canonical); ``ValueError``
    for ``--dataset idx`` without ``--data-dir``."""
    from rnnflow.data.datasets import canonical_name

    given = config_overrides(args)
    if given.get("dataset", "idx") != "idx":
        given["dataset"] = canonical_name(given["dataset"])
    if given.get("dataset") == "idx" and given.get("data_dir") is None:
        raise ValueError(
            "argument --data-dir: required with --dataset idx (the folder of the four IDX files)"
        )
    return given


def describe_start(task: Any, args: argparse.Namespace) -> str:
    return f"preset {args.preset or 'tutorial'}, {task.config.dataset}"


def run_files(task: Any) -> dict[str, str]:
    return {}


def report(task: Any, plan: Any, progress: Any, run: Any) -> int:
    """Evaluate the best-validation checkpoint on the test split; print and record it."""
    from rnnflow.cli.train import write_summary
    from rnnflow.data import CLASS_NAMES
    from rnnflow.tasks.image import evaluate, load_trained_model
    from rnnflow.training.engine import BEST_NAME
    from rnnflow.training.plots import plot_confusion

    config, run_dir = task.config, plan.run_dir
    test_x, test_y = task.test_data
    class_names = config.class_names or CLASS_NAMES[config.dataset]
    best, checkpoint = load_trained_model(run_dir / BEST_NAME, device=config.device)
    result = evaluate(
        best,
        test_x,
        test_y,
        batch_size=config.eval_batch_size,
        tta_flip=config.tta_flip,
        num_classes=len(class_names),
    )
    examples_per_s = progress.examples / max(progress.train_seconds, 1e-9)
    run.metrics.log(
        {
            "kind": "test",
            "step": progress.step,
            "examples": progress.examples,
            "checkpoint_step": checkpoint.progress["step"],
            "loss": result.loss,
            "accuracy": result.accuracy,
            "per_class_accuracy": result.per_class_accuracy.tolist(),
            "train_seconds": progress.train_seconds,
            "process_cpu_seconds": run.cpu_seconds,
            "examples_per_s": examples_per_s,
        }
    )
    plot_confusion(result.confusion.tolist(), class_names, run_dir / "confusion.png")
    write_summary(
        run_dir,
        {
            **run.summary(progress, checkpoint.progress["step"]),
            "test_accuracy": result.accuracy,
            "examples_per_s": round(examples_per_s, 1),
        },
    )
    picked = (
        f"best validation accuracy {progress.best_score:.4f}"
        if config.val_size
        else "no validation set (--val-size 0): the last weights"
    )
    print(
        f"test accuracy {result.accuracy:.4f} ({config.dataset}, {count(len(test_y), 'image')}; "
        f"checkpoint of step {checkpoint.progress['step']}, {picked})"
    )
    print(
        f"trained {count(progress.examples, 'example')} in {progress.train_seconds:.0f} s "
        f"({examples_per_s:.0f} examples/s); run folder: {run_dir}"
    )
    sys.stdout.flush()
    return 0
