"""The step budget: a floor on updates for small data, explicit epochs and steps taken as given."""

from __future__ import annotations

from sentence_mtl.training.budget import DEFAULT_EPOCHS, step_budget


def test_small_data_gets_at_least_the_floor_of_updates() -> None:
    budget = step_budget(50, min_steps=1000, warmup_ratio=0.1)  # 1,600 rows at batch 32
    assert budget.total_steps == 1000 and budget.warmup_steps == 100
    assert budget.eval_every == 50  # once an epoch


def test_tiny_data_is_evaluated_at_most_twenty_times() -> None:
    # 32 rows: an epoch is one step, so once an epoch would be a thousand evaluations, and a patience
    # of 5 evaluations would stop the run inside its warm-up.
    for batches in (1, 38):
        budget = step_budget(batches, min_steps=1000, warmup_ratio=0.1)
        assert budget.total_steps == 1000 and budget.eval_every == 50


def test_large_data_keeps_the_default_epochs() -> None:
    budget = step_budget(421, min_steps=1000)
    assert budget.total_steps == int(DEFAULT_EPOCHS * 421) and budget.eval_every == 421


def test_explicit_epochs_and_steps_override_the_floor() -> None:
    assert step_budget(38, epochs=2, min_steps=1000).total_steps == 76
    assert step_budget(38, epochs=2, max_steps=5, min_steps=1000).total_steps == 5
    assert step_budget(38, eval_every=7, min_steps=1000).eval_every == 7


def test_short_runs_are_evaluated_several_times() -> None:
    budget = step_budget(100, epochs=1)
    assert budget.total_steps == 100 and budget.eval_every == 25


def test_accumulation_counts_optimiser_steps() -> None:
    budget = step_budget(40, grad_accumulation=4, min_steps=1)
    assert budget.total_steps == 40 and budget.eval_every == 10
