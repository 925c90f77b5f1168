"""Projection and Normalize: the optional modules after pooling.

They mirror sentence-transformers' ``Dense`` and ``Normalize``, including their folders
(``2_Dense/config.json`` + ``model.safetensors``; an empty ``Normalize`` folder), so that a model
folder written by either library loads in the other with identical vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from sentence_mtl.encoder.model_files import ModelSource
from sentence_mtl.errors import InvalidInputError, ModelLoadError
from sentence_mtl.io import write_json

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

    # ------------------------------------------------------------------ sentence-transformers folder
    def sentence_transformers_config(self) -> dict[str, Any]:
        """The ``config.json`` that sentence-transformers' ``Dense`` reads."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.linear.bias is not None,
            "activation_function": ACTIVATION_CLASS_PATHS[self.activation_name],
        }

    def save(self, folder: Path) -> None:
        """Write ``folder/config.json`` and ``folder/model.safetensors``.

        The weight keys (``linear.weight``, ``linear.bias``) are sentence-transformers' own, so its
        ``Dense.load`` reads the file unchanged.
        """
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "config.json", self.sentence_transformers_config())
        state = {key: value.detach().cpu().contiguous() for key, value in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Projection:
        """An untrained Projection shaped by a parsed sentence-transformers ``config.json``.

        A missing activation means ``Tanh``, sentence-transformers' default for ``Dense``.
        """
        return cls(
            int(config["in_features"]),
            int(config["out_features"]),
            bias=bool(config.get("bias", True)),
            activation=activation_name(
                str(config.get("activation_function", "torch.nn.modules.activation.Tanh"))
            ),
        )

    @classmethod
    def load(cls, source: ModelSource, path: str) -> Projection:
        """Read the Dense module at ``path`` (``2_Dense``): its config, then ``model.safetensors``.

        Older folders hold ``pytorch_model.bin`` instead; it is read with ``weights_only=True`` so
        that a downloaded file cannot run code.
        """
        prefix = f"{path}/" if path else ""
        config = source.json(f"{prefix}config.json")
        if config is None:
            raise ModelLoadError(f"{source.name}: the Dense module has no {prefix}config.json")
        projection = cls.from_config(config)
        weights_path = source.file(f"{prefix}model.safetensors")
        if weights_path is not None:
            state = load_file(str(weights_path))
        else:
            weights_path = source.file(f"{prefix}pytorch_model.bin")
            if weights_path is None:
                raise ModelLoadError(
                    f"{source.name}: the Dense module at {prefix or './'} has no weights file"
                )
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        try:
            projection.load_state_dict(state)
        except RuntimeError as error:
            raise ModelLoadError(f"{source.name}: Dense weights do not match its config: {error}") from error
        return projection


def resolve_projection(
    existing: Projection | None, in_features: int, projection_dim: int | None
) -> Projection | None:
    """The projection an encoder gets: the model folder's, or the one ``projection_dim`` asks for.

    ``None`` keeps ``existing``; ``0`` drops it; another size keeps ``existing`` when it already
    has that size, else makes a new, untrained one, seeded so that repeated loads agree (a run
    that is resumed or compared rebuilds the same starting weights).
    """
    if existing is not None and existing.in_features != in_features:
        raise ModelLoadError(
            f"the Dense module expects {existing.in_features} inputs but the backbone gives {in_features}"
        )
    if projection_dim is None:
        return existing
    if projection_dim < 0:
        raise InvalidInputError(f"projection_dim must be 0 (none) or positive, got {projection_dim}")
    if projection_dim == 0:
        return None
    if existing is not None and existing.out_features == projection_dim:
        return existing
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Projection(in_features, projection_dim)


class Normalize(nn.Module):
    """Scale each vector to unit L2 norm, so a dot product is a cosine similarity."""

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(embeddings, p=2, dim=-1)

    def save(self, folder: Path) -> None:
        """Create the empty folder: Normalize has no settings or weights, just a modules.json entry."""
        folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def load(cls, source: ModelSource, path: str) -> Normalize:
        """Nothing to read; some packaged models even omit the (empty) folder, so it is not required."""
        return cls()
