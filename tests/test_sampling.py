"""Task samplers: the empirical mix matches each formula, and a resumed run continues the same sequence."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from sentence_mtl.errors import CheckpointError, InvalidInputError
from sentence_mtl.training.sampling import (
    SAMPLING_STRATEGIES,
    ProportionalSampler,
    RoundRobinSampler,
    TaskSampler,
    TemperatureSampler,
    make_sampler,
)

SIZES = {"topic": 900, "sentiment": 100, "ner": 400}
DRAWS = 20_000


def empirical_mix(sampler: TaskSampler, draws: int = DRAWS) -> dict[str, float]:
    counts = Counter(sampler.next_task() for _ in range(draws))
    return {task: counts[task] / draws for task in sampler.tasks}


def assert_mix(sampler: TaskSampler, expected: dict[str, float], tolerance: float = 0.015) -> None:
    assert sampler.probabilities() == pytest.approx(expected, abs=1e-12)
    assert empirical_mix(sampler) == pytest.approx(expected, abs=tolerance)


def test_proportional_mix_follows_dataset_sizes() -> None:
    assert_mix(
        ProportionalSampler(SIZES, seed=0),
        {"topic": 0.64285714285714, "sentiment": 0.0714285714285714, "ner": 0.2857142857142857},
    )


def test_temperature_one_is_proportional() -> None:
    assert_mix(TemperatureSampler(SIZES, seed=1, temperature=1.0), ProportionalSampler(SIZES).probabilities())


def test_temperature_two_follows_square_root_of_sizes() -> None:
    # sqrt(900) : sqrt(100) : sqrt(400) = 30 : 10 : 20
    assert_mix(
        TemperatureSampler(SIZES, seed=2, temperature=2.0), {"topic": 0.5, "sentiment": 1 / 6, "ner": 1 / 3}
    )


def test_large_temperature_is_nearly_uniform() -> None:
    sampler = TemperatureSampler(SIZES, seed=3, temperature=1e6)
    assert sampler.probabilities() == pytest.approx(dict.fromkeys(SIZES, 1 / 3), abs=1e-5)
    assert empirical_mix(sampler) == pytest.approx(dict.fromkeys(SIZES, 1 / 3), abs=0.015)


def test_temperature_handles_huge_sizes_without_overflow() -> None:
    probabilities = TemperatureSampler({"a": 10**12, "b": 1}, temperature=0.01).probabilities()
    assert probabilities == {"a": 1.0, "b": 0.0}


def test_round_robin_cycles_in_sorted_order_exactly() -> None:
    sampler = RoundRobinSampler(SIZES, seed=0)
    assert [sampler.next_task() for _ in range(6)] == ["ner", "sentiment", "topic"] * 2
    assert empirical_mix(sampler, 19_998) == dict.fromkeys(SIZES, 1 / 3)
    assert sampler.counts == dict.fromkeys(SIZES, (6 + 19_998) // 3)


def test_sequence_is_seeded_and_independent_of_dict_order() -> None:
    first = ProportionalSampler(SIZES, seed=5)
    reordered = ProportionalSampler(dict(reversed(SIZES.items())), seed=5)
    other_seed = ProportionalSampler(SIZES, seed=6)
    a = [first.next_task() for _ in range(200)]
    assert a == [reordered.next_task() for _ in range(200)]
    assert a != [other_seed.next_task() for _ in range(200)]


@pytest.mark.parametrize("name", SAMPLING_STRATEGIES)
def test_state_dict_round_trips_through_json_and_continues_the_sequence(name: str) -> None:
    sampler = make_sampler(name, SIZES, seed=11, temperature=3.0)
    for _ in range(137):
        sampler.next_task()
    state = json.loads(json.dumps(sampler.state_dict()))
    expected = [sampler.next_task() for _ in range(500)]

    resumed = make_sampler(name, SIZES, seed=999, temperature=3.0)
    resumed.load_state_dict(state)
    assert resumed.draws == 137 and sum(resumed.counts.values()) == 137
    assert [resumed.next_task() for _ in range(500)] == expected
    assert resumed.counts == sampler.counts


def test_loading_state_from_another_configuration_fails() -> None:
    state = TemperatureSampler(SIZES, temperature=2.0).state_dict()
    with pytest.raises(CheckpointError, match="resume with the same task data and sampling options"):
        TemperatureSampler(SIZES, temperature=5.0).load_state_dict(state)
    with pytest.raises(CheckpointError, match="'strategy': 'proportional'"):
        ProportionalSampler(SIZES).load_state_dict(state)
    with pytest.raises(CheckpointError):
        TemperatureSampler({**SIZES, "topic": 901}, temperature=2.0).load_state_dict(state)


def test_make_sampler_builds_each_strategy() -> None:
    assert isinstance(make_sampler("proportional", SIZES), ProportionalSampler)
    assert isinstance(make_sampler("round_robin", SIZES), RoundRobinSampler)
    sampler = make_sampler("temperature", SIZES, temperature=4.0)
    assert isinstance(sampler, TemperatureSampler) and sampler.temperature == 4.0


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(
        InvalidInputError, match="Valid sampling strategies are: proportional, temperature, round_robin"
    ):
        make_sampler("uniform", SIZES)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan])
def test_temperature_must_be_positive(temperature: float) -> None:
    with pytest.raises(InvalidInputError, match="temperature must be a number above 0"):
        make_sampler("temperature", SIZES, temperature=temperature)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({}, "sizes is empty"),
        ({"a": 3, "b": 0}, "task 'b' has size 0"),
        ({"a": -2}, "task 'a' has size -2"),
        ({"a": 2.5}, "task 'a' has size 2.5"),
    ],
)
def test_sizes_are_validated(sizes: dict[str, int], message: str) -> None:
    for name in SAMPLING_STRATEGIES:
        with pytest.raises(InvalidInputError, match=message):
            make_sampler(name, sizes)
