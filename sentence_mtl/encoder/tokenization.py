"""Tokenisation without padding, and padding per batch.

Encoding and training both tokenise a whole list once, sort or bucket it by token count, and pad
each batch only to its own longest row. Padding every batch to ``max_length`` wastes most of the
compute on short sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tokenizers
import torch
from transformers import PreTrainedTokenizerBase


@dataclass
class TokenizedTexts:
    """Token ids of each text (truncated, special tokens added) and how many were truncated."""

    ids: list[list[int]]
    truncated: int

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(row) for row in self.ids), dtype=np.int64, count=len(self.ids))


class Tokenizer:
    """Wraps a Hugging Face tokenizer with the two operations the package needs.

    With a fast tokenizer it calls the Rust backend directly on a private copy, so truncation can
    be detected exactly (the backend records the overflow) and the caller's tokenizer settings are
    never changed. Slow tokenizers go through the regular ``__call__``.
    """

    def __init__(self, hf_tokenizer: PreTrainedTokenizerBase, max_length: int, do_lower_case: bool = False):
        self.hf_tokenizer = hf_tokenizer
        self.max_length = max_length
        self.do_lower_case = do_lower_case
        pad_id = hf_tokenizer.pad_token_id
        if pad_id is None:
            pad_id = hf_tokenizer.eos_token_id if hf_tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad_id)
        self.padding_side = hf_tokenizer.padding_side
        self.special_ids = set(hf_tokenizer.all_special_ids)
        self._backend: tokenizers.Tokenizer | None = None
        if getattr(hf_tokenizer, "is_fast", False) and hasattr(hf_tokenizer, "_tokenizer"):
            backend = tokenizers.Tokenizer.from_str(hf_tokenizer._tokenizer.to_str())
            backend.no_padding()
            backend.enable_truncation(max_length)
            self._backend = backend

    def token_ids(self, texts: Sequence[str]) -> TokenizedTexts:
        """Tokenise with truncation to ``max_length`` and no padding."""
        if self.do_lower_case:
            texts = [text.lower() for text in texts]
        if self._backend is not None:
            encodings = self._backend.encode_batch(list(texts))
            return TokenizedTexts(
                ids=[encoding.ids for encoding in encodings],
                truncated=sum(1 for encoding in encodings if encoding.overflowing),
            )
        full = self.hf_tokenizer(list(texts), truncation=False)["input_ids"]
        truncated = sum(1 for row in full if len(row) > self.max_length)
        ids = self.hf_tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return TokenizedTexts(ids=ids, truncated=truncated)

    def pad(self, rows: Sequence[Sequence[int]], pin_memory: bool = False) -> dict[str, torch.Tensor]:
        """Pad rows to the longest one on the tokenizer's padding side."""
        width = max(len(row) for row in rows)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        left = self.padding_side == "left"
        for i, row in enumerate(rows):
            start = width - len(row) if left else 0
            input_ids[i, start : start + len(row)] = row
            attention_mask[i, start : start + len(row)] = 1
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
        if pin_memory:
            batch = {key: value.pin_memory() for key, value in batch.items()}
        return batch

    def prompt_length(self, prompt: str) -> int:
        """Tokens the prompt adds at the start of a text, without a trailing special token.

        Same rule as sentence-transformers, so ``include_prompt: false`` models pool alike.
        """
        ids = self.token_ids([prompt]).ids[0]
        return len(ids) - 1 if ids and ids[-1] in self.special_ids else len(ids)


class Collator:
    """Texts → model inputs on a device, the seam between data and model (HF ``DataCollatorWithPadding``).

    Two steps, so a dataset is tokenised once and each batch is only padded: :meth:`tokenize` a
    whole split, then :meth:`collate` the rows of each batch. Calling the collator does both for a
    short list of texts. On CUDA batches go through pinned memory with non-blocking copies.
    """

    def __init__(self, tokenizer: Tokenizer, device: torch.device) -> None:
        self.tokenizer = tokenizer
        self.device = device

    @property
    def max_length(self) -> int:
        """Tokens per text; longer texts are truncated (and counted by :meth:`tokenize`)."""
        return self.tokenizer.max_length

    def tokenize(self, texts: Sequence[str]) -> TokenizedTexts:
        """Token ids of every text, truncated to ``max_length`` and not padded."""
        return self.tokenizer.token_ids(texts)

    def collate(self, rows: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Pad token-id rows to the longest one and move them to the device."""
        pin = self.device.type == "cuda"
        batch = self.tokenizer.pad(rows, pin_memory=pin)
        return {key: value.to(self.device, non_blocking=pin) for key, value in batch.items()}

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.collate(self.tokenize(texts).ids)
