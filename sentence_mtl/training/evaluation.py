"""Evaluation: predict whole splits, score them, and compare with the majority-class baseline.

Predictions run in length-sorted batches (the least padding) and are written back to each row's
place. Under DDP each rank predicts every W-th row of that order and a sum gathers them, so every
rank ends with the same metrics.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sentence_mtl.batching import length_sorted_batches
from sentence_mtl.devices import autocast, hardware_description
from sentence_mtl.io import atomic_write_text
from sentence_mtl.metrics import classification_metrics, majority_baseline
from sentence_mtl.multitask import MultiTaskModel
from sentence_mtl.training import distributed
from sentence_mtl.training.distributed import DistributedContext
from sentence_mtl.training.inputs import ModelInputs, TokenizedSplit

if TYPE_CHECKING:
    from sentence_mtl.training.loop import Trainer

Scores = dict[str, dict[str, Any]]


@torch.inference_mode()
def predict_split(
    inputs: ModelInputs,
    task: str,
    data: TokenizedSplit,
    split: str,
    context: DistributedContext,
    batch_size: int = 128,
) -> np.ndarray:
    """Predicted label ids of a whole split, in its original order."""
    model = inputs.model
    was_training = model.training
    model.eval()
    predictions = torch.zeros(len(data), dtype=torch.long)
    shard = (context.rank, context.world_size)
    for rows in length_sorted_batches(data.lengths, batch_size, shard):
        with autocast(inputs.device, inputs.precision):
            logits = inputs.logits(inputs(split, task, data, rows), task)
        predictions[torch.from_numpy(rows)] = logits.argmax(dim=-1).cpu()
    model.train(was_training)
    return distributed.combine_disjoint(predictions, context).numpy()


def evaluate(
    inputs: ModelInputs,
    datasets: dict[str, TokenizedSplit],
    labels: dict[str, list[str]],
    split: str,
    context: DistributedContext,
) -> Scores:
    """Accuracy, macro-F1, per-class report and confusion matrix for every task of one split."""
    results = {}
    for task, data in sorted(datasets.items()):
        predictions = predict_split(inputs, task, data, split, context)
        results[task] = classification_metrics(data.labels.numpy(), predictions, labels[task])
    return results


def baselines(
    train: dict[str, TokenizedSplit], datasets: dict[str, TokenizedSplit], labels: dict[str, list[str]]
) -> Scores:
    """The majority class of each task's training split, scored on ``datasets``."""
    return {
        task: majority_baseline(train[task].labels.numpy(), data.labels.numpy(), labels[task])
        for task, data in sorted(datasets.items())
    }


def selection_score(dev: Scores, step: int, objective: str = "macro_f1") -> float:
    """What picks the best checkpoint: the objective's mean over tasks on dev (no dev: the latest step)."""
    if not dev:
        return float(step)
    return float(np.mean([result[objective] for result in dev.values()]))


def final_report(trainer: Trainer, stopped_early: bool, start_step: int) -> dict[str, Any]:
    """Load the best checkpoint, evaluate it on dev and test, write ``metrics.json``.

    Under DDP rank 0 reads ``best/`` and broadcasts the weights, so other machines need no copy.
    """

    def load_best() -> MultiTaskModel:
        return MultiTaskModel.load(
            trainer.output_dir / "best",
            device=trainer.device,
            trust_remote_code=trainer.config.trust_remote_code,
        )

    best = distributed.run_on_main(load_best, trainer.dist)
    if best is not None:
        trainer.model.load_state_dict(best.state_dict())
    distributed.broadcast_module(trainer.model, trainer.dist)
    trainer.inputs.clear()
    metrics: dict[str, Any] = {"dev": trainer.evaluate("dev")}
    if trainer.test_data:
        metrics["test"] = trainer.evaluate("test")
    metrics["baseline"] = {"dev": trainer.baselines("dev")}
    if trainer.test_data:
        metrics["baseline"]["test"] = trainer.baselines("test")
    metrics.update(
        {
            "best_step": trainer.state.best_step,
            "best_dev_score": trainer.state.best_score,
            "steps": trainer.state.step,
            "resumed_from_step": start_step or None,
            "stopped_early": stopped_early,
            "skipped_steps": trainer.state.bad_steps,
            "train_seconds": round(trainer.state.train_seconds, 2),
            "embeddings_cached": trainer.cached,
            "amp": trainer.amp,
            "world_size": trainer.dist.world_size,
            "parameters": trainer.model.parameter_report(),
            "task_weights": trainer.weighting.weights(),
            "sampling_probabilities": trainer.sampler.probabilities(),
            "dev_split_carved": {name: task.dev_carved for name, task in trainer.tasks.items()},
            "config": asdict(trainer.config),
            "hardware": hardware_description(trainer.device),
            "history": trainer.state.history,
        }
    )
    if trainer.dist.is_main:
        trainer.folder.before_checkpoint()
        atomic_write_text(trainer.output_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
