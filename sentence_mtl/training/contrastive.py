"""The contrastive path for few labels: train the encoder on pairs built from the labels, then solve heads.

With a handful of labels per class, a fresh head and the encoder trained together by cross-entropy
overfit before they generalise. SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without
Prompts") trains the Sentence Transformer instead on pairs of labelled sentences, pulling the
cosine similarity of a same-label pair to 1 and of a different-label pair to 0, and then fits a
logistic-regression head on the new embeddings. This module does the same with every pair in a
batch rather than sampled pairs: a batch of ``B`` rows of one task gives ``B(B-1)/2`` pairs for one
forward pass of ``B`` sentences. Same-label and different-label pairs count equally (their two
mean losses are averaged), so the many negatives of a task with many classes do not drown the
positives. Pairs never cross tasks: every batch belongs to one task. Under torchrun each rank
pairs the rows of its own shard of the global batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sentence_mtl.devices import autocast
from sentence_mtl.training.inputs import Inputs
from sentence_mtl.training.objective import ForwardAndLoss

# Passes over the training rows of the contrastive stage, unless --epochs or --max-steps say otherwise:
# MOST_PASSES up to FULL_PASSES_UNTIL rows per class, FEWEST_PASSES from FEWEST_PASSES_FROM on, and
# log-linear in between (see contrastive_passes).
MOST_PASSES, FULL_PASSES_UNTIL = 40.0, 8.0
FEWEST_PASSES, FEWEST_PASSES_FROM = 10.0, 64.0


def contrastive_passes(rows_per_class: float) -> float:
    """Passes over the training rows for the pair stage: fewer as the labels per class grow.

    With more rows per class each pass holds more pairs, and the encoder drifts further from what it
    knew. On dev, 40 passes were the best count tried at 8 rows per class; at 64 rows per class 10
    passes were level with 40 at a quarter of the cost, and 5 were worse (docs/results.md, "Few
    labels"). Between the two sizes the count falls on a straight line in log-log space,
    ``40 · (8 / n)^(2/3)``, which meets both.
    """
    if rows_per_class <= FULL_PASSES_UNTIL:
        return MOST_PASSES
    if rows_per_class >= FEWEST_PASSES_FROM:
        return FEWEST_PASSES
    slope = math.log(MOST_PASSES / FEWEST_PASSES) / math.log(FEWEST_PASSES_FROM / FULL_PASSES_UNTIL)
    return MOST_PASSES * (FULL_PASSES_UNTIL / rows_per_class) ** slope


def pair_relations(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks ``(B, B)`` of the same-label and the different-label pairs ``i < j`` among a batch's rows."""
    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(diagonal=1)
    return same & upper, ~same & upper


def cosine_pair_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SetFit's pair loss over every pair in the batch: ``(cos - 1)²`` same-label, ``cos²`` otherwise.

    The mean over same-label pairs and the mean over different-label pairs are averaged; a batch
    with pairs of one relation only uses that one. A batch of one row has no pair and gives 0
    (still connected to the graph, so every rank of a distributed run takes part in the step).
    Counts stay tensors, so the loss adds no host sync to the step.
    """
    unit = F.normalize(embeddings.float(), dim=-1)
    cosine = unit @ unit.T
    similar, different = pair_relations(labels)
    means, present = [], []
    for mask, errors in ((similar, (cosine - 1) ** 2), (different, cosine**2)):
        count = mask.sum()
        means.append((errors * mask).sum() / count.clamp(min=1))
        present.append((count > 0).float())
    return (means[0] * present[0] + means[1] * present[1]) / (present[0] + present[1]).clamp(min=1)


class ContrastiveForwardAndLoss(ForwardAndLoss):
    """Token batch of one task → the encoder's embeddings → the pair loss, weighted across tasks.

    :class:`~sentence_mtl.training.objective.ForwardAndLoss` for the contrastive stage: the heads are
    not used (they are solved afterwards), only the encoder trains; the task loss lends its weighting.
    """

    def forward(self, batch: Inputs, task: str, labels: torch.Tensor) -> torch.Tensor:
        with autocast(self.inputs.device, self.inputs.precision):
            embeddings = self.model.embed(batch)
        return self.loss.weighting(task, cosine_pair_loss(embeddings, labels))
