"""Zero-shot classification by nearest label description."""

from __future__ import annotations

import numpy as np
import pytest

from sentence_mtl.analysis.zero_shot import ZeroShotClassifier
from sentence_mtl.errors import InvalidInputError


def test_scores_are_cosines_and_predictions_their_argmax(packaged_encoder) -> None:
    classifier = ZeroShotClassifier(
        packaged_encoder,
        ["food", "sports"],
        {"food": "a sentence about cooking and eating", "sports": "a sentence about a sports match"},
    )
    texts = ["The striker scored in the last minute.", "Simmer the tomato sauce for an hour."]
    scores = classifier.scores(texts)
    text_vectors = packaged_encoder.encode(texts)
    label_vectors = packaged_encoder.encode(classifier.descriptions)
    expected = (
        text_vectors
        @ label_vectors.T
        / np.outer(np.linalg.norm(text_vectors, axis=1), np.linalg.norm(label_vectors, axis=1))
    )
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert classifier.predict(texts).tolist() == [1, 0]


def test_label_names_are_the_default_descriptions(packaged_encoder) -> None:
    classifier = ZeroShotClassifier(packaged_encoder, ["negative", "positive"])
    assert classifier.descriptions == ["negative", "positive"]
    assert classifier.predict(
        ["I hated it, a terrible waste of time.", "Wonderful, I loved it!"]
    ).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("labels", "descriptions", "message"),
    [(["only"], None, "two or more"), (["a", "b"], {"c": "?"}, "unknown labels")],
)
def test_bad_label_sets_are_rejected(packaged_encoder, labels, descriptions, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ZeroShotClassifier(packaged_encoder, labels, descriptions)
