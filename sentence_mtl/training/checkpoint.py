"""A run's folder on disk: ``best/`` (the model alone), ``last/`` (everything to resume), and their safety.

``last/`` holds the model, the optimiser, scheduler, scaler and loss-weighting tensors
(``optimizer.pt``, loaded with ``weights_only``) and a JSON state (counters, sampler and batch-stream
positions, NumPy RNG, the config and the task labels), as nanoGPT's checkpoint holds everything a
resumed run needs. Every write is atomic, so an interrupted one leaves the previous copy intact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from sentence_mtl.errors import CheckpointError, CheckpointWriteError
from sentence_mtl.io import atomic_directory, recover_directory
from sentence_mtl.model.multitask import MultiTaskModel
from sentence_mtl.training.config import BEFORE_THE_FIELD, TrainingConfig

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
MODEL_DIR = "model"


@dataclass
class TrainState:
    """Counters and history saved in every checkpoint."""

    step: int = 0
    micro_step: int = 0
    best_score: float = -math.inf
    best_step: int = 0
    evals_without_improvement: int = 0
    bad_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0


@contextmanager
def checkpoint_write(target: Path) -> Iterator[None]:
    """A failed write (full disk, permissions) becomes a clear error; the previous copy stays intact."""
    try:
        yield
    except CheckpointWriteError:
        raise
    except OSError as error:
        raise CheckpointWriteError(
            f"could not write the checkpoint {target} ({error}); the previous {target.name}/ is intact. "
            "Free disk space, then --resume"
        ) from error


def save_best(model: MultiTaskModel, folder: Path) -> None:
    """The model alone, atomically: a ``MultiTaskModel`` folder that Task 2 and ``load`` read."""
    with checkpoint_write(folder):
        model.save(folder, overwrite=True)


class Stateful(Protocol):
    """Anything whose position a checkpoint keeps: optimisers, schedulers, samplers, batch streams."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any], /) -> Any: ...


@dataclass
class ResumeParts:
    """What ``last/`` holds besides the model and the counters: the state of everything that steps.

    The tensors (optimiser, scheduler, scaler, loss weighting) go to ``optimizer.pt``; the sampler's
    and batch streams' positions are JSON.
    """

    optimizer: Stateful
    scheduler: Stateful
    scaler: Stateful
    weighting: Stateful
    sampler: Stateful
    streams: dict[str, Stateful]

    def tensors(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "weighting": self.weighting.state_dict(),
        }

    def positions(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler.state_dict(),
            "streams": {name: stream.state_dict() for name, stream in self.streams.items()},
        }

    def restore(self, tensors: dict[str, Any], positions: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(tensors["optimizer"])
        self.scheduler.load_state_dict(tensors["scheduler"])
        self.scaler.load_state_dict(tensors["scaler"])
        self.weighting.load_state_dict(tensors["weighting"])
        self.sampler.load_state_dict(positions["sampler"])
        for name, stream_state in positions["streams"].items():
            self.streams[name].load_state_dict(stream_state)


def save_last(
    folder: Path,
    model: MultiTaskModel,
    parts: ResumeParts,
    state: TrainState,
    config: TrainingConfig,
    task_labels: dict[str, list[str]],
) -> None:
    """Model + optimiser, scheduler, scaler, weighting and RNG tensors + the JSON state, atomically."""
    tensors = {
        **parts.tensors(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    json_state = {
        "config": asdict(config),
        "train_state": asdict(state),
        **parts.positions(),
        "numpy_rng": _numpy_rng_state(),
        "tasks": task_labels,
    }
    with checkpoint_write(folder), atomic_directory(folder, overwrite=True) as staging:
        model.save(staging / MODEL_DIR)
        torch.save(tensors, staging / OPTIMIZER_FILE)
        (staging / STATE_FILE).write_text(json.dumps(json_state), encoding="utf-8")


def load_last(
    folder: Path,
    model: MultiTaskModel,
    parts: ResumeParts,
    task_labels: dict[str, list[str]],
    trust_remote_code: bool = False,
) -> TrainState:
    """Put a run back where :func:`save_last` left it; returns its counters.

    The weights, optimiser, positions and RNG states are restored in place.
    """
    device = next(model.parameters()).device
    tensors, state = read_last(folder, device)
    saved_tasks = state.get("tasks", {})
    if saved_tasks != task_labels:
        raise CheckpointError(
            f"{folder} was trained on tasks {saved_tasks}, but this run has {task_labels}; "
            "use the same --task set"
        )
    loaded = MultiTaskModel.load(folder / MODEL_DIR, device=device, trust_remote_code=trust_remote_code)
    try:
        model.load_state_dict(loaded.state_dict())
        parts.restore(tensors, state)
        torch.set_rng_state(tensors["torch_rng"].cpu())
        if tensors["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in tensors["cuda_rng"]])
        _set_numpy_rng_state(state["numpy_rng"])
        return TrainState(**state["train_state"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise CheckpointError(
            f"{folder} is incomplete or does not match this run ({type(error).__name__}: {error}); "
            "start again with --overwrite"
        ) from error


def read_last(folder: Path, device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tensors and JSON state of a ``last/`` folder written by :func:`save_last`.

    A missing, truncated or foreign file is a :class:`CheckpointError` that names it.
    """
    recover_directory(folder)
    state_file, optimizer_file = folder / STATE_FILE, folder / OPTIMIZER_FILE
    for file in (state_file, optimizer_file):
        if not file.is_file():
            raise CheckpointError(f"{file} is missing; {folder} is not a complete checkpoint to resume from")
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"{state_file} is unreadable or truncated ({error}); {folder} cannot be resumed. "
            "Start again with --overwrite, or restore the file"
        ) from error
    try:
        tensors = torch.load(optimizer_file, map_location=device, weights_only=True)
    except Exception as error:  # a damaged file raises RuntimeError, OSError, UnpicklingError, ...
        raise CheckpointError(
            f"{optimizer_file} is unreadable or truncated ({type(error).__name__}: {str(error)[:200]}); "
            f"{folder} cannot be resumed. Start again with --overwrite, or restore the file"
        ) from error
    if not isinstance(state, dict) or not isinstance(tensors, dict):
        raise CheckpointError(f"{folder}: {STATE_FILE} or {OPTIMIZER_FILE} does not hold a checkpoint")
    return tensors, state


def _numpy_rng_state() -> list[Any]:
    """NumPy's global RNG state as JSON-safe values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return [kind, keys.tolist(), int(position), int(has_gauss), float(cached)]


def _set_numpy_rng_state(state: list[Any]) -> None:
    kind, keys, position, has_gauss, cached = state
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))


def load_saved_config(output_dir: str | Path, device: str | None = None) -> TrainingConfig:
    """The config of the run whose ``last/`` checkpoint is in ``output_dir`` (for ``--resume``)."""
    recover_directory(Path(output_dir) / "last")
    state_file = Path(output_dir) / "last" / STATE_FILE
    try:
        saved = json.loads(state_file.read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"cannot resume from {output_dir}: {state_file} is missing or unreadable"
        ) from error
    values = {**BEFORE_THE_FIELD, **saved, "output_dir": str(output_dir), "device": device}
    return TrainingConfig.from_dict(values)
