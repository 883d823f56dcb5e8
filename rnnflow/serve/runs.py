"""What `rnnflow serve` computes: a run folder's model loaded once, and the JSON-ready answers of
its API, built on the same public functions as the command line (no web framework here).

- Image runs (``rnnflow train``, MNIST / Fashion-MNIST classifiers): the image is preprocessed by
  ``rnnflow.data.images`` exactly as ``rnnflow predict`` does (file uploads through
  ``load_image``, canvas pixels through ``preprocess_image``), classified by
  ``rnnflow.tasks.image.predict_proba`` (so the numbers equal ``rnnflow predict --json``), and read
  step by step with ``SequenceClassifier.prefix_logits``: the class probabilities after rows
  0..t-1 for t = 0..28, the hidden state after each row, and the rows that changed the
  predicted class's probability most.
- Sequence runs (``rnnflow train --task sequence``): an uploaded ``.csv``/``.npz`` series file
  is read by ``rnnflow.data.sequence_files.read_series_file`` (the reader of ``rnnflow
  predict RUN FILE``), standardised with the run's recorded statistics and classified by
  ``rnnflow.tasks.sequence.predict_proba``, then each series is read step by step the same way
  (``prefix_logits``; for a mean-pooled model, the mean of the outputs so far).
- Poem runs (``rnnflow train --task charlm``): ``rnnflow.text.generate.generate`` with the
  options of ``rnnflow generate`` (prime, length, temperature, top-k, top-p, seed, form,
  acrostic, rhyme, tonal), recording each step's top candidates (of the distribution the
  character was drawn from: after the constraint mask, temperature, top-k and top-p), and
  each sample's record by ``rnnflow.text.generate.sample_record``, as ``rnnflow generate --json``
  writes it (with a form, the checks of ``rnnflow.text.constraints.poem_checks``).
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnflow.data import CLASS_NAMES
from rnnflow.data.images import ImageError, Style, load_image, preprocess_image
from rnnflow.data.sequence_files import read_series_file
from rnnflow.data.sequences import SequenceDataError
from rnnflow.models.char_lm import CharLM
from rnnflow.models.classifier import SequenceClassifier
from rnnflow.tasks import checkpoint_task
from rnnflow.tasks.charlm import load_charlm
from rnnflow.tasks.image import load_trained_model, predict_proba
from rnnflow.tasks.predictions import top_classes
from rnnflow.tasks.sequence import NAME as SEQUENCE_TASK
from rnnflow.tasks.sequence import load_trained_model as load_sequence_model
from rnnflow.tasks.sequence import normaliser
from rnnflow.tasks.sequence import predict_proba as sequence_predict_proba
from rnnflow.tasks.text_classify import NAME as TEXT_CLASSIFY_TASK
from rnnflow.text.corpus import Vocabulary
from rnnflow.text.generate import MAX_SEED, generate, sample_record
from rnnflow.text.poetry import FORMS
from rnnflow.training import Checkpoint, CheckpointError
from rnnflow.training.engine import find_checkpoint

__all__ = [
    "CANDIDATES",
    "FIELD",
    "GENERATE_LIMITS",
    "MAX_NPZ_UNPACKED",
    "MAX_PIXELS",
    "MAX_SERIES",
    "MAX_STEPS",
    "ImageRun",
    "PoemRun",
    "RequestError",
    "SequenceRun",
    "check_fields",
    "load_run",
    "read_steps",
]

FIELD = 28  # the canvas and the model's input: 28 x 28 pixels, row r = time step r
MAX_PIXELS = 16_000_000
"""Uploaded images with more pixels than this (read from the header) are refused before decoding."""
MAX_STEPS = 400
"""Uploaded series longer than this are refused: the reading runs the model on every prefix
(T + 1 rows of up to T steps), so its time and memory grow as T squared (measured for a
bidirectional GRU of 128 units: 4.8 s and 0.96 GB peak at 400 steps, 24 s and 4.4 GB at 1000).
The built-in sets' longest series: JapaneseVowels 29, PickupGestureWiimoteZ 361."""
MAX_SERIES = 16  # series per upload (each is read step by step)
MAX_NPZ_UNPACKED = 64 * 1024 * 1024
"""Uploaded ``.npz`` archives unpacking to more bytes than this are refused before reading."""
CANDIDATES = 5  # top candidates recorded per generated character
MOVED = 5  # rows listed as having moved the decision most
GENERATE_LIMITS = {
    "length": 2000,
    "num": 8,
    "prime": 200,
    "acrostic": max(form.verses for form in FORMS.values()),
}
"""Upper bounds of /api/generate's ``length``, ``num``, ``len(prime)`` and ``len(acrostic)``
(one request's work; an acrostic has one character per verse)."""


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
        entry = {"image": source, **top_classes(p, names, top)}
        return {
            "checkpoint": str(self.checkpoint.path),
            "predictions": [entry],
            "probabilities": [float(v) for v in p],
            "input": image.tolist(),
            "reading": reading,
        }

    def reading(self, image: torch.Tensor, predicted: int) -> dict[str, Any]:
        """The image read row by row (call under ``self.lock``): :func:`read_steps` of the
        [1, 28, 28] image, averaged with the mirrored image when the run uses ``tta_flip``
        (as its predictions are); ``moved`` lists rows (``{"row", "change"}``)."""
        return read_steps(
            self.model, image[None], predicted, flip=self.checkpoint.config.tta_flip, unit="row"
        )


def read_steps(
    model: SequenceClassifier, x: torch.Tensor, predicted: int, *, flip: bool, unit: str
) -> dict[str, Any]:
    """One input [1, T, D] read step by step (call under the run's lock, in ``no_grad``).

    ``probabilities`` [T + 1][C]: after t steps (t = 0: none read), softmax of
    ``prefix_logits`` (with ``flip``, averaged with the input mirrored along D); the last
    equals the prediction. ``hidden`` [T][F]: what the output layer reads after each step
    (``prefix_features``). ``moved``: the ``MOVED`` steps whose reading changed the predicted
    class's probability most, largest ``|change|`` first, as ``{unit: index, "change": ...}``.
    """
    device = next(model.parameters()).device
    x = x.to(device)  # [1, T, D]
    steps = model.prefix_logits(x).softmax(-1)  # [1, T + 1, C]
    if flip:
        steps = 0.5 * (steps + model.prefix_logits(x.flip(-1)).softmax(-1))
    steps = steps[0].float().cpu()  # [T + 1, C]
    hidden = model.prefix_features(x)[0, 1:].float().cpu()  # [T, F]
    change = steps[1:, predicted] - steps[:-1, predicted]  # [T]
    order = change.abs().argsort(descending=True)[:MOVED]
    return {
        "probabilities": steps.tolist(),
        "hidden": hidden.tolist(),
        "hidden_scale": float(hidden.abs().max()) if hidden.numel() else 0.0,
        "moved": [{unit: int(r), "change": float(change[r])} for r in order],
        "predicted": predicted,
    }


_CONV_NOTE = (
    " Beside it, the convolutional branch (--conv-branch) reads steps 0..t-1 alone: its features"
    " are the mean of its last block over those steps."
)


def _reading_note(
    bidirectional: bool, tta_flip: bool, *, pooling: str = "last", unit: str = "row"
) -> str:
    """What the probabilities after t ``unit``s mean for this model (shown in the page)."""
    whole = "image" if unit == "row" else "series"
    if pooling != "last":  # mean, max or a concatenation (models.classifier.pool_outputs)
        names = {"last": "the last output", "mean": "the mean", "max": "the maximum"}
        pooled = " and ".join(names[part] for part in pooling.split("+"))
        what = f"{pooled} of the outputs of {unit}s 0..t-1 (this model pools by {pooled})"
        if bidirectional:
            what += (
                f"; bidirectional: each direction's outputs on those {unit}s alone, the "
                f"backward direction run over {unit}s t-1..0"
            )
        note = (
            f"After t {unit}s, the probabilities are the model's answer had the {whole} ended "
            f"there: the output layer applied to {what}."
        )
    elif bidirectional:
        note = (
            f"This model is bidirectional. After t {unit}s, the probabilities are its answer on "
            f"those {unit}s alone: the forward direction's state after {unit} t-1 together with "
            f"the backward direction run over {unit}s t-1..0. (On the whole {whole} the backward "
            f"direction has already seen every {unit}, so slicing it would not show a reading.)"
        )
    else:
        note = (
            f"After t {unit}s, the probabilities are the model's answer had the {whole} ended "
            f"there: the output layer applied to the state after {unit} t-1."
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
        character its ``text``, ``symbol`` and the top candidates (``symbol``,
        ``probability``) of the distribution it was drawn from, after the constraint mask.

        Raises :class:`RequestError`: 400 for a bad field (naming it), 422 for options the
        model or the form cannot meet (a prime or acrostic character outside the vocabulary,
        an acrostic whose length is not the form's verse count), with the library's message.
        """
        options = _generate_options(request)
        form = options["form"]
        num = options.pop("num")
        samples = []
        with self.lock:
            for i in range(num):
                try:
                    s = generate(
                        self.model,
                        self.vocab,
                        **{**options, "seed": options["seed"] + i},
                        candidates=CANDIDATES,
                    )
                except ValueError as exc:  # ConstraintError included
                    raise RequestError(str(exc), status=422) from exc
                samples.append((options["seed"] + i, s))
        symbols = self.vocab.symbols
        return {
            "checkpoint": str(self.checkpoint.path),
            "checkpoint_step": self.checkpoint.progress.get("step"),
            **{name: options[name] for name in ("prime", "temperature", "top_k", "top_p")},
            "form": form.name if form else None,
            **{name: options[name] for name in ("acrostic", "rhyme", "tonal")},
            "samples": [
                {
                    **sample_record(seed, s, form),
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


def check_fields(request: dict[str, Any], known: set[str]) -> None:
    """Raise a 400 :class:`RequestError` naming the fields of a JSON object not in ``known``."""
    unknown = sorted(set(request) - known)
    if unknown:
        raise RequestError(f"unknown field(s) {unknown}; expected some of {sorted(known)}")


def _generate_options(request: object) -> dict[str, Any]:
    """Check /api/generate's JSON object (types and ranges; what depends on the model and the
    form is checked by ``generate``); defaults are ``rnnflow generate``'s. Returns
    ``generate``'s keyword arguments and ``num``."""
    if not isinstance(request, dict):
        raise RequestError(f"expected a JSON object, got {type(request).__name__}")
    known = {"prime", "length", "temperature", "top_k", "top_p", "seed", "form", "num"}
    check_fields(request, known | {"acrostic", "rhyme", "tonal"})

    def integer(name: str, default: int, low: int, high: int) -> int:
        value = request.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise RequestError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
        return value

    def number(name: str, default: float, low: float, high: float, interval: str) -> float:
        value = request.get(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high  # first: an int of 400 digits has no float
            or not math.isfinite(value)
            or (interval.startswith("(") and value == low)
        ):
            raise RequestError(f"{name}: expected a number in {interval}, got {value!r}")
        return float(value)

    def text(name: str) -> str:
        value, limit = request.get(name, ""), GENERATE_LIMITS[name]
        if not isinstance(value, str) or len(value) > limit:
            got = f"{len(value)} characters" if isinstance(value, str) else repr(value)
            raise RequestError(
                f"{name}: expected a string of at most {limit} characters, got {got}"
            )
        return value

    def flag(name: str) -> bool:
        value = request.get(name, False)
        if not isinstance(value, bool):
            raise RequestError(f"{name}: expected true or false, got {value!r}")
        return value

    form = request.get("form")
    if form is not None:
        if form not in FORMS:  # the forms `rnnflow generate --form` offers
            raise RequestError(f"form: expected one of {list(FORMS)} or null, got {form!r}")
        form = FORMS[form]
    options = {
        "prime": text("prime"),
        "length": integer("length", 200, 0, GENERATE_LIMITS["length"]),
        "temperature": number("temperature", 0.8, 0, 100, "[0, 100]"),
        "top_k": integer("top_k", 0, 0, 1_000_000),
        "top_p": number("top_p", 1.0, 0, 1, "(0, 1]"),
        "seed": integer("seed", 0, 0, MAX_SEED),
        "form": form,
        "acrostic": text("acrostic"),
        "rhyme": flag("rhyme"),
        "tonal": flag("tonal"),
        "num": integer("num", 1, 1, GENERATE_LIMITS["num"]),
    }
    if form is None:
        asked = [name for name in ("acrostic", "rhyme", "tonal") if options[name]]
        if asked:
            raise RequestError(
                f"{', '.join(asked)}: need a form ({', '.join(FORMS)}): they constrain a "
                "regular poem (an acrostic has one character per verse)"
            )
    return options


@dataclass
class SequenceRun:
    """A sequence-classifier run (``rnnflow train --task sequence``): the model (eval mode) and
    its checkpoint, whose config records the channels, classes and standardisation."""

    model: SequenceClassifier
    checkpoint: Checkpoint  # of task sequence
    lock: threading.Lock

    kind = "sequence"

    def info(self) -> dict[str, Any]:
        cfg = self.checkpoint.config
        return {
            "kind": self.kind,
            "checkpoint": str(self.checkpoint.path),
            "dataset": cfg.dataset,
            "classes": list(cfg.class_names),
            "num_channels": cfg.num_channels,
            "cell": cfg.cell,
            "num_units": cfg.num_units,
            "num_layers": cfg.num_layers,
            "bidirectional": cfg.bidirectional,
            "pooling": cfg.pooling,
            "conv_branch": cfg.conv_branch,
            "limits": {"steps": MAX_STEPS, "series": MAX_SERIES},
            "note": _reading_note(cfg.bidirectional, False, pooling=cfg.pooling, unit="step")
            + (_CONV_NOTE if cfg.conv_branch != "none" else ""),
        }

    def series_from_bytes(
        self,
        data: bytes,
        *,
        max_steps: int = MAX_STEPS,
        max_series: int = MAX_SERIES,
        max_unpacked: int = MAX_NPZ_UNPACKED,
    ) -> list[np.ndarray]:
        """An uploaded series file's bytes -> its raw series float32 [T_i, D], by
        ``read_series_file`` (the function ``rnnflow predict`` calls) on a private temporary
        copy, removed at once. A zip archive (its first bytes ``PK\\x03\\x04``) is read as
        ``.npz``, anything else as ``.csv``. Raises :class:`RequestError`: 413 for an ``.npz``
        that unpacks to more than ``max_unpacked`` bytes (or whose arrays claim more than it
        holds), more than ``max_series`` series or a series over ``max_steps`` steps; 415 for
        bytes that are neither; 422 for a file that is not usable series (a wrong channel
        count, a non-finite value, no rows of numbers), with the reader's message."""
        suffix = ".npz" if data[:4] == b"PK\x03\x04" else ".csv"
        with tempfile.TemporaryDirectory(prefix="rnnflow-serve-") as folder:
            path = Path(folder) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                if suffix == ".npz":
                    _check_npz_sizes(path, max_unpacked)
                series = read_series_file(path, num_channels=self.checkpoint.config.num_channels)
            except SequenceDataError as exc:
                message = str(exc).replace(str(path), path.name)  # upload.csv / upload.npz
                status = 415 if "not a readable" in message else 422
                raise RequestError(message, status=status) from exc
        if len(series) > max_series:
            raise RequestError(
                f"upload: {len(series)} series; this server reads at most {max_series} per request",
                status=413,
            )
        for i, s in enumerate(series):
            if len(s) > max_steps:
                raise RequestError(
                    f"upload: series {i} has {len(s)} steps; this server reads at most "
                    f"{max_steps} (the reading runs the model on every prefix)",
                    status=413,
                )
        return series

    def predict(self, series: list[np.ndarray], *, top: int = 3) -> dict[str, Any]:
        """The answer of ``/api/predict`` for raw series float32 [T_i, D].

        ``predictions``: one entry per series with the fields and numbers of ``rnnflow predict
        RUN FILE --json`` (``file`` is ``"upload"``), from the same ``predict_proba`` on the
        series standardised with the run's statistics; ``series``: per series its
        ``probabilities`` (all C classes), ``input`` [T_i][D] (the standardised values the
        model read) and ``reading`` (:func:`read_steps`, ``moved`` as ``{"step", "change"}``).
        """
        names = self.checkpoint.config.class_names
        top = max(1, min(int(top), len(names)))
        standard = normaliser(self.checkpoint.config).apply(series)  # [T_i, D] each
        with self.lock, torch.no_grad():
            probs = sequence_predict_proba(self.model, standard)  # [N, C]
            readings = [
                read_steps(
                    self.model,
                    torch.from_numpy(s)[None],
                    int(p.argmax()),
                    flip=False,
                    unit="step",
                )
                for s, p in zip(standard, probs)
            ]
        return {
            "checkpoint": str(self.checkpoint.path),
            "predictions": [
                {"file": "upload", "index": i, "length": len(s), **top_classes(p, names, top)}
                for i, (s, p) in enumerate(zip(series, probs))
            ],
            "series": [
                {"probabilities": [float(v) for v in p], "input": s.tolist(), "reading": r}
                for s, p, r in zip(standard, probs, readings)
            ],
        }


def _check_npz_sizes(path: Path, limit: int) -> None:
    """Refuse (413) an ``.npz`` whose members unpack to more than ``limit`` bytes, or whose
    ``.npy`` headers claim more data than their member holds (NumPy would allocate the claim
    before reading): a zip bomb, checked before NumPy reads anything. Python's ``zipfile``
    never unpacks a member past its recorded size. Unreadable archives are left to the
    reader, which names them."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            claims = []
            for m in members:
                with archive.open(m) as f:
                    version = np.lib.format.read_magic(f)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(f)
                    claims.append((m, shape, dtype, math.prod(shape) * dtype.itemsize))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return  # read_series_file reports the file as unreadable, naming it
    total = sum(m.file_size for m in members)
    if total > limit:
        raise RequestError(
            f"upload: the .npz unpacks to {total} bytes, the limit is {limit}", status=413
        )
    for m, shape, dtype, claimed in claims:
        if not dtype.hasobject and claimed > m.file_size:
            raise RequestError(
                f"upload: {m.filename} claims {list(shape)} {dtype} ({claimed} bytes) in a "
                f"member of {m.file_size} bytes",
                status=413,
            )


def load_run(
    path: str | os.PathLike[str], *, device: str = "cpu"
) -> ImageRun | PoemRun | SequenceRun:
    """The run in ``path`` (a run folder or a checkpoint file), loaded once: a character model
    (``rnnflow train --task charlm``), a sequence classifier (``--task sequence``) or an image
    classifier (``rnnflow train``), by the same loaders as ``rnnflow generate`` and ``rnnflow
    predict``.

    Raises ``FileNotFoundError`` for a missing path or a folder without a checkpoint,
    ``CheckpointError`` for a file that is none of these kinds of rnnflow checkpoint, and
    ``ValueError`` for an image run whose images are not 28x28 (``--dataset idx``) and for a
    text-classify run (not served: ``rnnflow predict`` classifies texts).
    """
    try:
        found = find_checkpoint(path)
    except FileNotFoundError:
        found = None  # the loaders below say why, in their words
    task = None if found is None else checkpoint_task(found)  # the file's header, read once
    if task == TEXT_CLASSIFY_TASK:
        raise ValueError(
            f"{path}: a text-classify run (rnnflow train --task text-classify): rnnflow serve "
            "serves image classifier, sequence and character-model runs; classify texts with "
            f"rnnflow predict {path} TEXT ... (or - for standard input), or export the run"
        )
    if task == SEQUENCE_TASK:
        series_model, series_checkpoint = load_sequence_model(found, device=device)
        return SequenceRun(series_model, series_checkpoint, threading.Lock())
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
