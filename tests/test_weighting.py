"""Loss weighting: fixed multipliers, learned uncertainty weights and the command-line form."""

from __future__ import annotations

import math

import pytest
import torch

from sentence_mtl.errors import InvalidInputError
from sentence_mtl.training.weighting import (
    LOSS_WEIGHTINGS,
    EqualWeighting,
    StaticWeighting,
    UncertaintyWeighting,
    make_weighting,
    parse_static_weights,
)

TASKS = ["topic", "sentiment"]


def test_equal_weighting_returns_the_loss_unchanged() -> None:
    weighting = EqualWeighting(TASKS)
    loss = torch.tensor(2.5, requires_grad=True)
    assert weighting("topic", loss) is loss
    assert weighting.weights() == {"topic": 1.0, "sentiment": 1.0}
    assert list(weighting.parameters()) == []


def test_static_weighting_multiplies_and_defaults_missing_tasks_to_one() -> None:
    weighting = StaticWeighting(TASKS, {"sentiment": 0.5})
    assert weighting.weights() == {"topic": 1.0, "sentiment": 0.5}
    assert weighting("sentiment", torch.tensor(3.0)).item() == 1.5
    assert weighting("topic", torch.tensor(3.0)).item() == 3.0


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"ner": 1.0}, "unknown task\\(s\\) ner; the tasks are topic, sentiment"),
        ({"topic": -0.1}, "weights must be 0 or more"),
        ({"topic": math.nan}, "must be a finite number"),
        ({"topic": math.inf}, "must be a finite number"),
        ({"topic": "1"}, "must be a finite number"),
        ({"topic": 0.0, "sentiment": 0}, "every static weight is 0"),
    ],
)
def test_static_weights_are_validated(weights: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        StaticWeighting(TASKS, weights)


def test_unknown_task_in_forward_names_the_known_tasks() -> None:
    for weighting in (EqualWeighting(TASKS), StaticWeighting(TASKS, {}), UncertaintyWeighting(TASKS)):
        with pytest.raises(
            InvalidInputError, match="unknown task 'ner'; this loss weighting knows topic, sentiment"
        ):
            weighting("ner", torch.tensor(1.0))


@pytest.mark.parametrize(("tasks", "message"), [([], "tasks is empty"), (["a", "a"], "must be unique")])
def test_task_list_must_be_non_empty_and_unique(tasks: list[str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        EqualWeighting(tasks)


# ----------------------------------------------------------------------------- uncertainty weighting


def test_uncertainty_weighting_starts_at_weight_one_with_one_parameter_per_task() -> None:
    weighting = UncertaintyWeighting(TASKS)
    names = sorted(name for name, _ in weighting.named_parameters())
    assert names == ["log_variance.sentiment", "log_variance.topic"]
    assert weighting.weights() == {"topic": 1.0, "sentiment": 1.0}
    assert weighting("topic", torch.tensor(2.0)).item() == 2.0


def test_uncertainty_loss_is_exp_minus_s_times_loss_plus_half_s() -> None:
    weighting = UncertaintyWeighting(TASKS)
    with torch.no_grad():
        weighting.log_variance["topic"].fill_(math.log(4.0))
    loss = torch.tensor(2.0, requires_grad=True)
    total = weighting("topic", loss)
    assert total.item() == pytest.approx(2.0 / 4.0 + 0.5 * math.log(4.0))
    total.backward()
    assert loss.grad.item() == pytest.approx(0.25)  # the task loss is scaled by exp(-s)
    assert weighting.log_variance["topic"].grad.item() == pytest.approx(
        -0.5 + 0.5
    )  # at the optimum s = log(2L)
    assert weighting.weights()["topic"] == pytest.approx(0.25)


@pytest.mark.parametrize("fixed_loss", [0.2, 1.0, 3.0])
def test_learned_log_variance_reaches_the_analytic_optimum(fixed_loss: float) -> None:
    weighting = UncertaintyWeighting(["task"])
    optimizer = torch.optim.Adam(weighting.parameters(), lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        weighting("task", torch.tensor(fixed_loss)).backward()
        optimizer.step()
    assert weighting.log_variance["task"].item() == pytest.approx(math.log(2 * fixed_loss), abs=0.01)


def test_noisy_task_is_weighted_down_against_a_clean_task() -> None:
    torch.manual_seed(0)
    weighting = UncertaintyWeighting(["clean", "noisy"])
    optimizer = torch.optim.SGD(weighting.parameters(), lr=0.05)
    for step in range(3000):
        optimizer.zero_grad()
        task = ("clean", "noisy")[step % 2]
        # The noisy task's loss stays large (irreducible label noise); the clean task's is small.
        loss = torch.tensor(0.1) if task == "clean" else 4.0 + torch.rand(()) * 2.0
        weighting(task, loss).backward()
        optimizer.step()
    weights = weighting.weights()
    assert weights["noisy"] < weights["clean"] / 10
    assert weights["clean"] == pytest.approx(1 / (2 * 0.1), rel=0.05)
    assert weights["noisy"] == pytest.approx(1 / (2 * 5.0), rel=0.1)


# ----------------------------------------------------------------------------- construction by name


def test_make_weighting_builds_each_method() -> None:
    assert isinstance(make_weighting("equal", TASKS), EqualWeighting)
    assert isinstance(make_weighting("uncertainty", TASKS), UncertaintyWeighting)
    static = make_weighting("static", TASKS, {"topic": 2.0})
    assert isinstance(static, StaticWeighting) and static.weights() == {"topic": 2.0, "sentiment": 1.0}
    assert LOSS_WEIGHTINGS == ("equal", "static", "uncertainty")


def test_make_weighting_errors() -> None:
    with pytest.raises(InvalidInputError, match="Valid loss weightings are: equal, static, uncertainty"):
        make_weighting("gradnorm", TASKS)
    with pytest.raises(InvalidInputError, match=r"static loss weighting needs weights, e\.g\. topic=1"):
        make_weighting("static", TASKS)
    with pytest.raises(InvalidInputError, match="only used by the 'static' loss weighting, not 'equal'"):
        make_weighting("equal", TASKS, {"topic": 2.0})


def test_parse_static_weights_reads_pairs_and_fills_missing_tasks() -> None:
    assert parse_static_weights("topic=1,sentiment=0.5", TASKS) == {"topic": 1.0, "sentiment": 0.5}
    assert parse_static_weights(" sentiment = 2e-1 ", TASKS) == {"topic": 1.0, "sentiment": 0.2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "static weights are empty; write TASK=WEIGHT pairs, e.g. topic=1,sentiment=1"),
        ("topic", "cannot read 'topic'"),
        ("topic=1,,sentiment=2", "cannot read ''"),
        ("topic=1;sentiment=2", "cannot read 'topic=1;sentiment=2'"),
        ("topic=abc", "the weight of task 'topic' is 'abc', which is not a number"),
        ("topic=-1", "weights must be 0 or more"),
        ("topic=nan", "must be a finite number"),
        ("ner=1", "unknown task\\(s\\) ner"),
        ("topic=1,topic=2", "task 'topic' appears twice"),
    ],
)
def test_parse_static_weights_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_static_weights(text, TASKS)
