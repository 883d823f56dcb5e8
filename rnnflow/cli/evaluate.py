"""`rnnflow evaluate RUN_DIR|CKPT [--json]`: test accuracy, per-class accuracy, confusion matrix.

A run folder means its ``best.safetensors`` (best validation accuracy), else its last checkpoint.
The dataset is the one the model was trained on unless ``--dataset`` says otherwise. A run of
another task (as its checkpoint records) is evaluated by its task's CLI glue
(``rnnflow.cli._task``): a character model (``rnnflow train --task charlm``) on its own
validation documents: loss, perplexity, bits per character and next-character accuracy,
beside the unigram and bigram baselines on the same split.
"""

from __future__ import annotations

import argparse
import json
import sys

from rnnflow._words import count
from rnnflow.cli._config_args import dataset_choices, dataset_type, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained run of any task on its test split (or its validation text)",
        description="Evaluate a trained model (a run folder or a checkpoint file) of any task. "
        "Image classifier: test accuracy, per-class accuracy, confusion matrix. Sequence and "
        "text-classify runs: loss, accuracy and per-class scores on the files or texts they "
        "were trained with (--split test or train). Character model (--task charlm): "
        "validation loss, perplexity and bits per character beside n-gram baselines. "
        "--dataset, --data-dir and --tta-flip are image-classifier options.",
    )
    parser.add_argument("model", metavar="RUN_DIR|CKPT", help="run folder or .safetensors file")
    parser.add_argument(
        "--dataset",
        type=dataset_type(),
        choices=dataset_choices(),
        help="image classifier: dataset to evaluate on (default: the training one)",
    )
    parser.add_argument(
        "--data-dir", help="image classifier: folder holding the dataset's IDX files"
    )
    parser.add_argument(
        "--split",
        choices=("test", "train"),
        default="test",
        help="split (default: test; a character model has only its validation split)",
    )
    parser.add_argument(
        "--tta-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="image classifier: average with the mirrored image (default: as the run was "
        "configured)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=1000,
        help="examples per forward pass (default: 1000)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
    return parser


def format_confusion(confusion: list[list[int]], class_names: tuple[str, ...]) -> str:
    """Text confusion matrix: true class in rows, predicted class in columns (0..C-1)."""
    n = len(class_names)
    width = max(5, max(len(str(v)) for row in confusion for v in row) + 1)
    name_width = max(len(c) for c in class_names) + 6
    header = " " * name_width + "".join(f"{j:>{width}}" for j in range(n))
    lines = ["confusion matrix (rows: true class, columns: predicted class)", header]
    for i, row in enumerate(confusion):
        label = f"{i} {class_names[i]}".ljust(name_width)
        lines.append(label + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rnnflow.cli._task import dispatch

    status = dispatch("evaluate", args)  # another task's run: its glue evaluates it
    return _run_classifier(args) if status is None else status


def _run_classifier(args: argparse.Namespace) -> int:
    from rnnflow.data import CLASS_NAMES, load_split
    from rnnflow.data.datasets import DatasetChecksumError, DatasetNotFoundError, canonical_name
    from rnnflow.tasks.image import evaluate, load_trained_model
    from rnnflow.training import CheckpointError

    try:
        model, checkpoint = load_trained_model(args.model)
    except (FileNotFoundError, CheckpointError) as exc:
        print(f"rnnflow evaluate: {exc}", file=sys.stderr)
        return 1
    config = checkpoint.config
    try:
        dataset = config.dataset if args.dataset in (None, "idx") else canonical_name(args.dataset)
        if dataset == "idx":  # the run's classes; the labels are checked against their count
            from rnnflow.data.idx_folder import check_recorded_sha256, load_idx_folder_split

            folder = args.data_dir or config.data_dir
            split = load_idx_folder_split(folder, args.split, num_classes=config.num_classes)
            if config.data_sha256:  # the files the run recorded, wherever they are now
                check_recorded_sha256(folder, config.data_sha256, split.sha256)
            images, labels = split.images, split.labels
            if tuple(images.shape[1:]) != (config.image_height, config.image_width):
                raise ValueError(
                    f"{args.split} images are {list(images.shape[1:])}, the run was trained on "
                    f"{[config.image_height, config.image_width]}"
                )
        else:
            if len(CLASS_NAMES[dataset]) != config.num_classes:  # its labels mean other classes
                raise ValueError(
                    f"--dataset {dataset} has {count(len(CLASS_NAMES[dataset]), 'class')}, the "
                    f"run's model {config.num_classes} ({config.dataset})"
                )
            images, labels = load_split(dataset, args.split, args.data_dir or config.data_dir)
    except (DatasetNotFoundError, DatasetChecksumError, ValueError, OSError) as exc:
        print(f"rnnflow evaluate: {exc}", file=sys.stderr)
        return 1
    tta = config.tta_flip if args.tta_flip is None else args.tta_flip
    names = config.class_names or CLASS_NAMES[dataset]
    result = evaluate(
        model, images, labels, batch_size=args.batch_size, tta_flip=tta, num_classes=len(names)
    )
    per_class = result.per_class_accuracy.tolist()
    if args.json:
        payload = {
            "checkpoint": str(checkpoint.path),
            "step": checkpoint.progress.get("step"),
            "dataset": dataset,
            "split": args.split,
            "examples": len(labels),
            "tta_flip": tta,
            "accuracy": result.accuracy,
            "loss": result.loss,
            "per_class_accuracy": {n: a for n, a in zip(names, per_class)},
            "class_names": list(names),
            "confusion": result.confusion.tolist(),
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(f"checkpoint: {checkpoint.path} (step {checkpoint.progress.get('step')})")
    print(
        f"{dataset} {args.split}: {count(len(labels), 'image')}"
        + (", mirror-averaged" if tta else "")
    )
    print(f"accuracy {result.accuracy:.4f}  loss {result.loss:.4f}")
    print("per-class accuracy:")
    for i, (name, acc) in enumerate(zip(names, per_class)):
        print(f"  {i} {name:<12} {acc:.4f}")
    print(format_confusion(result.confusion.tolist(), names))
    print(f"test accuracy: {result.accuracy:.4f}" if args.split == "test" else "")
    return 0
