"""Loss weighting: how the per-task losses combine into the loss that is backpropagated.

Every batch belongs to one task, so a weighting maps ``(task, loss)`` to a weighted loss rather
than combining a vector of losses. One small class per method, as in LibMTL's ``weighting/``.
A weighting with learned parameters (:class:`UncertaintyWeighting`) is an ``nn.Module`` whose
parameters the training loop must hand to the optimizer (without weight decay).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod

import torch
from torch import nn

from sentence_mtl.errors import InvalidInputError

LOSS_WEIGHTINGS = ("equal", "static", "uncertainty")


def _check_tasks(tasks: list[str]) -> list[str]:
    if not tasks:
        raise InvalidInputError("a loss weighting needs at least one task; tasks is empty")
    if len(set(tasks)) != len(tasks):
        raise InvalidInputError(f"task names must be unique, got {list(tasks)}")
    return list(tasks)


class LossWeighting(nn.Module, ABC):
    """Base class: ``forward(task, loss)`` returns the loss to backpropagate for a batch of ``task``."""

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = _check_tasks(tasks)

    def _check_task(self, task: str) -> None:
        if task not in self.tasks:
            raise InvalidInputError(
                f"unknown task {task!r}; this loss weighting knows {', '.join(self.tasks)}"
            )

    @abstractmethod
    def weights(self) -> dict[str, float]:
        """The current multiplier of each task's loss, for logging."""

    @abstractmethod
    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        """The weighted loss of one batch of ``task``."""


class EqualWeighting(LossWeighting):
    """Every task's loss counts once; the task sampler alone decides how much each task trains."""

    def weights(self) -> dict[str, float]:
        return dict.fromkeys(self.tasks, 1.0)

    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        self._check_task(task)
        return loss


def _check_static_weights(weights: dict[str, float], tasks: list[str]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(tasks))
    if unknown:
        raise InvalidInputError(
            f"static weights name unknown task(s) {', '.join(unknown)}; the tasks are {', '.join(tasks)}"
        )
    for task, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise InvalidInputError(f"the weight of task {task!r} must be a finite number, got {weight!r}")
        if weight < 0:
            raise InvalidInputError(f"the weight of task {task!r} is {weight}; weights must be 0 or more")
    resolved = {task: float(weights.get(task, 1.0)) for task in tasks}
    if not any(resolved.values()):
        raise InvalidInputError(
            "every static weight is 0, so nothing would train; give some task a weight above 0"
        )
    return resolved


class StaticWeighting(LossWeighting):
    """Fixed, hand-chosen multipliers. Tasks left out of ``weights`` keep weight 1.0.

    Defaulting to 1.0 lets ``sentiment=0.5`` mean "half as much as the others" without listing
    every task; unknown names, negative and non-finite weights are errors, and so is all zeros.
    """

    def __init__(self, tasks: list[str], weights: dict[str, float]) -> None:
        super().__init__(tasks)
        self._weights = _check_static_weights(weights, self.tasks)

    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        self._check_task(task)
        return self._weights[task] * loss


class UncertaintyWeighting(LossWeighting):
    """Learned homoscedastic-uncertainty weights: ``exp(-s) * L + s / 2`` with ``s = log σ²`` per task.

    Kendall, Gal & Cipolla 2018, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
    Geometry and Semantics" (CVPR). For a softmax classifier whose logits are scaled by ``1/σ²``
    the paper derives ``L/σ² + log σ`` (its eq. 10 approximation); with ``s = log σ²`` this is
    ``exp(-s) * L + s/2``, the form used here because both our tasks are classifications (the
    regression form would halve the first term). Learning ``s`` rather than ``σ`` keeps the
    weight positive and the optimisation stable. For a constant loss ``L`` the minimum is at
    ``s = log(2L)``, so a task with a larger (noisier) loss gets a smaller weight ``exp(-s) = 1/(2L)``.
    ``s`` starts at 0 (weight 1).
    """

    def __init__(self, tasks: list[str]) -> None:
        super().__init__(tasks)
        self.log_variance = nn.ParameterDict({task: nn.Parameter(torch.zeros(())) for task in self.tasks})

    def weights(self) -> dict[str, float]:
        return {task: math.exp(-float(self.log_variance[task].detach())) for task in self.tasks}

    def forward(self, task: str, loss: torch.Tensor) -> torch.Tensor:
        self._check_task(task)
        s = self.log_variance[task]
        return torch.exp(-s) * loss + 0.5 * s


def make_weighting(
    name: str, tasks: list[str], static_weights: dict[str, float] | None = None
) -> LossWeighting:
    """The weighting called ``name`` (see :data:`LOSS_WEIGHTINGS`); ``static_weights`` is for "static"."""
    if name not in LOSS_WEIGHTINGS:
        raise InvalidInputError(
            f"unknown loss weighting {name!r}. Valid loss weightings are: {', '.join(LOSS_WEIGHTINGS)}"
        )
    if name == "static":
        if static_weights is None:
            raise InvalidInputError(
                "static loss weighting needs weights, e.g. topic=1,sentiment=0.5; pass static_weights"
            )
        return StaticWeighting(tasks, static_weights)
    if static_weights is not None:
        raise InvalidInputError(
            f"static weights are only used by the 'static' loss weighting, not {name!r}; drop them or "
            "choose 'static'"
        )
    return EqualWeighting(tasks) if name == "equal" else UncertaintyWeighting(tasks)


_ITEM = re.compile(r"^\s*([^=\s]+)\s*=\s*([^=\s]+)\s*$")


def parse_static_weights(text: str, tasks: list[str]) -> dict[str, float]:
    """Parse the command-line form ``topic=1,sentiment=0.5`` into a weight for every task.

    Tasks not named get weight 1.0 (see :class:`StaticWeighting`), so the result, logged with
    the run's config, shows every weight that was used.
    """
    example = ", e.g. " + ",".join(f"{task}=1" for task in tasks)
    if not text.strip():
        raise InvalidInputError(f"static weights are empty; write TASK=WEIGHT pairs{example}")
    weights: dict[str, float] = {}
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise InvalidInputError(
                f"cannot read {item.strip()!r} in static weights {text!r}; write TASK=WEIGHT pairs "
                f"separated by commas{example}"
            )
        task, value = match.groups()
        if task in weights:
            raise InvalidInputError(f"task {task!r} appears twice in static weights {text!r}; give it once")
        try:
            weights[task] = float(value)
        except ValueError:
            raise InvalidInputError(
                f"the weight of task {task!r} is {value!r}, which is not a number; write e.g. {task}=0.5"
            ) from None
    return _check_static_weights(weights, _check_tasks(tasks))
