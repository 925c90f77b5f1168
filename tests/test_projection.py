"""Projection (Dense) and Normalize: dimensions, activations and norms."""

from __future__ import annotations

import pytest
import torch

from sentence_mtl.errors import InvalidInputError
from sentence_mtl.projection import Normalize, Projection, activation_name


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
