"""The character vocabulary a text task's checkpoint carries (metadata ``vocab``), read back and
compared with the one the data on disk give now: for every task that trains on a Vocabulary
(the char LM and the text classifier)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rnnflow.text.corpus import Vocabulary
from rnnflow.training.checkpoint import Checkpoint, CheckpointError

__all__ = ["VocabCheckpoints", "check_same_vocab", "checkpoint_vocab", "vocab_size"]


def checkpoint_vocab(checkpoint: Checkpoint, *, kind: str) -> Vocabulary:
    """The vocabulary in ``checkpoint``'s metadata; ``CheckpointError`` naming the file and the
    ``kind`` of checkpoint ("a text-classifier") when it is missing or malformed."""
    text = checkpoint.metadata.get("vocab")
    if text is None:
        raise CheckpointError(f"{checkpoint.path}: {kind} checkpoint without a vocabulary")
    try:
        return Vocabulary.from_json(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{checkpoint.path}: corrupt checkpoint metadata: {exc}") from exc


def check_same_vocab(checkpoint: Checkpoint, vocab: Vocabulary, *, kind: str) -> None:
    """Refuse (``ValueError`` naming the file and both sizes) to continue a run whose
    checkpoint's vocabulary differs from ``vocab``, the one the data give now."""
    recorded = checkpoint_vocab(checkpoint, kind=kind)
    if recorded != vocab:
        raise ValueError(
            f"{checkpoint.path}: the vocabulary differs from the one of the data now read "
            f"({len(recorded)} vs {len(vocab)} symbols): the data changed since the run began"
        )


def vocab_size(metadata: Mapping[str, str] | int) -> int:
    """A vocabulary's size: ``metadata`` itself (an int) or the size of the vocabulary in a
    checkpoint's metadata (its ``vocab``), for a task's ``build_model``."""
    if isinstance(metadata, int):
        return metadata
    return len(Vocabulary.from_json(metadata["vocab"]))


class VocabCheckpoints:
    """The :class:`~rnnflow.training.task.Task` members of a task whose ``data.vocab`` is a
    :class:`Vocabulary`: every checkpoint carries it (metadata ``vocab``), and a run whose data
    now give another vocabulary is not resumed. ``kind`` names the task's checkpoints in errors
    ("a text-classifier")."""

    data: Any  # the task's prepared data, with a ``vocab``
    kind: ClassVar[str]

    def checkpoint_metadata(self) -> dict[str, str]:
        return {"vocab": self.data.vocab.to_json()}

    def check_resume(self, checkpoint: Checkpoint) -> None:
        check_same_vocab(checkpoint, self.data.vocab, kind=self.kind)
