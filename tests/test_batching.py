"""Batching: every row once per epoch, and length grouping that cuts padding yet stays random."""

from __future__ import annotations

import numpy as np
import pytest

from sentence_mtl.batching import length_grouped_batches, length_sorted_batches, random_batches
from sentence_mtl.errors import InvalidInputError


def padded_tokens(batches: list[np.ndarray], lengths: np.ndarray) -> int:
    """Tokens a batch costs once padded to its longest row."""
    return sum(len(batch) * int(lengths[batch].max()) for batch in batches)


def skewed_lengths(n: int = 4000) -> np.ndarray:
    """Mostly short sentences with a long tail, like real corpora."""
    rng = np.random.default_rng(0)
    return np.concatenate(
        [rng.integers(5, 20, size=int(n * 0.9)), rng.integers(100, 250, size=n - int(n * 0.9))]
    )


def assert_partition(batches: list[np.ndarray], n: int, batch_size: int) -> None:
    flat = np.concatenate(batches)
    assert np.array_equal(np.sort(flat), np.arange(n))
    assert all(len(batch) <= batch_size for batch in batches)
    assert sum(len(batch) < batch_size for batch in batches) <= 1


def test_random_batches_cover_every_index_once() -> None:
    batches = random_batches(103, 10, np.random.default_rng(0))
    assert len(batches) == 11
    assert_partition(batches, 103, 10)
    assert not np.array_equal(np.concatenate(batches), np.arange(103))


@pytest.mark.parametrize(
    ("n", "batch_size", "bucket_batches"), [(1037, 16, 50), (1037, 16, 1), (5, 8, 3), (64, 1, 4)]
)
def test_length_grouped_batches_cover_every_index_once(n: int, batch_size: int, bucket_batches: int) -> None:
    lengths = np.random.default_rng(1).integers(1, 300, size=n)
    batches = length_grouped_batches(lengths, batch_size, np.random.default_rng(0), bucket_batches)
    assert_partition(batches, n, batch_size)


def test_length_grouping_reduces_padding_against_random_batches() -> None:
    lengths = skewed_lengths()
    grouped = length_grouped_batches(lengths, 32, np.random.default_rng(0))
    shuffled = random_batches(len(lengths), 32, np.random.default_rng(0))
    real = int(lengths.sum())
    # Random batches almost always catch a long row, so most of their cost is padding.
    assert padded_tokens(shuffled, lengths) > 3 * real
    assert padded_tokens(grouped, lengths) < 1.3 * real


def test_length_grouped_batches_are_in_random_order_and_seeded() -> None:
    lengths = skewed_lengths()
    batches = length_grouped_batches(lengths, 32, np.random.default_rng(0))
    longest = [int(lengths[batch].max()) for batch in batches]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)
    again = length_grouped_batches(lengths, 32, np.random.default_rng(0))
    other = length_grouped_batches(lengths, 32, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other, strict=False))


def test_each_batch_holds_neighbours_in_length_within_its_bucket() -> None:
    lengths = np.arange(200)[::-1].copy()
    # One bucket holds everything, so batches are consecutive runs of the sorted lengths.
    batches = length_grouped_batches(lengths, 10, np.random.default_rng(0), bucket_batches=20)
    for batch in batches:
        assert int(lengths[batch].max() - lengths[batch].min()) == 9


def test_empty_input_gives_no_batches() -> None:
    assert length_grouped_batches(np.array([], dtype=int), 4, np.random.default_rng(0)) == []
    assert random_batches(0, 4, np.random.default_rng(0)) == []


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_batch_size_must_be_a_positive_integer(batch_size: object) -> None:
    with pytest.raises(InvalidInputError, match="batch_size must be an integer of at least 1"):
        length_grouped_batches(np.ones(4), batch_size, np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="batch_size must be an integer of at least 1"):
        random_batches(4, batch_size, np.random.default_rng(0))  # type: ignore[arg-type]


def test_other_arguments_are_validated() -> None:
    with pytest.raises(InvalidInputError, match="bucket_batches must be an integer of at least 1"):
        length_grouped_batches(np.ones(4), 2, np.random.default_rng(0), bucket_batches=0)
    with pytest.raises(InvalidInputError, match="lengths must be a 1-D array"):
        length_grouped_batches(np.ones((2, 2)), 2, np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="n must be at least 0"):
        random_batches(-1, 2, np.random.default_rng(0))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_length_sorted_batches_go_longest_first_and_shards_split_the_rows(world_size: int) -> None:
    lengths = skewed_lengths(203)
    shards = [length_sorted_batches(lengths, 16, (rank, world_size)) for rank in range(world_size)]
    for batches in shards:
        order = np.concatenate(batches)
        assert np.all(np.diff(lengths[order]) <= 0)  # longest first: each batch pads to its first row
        assert all(len(batch) <= 16 for batch in batches)
    everything = np.concatenate([np.concatenate(batches) for batches in shards])
    assert np.array_equal(np.sort(everything), np.arange(203))  # disjoint shards, every row once


def test_length_sorted_batches_pad_less_than_grouped_ones() -> None:
    lengths = skewed_lengths()
    grouped = length_grouped_batches(lengths, 32, np.random.default_rng(0))
    assert padded_tokens(length_sorted_batches(lengths, 32), lengths) <= padded_tokens(grouped, lengths)
