"""The character vocabulary a text task's checkpoint carries (metadata ``vocab``), read back and
compared with the one the data on disk give now: for every task that trains on a Vocabulary."""

from __future__ import annotations

from rnnflow.text.corpus import Vocabulary
from rnnflow.training.checkpoint import Checkpoint, CheckpointError

__all__ = ["check_same_vocab", "checkpoint_vocab"]


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
