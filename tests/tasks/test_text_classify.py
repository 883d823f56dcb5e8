"""The text-classify task on tiny labelled files written here: it learns a character cue (and
cannot learn shuffled labels), resumes bit-exactly, refuses changed data, splits its loss over
processes exactly, and predicts as the model does text by text."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rnnflow.tasks import load_checkpoint
from rnnflow.tasks.text_classify import (
    build_model,
    evaluate,
    load_text_classifier,
    make_task,
    predict_proba,
)
from rnnflow.text.classify_config import PRESETS, TextClassifyConfig
from rnnflow.training import fit
from rnnflow.training.distributed import DistributedContext


def cue_file(path: Path, n: int = 240, *, seed: int = 0, shuffled: bool = False) -> Path:
    """``label<TAB>text`` lines: filler characters with one cue, 好 (pos) or 坏 (neg), anywhere."""
    rng = random.Random(seed)
    lines, labels = [], []
    for i in range(n):
        y = i % 2
        filler = "".join(rng.choice("的了是在我有他这") for _ in range(rng.randint(2, 12)))
        at = rng.randint(0, len(filler))
        lines.append(filler[:at] + ("好" if y else "坏") + filler[at:] + str(i))  # all distinct
        labels.append(y)
    if shuffled:
        rng.shuffle(labels)
    path.write_text(
        "".join(f"{'pos' if y else 'neg'}\t{t}\n" for y, t in zip(labels, lines)), encoding="utf-8"
    )
    return path


def run_dir(path: Path) -> Path:
    path.mkdir()
    return path


def tiny_config(path: Path, **kw: object) -> TextClassifyConfig:
    base = replace(
        PRESETS["tiny"], corpus="file", train_file=str(path), lr=0.02, epochs=4, device="cpu"
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_task_records_classes_and_sha256_and_splits(tmp_path: Path) -> None:
    task = make_task(tiny_config(cue_file(tmp_path / "a.tsv")))
    assert task.config.class_names == ("neg", "pos")
    assert len(task.config.data_sha256) == 64
    d = task.data.describe()
    assert (d["test_texts"], d["val_texts"], d["train_texts"]) == (24, 22, 194)
    assert task.epoch_length() == -(-194 // 8)


def test_the_split_follows_split_seed_not_seed(tmp_path: Path) -> None:
    path = cue_file(tmp_path / "a.tsv")
    base = make_task(tiny_config(path)).data.splits
    other_seed = make_task(tiny_config(path, seed=5)).data.splits
    other_split = make_task(tiny_config(path, split_seed=5)).data.splits
    assert other_seed.test.texts == base.test.texts and other_seed.val.texts == base.val.texts
    assert other_split.test.texts != base.test.texts


@pytest.mark.parametrize("shuffled", [False, True])
def test_learns_a_cue_and_not_shuffled_labels(tmp_path: Path, shuffled: bool) -> None:
    task = make_task(tiny_config(cue_file(tmp_path / "a.tsv", shuffled=shuffled)))
    torch.manual_seed(0)
    model, progress = fit(task, run_dir(tmp_path / "run"))
    assert progress.finished
    test = evaluate(model, task.loader("test"), num_classes=2)
    if shuffled:
        assert test.scores.accuracy < 0.8
    else:
        assert test.scores.accuracy == 1.0


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    config = tiny_config(cue_file(tmp_path / "a.tsv"), dropout=0.2)
    whole, _ = fit(make_task(config), run_dir(tmp_path / "whole"))
    fit(make_task(config), run_dir(tmp_path / "cut"), stop_at_step=13)  # mid-epoch
    resumed, progress = fit(
        make_task(config),
        tmp_path / "cut",
        resume=load_checkpoint(tmp_path / "cut" / "checkpoint.safetensors"),
    )
    assert progress.finished
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    ckpt_a = load_checkpoint(tmp_path / "whole" / "checkpoint.safetensors")
    ckpt_b = load_checkpoint(tmp_path / "cut" / "checkpoint.safetensors")
    torch.testing.assert_close(ckpt_a.optimizer, ckpt_b.optimizer, rtol=0, atol=0)


def test_resume_refuses_changed_data(tmp_path: Path) -> None:
    path = cue_file(tmp_path / "a.tsv")
    fit(make_task(tiny_config(path)), run_dir(tmp_path / "run"), stop_at_step=3)
    recorded = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors").config
    assert recorded.class_names == ("neg", "pos")
    cue_file(path, seed=1)
    with pytest.raises(ValueError, match=r"a\.tsv: the data differ from those this run recorded"):
        make_task(recorded)


def test_loss_over_two_processes_averages_to_the_single_process_loss(tmp_path: Path) -> None:
    task = make_task(tiny_config(cue_file(tmp_path / "a.tsv"), batch_size=7))
    torch.manual_seed(0)
    model = task.build_model()
    batch = next(task.batches(0, 0))
    g = torch.Generator()
    whole = task.step(model, batch, DistributedContext(), g)
    parts = [task.step(model, batch, DistributedContext(rank=r, world_size=2), g) for r in (0, 1)]
    # DDP averages the ranks' gradients, so the mean of the ranks' losses must be the global one
    torch.testing.assert_close((parts[0].loss + parts[1].loss) / 2, whole.loss)
    hand = F.cross_entropy(model(batch.tokens, batch.lengths), batch.labels)  # mean over 7
    torch.testing.assert_close(whole.loss, hand)
    assert parts[0].stats["count"] == 4 and parts[1].stats["count"] == 3
    assert whole.examples == parts[0].examples == 7
    # 8 processes, 7 texts: rank 7 has none, yet must run forward and backward (DDP waits for
    # every gradient) and add nothing
    empty = task.step(model, batch, DistributedContext(rank=7, world_size=8), g)
    assert empty.loss.item() == 0.0 and empty.stats == {
        "loss_sum": 0.0,
        "correct": 0.0,
        "count": 0.0,
    }
    empty.loss.backward()
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


def test_predict_proba_equals_each_text_alone(tmp_path: Path) -> None:
    path = cue_file(tmp_path / "a.tsv")
    fit(make_task(tiny_config(path, epochs=1)), run_dir(tmp_path / "run"))
    model, vocab, checkpoint = load_text_classifier(tmp_path / "run")
    texts = ["这是好的", "  坏  ", "是在我有他这的了好的了是在我有他这", "未见过的字"]
    probs = predict_proba(model, vocab, texts, max_chars=checkpoint.config.max_chars)
    assert probs.shape == (4, 2)
    for i, text in enumerate(texts):
        ids = torch.tensor([vocab.encode(text.strip())])
        alone = torch.softmax(model(ids, torch.tensor([ids.shape[1]])), dim=1)[0]
        torch.testing.assert_close(probs[i], alone)
    cut = predict_proba(model, vocab, ["好的了是在"], max_chars=1)
    torch.testing.assert_close(cut, predict_proba(model, vocab, ["好"], max_chars=5))
    with pytest.raises(ValueError, match=r"^predict_proba: text 2 is empty \(after stripping"):
        predict_proba(model, vocab, ["好", "  "], max_chars=5)


def test_build_model_from_metadata_matches_the_run(tmp_path: Path) -> None:
    fit(make_task(tiny_config(cue_file(tmp_path / "a.tsv"), epochs=1)), run_dir(tmp_path / "run"))
    ckpt = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert ckpt.task == "text-classify"
    model = build_model(ckpt.config, ckpt.metadata)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in ckpt.model.items()
    }


def test_checkpoint_vocabulary_missing_corrupt_or_changed_is_refused() -> None:
    from rnnflow.tasks._vocab import check_same_vocab
    from rnnflow.tasks.text_classify import checkpoint_vocab
    from rnnflow.text.corpus import Vocabulary
    from rnnflow.training.checkpoint import Checkpoint, CheckpointError

    def ckpt(metadata: dict[str, str]) -> Checkpoint:
        return Checkpoint(path=Path("c.safetensors"), config=None, model={}, progress={},
                          metadata=metadata)  # fmt: skip

    vocab = Vocabulary.build(["好坏"])
    assert checkpoint_vocab(ckpt({"vocab": vocab.to_json()})) == vocab
    with pytest.raises(
        CheckpointError, match=r"c\.safetensors: a text-classifier checkpoint without a vocabulary"
    ):
        checkpoint_vocab(ckpt({}))
    with pytest.raises(CheckpointError, match=r"c\.safetensors: corrupt checkpoint metadata"):
        checkpoint_vocab(ckpt({"vocab": '{"symbols": 3}'}))
    with pytest.raises(
        ValueError, match=r"c\.safetensors: the vocabulary differs .* \(6 vs 7 symbols\)"
    ):
        check_same_vocab(ckpt({"vocab": vocab.to_json()}), Vocabulary.build(["好坏了"]), kind="a")


def test_evaluate_refuses_an_empty_split() -> None:
    from rnnflow.text.labelled_text import ClassificationBatches

    config = replace(PRESETS["tiny"], class_names=("neg", "pos"))
    model = build_model(config, 5)
    empty = ClassificationBatches([], [], 8, shuffle=False)
    with pytest.raises(ValueError, match=r"evaluate: no texts to score \(an empty split\)"):
        evaluate(model, empty, num_classes=2)
