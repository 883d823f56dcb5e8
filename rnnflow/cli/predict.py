"""`rnnflow predict RUN_DIR|CKPT IMAGE... [--top K] [--json] [--save-input DIR]`: class names with
probabilities.

Each image (PNG, JPEG, TIFF, ...) becomes a 28x28 grayscale array, light on black, as the
training images were, by ``rnnflow.data.images.load_image`` in the checkpoint's dataset's style:
MNIST digits with ``style="mnist"`` (background removed, cropped, scaled into a 20x20 box, centred
by mass), Fashion-MNIST garments with ``style="fashion"`` (background removed, cropped, longest
side scaled to 28, centred; a 28x28 image is used as it is). ``--save-input DIR`` writes those
28x28 arrays as PNG files, to see what the model saw. An image that cannot be used (unreadable,
too large, no object found) is reported on stderr, naming the file and why; the others are still
classified, and the exit status is then 1. This module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import sys

from rnnflow._words import count
from rnnflow.cli._config_args import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="classify images, series or texts with a trained model",
        description="Classify images, series files or texts (per the run's task) with a trained "
        "model (a run folder or a checkpoint file).",
    )
    parser.add_argument("model", metavar="RUN_DIR|CKPT", help="run folder or .safetensors file")
    parser.add_argument(
        "images",
        metavar="INPUT",
        nargs="+",
        help="per the run's task: image files (image classifier), series files (sequence), "
        "texts, or - for one text per line of standard input (text-classify)",
    )
    parser.add_argument("--top", type=positive_int, default=3, help="classes to show per input (3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--save-input",
        metavar="DIR",
        help="write the 28x28 image the model saw for each input, as DIR/<name>.png",
    )
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        metavar="N",
        help="refuse images with more than N pixels to decode (default: 50000000; JPEGs are "
        "decoded at reduced scale, so a 48-megapixel photo decodes 0.75 megapixels)",
    )
    parser.set_defaults(func=run)
    return parser


def _input_names(paths: list[str]) -> list[str]:
    """A distinct file name per input for --save-input: its stem, numbered when repeated."""
    from pathlib import Path

    names: list[str] = []
    for path in paths:
        stem = Path(path).stem or "image"
        name, n = f"{stem}.png", 1
        while name in names:
            n += 1
            name = f"{stem}-{n}.png"
        names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rnnflow._paths import output_problem

    save_dir = Path(args.save_input) if args.save_input else None
    problem = output_problem(save_dir, folder=True) if save_dir is not None else None
    if problem is not None:
        print(f"rnnflow predict: --save-input: {problem[0]}", file=sys.stderr)
        return problem[1]

    import io

    import numpy as np
    import torch
    from PIL import Image

    from rnnflow._atomic import atomic_write_bytes
    from rnnflow.cli._task import dispatch
    from rnnflow.data import CLASS_NAMES
    from rnnflow.data.images import MAX_PIXELS, ImageTooLarge, load_image
    from rnnflow.tasks.image import load_trained_model, predict_proba
    from rnnflow.tasks.predictions import top_classes
    from rnnflow.training import CheckpointError

    status = dispatch("predict", args)  # another task's run: its glue, or a refusal
    if status is not None:
        return status
    try:
        model, checkpoint = load_trained_model(args.model)
    except (FileNotFoundError, CheckpointError) as exc:
        print(f"rnnflow predict: {exc}", file=sys.stderr)
        return 1
    config = checkpoint.config
    if (config.image_height, config.image_width) != (28, 28):
        print(
            f"rnnflow predict: {args.model} was trained on {config.image_height}x"
            f"{config.image_width} images (height x width); predict reads images as 28x28 only",
            file=sys.stderr,
        )
        return 1
    names = config.class_names or CLASS_NAMES[config.dataset]
    top = max(1, min(args.top, len(names)))
    style = "fashion" if checkpoint.config.dataset == "fashion-mnist" else "mnist"
    max_pixels = args.max_pixels or MAX_PIXELS
    loaded, errors = [], []
    for path in args.images:
        try:
            loaded.append((path, load_image(path, style=style, max_pixels=max_pixels)))  # [28, 28]
        except ImageTooLarge as exc:
            if exc.limit == max_pixels:
                hint = f"; --max-pixels N raises the limit ({max_pixels})"
            else:  # Pillow's own decompression-bomb limit
                hint = f"; --max-pixels cannot raise Pillow's own limit ({exc.limit} pixels)"
            errors.append({"image": path, "error": f"{exc}{hint}"})
        except (OSError, ValueError) as exc:
            errors.append({"image": path, "error": str(exc)})
    saved = {}
    if save_dir is not None and loaded:
        try:
            save_dir.mkdir(parents=True, exist_ok=True)
            for (path, x), name in zip(loaded, _input_names([p for p, _ in loaded])):
                pixels = np.round(x.numpy() * 255).astype(np.uint8)  # [28, 28], 0..255
                buffer = io.BytesIO()
                Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
                atomic_write_bytes(save_dir / name, buffer.getvalue())
                saved[path] = str(save_dir / name)
        except OSError as exc:
            print(f"rnnflow predict: --save-input {save_dir}: {exc}", file=sys.stderr)
            return 1
    results = []
    if loaded:
        probs = predict_proba(
            model, torch.stack([x for _, x in loaded]), tta_flip=checkpoint.config.tta_flip
        )
        for (path, _), p in zip(loaded, probs):
            results.append(
                {
                    "image": path,
                    **top_classes(p, names, top),
                    **({"input_saved_as": saved[path]} if path in saved else {}),
                }
            )
    status = 1 if errors else 0
    if args.json:
        payload = {"checkpoint": str(checkpoint.path), "predictions": results, "errors": errors}
        print(json.dumps(payload, indent=2))
    else:
        for r in results:
            others = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"][1:])
            line = f"{r['image']}: {r['class']} ({r['probability']:.3f})"
            print(line + (f"  [then: {others}]" if others else ""))
    for e in errors:
        print(f"rnnflow predict: {e['error']}", file=sys.stderr)
    if errors:
        print(
            f"rnnflow predict: {len(errors)} of {count(len(args.images), 'image')} could not "
            f"be used",
            file=sys.stderr,
        )
    return status
