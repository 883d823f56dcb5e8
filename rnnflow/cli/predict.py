"""`rnnflow predict RUN_DIR|CKPT IMAGE... [--top K] [--json]`: class names with probabilities.

Each image (PNG, JPEG, ...) becomes a 28x28 grayscale array, light on black, as the training
images were, by ``rnnflow.data.images.load_image`` in the checkpoint's dataset's style: MNIST
digits with ``style="mnist"`` (cropped, scaled into a 20x20 box, centred by mass), Fashion-MNIST
garments with ``style="fashion"`` (cropped, longest side scaled to 28, centred; a 28x28 image is
used as it is). This module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="classify image files with a trained model",
        description="Classify images with a trained model (a run folder or a checkpoint file).",
    )
    parser.add_argument("model", metavar="RUN_DIR|CKPT", help="run folder or .safetensors file")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    parser.add_argument("--top", type=int, default=3, help="classes to show per image (3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from rnnflow.cli._task import classifier_only
    from rnnflow.data import CLASS_NAMES
    from rnnflow.data.images import load_image
    from rnnflow.training import CheckpointError, load_trained_model, predict_proba

    refusal = classifier_only("predict", args.model)
    if refusal:
        print(f"rnnflow predict: {refusal}", file=sys.stderr)
        return 1
    try:
        model, checkpoint = load_trained_model(args.model)
    except (FileNotFoundError, CheckpointError) as exc:
        print(f"rnnflow predict: {exc}", file=sys.stderr)
        return 1
    names = CLASS_NAMES[checkpoint.config.dataset]
    top = max(1, min(args.top, len(names)))
    fashion = checkpoint.config.dataset == "fashion-mnist"
    images = []
    for path in args.images:
        try:
            images.append(load_image(path, style="fashion" if fashion else "mnist"))  # [28, 28]
        except (OSError, ValueError) as exc:
            print(f"rnnflow predict: {exc}", file=sys.stderr)
            return 1
    probs = predict_proba(model, torch.stack(images), tta_flip=checkpoint.config.tta_flip)
    results = []
    for path, p in zip(args.images, probs):
        values, indices = p.topk(top)
        results.append(
            {
                "image": path,
                "class": names[int(indices[0])],
                "class_index": int(indices[0]),
                "probability": float(values[0]),
                "top": [
                    {"class": names[int(i)], "class_index": int(i), "probability": float(v)}
                    for v, i in zip(values, indices)
                ],
            }
        )
    if args.json:
        print(json.dumps({"checkpoint": str(checkpoint.path), "predictions": results}, indent=2))
        return 0
    for r in results:
        others = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"][1:])
        line = f"{r['image']}: {r['class']} ({r['probability']:.3f})"
        print(line + (f"  [then: {others}]" if others else ""))
    return 0
