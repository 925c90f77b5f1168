"""Projection (Dense) and Normalize: dimensions, activations and norms; their folder formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sentence_transformers.models import Dense as STDense
from sentence_transformers.models import Normalize as STNormalize

from sentence_mtl.encoder.model_files import ModelSource
from sentence_mtl.encoder.projection import (
    ACTIVATIONS,
    Normalize,
    Projection,
    activation_name,
    resolve_projection,
)
from sentence_mtl.errors import InvalidInputError, ModelLoadError


def test_projection_maps_dimension_and_applies_activation() -> None:
    torch.manual_seed(0)
    projection = Projection(8, 3, activation="tanh")
    inputs = torch.randn(5, 8) * 10
    outputs = projection(inputs)
    assert outputs.shape == (5, 3)
    torch.testing.assert_close(outputs, torch.tanh(projection.linear(inputs)))
    assert outputs.abs().max() <= 1.0


def test_identity_projection_is_affine() -> None:
    projection = Projection(4, 2)
    inputs = torch.randn(3, 4)
    torch.testing.assert_close(
        projection(inputs), inputs @ projection.linear.weight.T + projection.linear.bias
    )


def test_normalize_gives_unit_l2_norm_and_keeps_direction() -> None:
    inputs = torch.tensor([[3.0, 4.0], [-1.0, 0.0], [0.5, 0.5]])
    outputs = Normalize()(inputs)
    torch.testing.assert_close(outputs.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(outputs[0], torch.tensor([0.6, 0.8]))


def test_sentence_transformers_activation_paths_round_trip() -> None:
    for name in ("identity", "tanh", "relu", "gelu"):
        projection = Projection(2, 2, activation=name)
        assert activation_name(projection.sentence_transformers_config()["activation_function"]) == name


@pytest.mark.parametrize(
    ("arguments", "message"),
    [((0, 3), "positive"), ((3, 2, True, "swish"), "Valid activations")],
)
def test_bad_projection_options_are_rejected(arguments: tuple, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Projection(*arguments)


# ---------------------------------------------------------------------- the 2_Dense and Normalize folders


def local(folder: Path) -> ModelSource:
    return ModelSource(name="test-model", local_dir=folder)


def trained_projection(activation: str, bias: bool) -> Projection:
    torch.manual_seed(7)
    projection = Projection(6, 4, bias=bias, activation=activation)
    with torch.no_grad():
        for parameter in projection.parameters():
            parameter.normal_()
    return projection


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_save_then_load_round_trips(activation: str, bias: bool, tmp_path: Path) -> None:
    projection = trained_projection(activation, bias)
    projection.save(tmp_path / "2_Dense")
    assert sorted(path.name for path in (tmp_path / "2_Dense").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((tmp_path / "2_Dense" / "config.json").read_text())
    assert config == projection.sentence_transformers_config() and config["bias"] is bias
    loaded = Projection.load(local(tmp_path), "2_Dense")
    assert (loaded.in_features, loaded.out_features, loaded.activation_name) == (6, 4, activation)
    for (name, expected), (other_name, actual) in zip(
        projection.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == other_name
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_saved_folder_loads_in_sentence_transformers(activation: str, bias: bool, tmp_path: Path) -> None:
    projection = trained_projection(activation, bias)
    projection.save(tmp_path / "2_Dense")
    theirs = STDense.load(str(tmp_path), subfolder="2_Dense")
    assert (theirs.in_features, theirs.out_features) == (6, 4)
    assert type(theirs.activation_function) is ACTIVATIONS[activation]
    torch.testing.assert_close(theirs.linear.weight, projection.linear.weight, rtol=0, atol=0)
    assert (theirs.linear.bias is None) is not bias
    if bias:
        torch.testing.assert_close(theirs.linear.bias, projection.linear.bias, rtol=0, atol=0)
    inputs = torch.randn(3, 6)
    reference = theirs({"sentence_embedding": inputs})["sentence_embedding"]
    torch.testing.assert_close(projection(inputs), reference)


def test_pytorch_bin_weights_and_the_default_tanh_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "2_Dense"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"in_features": 3, "out_features": 2, "bias": False}))
    weight = torch.randn(2, 3)
    torch.save({"linear.weight": weight}, folder / "pytorch_model.bin")
    loaded = Projection.load(local(tmp_path), "2_Dense")
    assert loaded.activation_name == "tanh"
    torch.testing.assert_close(loaded.linear.weight, weight, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("config", "weights", "message"),
    [
        (None, True, r"test-model: the Dense module has no 2_Dense/config\.json"),
        ({"in_features": 3, "out_features": 2}, False, "the Dense module at 2_Dense/ has no weights file"),
        ({"in_features": 3, "out_features": 5}, True, "Dense weights do not match its config"),
    ],
)
def test_broken_dense_folders_are_reported(
    config: dict | None, weights: bool, message: str, tmp_path: Path
) -> None:
    folder = tmp_path / "2_Dense"
    Projection(3, 2).save(folder)
    (folder / "config.json").unlink()
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if not weights:
        (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=message):
        Projection.load(local(tmp_path), "2_Dense")


def test_normalize_folder_is_empty_and_optional(tmp_path: Path) -> None:
    Normalize().save(tmp_path / "3_Normalize")
    assert (tmp_path / "3_Normalize").is_dir() and not any((tmp_path / "3_Normalize").iterdir())
    assert isinstance(STNormalize.load(str(tmp_path), subfolder="3_Normalize"), STNormalize)
    assert isinstance(Normalize.load(local(tmp_path), "3_Normalize"), Normalize)
    assert isinstance(Normalize.load(local(tmp_path), "no_such_folder"), Normalize)


def test_resolve_projection_keeps_drops_or_seeds() -> None:
    existing = Projection(8, 4)
    assert resolve_projection(existing, 8, None) is existing
    assert resolve_projection(existing, 8, 4) is existing
    assert resolve_projection(existing, 8, 0) is None
    fresh, again = resolve_projection(existing, 8, 2), resolve_projection(None, 8, 2)
    assert fresh is not None and again is not None and fresh.out_features == 2
    torch.testing.assert_close(fresh.linear.weight, again.linear.weight)
    with pytest.raises(ModelLoadError, match="expects 8 inputs but the backbone gives 6"):
        resolve_projection(existing, 6, None)
    with pytest.raises(InvalidInputError, match="0 \\(none\\) or positive"):
        resolve_projection(None, 8, -1)
