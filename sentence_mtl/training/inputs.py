"""What the training loop feeds the model: splits tokenised once, endless batch streams, model inputs.

Texts are tokenised once per split through the model's :class:`~sentence_mtl.encoder.tokenization.Collator`
and padded per batch. With a frozen encoder the embeddings cannot change, so they are computed once
per split and the heads train on the cached tensors (:class:`ModelInputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sentence_mtl.batching import length_grouped_batches, length_sorted_batches, random_batches
from sentence_mtl.data.task_folders import Split
from sentence_mtl.devices import autocast
from sentence_mtl.encoder.tokenization import Collator
from sentence_mtl.model.multitask import MultiTaskModel

logger = logging.getLogger(__name__)

Inputs = torch.Tensor | dict[str, torch.Tensor]


@dataclass
class TokenizedSplit:
    """A split tokenised once: token ids per text (unpadded), lengths and label ids."""

    ids: list[list[int]]
    lengths: np.ndarray
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)


def tokenize_split(collator: Collator, split: Split) -> TokenizedSplit:
    tokenized = collator.tokenize(split.texts)
    if tokenized.truncated:
        logger.warning(
            "%s: %d texts truncated to %d tokens", split.source, tokenized.truncated, collator.max_length
        )
    return TokenizedSplit(tokenized.ids, tokenized.lengths, torch.tensor(split.labels, dtype=torch.long))


class TaskBatchStream:
    """Endless batches of one task's training split; reshuffled each pass, resumable exactly.

    With ``group_by_length`` batches hold texts of similar length (shuffled buckets), so padding
    stays small while the order stays random.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, group_by_length: bool) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.group_by_length = group_by_length
        self.rng = np.random.default_rng(seed)
        self.batches: list[np.ndarray] = []
        self.position = 0
        self.passes = 0

    def __next__(self) -> np.ndarray:
        if self.position >= len(self.batches):
            if self.group_by_length:
                self.batches = length_grouped_batches(self.lengths, self.batch_size, self.rng)
            else:
                self.batches = random_batches(len(self.lengths), self.batch_size, self.rng)
            self.position = 0
            self.passes += 1
        batch = self.batches[self.position]
        self.position += 1
        return batch

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "batches": [batch.tolist() for batch in self.batches],
            "position": self.position,
            "passes": self.passes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.batches = [np.asarray(batch, dtype=np.int64) for batch in state["batches"]]
        self.position = int(state["position"])
        self.passes = int(state["passes"])


def batch_streams(
    training: dict[str, TokenizedSplit], batch_size: int, seed: int, group_by_length: bool
) -> dict[str, TaskBatchStream]:
    """One stream per training task, each with its own seed (tasks in name order)."""
    return {
        name: TaskBatchStream(data.lengths, batch_size, seed + 1 + index, group_by_length)
        for index, (name, data) in enumerate(sorted(training.items()))
    }


class ModelInputs:
    """Rows of a tokenised split → what the model reads, and the model's logits for them.

    ``cached``: the encoder is frozen, so each split's embeddings are computed once (in eval mode,
    length-sorted) and the heads read rows of that cache; otherwise each call pads a token batch.
    """

    def __init__(self, model: MultiTaskModel, collator: Collator, precision: str, cached: bool) -> None:
        self.model = model
        self.collator = collator
        self.precision = precision
        self.cached = cached
        self.cache: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.collator.device

    def __call__(self, split: str, task: str, data: TokenizedSplit, rows: np.ndarray) -> Inputs:
        """Cached embeddings of the rows (frozen encoder), or their padded token batch."""
        if self.cached:
            return self.embeddings(split, task, data)[torch.from_numpy(rows).to(self.device)]
        return self.collator.collate([data.ids[i] for i in rows])

    def logits(self, inputs: Inputs, task: str) -> torch.Tensor:
        """The task head's logits: on cached embeddings the heads run alone."""
        return self.model.classify(inputs, task) if self.cached else self.model(inputs, task)

    def embeddings(self, split: str, task: str, data: TokenizedSplit) -> torch.Tensor:
        """Embeddings of a whole split from the frozen encoder, computed once (the fast path)."""
        key = (split, task)
        if key not in self.cache:
            self.cache[key] = self._embed_all(data)
        return self.cache[key]

    def clear(self) -> None:
        """Forget cached embeddings (after the encoder's weights were replaced)."""
        self.cache.clear()

    @torch.inference_mode()
    def _embed_all(self, data: TokenizedSplit, batch_size: int = 128) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        output: torch.Tensor | None = None
        for rows in length_sorted_batches(data.lengths, batch_size):
            with autocast(self.device, self.precision):
                embeddings = self.model.embed(self.collator.collate([data.ids[i] for i in rows])).float()
            if output is None:
                output = torch.empty((len(data), embeddings.shape[1]), device=self.device)
            output[torch.from_numpy(rows).to(self.device)] = embeddings
        self.model.train(was_training)
        return output if output is not None else torch.empty((0, 0), device=self.device)
