"""`rnnflow export RUN_DIR|CKPT --format onnx|torchscript --out PATH`: a deployable model file.

The file maps images float32 [batch, 28, 28] (pixels in [0, 1], rows as time steps) to logits
float32 [batch, num_classes], for any batch size. Before anything is written, the exported model
runs (onnxruntime, or ``torch.jit.load``) on the test images of the run's dataset and its logits
are compared with PyTorch's; the command prints the largest difference and how many predicted
classes agree. The tolerance follows from float32 arithmetic on the model at hand: twice the
bound on a float32 evaluation's rounding error (``rnnflow.interop._rounding``, largest over the
first ``BOUND_IMAGES`` check images), or the fixed rule
``|exported - pytorch| <= ATOL + RTOL * |pytorch|`` given by ``--atol``/``--rtol``. Within
tolerance the file is written atomically (temporary file + ``os.replace``; missing parent folders
are created, as every command that writes does); otherwise nothing is written, any existing PATH
is left untouched, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rnnflow._paths import output_problem
from rnnflow._words import count
from rnnflow.cli._config_args import dataset_choices, dataset_type, positive_int

FORMATS = ("onnx", "torchscript")
_RUNTIME = {"onnx": "onnxruntime", "torchscript": "torch.jit"}
BOUND_IMAGES = 128  # images the rounding-error bound is computed on (float64 + backward: slow)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from rnnflow.cli._sequence import EXPORT_ATOL as seq_atol
    from rnnflow.cli._sequence import EXPORT_RTOL as seq_rtol
    from rnnflow.cli._text_classify import EXPORT_TOLERANCE as text_tol

    parser = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX or TorchScript, checked against PyTorch",
        description=(
            "Export a trained model (a run folder or a checkpoint file) to ONNX or TorchScript, "
            "run the exported file on test examples and compare its logits with PyTorch's. The "
            "file is written only if they agree within the tolerance. Image classifier runs: "
            "ONNX or TorchScript, checked on test images; sequence and text-classify runs: ONNX, "
            "checked on the run's own test series or texts (--dataset and --data-dir are "
            "image-classifier options). A character model is not exported."
        ),
    )
    parser.add_argument("model", metavar="RUN_DIR|CKPT", help="run folder or .safetensors file")
    parser.add_argument(
        "--format", required=True, help=f"output format: {' or '.join(FORMATS)}"
    )  # checked in run(), so that a wrong value gets rnnflow's message (exit status 2)
    parser.add_argument("--out", required=True, metavar="PATH", help="file to write")
    parser.add_argument(
        "--dataset",
        type=dataset_type(),
        choices=dataset_choices(idx=False),
        help="check images from this dataset (default: the run's)",
    )
    parser.add_argument("--data-dir", help="folder holding the dataset's IDX files")
    parser.add_argument(
        "--check-examples",
        type=positive_int,
        default=10000,
        metavar="N",
        help="compare on the first N test examples: images, series or texts (default: 10000, "
        "the whole test split of MNIST-style data)",
    )
    parser.add_argument(  # the old, image-only spelling: still works, with a note
        "--check-images",
        type=positive_int,
        dest="check_images",
        metavar="N",
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--atol",
        type=float,
        help="fixed tolerance |exported - pytorch| <= ATOL + RTOL * |pytorch| instead of the "
        "task's own (default: image classifiers: twice the model's float32 rounding-error "
        f"bound, rtol 0; sequence runs: atol {seq_atol:g}, rtol {seq_rtol:g}; text-classify "
        f"runs: atol {text_tol:g}, rtol {text_tol:g})",
    )
    parser.add_argument(
        "--rtol",
        type=float,
        help="relative part of the fixed tolerance (default: 0 with --atol, else the task's)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=1000, help="(default: 1000)")
    parser.set_defaults(func=run)
    return parser


def _fail(message: str, status: int = 1) -> int:
    print(f"rnnflow export: {message}", file=sys.stderr)
    return status


def fixed_tolerance(args: argparse.Namespace, atol: float, rtol: float) -> tuple[float, float]:
    """(atol, rtol) of a task with a fixed export tolerance: ``--atol``/``--rtol`` replace it
    (``--atol`` alone means rtol 0), else the task's own ``atol``/``rtol``."""
    chosen_atol = atol if args.atol is None else args.atol
    if args.rtol is not None:
        return chosen_atol, args.rtol
    return chosen_atol, rtol if args.atol is None else 0.0


def write_checked(
    out: Any, data: bytes, check: Any, *, atol: float, rtol: float, advice: str = ""
) -> int:
    """Write an exported model to ``out`` (atomically) only if ``check`` (its logits against
    PyTorch's) passed; else say by how much it failed and write nothing. Every task's export
    ends here. Returns the exit status: 0 written, 1 refused or unwritable."""
    from rnnflow._atomic import atomic_write_bytes

    if not check.passed:
        message = (
            f"the exported model's logits differ from PyTorch's by more than atol {atol:.3g} "
            f"+ rtol {rtol:.3g} * |logit|; nothing was written to {out}"
        )
        return _fail(f"{message}. {advice}" if advice else message)
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)  # as train --out, import-tf1 --out
        atomic_write_bytes(out, data)
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc}")
    return 0


def check_and_write(
    args: argparse.Namespace,
    data: bytes,
    *,
    checkpoint: Any,
    expected: Any,
    exported: Any,
    tolerance: tuple[float, float],
    signature: str,
    checked: str,
    unit: str,
) -> int:
    """The tail of an ONNX export with a fixed tolerance (the sequence and text-classify runs):
    compare the file's logits ``exported`` [N, C] with PyTorch's ``expected`` [N, C] within the
    task's ``tolerance`` (atol, rtol; ``--atol``/``--rtol`` replace it: :func:`fixed_tolerance`),
    print the checkpoint, the file's ``signature`` ("inputs -> logits") and the check on
    ``checked`` (N ``unit``), then :func:`write_checked` to ``args.out``. Returns the exit
    status: 0 written, 1 refused or unwritable."""
    from rnnflow.interop._traceable import compare_logits

    atol, rtol = fixed_tolerance(args, *tolerance)
    result = compare_logits(expected, exported, atol=atol, rtol=rtol)
    print(f"checkpoint: {checkpoint.path} (step {checkpoint.progress.get('step')})")
    print(f"exported ONNX: {signature}, {len(data)} bytes")
    print(f"check on {checked}: {result.describe('onnxruntime', unit=unit)}")
    status = write_checked(args.out, data, result, atol=atol, rtol=rtol)
    if status:
        return status
    print(f"wrote {args.out}")
    return 0


def _round_up(value: float) -> str:
    """``value`` rounded up to two significant digits, as text: 2.77e-05 -> '2.8e-05'."""
    import math

    if not (value > 0 and math.isfinite(value)):
        return "1e-05"
    exponent = math.floor(math.log10(value)) - 1
    return f"{math.ceil(value / 10**exponent) * 10**exponent:.2g}"


def run(args: argparse.Namespace) -> int:
    if args.format not in FORMATS:
        return _fail(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}", 2)
    if args.check_images is not None:
        print(
            "rnnflow export: note: --check-images is deprecated; use --check-examples",
            file=sys.stderr,
        )
        args.check_examples = args.check_images
    for name in ("atol", "rtol"):
        value = getattr(args, name)
        if value is not None and not (0 <= value < float("inf")):
            return _fail(f"--{name} must be a finite number >= 0, got {value}", 2)
    out = Path(args.out)
    problem = output_problem(out)
    if problem is not None:
        return _fail(*problem)

    from rnnflow.cli._task import dispatch
    from rnnflow.data import CLASS_NAMES, load_split
    from rnnflow.data.datasets import (
        DATASETS,
        DatasetChecksumError,
        DatasetNotFoundError,
        canonical_name,
    )
    from rnnflow.interop._rounding import rounding_error_bound
    from rnnflow.interop._traceable import compare_logits, pytorch_logits
    from rnnflow.tasks.image import load_trained_model
    from rnnflow.training import CheckpointError

    status = dispatch("export", args)  # another task's run: its glue, or a refusal
    if status is not None:
        return status
    if args.format == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return _fail(
                f"--format onnx needs the onnx and onnxruntime packages ({exc}); "
                "install them with: pip install 'rnnflow[export]'"
            )
    try:
        model, checkpoint = load_trained_model(args.model)
    except (FileNotFoundError, CheckpointError) as exc:
        return _fail(str(exc))
    config = checkpoint.config
    if config.dataset == "idx":
        return _fail(
            f"{args.model} is a --dataset idx run ({config.image_height}x{config.image_width} "
            "images): export supports runs on the registered datasets "
            f"({', '.join(sorted(DATASETS))}), not idx runs yet (docs/DATA.md)"
        )
    try:
        dataset = canonical_name(args.dataset) if args.dataset else config.dataset
        images, _ = load_split(dataset, "test", args.data_dir or config.data_dir)
    except (DatasetNotFoundError, DatasetChecksumError, ValueError, OSError) as exc:
        return _fail(f"{exc}\n(the exported model is checked on test images; see --dataset)")
    images = images[: args.check_examples]  # [N, 28, 28]

    metadata = {
        "rnnflow.config": json.dumps(asdict(config)),
        "rnnflow.class_names": json.dumps(list(CLASS_NAMES[config.dataset])),
        "rnnflow.step": str(checkpoint.progress.get("step")),
        "rnnflow.input": "images float32 [batch, 28, 28], pixels in [0, 1], row r = time step r",
        "rnnflow.output": f"logits float32 [batch, {model.num_classes}]",
    }
    print(f"checkpoint: {checkpoint.path} (step {checkpoint.progress.get('step')})")
    if args.format == "onnx":
        from rnnflow.interop.onnx import OPSET, onnx_logits, to_onnx

        data = to_onnx(model, metadata=metadata)
        exported = onnx_logits(data, images, batch_size=args.batch_size)
        kind = f"ONNX (opset {OPSET})"
    else:
        from rnnflow.interop.torchscript import to_torchscript, torchscript_logits

        data = to_torchscript(model, metadata=metadata)
        exported = torchscript_logits(data, images, batch_size=args.batch_size)
        kind = "TorchScript"
    expected = pytorch_logits(model, images, batch_size=args.batch_size)
    print(
        f"exported {kind}: images float32 [batch, 28, 28] -> logits float32 "
        f"[batch, {model.num_classes}], {len(data)} bytes"
    )
    computed = args.atol is None and args.rtol is None
    if computed:
        bound = float(rounding_error_bound(model, images[:BOUND_IMAGES]).max())
        atol, rtol = 2 * bound, 0.0
        print(
            f"tolerance {atol:.3g}: twice this model's float32 rounding-error bound {bound:.3g} "
            f"(largest over {count(min(len(images), BOUND_IMAGES), 'image')}; docs/DEPLOYING.md)"
        )
    else:
        atol, rtol = args.atol or 0.0, args.rtol or 0.0
    check = compare_logits(expected, exported, atol=atol, rtol=rtol)
    print(f"check on {dataset} test images: {check.describe(_RUNTIME[args.format])}")
    if not check.passed:
        accept = f"--atol {_round_up(check.max_abs_diff)} (and --rtol R to add R * |logit|)"
        advice = (
            "A difference above this model's float32 rounding bound usually means an export bug "
            f"(please report it); to accept it anyway, rerun with {accept}"
            if computed
            else f"To accept it, rerun with {accept}, or without --atol/--rtol to use this "
            "model's float32 rounding bound"
        )
    else:
        advice = ""
    status = write_checked(out, data, check, atol=atol, rtol=rtol, advice=advice)
    if status:
        return status
    if config.tta_flip:
        print(
            "note: this run evaluates with tta_flip (mirror averaging); the exported model "
            "computes one image's logits: average softmax(f(x)) and softmax(f(x flipped "
            "left-right)) yourself to reproduce `rnnflow evaluate`"
        )
    print(f"wrote {out}")
    return 0
