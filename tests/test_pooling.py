"""Pooling maths on hand-made tensors, for every mode, under both padding sides; its folder format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sentence_transformers.models import Pooling as STPooling

from sentence_mtl.encoder.model_files import ModelSource
from sentence_mtl.encoder.pooling import POOLING_FLAGS, POOLING_MODES, Pooling, pooling_mode_from_config
from sentence_mtl.errors import InvalidInputError, ModelLoadError

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


# ---------------------------------------------------------------------- the 1_Pooling folder


LEGACY_FLAG = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


def local(folder: Path) -> ModelSource:
    return ModelSource(name="test-model", local_dir=folder)


@pytest.mark.parametrize("include_prompt", [True, False])
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_save_then_load_round_trips(mode: str, include_prompt: bool, tmp_path: Path) -> None:
    Pooling(mode, include_prompt).save(tmp_path / "1_Pooling", word_embedding_dimension=32)
    config = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    assert list(config) == ["word_embedding_dimension", *POOLING_FLAGS, "include_prompt"]
    assert config["word_embedding_dimension"] == 32 and config["include_prompt"] is include_prompt
    assert [flag for flag in POOLING_FLAGS if config[flag]] == [LEGACY_FLAG[mode]]
    loaded = Pooling.load(local(tmp_path), "1_Pooling")
    assert (loaded.mode, loaded.include_prompt) == (mode, include_prompt)


@pytest.mark.parametrize("include_prompt", [True, False])
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_saved_folder_loads_in_sentence_transformers(mode: str, include_prompt: bool, tmp_path: Path) -> None:
    Pooling(mode, include_prompt).save(tmp_path / "1_Pooling", word_embedding_dimension=2)
    theirs = STPooling.load(str(tmp_path), subfolder="1_Pooling")
    assert (theirs.pooling_mode, theirs.include_prompt, theirs.embedding_dimension) == (
        mode,
        include_prompt,
        2,
    )
    embeddings, mask = padded_batch("right")
    reference = theirs({"token_embeddings": embeddings, "attention_mask": mask})["sentence_embedding"]
    torch.testing.assert_close(Pooling(mode, include_prompt)(embeddings, mask), reference)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"pooling_mode": "cls"}, ("cls", True)),
        ({"pooling_mode": ["lasttoken"], "include_prompt": False}, ("lasttoken", False)),
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, ("mean", True)),
    ],
)
def test_both_config_styles_are_read(config: dict, expected: tuple[str, bool]) -> None:
    assert pooling_mode_from_config(config) == expected
    pooling = Pooling.from_config(config)
    assert (pooling.mode, pooling.include_prompt) == expected


@pytest.mark.parametrize(
    "config",
    [
        {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
        {"pooling_mode_weightedmean_tokens": True},
        {"pooling_mode": "mean_sqrt_len_tokens"},
        {"word_embedding_dimension": 8},
    ],
)
def test_unsupported_pooling_configs_name_the_supported_modes(config: dict) -> None:
    with pytest.raises(ModelLoadError, match="supported are one of: mean, cls, max, lasttoken"):
        Pooling.from_config(config)


def test_missing_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"test-model: the Pooling module has no 1_Pooling/config\.json"):
        Pooling.load(local(tmp_path), "1_Pooling")
