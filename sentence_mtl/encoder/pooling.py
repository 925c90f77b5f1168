"""Pooling: token embeddings + attention mask → one vector per sentence.

Each mode is exact under padding: padded positions never enter a result, whether the tokenizer
pads on the right (BERT) or on the left (decoder models such as Qwen2). The module reads and
writes its own sentence-transformers folder (``1_Pooling/config.json``), as that library's
``Pooling`` does, so the composite encoder only has to say where the folder is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sentence_mtl.encoder.model_files import ModelSource
from sentence_mtl.errors import InvalidInputError, ModelLoadError
from sentence_mtl.io import write_json

POOLING_MODES = ("mean", "cls", "max", "lasttoken")
# sentence-transformers' legacy pooling flags, in the order it concatenates them. Folders are written
# with these flags rather than the newer ``pooling_mode`` key, so older releases load them too.
POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def pooling_mode_from_config(config: dict[str, Any]) -> tuple[str, bool]:
    """Read ``1_Pooling/config.json`` (legacy flags or the newer ``pooling_mode`` key).

    Returns the mode and ``include_prompt``. Combinations of modes (which sentence-transformers
    concatenates) and its modes we do not implement are refused rather than approximated.
    """
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
    else:
        modes = [mode for flag, mode in POOLING_FLAGS.items() if config.get(flag)]
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ModelLoadError(
            f"the model's pooling {modes} is not supported; supported are one of: {', '.join(POOLING_MODES)}"
        )
    return modes[0], bool(config.get("include_prompt", True))


def first_token_indices(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real token of each row (0 under right padding)."""
    return attention_mask.to(torch.int32).argmax(dim=1)


def last_token_indices(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row (the final column under left padding)."""
    seq_len = attention_mask.size(1)
    return seq_len - 1 - attention_mask.to(torch.int32).flip(1).argmax(dim=1)


def mean_pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the real tokens, accumulated in float32 for half-precision inputs."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    accumulate = torch.float32 if token_embeddings.dtype in (torch.float16, torch.bfloat16) else None
    summed = (token_embeddings * mask).sum(dim=1, dtype=accumulate)
    counts = mask.sum(dim=1, dtype=accumulate).clamp(min=1e-9)
    return (summed / counts).to(token_embeddings.dtype)


def max_pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over the real tokens."""
    padding = attention_mask.unsqueeze(-1) == 0
    return token_embeddings.masked_fill(padding, float("-inf")).max(dim=1).values


def gather_positions(token_embeddings: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Pick one token embedding per row."""
    rows = torch.arange(token_embeddings.size(0), device=token_embeddings.device)
    return token_embeddings[rows, positions.to(token_embeddings.device)]


def exclude_prompt(attention_mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """Zero the first ``prompt_length`` real tokens of each row (left padding aware).

    Used when a model pools only over the sentence and not over its instruction prompt
    (sentence-transformers' ``include_prompt: false``).
    """
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device).unsqueeze(0)
    prompt_end = first_token_indices(attention_mask).unsqueeze(1) + prompt_length
    return attention_mask.masked_fill(positions < prompt_end, 0)


class Pooling(nn.Module):
    """Reduce ``(batch, tokens, hidden)`` to ``(batch, hidden)`` with one of :data:`POOLING_MODES`.

    ``mean`` suits models trained with mean pooling (all-MiniLM-L6-v2, stella); ``cls`` suits
    models trained on the first token (bge); ``lasttoken`` suits decoder embedders; ``max`` is the
    classic alternative from InferSent/SBERT. Using a mode that the checkpoint was not trained with
    gives valid-looking but worse embeddings, so loaders read the mode from the model's config.
    """

    def __init__(self, mode: str = "mean", include_prompt: bool = True) -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            raise InvalidInputError(
                f"unknown pooling mode {mode!r}. Valid pooling modes are: {', '.join(POOLING_MODES)}"
            )
        self.mode = mode
        self.include_prompt = include_prompt

    def forward(
        self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int = 0
    ) -> torch.Tensor:
        if prompt_length and not self.include_prompt:
            attention_mask = exclude_prompt(attention_mask, prompt_length)
        if self.mode == "mean":
            return mean_pool(token_embeddings, attention_mask)
        if self.mode == "max":
            return max_pool(token_embeddings, attention_mask)
        if self.mode == "cls":
            return gather_positions(token_embeddings, first_token_indices(attention_mask))
        return gather_positions(token_embeddings, last_token_indices(attention_mask))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, include_prompt={self.include_prompt}"

    # ------------------------------------------------------------------ sentence-transformers folder
    def sentence_transformers_config(self, word_embedding_dimension: int) -> dict[str, Any]:
        """The ``config.json`` that sentence-transformers' ``Pooling`` reads, with the legacy flags."""
        config: dict[str, Any] = {"word_embedding_dimension": word_embedding_dimension}
        config.update({flag: self.mode == mode for flag, mode in POOLING_FLAGS.items()})
        config["include_prompt"] = self.include_prompt
        return config

    def save(self, folder: Path, word_embedding_dimension: int) -> None:
        """Write ``folder/config.json``.

        The dimension is passed in, not stored, because it belongs to the backbone: pooling has no
        weights, and a stored copy could disagree with the model it is saved beside.
        """
        folder.mkdir(parents=True, exist_ok=True)
        config = self.sentence_transformers_config(word_embedding_dimension)
        write_json(folder / "config.json", config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Pooling:
        """A Pooling module from a parsed sentence-transformers ``config.json``."""
        return cls(*pooling_mode_from_config(config))

    @classmethod
    def load(cls, source: ModelSource, path: str) -> Pooling:
        """Read the Pooling module at ``path`` (``1_Pooling``) inside a model folder or hub repository."""
        prefix = f"{path}/" if path else ""
        config = source.json(f"{prefix}config.json")
        if config is None:
            raise ModelLoadError(f"{source.name}: the Pooling module has no {prefix}config.json")
        return cls.from_config(config)
