"""What `rnnflow serve` computes: a run folder's model loaded once, and the JSON-ready answers of
its API, built on the same public functions as the command line (no web framework here).

- Image runs (``rnnflow train``, MNIST / Fashion-MNIST classifiers): the image is preprocessed by
  ``rnnflow.data.images`` exactly as ``rnnflow predict`` does (file uploads through
  ``load_image``, canvas pixels through ``preprocess_image``), classified by
  ``rnnflow.tasks.image.predict_proba`` (so the numbers equal ``rnnflow predict --json``), and read
  step by step with ``SequenceClassifier.prefix_logits``: the class probabilities after rows
  0..t-1 for t = 0..28, the hidden state after each row, and the rows that changed the
  predicted class's probability most.
- Poem runs (``rnnflow train --task charlm``): ``rnnflow.text.generate.generate`` with the
  options of ``rnnflow generate`` (prime, length, temperature, top-k, seed, form), recording each
  step's top candidates.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnflow.data import CLASS_NAMES
from rnnflow.data.images import ImageError, Style, load_image, preprocess_image
from rnnflow.models.char_lm import CharLM
from rnnflow.models.classifier import SequenceClassifier
from rnnflow.tasks.charlm import load_charlm
from rnnflow.tasks.image import load_trained_model, predict_proba
from rnnflow.text.corpus import Vocabulary
from rnnflow.text.generate import generate
from rnnflow.text.poetry import FORMS
from rnnflow.training import Checkpoint, CheckpointError

__all__ = [
    "CANDIDATES",
    "FIELD",
    "GENERATE_LIMITS",
    "MAX_PIXELS",
    "ImageRun",
    "PoemRun",
    "RequestError",
    "load_run",
]

FIELD = 28  # the canvas and the model's input: 28 x 28 pixels, row r = time step r
MAX_PIXELS = 16_000_000
"""Uploaded images with more pixels than this (read from the header) are refused before decoding."""
CANDIDATES = 5  # top candidates recorded per generated character
MOVED = 5  # rows listed as having moved the decision most
GENERATE_LIMITS = {"length": 2000, "num": 8, "prime": 200}
"""Upper bounds of /api/generate's ``length``, ``num`` and ``len(prime)`` (one request's work)."""


class RequestError(ValueError):
    """A request the model cannot answer (bad field, no ink, unreadable image); ``status`` is
    the HTTP status to answer with (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ImageRun:
    """A classifier run: the model (eval mode), its checkpoint, class names and image style."""

    model: SequenceClassifier
    checkpoint: Checkpoint
    lock: threading.Lock

    kind = "image"

    @property
    def class_names(self) -> tuple[str, ...]:
        config = self.checkpoint.config
        return config.class_names or tuple(CLASS_NAMES[config.dataset])

    @property
    def style(self) -> Style:
        return "fashion" if self.checkpoint.config.dataset == "fashion-mnist" else "mnist"

    def info(self) -> dict[str, Any]:
        cfg = self.checkpoint.config
        return {
            "kind": self.kind,
            "checkpoint": str(self.checkpoint.path),
            "dataset": cfg.dataset,
            "classes": list(self.class_names),
            "cell": cfg.cell,
            "num_units": cfg.num_units,
            "num_layers": cfg.num_layers,
            "bidirectional": cfg.bidirectional,
            "tta_flip": cfg.tta_flip,
            "steps": FIELD,
            "style": self.style,
            "note": _reading_note(cfg.bidirectional, cfg.tta_flip),
        }

    def image_from_pixels(self, pixels: object) -> torch.Tensor:
        """Canvas pixels (28 rows of 28 ints in [0, 255], light ink on black) -> the model's
        float32 [28, 28] input, by ``preprocess_image`` as ``rnnflow predict`` preprocesses a
        28x28 PNG of these pixels. Raises :class:`RequestError` (400; 422 for no ink)."""
        if (
            not isinstance(pixels, list)
            or len(pixels) != FIELD
            or any(not isinstance(row, list) or len(row) != FIELD for row in pixels)
        ):
            raise RequestError(f"pixels: expected {FIELD} rows of {FIELD} integers in [0, 255]")
        for v in (v for row in pixels for v in row):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
                raise RequestError(f"pixels: expected integers in [0, 255], got {v!r}")
        array = np.asarray(pixels, dtype=np.uint8)  # [28, 28]
        try:
            return preprocess_image(array, source="canvas", style=self.style)
        except ImageError as exc:
            raise RequestError(str(exc), status=422) from exc

    def image_from_bytes(self, data: bytes, *, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
        """An uploaded image file's bytes -> float32 [28, 28], by ``load_image`` (the function
        ``rnnflow predict`` calls) on a private temporary copy, which is removed at once.
        Raises :class:`RequestError`: 413 for too many pixels (a decompression bomb), 415 for
        bytes that are not an image, 422 for an image without ink."""
        with tempfile.TemporaryDirectory(prefix="rnnflow-serve-") as folder:
            path = Path(folder) / "upload"
            path.write_bytes(data)
            try:
                return load_image(path, max_pixels=max_pixels, style=self.style)
            except ImageError as exc:
                message = str(exc).replace(str(path), "upload")
                status = 413 if "too large" in message else 415 if "unreadable" in message else 422
                raise RequestError(message, status=status) from exc

    def predict(self, image: torch.Tensor, *, source: str, top: int = 3) -> dict[str, Any]:
        """The answer of ``/api/predict`` for a preprocessed image float32 [28, 28].

        ``predictions`` holds one entry with the fields and numbers of ``rnnflow predict
        --json`` (``image`` is ``source``); ``probabilities`` all C classes; ``input`` the 28x28
        the model read; ``reading`` the step-by-step view (see :meth:`reading`).
        """
        names = self.class_names
        top = max(1, min(int(top), len(names)))
        with self.lock, torch.no_grad():
            probs = predict_proba(self.model, image[None], tta_flip=self.checkpoint.config.tta_flip)
            reading = self.reading(image, int(probs[0].argmax()))
        p = probs[0]  # [C]
        values, indices = p.topk(top)
        entry = {
            "image": source,
            "class": names[int(indices[0])],
            "class_index": int(indices[0]),
            "probability": float(values[0]),
            "top": [
                {"class": names[int(i)], "class_index": int(i), "probability": float(v)}
                for v, i in zip(values, indices)
            ],
        }
        return {
            "checkpoint": str(self.checkpoint.path),
            "predictions": [entry],
            "probabilities": [float(v) for v in p],
            "input": image.tolist(),
            "reading": reading,
        }

    def reading(self, image: torch.Tensor, predicted: int) -> dict[str, Any]:
        """The image read row by row (call under ``self.lock``).

        ``probabilities`` [T + 1][C]: after t rows (t = 0: none read), softmax of
        ``prefix_logits`` (averaged with the mirrored image when the run uses ``tta_flip``, as
        its predictions are); the last equals the prediction. ``hidden`` [T][F]: the state the
        output layer reads after each row (``prefix_features``). ``moved``: the rows whose
        reading changed the predicted class's probability most, largest ``|change|`` first.
        """
        device = next(self.model.parameters()).device
        x = image[None].to(device)  # [1, 28, 28]
        steps = self.model.prefix_logits(x).softmax(-1)  # [1, T + 1, C]
        if self.checkpoint.config.tta_flip:
            steps = 0.5 * (steps + self.model.prefix_logits(x.flip(-1)).softmax(-1))
        steps = steps[0].float().cpu()  # [T + 1, C]
        hidden = self.model.prefix_features(x)[0, 1:].float().cpu()  # [T, F]
        change = steps[1:, predicted] - steps[:-1, predicted]  # [T]
        order = change.abs().argsort(descending=True)[:MOVED]
        return {
            "probabilities": steps.tolist(),
            "hidden": hidden.tolist(),
            "hidden_scale": float(hidden.abs().max()) if hidden.numel() else 0.0,
            "moved": [{"row": int(r), "change": float(change[r])} for r in order],
            "predicted": predicted,
        }


def _reading_note(bidirectional: bool, tta_flip: bool) -> str:
    note = (
        "After t rows, the probabilities are the model's answer had the image ended there: the "
        "output layer applied to the state after row t-1."
    )
    if bidirectional:
        note = (
            "This model is bidirectional. After t rows, the probabilities are its answer on "
            "those rows alone: the forward direction's state after row t-1 together with the "
            "backward direction run over rows t-1..0. (On the whole image the backward "
            "direction has already seen every row, so slicing it would not show a reading.)"
        )
    if tta_flip:
        note += " As in its predictions, each step is averaged with the mirrored image."
    return note


@dataclass
class PoemRun:
    """A character-model run: the model (eval mode), its vocabulary and checkpoint."""

    model: CharLM
    vocab: Vocabulary
    checkpoint: Checkpoint  # of task charlm
    lock: threading.Lock

    kind = "poem"

    def info(self) -> dict[str, Any]:
        cfg = self.checkpoint.config
        return {
            "kind": self.kind,
            "checkpoint": str(self.checkpoint.path),
            "checkpoint_step": self.checkpoint.progress.get("step"),
            "cell": cfg.cell,
            "num_units": cfg.num_units,
            "vocab_size": len(self.vocab),
            "forms": list(FORMS),
            "limits": GENERATE_LIMITS,
            "candidates": CANDIDATES,
        }

    def generate(self, request: object) -> dict[str, Any]:
        """The answer of ``/api/generate``: the fields of ``rnnflow generate --json`` for the
        same options (defaults as the CLI's), each sample with ``steps``: per generated
        character its ``text`` and the top candidates (``symbol``, ``probability``)."""
        options = _generate_options(request)
        form = options.pop("form")
        num = options.pop("num")
        samples = []
        with self.lock:
            for i in range(num):
                try:
                    s = generate(
                        self.model,
                        self.vocab,
                        **{**options, "seed": options["seed"] + i},
                        form=form,
                        candidates=CANDIDATES,
                    )
                except ValueError as exc:
                    raise RequestError(str(exc), status=422) from exc
                samples.append((options["seed"] + i, s))
        symbols = self.vocab.symbols
        return {
            "checkpoint": str(self.checkpoint.path),
            "checkpoint_step": self.checkpoint.progress.get("step"),
            "prime": options["prime"],
            "temperature": options["temperature"],
            "top_k": options["top_k"],
            "form": form.name if form else None,
            "samples": [
                {
                    "seed": seed,
                    "text": s.text,
                    "finished": s.finished,
                    "log_prob": s.log_prob,
                    "steps": [
                        {
                            "text": self.vocab.decode([i]),
                            "symbol": symbols[i],
                            "candidates": [
                                {"symbol": symbols[c], "probability": p} for c, p in shown
                            ],
                        }
                        for i, shown in zip(s.ids, s.candidates)
                    ],
                }
                for seed, s in samples
            ],
        }


def _generate_options(request: object) -> dict[str, Any]:
    """Check /api/generate's JSON object; defaults are ``rnnflow generate``'s."""
    if not isinstance(request, dict):
        raise RequestError(f"expected a JSON object, got {type(request).__name__}")
    known = {"prime", "length", "temperature", "top_k", "seed", "form", "num"}
    unknown = sorted(set(request) - known)
    if unknown:
        raise RequestError(f"unknown field(s) {unknown}; expected some of {sorted(known)}")

    def integer(name: str, default: int, low: int, high: int) -> int:
        value = request.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise RequestError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
        return value

    prime = request.get("prime", "")
    if not isinstance(prime, str) or len(prime) > GENERATE_LIMITS["prime"]:
        raise RequestError(
            f"prime: expected a string of at most {GENERATE_LIMITS['prime']} characters"
        )
    temperature = request.get("temperature", 0.8)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or not 0 <= temperature <= 100
    ):
        raise RequestError(f"temperature: expected a number in [0, 100], got {temperature!r}")
    form = request.get("form")
    if form is not None:
        if form not in FORMS:  # the forms `rnnflow generate --form` offers
            raise RequestError(f"form: expected one of {list(FORMS)} or null, got {form!r}")
        form = FORMS[form]
    return {
        "prime": prime,
        "length": integer("length", 200, 0, GENERATE_LIMITS["length"]),
        "temperature": float(temperature),
        "top_k": integer("top_k", 0, 0, 1_000_000),
        "seed": integer("seed", 0, 0, 2**62),
        "form": form,
        "num": integer("num", 1, 1, GENERATE_LIMITS["num"]),
    }


def load_run(path: str | os.PathLike[str], *, device: str = "cpu") -> ImageRun | PoemRun:
    """The run in ``path`` (a run folder or a checkpoint file), loaded once: a character model
    (``rnnflow train --task charlm``) or an image classifier (``rnnflow train``), by the same
    loaders as ``rnnflow generate`` and ``rnnflow predict``.

    Raises ``FileNotFoundError`` for a missing path or a folder without a checkpoint,
    ``CheckpointError`` for a file that is neither kind of rnnflow checkpoint, and ``ValueError``
    for an image run whose images are not 28x28 (``--dataset idx``).
    """
    try:
        model, vocab, checkpoint = load_charlm(path, device=device)
    except CheckpointError as poem_error:
        if "not a character-LM checkpoint" not in str(poem_error):
            raise
        classifier, image_checkpoint = load_trained_model(path, device=device)
        config = image_checkpoint.config
        if (config.image_height, config.image_width) != (FIELD, FIELD):
            raise ValueError(
                f"{path}: trained on {config.image_height}x{config.image_width} images (height x "
                f"width); the page draws and reads {FIELD}x{FIELD} images only"
            ) from None
        return ImageRun(classifier, image_checkpoint, threading.Lock())
    return PoemRun(model, vocab, checkpoint, threading.Lock())
