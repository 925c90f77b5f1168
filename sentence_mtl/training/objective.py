"""The training objective: per-task cross-entropy (class weights, label smoothing), then loss weighting.

:class:`ForwardAndLoss` puts the forward pass and the loss in one module, so one call gives a batch's
loss with or without DistributedDataParallel: under DDP the uncertainty weights live inside the
wrapped module (their gradients are all-reduced), and DDP's search for unused parameters sees the
whole graph (the heads of other tasks are unused in a step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sentence_mtl.devices import autocast
from sentence_mtl.training.config import TrainingConfig
from sentence_mtl.training.inputs import Inputs, ModelInputs, TokenizedSplit
from sentence_mtl.training.optimization import balanced_class_weights
from sentence_mtl.training.weighting import LossWeighting, make_weighting, parse_static_weights


class TaskLoss(nn.Module):
    """Cross-entropy of one task's batch, combined with the other tasks' by a :class:`LossWeighting`.

    ``class_weights[task]`` (``None`` for plain cross-entropy) re-weights rare classes; the logits are
    upcast to float32 first, so mixed precision never computes the loss in half precision.
    """

    def __init__(
        self,
        weighting: LossWeighting,
        class_weights: dict[str, torch.Tensor | None],
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.weighting = weighting
        self.class_weights = class_weights
        self.label_smoothing = label_smoothing

    def forward(self, task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(
            logits.float(), labels, weight=self.class_weights[task], label_smoothing=self.label_smoothing
        )
        return self.weighting(task, loss)


class ForwardAndLoss(nn.Module):
    """Model inputs of one task's batch → its weighted loss (the forward pass under autocast)."""

    def __init__(self, inputs: ModelInputs, loss: TaskLoss) -> None:
        super().__init__()
        self.inputs = inputs
        self.model = inputs.model  # registered here, so DDP wraps the model's parameters
        self.loss = loss

    def forward(self, batch: Inputs, task: str, labels: torch.Tensor) -> torch.Tensor:
        with autocast(self.inputs.device, self.inputs.precision):
            logits = self.inputs.logits(batch, task)
        return self.loss(task, logits, labels)


def task_loss(
    config: TrainingConfig,
    train: dict[str, TokenizedSplit],
    task_labels: dict[str, list[str]],
    device: torch.device,
) -> tuple[LossWeighting, TaskLoss]:
    """The config's loss weighting over every task, and the loss with its class weights for each."""
    names = sorted(task_labels)
    static = parse_static_weights(config.loss_weights, names) if config.loss_weights else None
    weighting = make_weighting(config.loss_weighting, names, static).to(device)
    class_weights = {
        name: balanced_class_weights(data.labels, len(task_labels[name])).to(device)
        if config.balanced
        else None
        for name, data in train.items()
    }
    return weighting, TaskLoss(weighting, class_weights, config.label_smoothing)
