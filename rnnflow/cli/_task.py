"""Which task a run belongs to, from its checkpoint's own record, and what each command does
with a run of the other task.

Every rnnflow checkpoint is a safetensors file whose metadata says what wrote it: a character
model's says ``"task": "charlm"``; an image classifier's says nothing (or ``"classifier"``). A
run's ``config.json`` is not consulted: it is a copy for people, and can be edited.
"""

from __future__ import annotations

from pathlib import Path

CLASSIFIER = "classifier"
CHARLM = "charlm"
KNOWN_TASKS = (CLASSIFIER, CHARLM)


def checkpoint_task(path: str | Path) -> str:
    """The task recorded in the checkpoint ``path`` names (a file, or a run folder's best or last
    checkpoint): ``"classifier"``, ``"charlm"``, or whatever unknown task a newer rnnflow wrote.

    Only the safetensors header is read. A path that holds no readable checkpoint counts as a
    classifier: the command's own loader then reports what is wrong with it.
    """
    from safetensors import SafetensorError, safe_open

    from rnnflow.training.loop import find_checkpoint

    try:
        with safe_open(str(find_checkpoint(path)), framework="pt") as f:
            meta = f.metadata() or {}
    except (FileNotFoundError, SafetensorError, OSError, ValueError):
        return CLASSIFIER
    task = meta.get("task", CLASSIFIER)
    return task if isinstance(task, str) and task else CLASSIFIER


def classifier_only(command: str, path: str | Path) -> str | None:
    """``None`` for a classifier run; otherwise why ``rnnflow COMMAND`` refuses it and what to
    run instead."""
    task = checkpoint_task(path)
    if task == CLASSIFIER:
        return None
    if task == CHARLM:
        from rnnflow.cli import prog

        return (
            f"{path} is a character-level language model run (rnnflow train --task charlm): "
            f"`rnnflow {command}` works on image classifier runs; use `{prog()} generate {path}` "
            f"to sample text from it, or `{prog()} evaluate {path}` for its validation perplexity"
        )
    return (
        f"{path} holds a checkpoint of task {task!r}, which this rnnflow does not know (it "
        f"knows {', '.join(KNOWN_TASKS)}); a newer rnnflow wrote it?"
    )
