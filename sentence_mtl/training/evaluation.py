"""Evaluation: predict whole splits, score them, and compare with the majority-class baseline.

Predictions run in length-sorted batches (the least padding) and are written back to each row's
place. Under DDP each rank predicts every W-th row of that order and a sum gathers them, so every
rank ends with the same metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sentence_mtl.batching import length_sorted_batches
from sentence_mtl.devices import autocast
from sentence_mtl.io import atomic_write_text
from sentence_mtl.metrics import classification_metrics, majority_baseline
from sentence_mtl.model.multitask import MultiTaskModel
from sentence_mtl.training import distributed
from sentence_mtl.training.checkpoint import TrainState
from sentence_mtl.training.distributed import DistributedContext
from sentence_mtl.training.inputs import ModelInputs, TokenizedSplit

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


def dev_record(
    dev: Scores, selection_tasks: list[str], state: TrainState, objective: str
) -> tuple[float, dict[str, Any]]:
    """The selection score of a dev evaluation and its log record (``improved``: a new best)."""
    selected = {task: dev[task] for task in selection_tasks if task in dev}
    score = selection_score(selected, state.step, objective)
    record = {
        "event": "eval",
        "step": state.step,
        "score": score,
        "improved": score > state.best_score,
        **{f"{task}/{metric}": dev[task][metric] for task in dev for metric in ("accuracy", "macro_f1")},
    }
    return score, record


def selection_text(dev: Scores, selection_tasks: list[str], score: float, objective: str) -> str:
    """The log's words for a selection score: the dev mean, or that no dev rows select (the step is kept)."""
    if not any(task in dev for task in selection_tasks):
        return "no dev rows to select on, this step's model is kept"
    return f"dev mean {objective} {score:.4f}"


def load_best(
    model: MultiTaskModel, folder: Path, trust_remote_code: bool, context: DistributedContext
) -> None:
    """Put the weights of the best checkpoint (``folder``) into ``model``.

    Under DDP rank 0 reads the folder and broadcasts the weights, so other machines need no copy.
    """
    device = next(model.parameters()).device
    best = distributed.run_on_main(
        lambda: MultiTaskModel.load(folder, device=device, trust_remote_code=trust_remote_code), context
    )
    if best is not None:
        model.load_state_dict(best.state_dict())
    distributed.broadcast_module(model, context)


def final_scores(
    inputs: ModelInputs,
    splits: dict[str, dict[str, TokenizedSplit]],
    labels: dict[str, list[str]],
    context: DistributedContext,
) -> dict[str, Any]:
    """Dev and test scores of the model as it stands, with the majority-class baseline of each.

    ``splits`` maps ``train``, ``dev`` and ``test`` to each task's data; test is scored only where
    some task has it.
    """
    inputs.clear()
    scored = ["dev", "test"] if splits["test"] else ["dev"]
    metrics: dict[str, Any] = {
        split: evaluate(inputs, splits[split], labels, split, context) for split in scored
    }
    metrics["baseline"] = {split: baselines(splits["train"], splits[split], labels) for split in scored}
    return metrics


def write_report(output_dir: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json``, written atomically."""
    atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2))
