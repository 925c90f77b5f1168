"""Checks of what callers hand to ``SentenceEncoder.encode``: the sentences and the options.

A wrong type or value is caught here with a message that names it, before any tokenising, instead
of surfacing as a traceback from deep inside the tokenizer or torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sentence_mtl.devices import PRECISIONS
from sentence_mtl.errors import InvalidInputError, InvalidTypeError

OUTPUT_FORMATS = ("numpy", "tensor")


def validate_sentences(sentences: Sequence[str] | str) -> list[str]:
    """Check the input of :meth:`SentenceEncoder.encode` and return it as a list."""
    if isinstance(sentences, str):
        return [sentences]
    if not isinstance(sentences, Sequence):
        raise InvalidTypeError(
            f"sentences must be a string or a list of strings, got {type(sentences).__name__}"
        )
    if len(sentences) == 0:
        raise InvalidInputError("sentences is empty; pass at least one string")
    for index, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise InvalidTypeError(
                f"sentences[{index}] is {type(sentence).__name__}, not str; convert or remove it"
            )
        try:
            sentence.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidInputError(
                f"sentences[{index}] holds a lone surrogate ({error.object[error.start]!r}), "
                "which is not text; fix or remove it"
            ) from None
    return list(sentences)


def check_encode_options(batch_size: int, convert_to: str, precision: str, device: torch.device) -> None:
    """Reject a bad batch size, output format or precision, and fp16 on a CPU (slower than fp32 there)."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if convert_to not in OUTPUT_FORMATS:
        raise InvalidInputError(f"unknown convert_to {convert_to!r}; valid: {', '.join(OUTPUT_FORMATS)}")
    if precision not in PRECISIONS:
        raise InvalidInputError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise InvalidInputError(
            "fp16 on CPU is several times slower than fp32; use precision='bf16' or 'fp32'"
        )
