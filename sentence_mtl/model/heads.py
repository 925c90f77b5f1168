"""The per-task heads: small classifiers on the shared sentence embedding; they return logits.

``linear`` (dropout → linear) is the standard probe of sentence embeddings (SentEval, Conneau &
Kiela 2018); ``mlp`` adds one hidden layer, for a frozen encoder whose features cannot move.
"""

from __future__ import annotations

from torch import nn

HEAD_TYPES = ("linear", "mlp")


def build_head(kind: str, in_features: int, out_features: int, dropout: float, hidden: int) -> nn.Sequential:
    """``linear``: dropout → linear. ``mlp``: linear → GELU → dropout → linear (``hidden`` units)."""
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out_features))
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_features)
    )


def layer_summary(layer: nn.Module) -> str:
    """A head layer as Task 2 prints it, e.g. ``Linear(384 → 6)``."""
    if isinstance(layer, nn.Linear):
        return f"Linear({layer.in_features} → {layer.out_features})"
    if isinstance(layer, nn.Dropout):
        return f"Dropout({layer.p})"
    return type(layer).__name__
