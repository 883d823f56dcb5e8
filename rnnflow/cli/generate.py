"""`rnnflow generate RUN_DIR [--prime TEXT] [--length N] [--temperature T] [--top-k K] [--top-p P]
[--seed S] [--form 5x4|7x4|5x8|7x8] [--acrostic CHARS] [--rhyme] [--tonal] [--num N] [--json]`:
sample text from a character-level model.

Samples one character at a time, carrying the recurrent state (``rnnflow.text.generate``). With
``--form`` the distribution is masked so that the result is a regular poem of that form (hanzi
verses, ``，`` and ``。？！``, one couplet per line); ``--prime`` must then fit the form.
``--acrostic 春夏秋冬`` starts verse i with the i-th character (without ``--form``: 5x4 for 4
characters, 5x8 for 8), ``--rhyme`` makes the even verses rhyme and ``--tonal`` imposes the
level/oblique pattern of regulated verse (``rnnflow.text.constraints``); all by masking, so they
always hold. The same ``--seed`` gives the same text. ``--num N`` draws N samples with seeds S,
S+1, ... ``--json`` also reports, per sample, whether its even verses rhyme and whether it
follows the tonal pattern (the same checks whether or not they were imposed).
"""

from __future__ import annotations

import argparse
import json
import math

from rnnflow._words import count

# rnnflow.text.poetry.FORMS' names (a test keeps them equal), listed here so that `--help` and
# argument parsing do not import torch
FORM_NAMES = ("5x4", "7x4", "5x8", "7x8")
MAX_SEED = 2**62  # rnnflow.text.generate.MAX_SEED (a test keeps them equal): /api/generate's range


def seed(text: str) -> int:
    """``--seed``: an integer in [0, MAX_SEED], the range ``/api/generate`` takes, so that the
    same seed gives the same poem in both (argparse reports the flag and this message)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {MAX_SEED}], got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "generate",
        help="sample text (or a poem of a given form) from a character-level model",
        description=(
            "Sample text from a model trained with `rnnflow train --task charlm`, one character "
            "at a time, carrying the recurrent state."
        ),
    )
    parser.add_argument("model", metavar="RUN_DIR|CKPT", help="run folder or .safetensors file")
    parser.add_argument("--prime", default="", help="text to start from (default: empty)")
    parser.add_argument(
        "--length", type=int, default=200, help="characters to sample after the prime (200)"
    )
    parser.add_argument(
        "--temperature", type=float, default=0.8, help="softmax temperature; 0 is greedy (0.8)"
    )
    parser.add_argument(
        "--top-k", type=int, default=0, help="sample among the K most likely; 0: all (0)"
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=1.0,
        help="sample among the most likely characters holding probability P; 1: all (1)",
    )
    parser.add_argument(
        "--seed", type=seed, default=0, help=f"sampling seed, in [0, {MAX_SEED}] (0)"
    )
    parser.add_argument(
        "--form",
        choices=FORM_NAMES,
        help="force a regular poem of C characters per verse and V verses (CxV)",
    )
    parser.add_argument(
        "--acrostic",
        default="",
        metavar="CHARS",
        help="verse i starts with the i-th character (one per verse; without --form: 5x4 for "
        "4 characters, 5x8 for 8)",
    )
    parser.add_argument(
        "--rhyme", action="store_true", help="the even verses end on one rhyme group (needs --form)"
    )
    parser.add_argument(
        "--tonal",
        action="store_true",
        help="the level/oblique (平仄) pattern of regulated verse (needs a 5- or 7-character form)",
    )
    parser.add_argument("--num", type=int, default=1, help="samples to draw, seeds S, S+1, ... (1)")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where the model generates (auto: cuda when available; default: cpu)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
    return parser


def _fail(message: str, status: int = 2) -> int:
    from rnnflow.cli import report

    report("generate", message)  # the library's "generate: ..." errors: the prefix once
    return status


def run(args: argparse.Namespace) -> int:
    from rnnflow.tasks.charlm import load_charlm
    from rnnflow.text.generate import generate, sample_record
    from rnnflow.text.poetry import PoemForm
    from rnnflow.training.checkpoint import CheckpointError

    if args.num < 1:
        return _fail(f"--num must be >= 1, got {args.num}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        return _fail(
            f"--temperature must be a finite number >= 0 (0: greedy), got {args.temperature}"
        )
    for flag, value in (("--top-k", args.top_k), ("--length", args.length)):
        if value < 0:
            return _fail(f"{flag} must be >= 0, got {value}")
    if not 0 < args.top_p <= 1:
        return _fail(f"--top-p must be in (0, 1], got {args.top_p}")
    form_name = args.form
    if form_name is None and args.acrostic:
        form_name = {4: "5x4", 8: "5x8"}.get(len(args.acrostic))
        if form_name is None:
            return _fail(
                f"--acrostic {args.acrostic!r} has {count(len(args.acrostic), 'character')}: "
                f"give --form "
                "(one character per verse; 4 or 8 characters choose 5x4 or 5x8 by themselves)"
            )
    if form_name is None and (args.rhyme or args.tonal):
        return _fail("--rhyme and --tonal need --form (5x4, 7x4, 5x8 or 7x8)")
    form = PoemForm.parse(form_name) if form_name else None
    try:
        model, vocab, checkpoint = load_charlm(args.model, device=args.device)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        return _fail(str(exc), 1)
    samples = []
    try:
        for i in range(args.num):
            samples.append(
                generate(
                    model,
                    vocab,
                    prime=args.prime,
                    length=args.length,
                    temperature=args.temperature,
                    top_k=args.top_k,
                    seed=args.seed + i,
                    form=form,
                    top_p=args.top_p,
                    acrostic=args.acrostic,
                    rhyme=args.rhyme,
                    tonal=args.tonal,
                )
            )
    except ValueError as exc:
        return _fail(str(exc))
    if args.json:
        out = {
            "checkpoint": str(checkpoint.path),
            "checkpoint_step": checkpoint.progress.get("step"),
            "prime": args.prime,
            "temperature": args.temperature,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "form": form.name if form else None,
            "acrostic": args.acrostic,
            "rhyme": args.rhyme,
            "tonal": args.tonal,
            "samples": [sample_record(args.seed + i, s, form) for i, s in enumerate(samples)],
        }
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    for i, s in enumerate(samples):
        if i:
            print()
        print(s.text)
    return 0
