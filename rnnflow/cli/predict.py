"""`rnnflow predict RUN_DIR|CKPT IMAGE... [--top K] [--json]`: class names with probabilities.

Each image (PNG, JPEG, ...) becomes a 28x28 grayscale array, light on black, as the training
images were: MNIST digits by ``rnnflow.data.images.load_image`` (cropped, scaled into a 20x20 box,
centred by mass); Fashion-MNIST garments by :func:`load_fashion_image` (cropped, longest side
scaled to 28, centred), as Zalando made Fashion-MNIST. A 28x28 image is used as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


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


def load_fashion_image(path: str) -> torch.Tensor:
    """A photo or drawing -> float32 [28, 28] in [0, 1] as Fashion-MNIST's conversion: grayscale,
    light object on black (a light background is inverted), cropped to the object, longest side
    scaled to 28 pixels, centred. Errors as ``load_image``'s."""
    import numpy as np
    import torch
    from PIL import Image

    from rnnflow.data.images import MAX_PIXELS, ImageError, load_image

    load_image(path)  # validation only: missing, unreadable, too large, blank -> its errors
    with Image.open(path) as image:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        gray = np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.float64)
    if gray.size > MAX_PIXELS:  # pragma: no cover - load_image refused it already
        raise ImageError(f"{path}: image too large")
    gray /= 255.0  # [H, W]
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 0.5:
        gray = 1.0 - gray
    if gray.shape == (28, 28):
        return torch.from_numpy(gray.astype(np.float32))
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    mask = gray > background + 0.1
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # [h, w]
    h, w = crop.shape
    scale = 28 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # (width, height)
    resized = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    box = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)  # [h', w']
    field = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - box.shape[0]) // 2, (28 - box.shape[1]) // 2
    field[top : top + box.shape[0], left : left + box.shape[1]] = box
    return torch.from_numpy(field)


def run(args: argparse.Namespace) -> int:
    import torch

    from rnnflow.data import CLASS_NAMES
    from rnnflow.data.images import load_image
    from rnnflow.training import CheckpointError, load_trained_model, predict_proba

    try:
        model, checkpoint = load_trained_model(args.model)
    except (FileNotFoundError, CheckpointError) as exc:
        print(f"rnnflow predict: {exc}", file=sys.stderr)
        return 1
    names = CLASS_NAMES[checkpoint.config.dataset]
    top = max(1, min(args.top, len(names)))
    read = load_fashion_image if checkpoint.config.dataset == "fashion-mnist" else load_image
    images = []
    for path in args.images:
        try:
            images.append(read(path))  # [28, 28]
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
