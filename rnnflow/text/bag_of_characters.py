"""Bag-of-characters baselines for text classification: multinomial Naive Bayes and logistic
regression on character counts (scikit-learn, the optional extra ``sentiment``).

Each text becomes the vector of its character counts (``CountVectorizer(analyzer="char",
lowercase=False)``, vocabulary from the training split). Each model's one hyperparameter is
chosen from a fixed grid by validation accuracy (ties: the first), refitted on nothing else,
then scored once on the test split: nothing is tuned on the test set.

    naive_bayes          MultinomialNB(alpha)            alpha in NB_ALPHAS (Laplace/Lidstone)
    logistic_regression  LogisticRegression(C, lbfgs)    C in LOGREG_CS (inverse L2 strength)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rnnflow.text.classification_scores import ClassificationScores, classification_scores
from rnnflow.text.labelled_text import LabelledTexts

__all__ = ["LOGREG_CS", "NB_ALPHAS", "BaselineResult", "bag_of_characters_baselines"]

NB_ALPHAS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
LOGREG_CS: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class BaselineResult:
    """One baseline: its chosen hyperparameter and its validation and test scores."""

    name: str
    hyperparameter: str
    val: ClassificationScores
    test: ClassificationScores

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "hyperparameter": self.hyperparameter,
            "val": self.val.to_dict(),
            "test": self.test.to_dict(),
        }


def bag_of_characters_baselines(
    train: LabelledTexts,
    val: LabelledTexts,
    test: LabelledTexts,
    *,
    max_chars: int | None = None,
) -> list[BaselineResult]:
    """Naive Bayes and logistic regression, trained on ``train``, chosen on ``val``, scored on
    ``test``; each text cut to its first ``max_chars`` characters (as the RNN reads it).

    Raises ``ImportError`` naming the extra when scikit-learn is missing, ``ValueError`` when
    the splits' classes differ or a split is empty.
    """
    owner = "bag_of_characters_baselines"
    try:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.naive_bayes import MultinomialNB
    except ImportError as exc:
        raise ImportError(
            f"{owner}: the baselines need scikit-learn, which is not installed; install the "
            "optional extra: pip install 'rnnflow[sentiment]'"
        ) from exc
    if not (train.class_names == val.class_names == test.class_names):
        raise ValueError(
            f"{owner}: the splits must share their classes, got {train.class_names}, "
            f"{val.class_names}, {test.class_names}"
        )
    for name, split in (("train", train), ("val", val), ("test", test)):
        if len(split) == 0:
            raise ValueError(f"{owner}: the {name} split is empty")
    num_classes = len(train.class_names)

    def cut(texts: Sequence[str]) -> list[str]:
        return [t[:max_chars] for t in texts] if max_chars else list(texts)

    vectorizer = CountVectorizer(analyzer="char", lowercase=False)
    x_train = vectorizer.fit_transform(cut(train.texts))  # [N, characters] sparse counts
    x_val = vectorizer.transform(cut(val.texts))
    x_test = vectorizer.transform(cut(test.texts))
    candidates = (
        (
            "naive_bayes",
            [(f"alpha={a}", MultinomialNB(alpha=a)) for a in NB_ALPHAS],
        ),
        (
            "logistic_regression",
            [(f"C={c}", LogisticRegression(C=c, max_iter=5000)) for c in LOGREG_CS],
        ),
    )
    results = []
    for name, grid in candidates:
        best = None
        for label, model in grid:
            model.fit(x_train, list(train.labels))
            scores = classification_scores(
                val.labels, model.predict(x_val).tolist(), num_classes=num_classes
            )
            if best is None or scores.accuracy > best[1].accuracy:
                best = (label, scores, model)
        assert best is not None  # the grids are not empty
        label, val_scores, model = best
        test_scores = classification_scores(
            test.labels, model.predict(x_test).tolist(), num_classes=num_classes
        )
        results.append(BaselineResult(name, label, val_scores, test_scores))
    return results
