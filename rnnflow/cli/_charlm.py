"""CLI glue of the character-LM task (``rnnflow train --task charlm``; docs/TEXT.md).

    rnnflow train --task charlm --preset tang --out runs/tang            # built-in Tang corpus
    rnnflow train --task charlm --corpus text --text a.txt --text b.txt --out runs/mine
    rnnflow train --resume runs/tang

One flag per ``CharLMConfig`` field (``--text`` repeats and implies ``--corpus text``). After a
finished run the best checkpoint's validation perplexity is printed beside the unigram, bigram
and Kneser-Ney 3-gram baselines on the same split (``summary.json``). ``rnnflow evaluate`` on a
char-LM run reports its validation loss, perplexity and accuracy; ``predict`` and ``export``
refuse it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from rnnflow._words import count
from rnnflow.cli._config_args import add_config_arguments, config_overrides, flag_name

# Flags that may change on --resume: where the data is and how many threads; not the experiment.
RESUMABLE = {"fortunes_dir", "data_dir", "threads", "device"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rnnflow.text.config import CharLMConfig

    group = add_config_arguments(
        parser,
        CharLMConfig,
        title="charlm config (--task charlm)",
        description="any CharLMConfig field; when not given, the preset's value (the defaults "
        "shown are the tang preset's; the list at the end gives what each other preset changes)",
        skip=("text",),
    )
    group.add_argument(
        "--text",
        action="append",
        metavar="PATH",
        help="a UTF-8 text file (repeat for several); implies --corpus text",
        dest="cfg_text",
        default=argparse.SUPPRESS,
    )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    given = config_overrides(args)
    if "text" in given:
        given.setdefault("corpus", "text")
    return given


def describe_start(task: Any, args: argparse.Namespace) -> str:
    data = task.data
    return (
        f"{task.config.corpus} corpus, {len(data.train_docs)} + "
        f"{count(len(data.val_docs), 'document')} "
        f"(train + val), {data.train_tokens} + {count(data.val_tokens, 'character')}, vocabulary "
        f"{len(data.vocab)}"
    )


def run_files(task: Any) -> dict[str, str]:
    return {"vocab.json": task.data.vocab.to_json() + "\n"}


def report(task: Any, plan: Any, progress: Any, run: Any) -> int:
    """The best checkpoint's validation perplexity beside the n-gram baselines; a run without
    validation documents (``--val-fraction 0``) keeps its last weights and says so (its
    summary's ``val_*`` entries are null)."""
    import torch

    from rnnflow.cli.train import write_summary
    from rnnflow.tasks.charlm import baselines, describe, evaluate, load_charlm
    from rnnflow.text.corpus import BucketBatches
    from rnnflow.training.engine import BEST_NAME

    config, data, run_dir = task.config, task.data, plan.run_dir
    best, _, checkpoint = load_charlm(run_dir / BEST_NAME, device=config.device)
    step = checkpoint.progress["step"]
    scores: dict[str, float | None] = dict.fromkeys(_VAL_KEYS)
    if data.val_examples:
        loader = BucketBatches(
            data.val_examples, config.eval_batch_size, shuffle=False, pad_id=data.vocab.pad_id
        )
        result = evaluate(best, loader)
        scores = dict(zip(_VAL_KEYS, (result.loss, result.perplexity, result.accuracy)))
    base = baselines(data)
    write_summary(
        run_dir,
        {
            **run.summary(progress, step),
            **describe(data, config),
            **scores,
            **base,
            "threads": torch.get_num_threads(),
        },
    )
    if scores["val_perplexity"] is None:
        line = (
            f"no validation documents (--val-fraction {config.val_fraction}): the last weights "
            f"(step {step}), nothing scored"
        )
    else:
        line = f"validation perplexity {scores['val_perplexity']:.2f} (best step {step})"
    if base:
        line += (
            f"; unigram {base['unigram_perplexity']:.2f}, bigram {base['bigram_perplexity']:.2f}, "
            f"Kneser-Ney 3-gram {base['kn3_perplexity']:.2f} on the same split"
        )
    print(line)
    print(
        f"trained {count(progress.step, 'step')} in {progress.train_seconds:.0f} s; run "
        f"folder: {run_dir}"
    )
    return 0


_VAL_KEYS = ("val_loss", "val_perplexity", "val_accuracy")  # summary.json's validation scores


def refusal(command: str, path: Any) -> str:
    from rnnflow.cli import command as line

    return (
        f"{path} is a character-level language model run (rnnflow train --task charlm): "
        f"`rnnflow {command}` works on image classifier, sequence and text-classify runs; "
        f"use `{line('generate', path)}` to sample text from it, or `{line('evaluate', path)}` "
        "for its validation perplexity"
    )


def evaluate(args: argparse.Namespace) -> int:
    """``rnnflow evaluate`` of a char-LM run: validation loss, perplexity, bits per character
    and next-character accuracy on its own split, beside the unigram and bigram baselines."""
    from rnnflow.tasks.charlm import baselines, load_charlm, prepare_data
    from rnnflow.tasks.charlm import evaluate as evaluate_model
    from rnnflow.text.corpus import BucketBatches, CorpusError
    from rnnflow.training import CheckpointError

    image_flags = [f for f in ("dataset", "data_dir", "tta_flip") if getattr(args, f) is not None]
    if image_flags or args.split != "test":
        if image_flags:
            given = ", ".join(flag_name(f) for f in image_flags)
            runs = "image classifier runs"
        else:
            given, runs = (
                f"--split {args.split}",
                "image classifier, sequence and text-classify runs",
            )
        print(
            f"rnnflow evaluate: {given} applies to {runs}; {args.model} is a "
            "character model, evaluated on its own validation documents",
            file=sys.stderr,
        )
        return 2
    try:
        model, vocab, checkpoint = load_charlm(args.model)
        data = prepare_data(checkpoint.config)
    except (FileNotFoundError, CheckpointError, CorpusError, OSError, ValueError) as exc:
        print(f"rnnflow evaluate: {exc}", file=sys.stderr)
        return 1
    if data.vocab != vocab:
        print(
            f"rnnflow evaluate: the corpus {checkpoint.config.corpus!r} no longer gives the "
            f"vocabulary {checkpoint.path} was trained with (its text changed?): cannot rebuild "
            "the validation split",
            file=sys.stderr,
        )
        return 1
    if not data.val_examples:
        print(
            f"rnnflow evaluate: {args.model} has no validation documents (trained with "
            f"--val-fraction {checkpoint.config.val_fraction}): nothing to score",
            file=sys.stderr,
        )
        return 1
    loader = BucketBatches(
        data.val_examples, args.batch_size, shuffle=False, pad_id=data.vocab.pad_id
    )
    result = evaluate_model(model, loader)
    base = baselines(data)
    payload = {
        "checkpoint": str(checkpoint.path),
        "step": checkpoint.progress.get("step"),
        "task": "charlm",
        "corpus": checkpoint.config.corpus,
        "split": "validation",
        "documents": len(data.val_docs),
        "characters": result.tokens,
        "loss": result.loss,
        "perplexity": result.perplexity,
        "bits_per_character": result.loss / math.log(2),
        "accuracy": result.accuracy,
        **base,
    }
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    print(f"checkpoint: {checkpoint.path} (step {payload['step']}), character model")
    print(
        f"{payload['corpus']} validation split: {count(payload['documents'], 'document')}, "
        f"{payload['characters']} predicted characters"
    )
    print(
        f"loss {result.loss:.4f} nats/char  perplexity {result.perplexity:.2f}  "
        f"{payload['bits_per_character']:.3f} bits/char  next-character accuracy "
        f"{result.accuracy:.4f}"
    )
    if base:
        print(
            f"baselines on the same split: unigram perplexity {base['unigram_perplexity']:.2f}, "
            f"bigram {base['bigram_perplexity']:.2f}, "
            f"Kneser-Ney 3-gram {base['kn3_perplexity']:.2f}"
        )
    return 0
