"""Which rows go into each batch of one task's epoch.

Padding every sentence of a batch to its longest one wastes compute on pad tokens; sorting the
whole dataset by length removes that waste but makes batch composition and order predictable,
which hurts SGD. :func:`length_grouped_batches` takes the middle road of Hugging Face's
``group_by_length`` (``LengthGroupedSampler``): shuffle, sort only within large random buckets,
then shuffle the order of the batches.
"""

from __future__ import annotations

import numpy as np

from sentence_mtl.errors import InvalidInputError


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be an integer of at least 1, got {value!r}")


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle ``range(n)`` and cut it into batches; only the last batch may be smaller."""
    _check_positive("batch_size", batch_size)
    if n < 0:
        raise InvalidInputError(f"n must be at least 0, got {n}")
    order = rng.permutation(n)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket_batches: int = 50
) -> list[np.ndarray]:
    """Batches of row indices whose lengths are similar, in a random order.

    The indices are shuffled and cut into buckets of ``batch_size * bucket_batches`` rows; each
    bucket is sorted by length and cut into batches, and the batches of all buckets are
    shuffled. Every index appears exactly once. A larger ``bucket_batches`` means less padding
    and less randomness; ``bucket_batches=1`` is plain random batching.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("bucket_batches", bucket_batches)
    lengths = np.asarray(lengths)
    if lengths.ndim != 1:
        raise InvalidInputError(f"lengths must be a 1-D array of token counts, got shape {lengths.shape}")
    order = rng.permutation(len(lengths))
    bucket_size = batch_size * bucket_batches
    batches: list[np.ndarray] = []
    for start in range(0, len(order), bucket_size):
        bucket = order[start : start + bucket_size]
        bucket = bucket[np.argsort(lengths[bucket], kind="stable")]
        batches.extend(bucket[offset : offset + batch_size] for offset in range(0, len(bucket), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def length_sorted_batches(
    lengths: np.ndarray, batch_size: int, shard: tuple[int, int] = (0, 1)
) -> list[np.ndarray]:
    """Row indices longest first, cut into batches: the inference order, where padding is smallest.

    Inference needs no randomness, so a full sort leaves each batch padded to almost nothing; the
    caller writes each batch's output back to its rows, which restores the input order. ``shard``
    ``(rank, world_size)`` keeps every ``world_size``-th row of that order, so data-parallel ranks
    predict disjoint rows of similar length.
    """
    _check_positive("batch_size", batch_size)
    rank, world_size = shard
    order = np.argsort(-np.asarray(lengths), kind="stable")[rank::world_size]
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
