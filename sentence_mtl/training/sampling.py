"""Task samplers: which task the next batch comes from.

Every batch holds one task's rows (as in MT-DNN and sentence-transformers' multi-dataset
training), so balancing the tasks is the choice of a sequence of task names. A sampler owns its
random generator and counters, and :meth:`TaskSampler.state_dict` captures both, so a resumed
run draws exactly the sequence the interrupted run would have drawn.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from sentence_mtl.errors import CheckpointError, InvalidInputError

SAMPLING_STRATEGIES = ("proportional", "temperature", "round_robin")


class TaskSampler(ABC):
    """Draws task names at random with :meth:`probabilities`; subclasses define those.

    ``sizes`` maps each task to its number of training rows (or batches); tasks are kept in
    sorted order so the sequence does not depend on dict insertion order.
    """

    strategy: ClassVar[str]

    def __init__(self, sizes: dict[str, int], seed: int = 0) -> None:
        if not sizes:
            raise InvalidInputError("a task sampler needs at least one task; sizes is empty")
        for task, size in sizes.items():
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
                raise InvalidInputError(
                    f"task {task!r} has size {size!r}; every task needs a positive integer number of rows"
                )
        self.tasks = sorted(sizes)
        self.sizes = {task: int(sizes[task]) for task in self.tasks}
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.draws = 0
        self.counts = dict.fromkeys(self.tasks, 0)
        self._cumulative = np.cumsum([self.probabilities()[task] for task in self.tasks])

    @abstractmethod
    def probabilities(self) -> dict[str, float]:
        """The long-run share of batches each task receives."""

    def _next_index(self) -> int:
        index = int(np.searchsorted(self._cumulative, self._rng.random(), side="right"))
        return min(index, len(self.tasks) - 1)  # guards a cumulative sum that ends just below 1.0

    def next_task(self) -> str:
        """The task of the next batch."""
        task = self.tasks[self._next_index()]
        self.draws += 1
        self.counts[task] += 1
        return task

    def config(self) -> dict[str, Any]:
        """What defines the sequence besides the generator: a resumed run must match it."""
        return {"strategy": self.strategy, "sizes": dict(self.sizes)}

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: :meth:`config`, counters and the generator's exact state."""
        return {
            **self.config(),
            "draws": self.draws,
            "counts": dict(self.counts),
            "bit_generator": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; it must come from a sampler with the same :meth:`config`."""
        saved = {key: state.get(key) for key in self.config()}
        if saved != self.config():
            raise CheckpointError(
                f"the saved sampler state has {saved}, but this run has {self.config()}; resume with the "
                "same task data and sampling options, or start a new run"
            )
        self._rng.bit_generator.state = state["bit_generator"]
        self.draws = int(state["draws"])
        self.counts = {task: int(state["counts"][task]) for task in self.tasks}


class ProportionalSampler(TaskSampler):
    """p(task) ∝ n(task): every training row is seen about equally often, so big tasks dominate."""

    strategy = "proportional"

    def probabilities(self) -> dict[str, float]:
        total = sum(self.sizes.values())
        return {task: self.sizes[task] / total for task in self.tasks}


class TemperatureSampler(TaskSampler):
    """p(task) ∝ n(task)^(1/T): T=1 is proportional, T→∞ is uniform, values between up-sample small tasks.

    Introduced for multilingual NMT by Arivazhagan et al. 2019, "Massively Multilingual Neural
    Machine Translation in the Wild" (arXiv:1907.05019), and used for multi-task mixing by Raffel
    et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
    Transformer" (JMLR, T5), where it is called temperature-scaled mixing.
    """

    strategy = "temperature"

    def __init__(self, sizes: dict[str, int], seed: int = 0, temperature: float = 2.0) -> None:
        if not isinstance(temperature, (int, float)) or math.isnan(temperature) or temperature <= 0:
            raise InvalidInputError(
                f"temperature must be a number above 0 (1 = proportional, larger = closer to uniform), "
                f"got {temperature!r}"
            )
        self.temperature = float(temperature)
        super().__init__(sizes, seed)

    def probabilities(self) -> dict[str, float]:
        # In log space so that a large temperature or large sizes cannot overflow.
        logits = np.log([self.sizes[task] for task in self.tasks]) / self.temperature
        weights = np.exp(logits - logits.max())
        return {task: float(w) for task, w in zip(self.tasks, weights / weights.sum(), strict=True)}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "temperature": self.temperature}


class RoundRobinSampler(TaskSampler):
    """Cycles through the tasks in sorted order: an exact uniform mix, no randomness."""

    strategy = "round_robin"

    def probabilities(self) -> dict[str, float]:
        return dict.fromkeys(self.tasks, 1.0 / len(self.tasks))

    def _next_index(self) -> int:
        return self.draws % len(self.tasks)


def make_sampler(name: str, sizes: dict[str, int], seed: int = 0, temperature: float = 2.0) -> TaskSampler:
    """The sampler called ``name`` (see :data:`SAMPLING_STRATEGIES`); ``temperature`` is for "temperature"."""
    if name == "proportional":
        return ProportionalSampler(sizes, seed)
    if name == "temperature":
        return TemperatureSampler(sizes, seed, temperature)
    if name == "round_robin":
        return RoundRobinSampler(sizes, seed)
    raise InvalidInputError(
        f"unknown sampling strategy {name!r}. Valid sampling strategies are: {', '.join(SAMPLING_STRATEGIES)}"
    )
