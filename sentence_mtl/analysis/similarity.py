"""Similarity helpers for Task 1: cosine matrices, nearest neighbours and STS-B style scoring."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from sentence_mtl.encoder.sentence_encoder import SentenceEncoder
from sentence_mtl.errors import DataError

logger = logging.getLogger(__name__)
STS_COLUMNS = ("sentence1", "sentence2", "score")


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm (a zero row stays zero), so dot products are cosines."""
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


def min_cosine(first: np.ndarray, second: np.ndarray) -> float:
    """The lowest row-by-row cosine of two sets of vectors: how far one runtime strays from another."""
    return float((unit_rows(first) * unit_rows(second)).sum(axis=1).min())


def cosine_matrix(embeddings: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity (works whether or not the vectors are normalised)."""
    unit = unit_rows(embeddings)
    return unit @ unit.T


def nearest_neighbours(similarity: np.ndarray) -> list[int]:
    """For each row, the index of the most similar other row (itself excluded)."""
    masked = similarity.copy()
    np.fill_diagonal(masked, -np.inf)
    return [int(index) for index in masked.argmax(axis=1)]


def read_sts_pairs(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """Read an STS-B style TSV: a header with ``sentence1``, ``sentence2``, ``score``; no quoting."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"STS file {path} does not exist; pass a TSV with columns {', '.join(STS_COLUMNS)}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not valid UTF-8; re-save the file as UTF-8") from error
    if not lines:
        raise DataError(f"{path} is empty; it needs a header line and sentence pairs")
    header = lines[0].split("\t")
    missing = [column for column in STS_COLUMNS if column not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header has {', '.join(header)}")
    where = [header.index(column) for column in STS_COLUMNS]
    first, second, scores = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(f"{path}, line {number}: {len(fields)} fields, the header has {len(header)}")
        try:
            score = float(fields[where[2]])
        except ValueError as error:
            raise DataError(f"{path}, line {number}: score {fields[where[2]]!r} is not a number") from error
        first.append(fields[where[0]])
        second.append(fields[where[1]])
        scores.append(score)
    if not scores:
        raise DataError(f"{path} has a header but no sentence pairs")
    return first, second, np.asarray(scores, dtype=np.float64)


def sts_spearman(
    encoder: SentenceEncoder,
    first: list[str],
    second: list[str],
    scores: np.ndarray,
    batch_size: int = 64,
    precision: str = "fp32",
    backend: str = "torch",
    quantize: str | None = None,
) -> float:
    """Spearman correlation ×100 between cosine similarity and gold scores (the STS-B metric)."""

    def embed(texts: list[str]) -> np.ndarray:
        return encoder.encode(
            texts, batch_size=batch_size, precision=precision, backend=backend, quantize=quantize
        )

    return spearman_of_embeddings(embed, first, second, scores)


def spearman_of_embeddings(
    embed: Callable[[list[str]], np.ndarray], first: list[str], second: list[str], scores: np.ndarray
) -> float:
    """The STS metric for any embedding function (another library's model too); each text embedded once."""
    unique = sorted(set(first) | set(second))
    position = {sentence: index for index, sentence in enumerate(unique)}
    unit = unit_rows(embed(unique))
    left = unit[[position[sentence] for sentence in first]]
    right = unit[[position[sentence] for sentence in second]]
    cosine = (left * right).sum(axis=1)
    return float(spearmanr(cosine, scores).statistic * 100)
