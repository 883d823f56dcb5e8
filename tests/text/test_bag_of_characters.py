"""Classification scores against scikit-learn's, and the bag-of-characters baselines."""

from __future__ import annotations

import random
import sys

import pytest

from rnnflow.text.classification_scores import classification_scores
from rnnflow.text.labelled_text import LabelledTexts

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed")


@pytest.mark.parametrize("seed", range(5))
def test_scores_equal_sklearn(seed: int) -> None:
    rng = random.Random(seed)
    classes = rng.randint(2, 5)
    labels = [rng.randrange(classes) for _ in range(40)]
    predictions = [y if rng.random() < 0.6 else rng.randrange(classes) for y in labels]
    scores = classification_scores(labels, predictions, num_classes=classes)
    kw = {"labels": list(range(classes)), "zero_division": 0}
    assert scores.accuracy == pytest.approx(sklearn_metrics.accuracy_score(labels, predictions))
    assert scores.macro_f1 == pytest.approx(
        sklearn_metrics.f1_score(labels, predictions, average="macro", **kw)
    )
    assert list(scores.f1) == pytest.approx(
        sklearn_metrics.f1_score(labels, predictions, average=None, **kw).tolist()
    )
    assert [list(r) for r in scores.confusion] == sklearn_metrics.confusion_matrix(
        labels, predictions, labels=list(range(classes))
    ).tolist()


def test_scores_hand_example_with_a_class_never_predicted() -> None:
    scores = classification_scores([0, 0, 1, 2], [0, 1, 1, 1], num_classes=3)
    # class 0: P 1, R 1/2 -> 2/3; class 1: P 1/3, R 1 -> 1/2; class 2: never predicted -> 0
    assert scores.accuracy == 0.5
    assert scores.f1 == pytest.approx((2 / 3, 1 / 2, 0.0))
    assert scores.macro_f1 == pytest.approx((2 / 3 + 1 / 2) / 3)
    assert scores.confusion == ((1, 1, 0), (0, 1, 0), (0, 1, 0))
    assert scores.to_dict()["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_scores_refuse_bad_input() -> None:
    with pytest.raises(
        ValueError, match=r"classification_scores: expected as many predictions .* got 1 and 2"
    ):
        classification_scores([0, 1], [0], num_classes=2)
    with pytest.raises(ValueError, match=r"classification_scores: .* got 0 and 0"):
        classification_scores([], [], num_classes=2)
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\), got 2"):
        classification_scores([0, 2], [0, 1], num_classes=2)


def _split(n: int, seed: int, *, noise: bool = False) -> LabelledTexts:
    """Texts of filler characters with one cue: 好 (class 1) or 坏 (class 0)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        y = rng.randrange(2)
        filler = "".join(rng.choice("的了是在我有他这") for _ in range(rng.randint(3, 9)))
        cue = "好" if y else "坏"
        at = rng.randint(0, len(filler))
        texts.append(filler[:at] + cue + filler[at:])
        labels.append(rng.randrange(2) if noise else y)
    return LabelledTexts(texts=tuple(texts), labels=tuple(labels), class_names=("neg", "pos"))


def test_baselines_learn_a_character_cue_and_report_their_choice() -> None:
    from rnnflow.text.bag_of_characters import LOGREG_CS, NB_ALPHAS, bag_of_characters_baselines

    results = bag_of_characters_baselines(_split(200, 0), _split(50, 1), _split(60, 2))
    assert [r.name for r in results] == ["naive_bayes", "logistic_regression"]
    for r in results:
        assert r.test.accuracy == 1.0 and r.test.macro_f1 == 1.0
    assert results[0].hyperparameter == f"alpha={NB_ALPHAS[0]}"  # all perfect: the first wins
    assert results[1].hyperparameter.startswith("C=")
    assert float(results[1].hyperparameter[2:]) in LOGREG_CS
    assert results[0].to_dict()["test"]["accuracy"] == 1.0


def test_baselines_cannot_learn_random_labels() -> None:
    from rnnflow.text.bag_of_characters import bag_of_characters_baselines

    results = bag_of_characters_baselines(_split(200, 0, noise=True), _split(50, 1), _split(400, 2))
    for r in results:
        assert r.test.accuracy < 0.7


def test_baselines_cut_texts_to_max_chars() -> None:
    """With every cue past the cut, the baselines see only filler: chance, not 1.0."""
    from rnnflow.text.bag_of_characters import bag_of_characters_baselines

    def late(split: LabelledTexts) -> LabelledTexts:
        return LabelledTexts(
            tuple("的" * 10 + t for t in split.texts), split.labels, split.class_names
        )

    full = bag_of_characters_baselines(
        late(_split(200, 0)), late(_split(50, 1)), late(_split(400, 2))
    )
    cut = bag_of_characters_baselines(
        late(_split(200, 0)), late(_split(50, 1)), late(_split(400, 2)), max_chars=10
    )
    assert all(r.test.accuracy == 1.0 for r in full)
    assert all(r.test.accuracy < 0.7 for r in cut)


def test_baselines_refuse_mismatched_classes_and_name_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rnnflow.text.bag_of_characters import bag_of_characters_baselines

    a = _split(10, 0)
    b = LabelledTexts(a.texts, a.labels, ("x", "y"))
    with pytest.raises(ValueError, match=r"bag_of_characters_baselines: the splits must share"):
        bag_of_characters_baselines(a, b, a)
    monkeypatch.setitem(sys.modules, "sklearn.naive_bayes", None)
    with pytest.raises(
        ImportError, match=r"need scikit-learn, .* pip install 'rnnflow\[sentiment\]'"
    ):
        bag_of_characters_baselines(a, a, a)
