"""`rnnflow train --task charlm`: train a character-level language model (the poem generator).

    rnnflow train --task charlm --preset tang --out runs/tang            # built-in Tang corpus
    rnnflow train --task charlm --corpus text --text a.txt --text b.txt --out runs/mine
    rnnflow train --task charlm --resume runs/tang

``add_arguments(parser)`` adds the flags this task needs to a parser (skipping any flag the
parser already has, so it can extend ``rnnflow train``'s); ``run(args)`` does the work. One flag
per ``CharLMConfig`` field (dest ``cfg_<field>``, unset flags stay out of the namespace), so the
dataclass stays the only list of defaults. RUN_DIR receives what ``rnnflow.text.train``
describes; the last line printed is the validation perplexity vs the unigram and bigram baselines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import typing
from dataclasses import fields
from typing import Any

from rnnflow.cli import prog
from rnnflow.cli._config_args import add_field_argument

# Flags that may change on --resume: where the data is and how many threads; not the experiment.
_RESUMABLE_OVERRIDES = {"fortunes_dir", "data_dir", "threads", "device"}
_TUPLE_HELP = {  # tuple fields: repeatable flags
    "text": ("PATH", "a UTF-8 text file (repeat for several); implies --corpus text"),
    "forms": ("CxV", "keep only poems of this form, e.g. 5x8 (repeat for several)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the charlm flags to ``parser``; flags it already defines are left as they are (an
    existing ``--preset`` gets the charlm preset names added to its choices)."""
    from rnnflow.text.config import PRESETS, CharLMConfig, field_type

    existing = parser._option_string_actions  # argparse has no public lookup

    def add(flag: str, **kwargs: Any) -> None:
        if flag not in existing:
            parser.add_argument(flag, **kwargs)

    from rnnflow.cli._config_args import preset_epilog

    preset = existing.get("--preset")
    if preset is None:
        parser.add_argument(
            "--preset",
            choices=sorted(PRESETS),
            default=None,
            help="base config; its values replace the defaults shown below (listed at the end); "
            "tang (default), tang-song, tiny",
        )
    elif preset.choices is not None:
        preset.choices = sorted({*preset.choices, *PRESETS})
        preset.help = (preset.help or "") + "; --task charlm: tang (default), tang-song, tiny"
    from rnnflow.training.config import TrainConfig

    shown = {f.name: f.default for f in fields(CharLMConfig)}
    for f in fields(TrainConfig):  # flags shared with the classifier show its defaults
        if f.name in shown and "--" + f.name.replace("_", "-") in existing:
            shown[f.name] = f.default
    epilog = preset_epilog("character-model presets (--task charlm)", PRESETS, shown)
    parser.epilog = f"{parser.epilog}\n\n{epilog}" if parser.epilog else epilog
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add("--out", metavar="RUN_DIR", help="new run folder to create")
    add("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    add("--tensorboard", action="store_true", help="also write TensorBoard events")
    add("--quiet", action="store_true", help="no progress output")
    add("--stop-at-step", type=int, metavar="N", help="stop (resumable) after N optimizer steps")
    group = parser.add_argument_group(
        "charlm config (--task charlm)",
        "any CharLMConfig field; when not given, the preset's value (the defaults shown are the "
        "tang preset's; the list at the end gives what each other preset changes)",
    )
    for f in fields(CharLMConfig):
        flag = "--" + f.name.replace("_", "-")
        if flag in existing:
            continue
        tp = field_type(f.name)
        if typing.get_origin(tp) is tuple:
            group.add_argument(
                flag,
                action="append",
                metavar=_TUPLE_HELP[f.name][0],
                help=_TUPLE_HELP[f.name][1],
                dest=f"cfg_{f.name}",
                default=argparse.SUPPRESS,
            )
            continue
        add_field_argument(group, f.name, tp, f.default)


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fail(message: str, status: int = 2) -> int:
    print(f"rnnflow train --task charlm: {message}", file=sys.stderr)
    return status


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from rnnflow.text.config import CharLMConfig

    known = {f.name for f in fields(CharLMConfig)}
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    foreign = sorted(set(given) - known)
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise ValueError(f"{flags}: not a charlm option (see {prog()} train --help)")
    if "forms" in given:
        given["forms"] = tuple(given["forms"])
    if "text" in given:
        given["text"] = tuple(given["text"])
        given.setdefault("corpus", "text")
    return given


def run(args: argparse.Namespace) -> int:

    from rnnflow.cli._run_folder import RunRefused, plan_run
    from rnnflow.text.train import PRESETS, charlm_config_from_dict, load_charlm_checkpoint

    try:
        overrides = _overrides(args)
    except ValueError as exc:
        return _fail(str(exc))
    preset = getattr(args, "preset", None) or "tang"
    if preset not in PRESETS:
        return _fail(
            f"argument --preset: {preset!r} is not a preset of --task charlm; choose from "
            f"{', '.join(sorted(PRESETS))}"
        )
    try:
        plan, lock = plan_run(
            args,
            overrides,
            preset=PRESETS[preset],
            load_checkpoint=load_charlm_checkpoint,
            config_from_dict=charlm_config_from_dict,
            resumable=_RESUMABLE_OVERRIDES,
        )
    except RunRefused as exc:
        return _fail(str(exc), exc.status)
    try:
        return _train(args, plan)
    finally:
        lock.release(remove_created=True)


def _train(args: argparse.Namespace, plan: Any) -> int:
    import torch

    from rnnflow.cli._progress import ProgressBar
    from rnnflow.cli._run_folder import CONFIG_NAME, continue_command, start_run_files
    from rnnflow.cli.train import _StopFlag
    from rnnflow.text.corpus import BucketBatches, CorpusError
    from rnnflow.text.train import BEST_NAME, baselines, evaluate, fit, load_charlm, prepare_data
    from rnnflow.training.checkpoint import CheckpointError
    from rnnflow.training.logging import MetricsLogger, read_metrics, write_run_file
    from rnnflow.training.plots import plot_curves

    config, resume, run_dir = plan.config, plan.resume, plan.run_dir

    if config.threads:
        torch.set_num_threads(config.threads)
    quiet = getattr(args, "quiet", False)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    try:
        data = prepare_data(config)
    except (FileNotFoundError, CorpusError, OSError, ValueError) as exc:
        return _fail(str(exc), 1)
    steps_per_epoch = len(BucketBatches(data.train_examples, config.batch_size, shuffle=False))
    total = config.epochs * steps_per_epoch
    try:  # run.json, vocab.json, then config.json: from here the folder holds a resumable run
        start_run_files(
            plan,
            {"vocab.json": data.vocab.to_json() + "\n", CONFIG_NAME: config.to_json() + "\n"},
        )
    except OSError as exc:
        return _fail(str(exc), 1)
    if not plan.existing:
        say(
            f"run {run_dir}: {config.corpus} corpus, {len(data.train_docs)} + "
            f"{len(data.val_docs)} documents (train + val), {data.train_tokens} + "
            f"{data.val_tokens} characters, vocabulary {len(data.vocab)}, {total} steps"
        )
    elif resume is None:
        say(f"run {run_dir}: killed before its first checkpoint; starting again from step 0")
    else:
        say(f"run {run_dir}: resuming at step {resume.progress['step']} of {total}")
    bar = ProgressBar(total, sys.stderr, enabled=not quiet)

    on_step = bar.step_callback(config.batch_size)
    start = time.perf_counter()
    try:
        with (
            MetricsLogger(
                run_dir, tensorboard=plan.options["tensorboard"], keep_until_step=plan.start_step
            ) as metrics,
            _StopFlag() as stop,
        ):
            _, progress = fit(
                config,
                run_dir,
                data=data,
                resume=resume,
                metrics=metrics,
                on_step=on_step,
                should_stop=stop,
                stop_at_step=getattr(args, "stop_at_step", None),
            )
            bar.close()
            plot_curves(read_metrics(metrics.path), run_dir / "curves.png")
            if not progress.finished:
                say(
                    f"stopped at step {progress.step}/{total}; checkpoint saved. "
                    f"Continue with: {continue_command(plan)}"
                )
                return 130 if stop.requested else 0
    except KeyboardInterrupt:
        bar.close()
        return _fail("aborted by a second Ctrl-C (the last periodic checkpoint is kept)", 130)
    except (CheckpointError, OSError, ValueError) as exc:
        return _fail(str(exc), 1)

    try:
        best, _, checkpoint = load_charlm(run_dir / BEST_NAME, device=config.device)
    except (CheckpointError, OSError, ValueError) as exc:
        return _fail(str(exc), 1)
    val_loader = BucketBatches(
        data.val_examples, config.eval_batch_size, shuffle=False, pad_id=data.vocab.pad_id
    )
    result = evaluate(best, val_loader)
    base = baselines(data)
    summary = {
        "run_dir": str(run_dir),
        "corpus": config.corpus,
        "train_documents": len(data.train_docs),
        "val_documents": len(data.val_docs),
        "train_characters": data.train_tokens,
        "val_characters": data.val_tokens,
        "vocab_size": len(data.vocab),
        "val_loss": result.loss,
        "val_perplexity": result.perplexity,
        "val_accuracy": result.accuracy,
        **base,
        "best_step": checkpoint.progress["step"],
        "steps": progress.step,
        "train_seconds": round(progress.train_seconds, 1),
        "wall_seconds_this_session": round(time.perf_counter() - start, 1),
        # on a shared machine wall time overstates the cost: CPU seconds of this process
        "process_cpu_seconds_this_session": round(_cpu_seconds(), 1),
        "threads": torch.get_num_threads(),
    }
    try:
        write_run_file(run_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    except OSError as exc:
        return _fail(str(exc), 1)
    line = f"validation perplexity {result.perplexity:.2f} (best step {summary['best_step']})"
    if base:
        line += (
            f"; unigram {base['unigram_perplexity']:.2f}, bigram {base['bigram_perplexity']:.2f}, "
            f"Kneser-Ney 3-gram {base['kn3_perplexity']:.2f}"
            " on the same split"
        )
    print(line)
    print(f"trained {progress.step} steps in {progress.train_seconds:.0f} s; run folder: {run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnflow.cli._charlm ...``: the same as ``rnnflow train --task charlm ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m rnnflow.cli._charlm",
        description="Train a character-level language model (rnnflow train --task charlm).",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
