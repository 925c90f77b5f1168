"""How long a run trains and how often it looks at dev: a budget in optimiser steps, not in epochs.

How many updates a task needs depends on the task, not on how many passes over its rows: four
epochs of 1,200 rows at batch 32 are only 152 updates, four epochs of 50,000 rows are 6,250. So by
default a run takes :data:`DEFAULT_EPOCHS` epochs but never fewer
than ``min_steps`` updates, as work on fine-tuning BERT-sized models on small datasets recommends
(Mosbach et al. 2021, "On the Stability of Fine-tuning BERT"; Zhang et al. 2021, "Revisiting
Few-sample BERT Fine-tuning"), and early stopping on dev ends it once dev stops improving. An explicit
``epochs`` or ``max_steps`` is taken as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_EPOCHS = 4.0
# Dev is evaluated once an epoch, but at least MIN_EVALUATIONS and at most MAX_EVALUATIONS times a
# run: with 32 rows an epoch is one step, and patience counted in evaluations would then end a run
# a few steps into its warm-up. At most 20 evaluations, a patience of 5 spans a quarter of the run.
MIN_EVALUATIONS = 4
MAX_EVALUATIONS = 20


@dataclass(frozen=True)
class StepBudget:
    total_steps: int
    eval_every: int
    warmup_steps: int


def step_budget(
    batches_per_epoch: int,
    *,
    grad_accumulation: int = 1,
    epochs: float | None = None,
    max_steps: int | None = None,
    min_steps: int = 1,
    eval_every: int | None = None,
    warmup_ratio: float = 0.0,
) -> StepBudget:
    """Optimiser steps for a run, the dev evaluation interval and the warm-up, all in steps.

    ``max_steps`` wins; else ``epochs`` as given; else :data:`DEFAULT_EPOCHS` raised to
    ``min_steps``. Dev is evaluated once an epoch, more often when the run has fewer than
    :data:`MIN_EVALUATIONS` epochs and less often when it has more than :data:`MAX_EVALUATIONS`,
    unless ``eval_every`` says otherwise.
    """
    updates_per_epoch = max(1, batches_per_epoch // grad_accumulation)
    if max_steps is not None:
        total = max_steps
    elif epochs is not None:
        total = max(1, math.ceil(epochs * batches_per_epoch / grad_accumulation))
    else:
        total = max(math.ceil(DEFAULT_EPOCHS * batches_per_epoch / grad_accumulation), min_steps)
    interval = eval_every or min(
        max(updates_per_epoch, math.ceil(total / MAX_EVALUATIONS)), math.ceil(total / MIN_EVALUATIONS)
    )
    return StepBudget(total, max(1, interval), int(warmup_ratio * total))
