"""Projection and Normalize: the optional modules after pooling.

They mirror sentence-transformers' ``Dense`` and ``Normalize`` so that a model folder written by
either library loads in the other with identical vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sentence_mtl.errors import InvalidInputError

# sentence-transformers stores the activation as a class path; these are the ones we accept.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "identity": nn.Identity,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}
ACTIVATION_CLASS_PATHS: dict[str, str] = {
    "identity": "torch.nn.modules.linear.Identity",
    "tanh": "torch.nn.modules.activation.Tanh",
    "relu": "torch.nn.modules.activation.ReLU",
    "gelu": "torch.nn.modules.activation.GELU",
    "sigmoid": "torch.nn.modules.activation.Sigmoid",
}


def activation_name(class_path: str) -> str:
    """Map a sentence-transformers ``activation_function`` class path to our short name."""
    for name, path in ACTIVATION_CLASS_PATHS.items():
        if class_path == path or class_path.rsplit(".", 1)[-1].lower() == name:
            return name
    raise InvalidInputError(
        f"unsupported Dense activation {class_path!r}. "
        f"Supported: {', '.join(ACTIVATION_CLASS_PATHS.values())}"
    )


class Projection(nn.Module):
    """``nn.Linear`` followed by an activation, like sentence-transformers' ``Dense``.

    stella_en_1.5B_v5 uses one (1536 → 1024, identity) to choose its output size; a fresh one
    with ``projection_dim`` reduces the dimension of any encoder (it then needs training).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "identity"):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise InvalidInputError(f"projection sizes must be positive, got {in_features} → {out_features}")
        if activation not in ACTIVATIONS:
            raise InvalidInputError(
                f"unknown activation {activation!r}. Valid activations are: {', '.join(ACTIVATIONS)}"
            )
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation_name = activation
        self.activation = ACTIVATIONS[activation]()

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(embeddings))

    def sentence_transformers_config(self) -> dict:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.linear.bias is not None,
            "activation_function": ACTIVATION_CLASS_PATHS[self.activation_name],
        }


class Normalize(nn.Module):
    """Scale each vector to unit L2 norm, so a dot product is a cosine similarity."""

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(embeddings, p=2, dim=-1)
