"""Pooling maths on hand-made tensors, for every mode, under both padding sides."""

from __future__ import annotations

import pytest
import torch

from sentence_mtl.errors import InvalidInputError
from sentence_mtl.pooling import POOLING_MODES, Pooling

# Two sentences: 3 real tokens and 1 real token, hidden size 2.
REAL = [
    torch.tensor([[1.0, 10.0], [2.0, -20.0], [6.0, 4.0]]),
    torch.tensor([[-3.0, 5.0]]),
]
EXPECTED = {
    "mean": torch.tensor([[3.0, -2.0], [-3.0, 5.0]]),
    "max": torch.tensor([[6.0, 10.0], [-3.0, 5.0]]),
    "cls": torch.tensor([[1.0, 10.0], [-3.0, 5.0]]),
    "lasttoken": torch.tensor([[6.0, 4.0], [-3.0, 5.0]]),
}
PAD_VALUE = 1000.0  # large, so any leak of a padded position into a result is obvious


def padded_batch(side: str, width: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    embeddings = torch.full((len(REAL), width, 2), PAD_VALUE)
    mask = torch.zeros((len(REAL), width), dtype=torch.long)
    for row, tokens in enumerate(REAL):
        start = width - len(tokens) if side == "left" else 0
        embeddings[row, start : start + len(tokens)] = tokens
        mask[row, start : start + len(tokens)] = 1
    return embeddings, mask


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_each_mode_matches_hand_computed_values(mode: str, side: str) -> None:
    embeddings, mask = padded_batch(side)
    torch.testing.assert_close(Pooling(mode)(embeddings, mask), EXPECTED[mode])


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_more_padding_never_changes_the_result(mode: str) -> None:
    results = [Pooling(mode)(*padded_batch(side, width)) for side in ("left", "right") for width in (3, 4, 9)]
    for result in results[1:]:
        torch.testing.assert_close(result, results[0])


def test_mean_in_half_precision_accumulates_in_float32() -> None:
    embeddings = torch.full((1, 4096, 1), 0.1, dtype=torch.bfloat16)
    mask = torch.ones((1, 4096), dtype=torch.long)
    result = Pooling("mean")(embeddings, mask)
    assert result.dtype == torch.bfloat16
    assert abs(result.float().item() - 0.1) < 1e-3


@pytest.mark.parametrize("side", ["right", "left"])
def test_excluding_the_prompt_pools_only_the_sentence(side: str) -> None:
    embeddings, mask = padded_batch(side)
    pooled = Pooling("mean", include_prompt=False)(embeddings, mask, prompt_length=1)
    expected_first = REAL[0][1:].mean(dim=0)
    torch.testing.assert_close(pooled[0], expected_first)


def test_unknown_mode_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidInputError, match="Valid pooling modes are: mean, cls, max, lasttoken"):
        Pooling("average")
