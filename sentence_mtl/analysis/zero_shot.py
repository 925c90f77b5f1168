"""Zero-shot classification with a frozen encoder: the nearest label description by cosine similarity.

This is what a fully frozen network can still do (Task 3, scenario 1): nothing is trained, the
label names or short descriptions are embedded once, and each sentence takes the label whose
embedding is closest. It is the classic embedding-similarity baseline (e.g. Yin et al. 2019 frame
zero-shot text classification this way; Reimers & Gurevych 2019 use cosine on SBERT embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sentence_mtl.analysis.similarity import unit_rows
from sentence_mtl.encoder.sentence_encoder import SentenceEncoder
from sentence_mtl.errors import InvalidInputError


class ZeroShotClassifier:
    """Classify by cosine similarity to one description per label (the label name by default)."""

    def __init__(
        self, encoder: SentenceEncoder, labels: Sequence[str], descriptions: dict[str, str] | None = None
    ) -> None:
        if len(labels) < 2:
            raise InvalidInputError(f"zero-shot classification needs two or more labels, got {list(labels)}")
        descriptions = descriptions or {}
        unknown = sorted(set(descriptions) - set(labels))
        if unknown:
            raise InvalidInputError(
                f"descriptions for unknown labels {unknown}; the labels are {list(labels)}"
            )
        self.encoder = encoder
        self.labels = list(labels)
        self.descriptions = [descriptions.get(label, label) for label in self.labels]
        self.label_vectors = unit_rows(encoder.encode(self.descriptions))

    def scores(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Cosine similarity of each text to each label description, ``(n_texts, n_labels)``."""
        return unit_rows(self.encoder.encode(texts, batch_size=batch_size)) @ self.label_vectors.T

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Index of the most similar label for each text."""
        return self.scores(texts, batch_size).argmax(axis=1)
